"""The request flow every web adapter shares, free of any framework and of I/O.

open:    ask the keys for an id (or a user), load that session, else start a fresh one
close:   when the response starts: save what the handler changed, and say which headers carry
         the id back
finish:  when the response ends: save what a streamed body added

The store calls are steps a flow yields (statemw._drive), carried out on the Store by `run`
(blocking) or `arun` (awaited), so ASGI, WSGI, Flask and the decorator share one flow.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeAlias, TypeVar

from statemw._default import default_store
from statemw._drive import Flow, Step, adrive, ask, drive
from statemw.errors import ConfigurationError, SessionNotFound, StateError
from statemw.keys import Cookie, Header, IdSource, Incoming, SigningSecret
from statemw.session import Session
from statemw.store import Store
from statemw.telemetry import session_hash

T = TypeVar("T")
R = TypeVar("R")

logger = logging.getLogger("statemw")

RequestFlow: TypeAlias = Flow[Store, Store, T]
"""A request's session handling written once: yields steps the Store carries out."""


class StoreCall(Step[Store, Store, R]):
    __slots__ = ()


@dataclass(slots=True)
class GetSession(StoreCall[Session | None]):
    session_id: str

    def run(self, io: Store) -> Session | None:
        return io.get(self.session_id)

    async def arun(self, aio: Store) -> Session | None:
        return await aio.aget(self.session_id)


@dataclass(slots=True)
class CurrentSessionId(StoreCall[str | None]):
    """The user's most recent live session id, or None."""

    user_id: str

    def run(self, io: Store) -> str | None:
        return io.current_session_id(self.user_id)

    async def arun(self, aio: Store) -> str | None:
        return await aio.acurrent_session_id(self.user_id)


@dataclass(slots=True)
class CreateSession(StoreCall[Session]):
    user_id: str | None
    session_id: str | None = None

    def run(self, io: Store) -> Session:
        return io.create(self.user_id, session_id=self.session_id)

    async def arun(self, aio: Store) -> Session:
        return await aio.acreate(self.user_id, session_id=self.session_id)


@dataclass(slots=True)
class SaveSession(StoreCall[None]):
    session: Session

    def run(self, io: Store) -> None:
        io.save(self.session)

    async def arun(self, aio: Store) -> None:
        await aio.asave(self.session)


@dataclass(slots=True)
class DeleteSession(StoreCall[bool]):
    session: Session

    def run(self, io: Store) -> bool:
        return io.delete(self.session)

    async def arun(self, aio: Store) -> bool:
        return await aio.adelete(self.session)


@dataclass(slots=True)
class ValidateStale(StoreCall[bool]):
    """Run the store's `validate` on a session just loaded, if it has stale keys."""

    session: Session

    def run(self, io: Store) -> bool:
        return io.validate_stale(self.session)

    async def arun(self, aio: Store) -> bool:
        return await aio.avalidate_stale(self.session)


@dataclass(slots=True)
class Reply:
    """What a response carries for its session: the request headers it varies on, and the
    headers that carry the id back (or clear it)."""

    vary: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class Binding:
    """One request's session and how it came: what `close` needs to answer."""

    session: Session
    incoming: Incoming | None  # None: named or handed in by code, no client to answer
    key: IdSource | None  # the carrier key that brought the id, None when fresh or found by user
    loaded_id: str | None  # the id as loaded (a different id at close means rotated)
    headers: list[tuple[str, str]] = field(default_factory=list)


