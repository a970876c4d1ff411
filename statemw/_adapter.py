"""The request flow every web adapter shares, free of any framework and of I/O.

open:   ask the keys for an id (or a user), load that session, else start a fresh one
close:  save what the handler changed, then say which headers carry the id back

The store calls are steps a generator yields; `run` (sync) and `arun` (async) carry them out, so
ASGI, WSGI, Flask and the decorator share one flow and differ only by `await`.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from statemw.errors import ConfigurationError, SessionNotFound
from statemw.keys import Cookie, Header, IdSource, Incoming, SigningSecret
from statemw.session import Session
from statemw.store import Store, default_store

T = TypeVar("T")

logger = logging.getLogger("statemw")


@dataclass(slots=True)
class Get:
    session_id: str


@dataclass(slots=True)
class Current:
    """The user's most recent live session id, or None."""

    user_id: str


@dataclass(slots=True)
class Create:
    user_id: str | None
    session_id: str | None = None


@dataclass(slots=True)
class Save:
    session: Session


Step = Get | Current | Create | Save
Flow = Generator[Step, Any, T]


@dataclass(slots=True)
class Binding:
    """One request's session and how it came: what `close` needs to answer."""

    session: Session
    incoming: Incoming | None  # None: named or handed in by code, no client to answer
    key: IdSource | None  # the carrier key that brought the id, None when fresh or found by user
    loaded_id: str | None  # the id as loaded (a different id at close means rotated)
    headers: list[tuple[str, str]] = field(default_factory=list)


class Manager:
    """Configuration and flow shared by the adapters: a store, keys, and a fallback secret."""

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
        self.cookies = [k for k in self.keys if isinstance(k, Cookie)]

    @property
    def store(self) -> Store:
        return self._store if self._store is not None else default_store()

    # -- the flow (pure generators) --------------------------------------------------------------

    def open_flow(self, incoming: Incoming) -> Flow[Binding]:
        for key in self.keys:
            found = key.find(incoming)
            if found is None:
                continue
            session_id = found.session_id
            if found.user_id is not None:
                session_id = yield Current(found.user_id)
                if session_id is None:
                    session = yield Create(found.user_id)
                    return Binding(session, incoming, None, None)
            assert session_id is not None
            session = yield Get(session_id)
            if session is not None and (found.user_id is None or session.user_id == found.user_id):
                return Binding(session, incoming, key if key.carrier else None, session.id)
            # an unknown, expired or deleted id: never adopted, try the next key
        session = yield Create(None)
        return Binding(session, incoming, None, None)

    def close_flow(
        self, binding: Binding, *, streaming: bool = False
    ) -> Flow[list[tuple[str, str]]]:
        """Save when the response starts; the headers that carry the id back.

        `streaming`: the body is still to come (no Content-Length), so a new session that is
        still empty gets its id now: what the body's code adds is saved under it at the end."""
        session = binding.session
        headers: list[tuple[str, str]] = []
        if binding.incoming is None:
            if session.modified:
                yield Save(session)
            return headers
        # the response may depend on the session whenever the request brought one (or wrote one)
        used = session.accessed or binding.loaded_id is not None or session.modified
        if used and self.cookies:
            headers.append(("vary", "Cookie"))
        if session.modified:
            try:
                yield Save(session)
            except SessionNotFound:
                # deleted elsewhere (another device's "forget me") while this request ran:
                # it stays deleted; this client starts over
                return headers + self._carry(binding, None)
        elif session.deleted:
            return headers + self._carry(binding, None)
        elif streaming and session.is_new:
            return headers + self._carry(binding, session.id)
        else:
            return headers + self._echo(binding)
        return headers + self._carry(binding, session.id)

    def finish_flow(self, binding: Binding) -> Flow[None]:
        """Save again when the response ends (a streamed body, a background task), if modified."""
        session = binding.session
        if session.modified:
            try:
                yield Save(session)
            except SessionNotFound:
                logger.warning("statemw: a session deleted elsewhere was not saved at response end")

    def named_flow(self, session_id: str) -> Flow[Session]:
        """A server-side session named by the caller, created on first use."""
        session = yield Get(session_id)
        if session is None:
            session = yield Create(None, session_id)
        return session  # type: ignore[no-any-return]

    def _carry(self, binding: Binding, session_id: str | None) -> list[tuple[str, str]]:
        """Send the id (None: clear it) by the key that brought it, else by every carrier."""
        assert binding.incoming is not None
        keys = [binding.key] if binding.key is not None else [k for k in self.keys if k.carrier]
        return [h for key in keys for h in key.outgoing(session_id, binding.incoming)]

    def _echo(self, binding: Binding) -> list[tuple[str, str]]:
        """Unchanged sessions: a header-keyed client still gets its id back; no cookie is set."""
        key = binding.key
        if key is None or isinstance(key, Cookie) or binding.session.is_new:
            return []
        if isinstance(key, Header) and binding.incoming is not None:
            return key.outgoing(binding.session.id, binding.incoming)
        return []

    # -- runners -----------------------------------------------------------------------------------

    def _do(self, step: Step) -> Any:
        store = self.store
        if isinstance(step, Get):
            return store.get(step.session_id)
        if isinstance(step, Current):
            return store.current_session_id(step.user_id)
        if isinstance(step, Create):
            return store.create(step.user_id, session_id=step.session_id)
        store.save(step.session)  # the flows yield Save only for a modified session
        return None

    async def _ado(self, step: Step) -> Any:
        store = self.store
        if isinstance(step, Get):
            return await store.aget(step.session_id)
        if isinstance(step, Current):
            return await store.acurrent_session_id(step.user_id)
        if isinstance(step, Create):
            return await store.acreate(step.user_id, session_id=step.session_id)
        await store.asave(step.session)
        return None

    def run(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                try:
                    result = self._do(step)
                except Exception as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def arun(self, flow: Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                try:
                    result = await self._ado(step)
                except Exception as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def open(self, incoming: Incoming) -> Binding:
        return self.run(self.open_flow(incoming))

    async def aopen(self, incoming: Incoming) -> Binding:
        return await self.arun(self.open_flow(incoming))

    def close(self, binding: Binding, *, streaming: bool = False) -> list[tuple[str, str]]:
        return self.run(self.close_flow(binding, streaming=streaming))

    async def aclose(self, binding: Binding, *, streaming: bool = False) -> list[tuple[str, str]]:
        return await self.arun(self.close_flow(binding, streaming=streaming))

    def finish(self, binding: Binding) -> bool:
        """The save at the end of a response: its headers are gone, so a failure is logged
        (and reported as False) rather than raised into a response that already went out."""
        try:
            self.run(self.finish_flow(binding))
        except Exception:
            logger.exception("statemw: saving the session at the end of the response failed")
            return False
        return True

    async def afinish(self, binding: Binding) -> bool:
        try:
            await self.arun(self.finish_flow(binding))
        except Exception:
            logger.exception("statemw: saving the session at the end of the response failed")
            return False
        return True


def parse_cookies(header: str) -> dict[str, str]:
    """Cookie header -> dict, leniently (a malformed pair is skipped, never an error)."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        name, sep, value = chunk.partition("=")
        if sep and name.strip():
            cookies.setdefault(name.strip(), value.strip().strip('"'))
    return cookies