class Requests:
    """What the adapters share: a store, the keys, a fallback secret, and the request flow."""

    def __init__(
        self,
        store: Store | None = None,
        keys: Sequence[IdSource] | None = None,
        *,
        secret_key: SigningSecret | None = None,
        require_keys: bool = True,
    ) -> None:
        self._store = store
        if keys is None and not require_keys:
            keys = []
        if keys is None:
            if secret_key is None:
                raise ConfigurationError(
                    "give keys=[...] or a secret_key for the default signed Cookie"
                )
            keys = [Cookie(secret_key)]
        if not keys and require_keys:
            raise ConfigurationError("keys must name at least one key source")
        fallback = secret_key
        cookie_keys = [k.secret_key for k in keys if isinstance(k, Cookie) and k.secret_key]
        if fallback is None and cookie_keys:  # a Header may sign with a Cookie's key
            fallback = cookie_keys[0]
        self.keys = [k.with_default_secret(fallback) for k in keys]
        for key in self.keys:
            if isinstance(key, Cookie) and key.secret_key is None:
                raise ConfigurationError(
                    "a Cookie key needs a secret_key to sign session ids: "
                    "StateMiddleware(app, secret_key=...) or Cookie(secret_key=...)"
                )

    @property
    def store(self) -> Store:
        return self._store if self._store is not None else default_store()

    # -- the flow (pure generators) --------------------------------------------------------------

    def open_flow(self, incoming: Incoming) -> RequestFlow[Binding]:
        for key in self.keys:
            found = key.find(incoming)
            if found is None:
                continue
            session_id = found.session_id
            if found.user_id is not None:
                session_id = yield from ask(CurrentSessionId(found.user_id))
                if session_id is None:
                    created = yield from ask(CreateSession(found.user_id))
                    return Binding(created, incoming, None, None)
            assert session_id is not None
            loaded = yield from ask(GetSession(session_id))
            if loaded is not None and (found.user_id is None or loaded.user_id == found.user_id):
                yield from self._validated(loaded)
                return Binding(loaded, incoming, key if key.carrier else None, loaded.id)
            # an unknown, expired or deleted id: never adopted, try the next key
        fresh = yield from ask(CreateSession(None))
        return Binding(fresh, incoming, None, None)

    def close_flow(
        self, binding: Binding, *, streaming: bool = False, refresh: bool = False
    ) -> RequestFlow[Reply]:
        """When the response starts: save what changed, and say what the response carries.

        A session left with no state, no messages and no sub-sessions is no session: its record
        is removed and the client's id cleared. `streaming`: the body is still to come (no
        Content-Length), so a new session gets its id now and what the body adds is saved under
        it at the end. `refresh`: send the id again even when nothing changed (Flask's
        SESSION_REFRESH_EACH_REQUEST for permanent sessions)."""
        session = binding.session
        if binding.incoming is None:
            if session.unsaved:
                yield from ask(SaveSession(session))
            return Reply()
        reply = Reply(vary=self._vary(session))
        if session.modified and session.is_empty() and not session.is_new:
            yield from ask(DeleteSession(session))
        elif session.unsaved:
            try:
                yield from ask(SaveSession(session))
            except SessionNotFound:
                # deleted elsewhere (another device's "forget me") while this request ran:
                # it stays deleted; this client starts over
                reply.headers = self._carry(binding, None)
                return reply
        if session.deleted:
            reply.headers = self._carry(binding, None) if binding.loaded_id else []
        elif session.is_new:  # nothing stored (yet): only a streamed body may still write
            reply.headers = self._carry(binding, session.id) if streaming else []
        elif session.modified or refresh:
            reply.headers = self._carry(binding, session.id)
        else:
            reply.headers = self._echo(binding)
        if reply.headers and not reply.vary:  # the response sets or clears the id
            reply.vary = self._vary(None)
        return reply

    def _vary(self, session: Session | None) -> list[str]:
        """A response that read or wrote the session (None: any) depends on what carries its
        id."""
        if session is not None and not (session.accessed or session.modified):
            return []
        return [key.vary for key in self.keys if key.vary is not None]

    def finish_flow(self, binding: Binding) -> RequestFlow[None]:
        """Save again when the response ends (a streamed body, a background task), if modified."""
        session = binding.session
        if session.unsaved:
            try:
                yield from ask(SaveSession(session))
            except SessionNotFound:
                logger.warning(
                    "statemw: session %s was deleted elsewhere; what the response added is dropped",
                    session_hash(session.id),
                )

    def named_flow(self, session_id: str) -> RequestFlow[Session]:
        """A server-side session named by the caller, created on first use."""
        session = yield from ask(GetSession(session_id))
        if session is None:
            session = yield from ask(CreateSession(None, session_id))
        else:
            yield from self._validated(session)
        return session

    def _validated(self, session: Session) -> RequestFlow[None]:
        """A loaded session's stale keys go through the store's `validate`, if it has one
        (checked here so a store without one pays not even a step)."""
        if self.store.validate is not None:
            yield from ask(ValidateStale(session))

    def _carry(self, binding: Binding, session_id: str | None) -> list[tuple[str, str]]:
        """Send the id (None: clear it) by the key that brought it, else by every carrier."""
        assert binding.incoming is not None
        keys = [binding.key] if binding.key is not None else [k for k in self.keys if k.carrier]
        return [h for key in keys for h in key.outgoing(session_id, binding.incoming)]

    def _echo(self, binding: Binding) -> list[tuple[str, str]]:
        """Unchanged sessions: a header-keyed client still gets its id back; no cookie is set."""
        key = binding.key
        if isinstance(key, Header) and binding.incoming is not None and not binding.session.is_new:
            return key.outgoing(binding.session.id, binding.incoming)
        return []

    # -- runners -----------------------------------------------------------------------------------

    def run(self, flow: RequestFlow[T]) -> T:
        return drive(flow, self.store)

    async def arun(self, flow: RequestFlow[T]) -> T:
        return await adrive(flow, self.store)

    def open(self, incoming: Incoming) -> Binding:
        return self.run(self.open_flow(incoming))

    async def aopen(self, incoming: Incoming) -> Binding:
        return await self.arun(self.open_flow(incoming))

    def close(self, binding: Binding, *, streaming: bool = False, refresh: bool = False) -> Reply:
        return self.run(self.close_flow(binding, streaming=streaming, refresh=refresh))

    async def aclose(self, binding: Binding, *, streaming: bool = False) -> Reply:
        return await self.arun(self.close_flow(binding, streaming=streaming))

    def finish(self, binding: Binding) -> bool:
        """The save at the end of a response: its headers are gone, so a failure is logged
        (and reported as False) rather than raised into a response that already went out."""
        try:
            self.run(self.finish_flow(binding))
        except Exception as exc:
            _unsaved_at_end(binding, exc)
            return False
        return True

    async def afinish(self, binding: Binding) -> bool:
        try:
            await self.arun(self.finish_flow(binding))
        except Exception as exc:
            _unsaved_at_end(binding, exc)
            return False
        return True


def _unsaved_at_end(binding: Binding, exc: Exception) -> None:
    """Log a save that failed after the response went out. statemw's own errors are named by
    class only (their messages name the session, or a state key, in clear); anything else came
    from the app's code (a summarizer, a token counter) and keeps its traceback."""
    sid = session_hash(binding.session.id)
    if isinstance(exc, StateError):
        logger.error(
            "statemw: saving the session at the end of the response failed (session %s: %s)",
            sid,
            type(exc).__name__,
        )
    else:
        logger.exception(
            "statemw: saving the session at the end of the response failed (session %s)", sid
        )
