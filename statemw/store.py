"""Store: where sessions live. Holds the configuration, opens a backend from a URL, and runs each
operation (load, save, delete, ...) as one flow of backend steps, blocking or awaited.

Each operation is written once, as a flow (statemw._drive): `load` is `drive(self._get(id),
backend)` and `aload` is `await adrive(self._get(id), abackend)`. The Session decides what a save
writes (`Session.save_plan`); the Store commits it and hands each result back.

One module, past 400 lines, because each operation has a blocking and an awaited twin of two to
four lines over the same flow; splitting them would part the twins.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from statemw import telemetry
from statemw._default import register
from statemw._drive import adrive, ask, drive
from statemw._readahead import Readahead
from statemw.backends import open_backend, redact
from statemw.backends.base import (
    AsyncBackend,
    Backend,
    Commit,
    Delete,
    Load,
    Progress,
    ReadHeader,
    Rename,
    StoreFlow,
    UserSessions,
)
from statemw.changes import AsyncChanges, Changes
from statemw.codec import Codec, EncryptionKey, pack
from statemw.errors import ConfigurationError, InvalidValue, LimitExceeded, SessionNotFound
from statemw.ids import check_child_name, check_session_id, new_session_id
from statemw.messages import Message, MessageRecord
from statemw.records import SessionHeader, Summary, user_record_id
from statemw.session import Session, UserState
from statemw.state import Clock, StaleKey
from statemw.tokens import TokenCounter, approx_tokens, count_message

DAY = 86400.0

# Sizes statemw refuses by default, with a clear LimitExceeded, before anything is written.
MAX_MESSAGE_BYTES = 1 << 20
MAX_VALUE_BYTES = 1 << 20
MAX_STATE_BYTES = 8 << 20

Validate = Callable[[Session, list[StaleKey]], Any]
"""`Store(validate=fn)`: fn(session, stale_keys), run when a web request loads a session with
stale keys (a coroutine function for async adapters)."""


def default_url() -> str:
    """STATEMW_URL, else a diskcache directory under the user's state dir."""
    url = os.environ.get("STATEMW_URL")
    if url:
        return url
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return "diskcache://" + os.path.join(base, "statemw")


class Store:
    """Sessions in a backend named by URL. Does no I/O until first used.

        Store("memory://")                                  tests, one process
        Store("diskcache:///var/lib/app/sessions")          one machine, survives restarts
        Store("redis://127.0.0.1:6379/0", ttl=30*DAY)       many servers
        Store(url, encryption_key=KEY)                      AES-GCM at rest; a list rotates

    url: the backend (None: STATEMW_URL, else a diskcache directory under ~/.local/state).
    ttl: a session's absolute lifetime in seconds (None: no limit).
    idle: seconds without a save after which a session expires (sliding; None: never).
    user_ttl: how long a user's shared state (`session.user`) lives after its last save. None
        (the default): it lives as long as the user has a live session, and expires with the
        last one.
    encryption_key: seal values, messages and summaries with AES-GCM; a list rotates keys (the
        first seals, all open).
    count_tokens: fn(text) -> int, counted once per message (default: about 4 characters each).
    window: the most messages a load reads up front; older ones are read on demand. A load
        reads as far back as this process's recent requests read (statemw._readahead), so a
        handler that sends the last 20 loads about 20.
    max_message_bytes, max_value_bytes, max_state_bytes, max_messages: limits that raise
        LimitExceeded before anything is written (None: no limit).
    compact_at + summarize (+ keep_last): on save, a session whose token_count() is over
        compact_at is first compacted: session.compact(summarize, keep_last=keep_last).
    clock: seconds since the epoch (tests pass a fake one).
    validate: fn(session, stale_keys), run once when a web request (any adapter, or @stateful)
        loads a session that has stale keys (see Session.stale_keys), before the handler: the
        one place to drop, refresh, confirm or flag them. May be a coroutine function under
        async adapters; a sync adapter refuses one.
    **backend_options: passed to the backend (Redis: key_prefix, socket_timeout, ...; diskcache:
        timeout).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl: float | None = None,
        idle: float | None = 30 * DAY,
        user_ttl: float | None = None,
        encryption_key: EncryptionKey | Sequence[EncryptionKey] | None = None,
        count_tokens: TokenCounter | None = None,
        window: int = 100,
        max_message_bytes: int | None = MAX_MESSAGE_BYTES,
        max_value_bytes: int | None = MAX_VALUE_BYTES,
        max_state_bytes: int | None = MAX_STATE_BYTES,
        max_messages: int | None = None,
        compact_at: int | None = None,
        summarize: Callable[[list[Message]], Any] | None = None,
        keep_last: int = 10,
        clock: Clock = time.time,
        validate: Validate | None = None,
        **backend_options: Any,
    ) -> None:
        for name, value in (("ttl", ttl), ("idle", idle), ("user_ttl", user_ttl)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be positive seconds or None, got {value!r}")
        if (compact_at is None) != (summarize is None):
            raise ConfigurationError("compact_at and summarize go together")
        self.url = url or default_url()
        self.ttl = ttl
        self.idle = idle
        self.user_ttl = user_ttl
        self.window = window
        self.count_tokens = count_tokens or approx_tokens
        self.max_message_bytes = max_message_bytes
        self.max_value_bytes = max_value_bytes
        self.max_state_bytes = max_state_bytes
        self.max_messages = max_messages
        self.compact_at = compact_at
        self.summarize = summarize
        self.keep_last = keep_last
        self.clock = clock
        self.validate = validate
        self.codec = Codec(encryption_key)
        self._options = backend_options
        self._backends: tuple[Backend, AsyncBackend] | None = None
        self._opening = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({redact(self.url)!r})"

    @property
    def window(self) -> int:
        """The most messages a load reads up front (see the class docstring)."""
        return self.readahead.cap

    @window.setter
    def window(self, window: int) -> None:
        if type(window) is not int or window < 0:
            raise ConfigurationError(f"window must be an int >= 0, got {window!r}")
        self.readahead = Readahead(window)  # loads read up to the new window, then adapt again

    @property
    def backend(self) -> Backend:
        return self._open()[0]

    @property
    def abackend(self) -> AsyncBackend:
        return self._open()[1]

    def _open(self) -> tuple[Backend, AsyncBackend]:
        backends = self._backends
        if backends is None:
            with self._opening:  # threads first using a store at once share one backend
                if self._backends is None:
                    self._backends = open_backend(self.url, self._options)
                backends = self._backends
        return backends

    def close(self) -> None:
        if self._backends is not None:
            self._backends[0].close()

    async def aclose(self) -> None:
        if self._backends is not None:
            await self._backends[1].close()

    # -- what sessions are made of (pure) ----------------------------------------------------------

    def new_record(self, message: Message, position: int) -> MessageRecord:
        """A message ready to append: size-checked, its tokens counted once."""
        if self.max_messages is not None and position >= self.max_messages:
            raise LimitExceeded(f"session is at max_messages={self.max_messages}")
        try:
            size = len(pack(message))
        except (TypeError, OverflowError, ValueError) as exc:
            raise InvalidValue(f"message cannot be stored: {exc}") from exc
        if self.max_message_bytes is not None and size > self.max_message_bytes:
            raise LimitExceeded(
                f"message is {size} bytes, over max_message_bytes={self.max_message_bytes}"
            )
        return MessageRecord(message, count_message(message, self.count_tokens), self.clock())

    def new_summary(self, text: str, upto: int, covered_tokens: int) -> Summary:
        message = {"role": "system", "content": text, "summary": True}
        value = self.codec.encode(message, what="summary")
        return Summary(value, upto, covered_tokens, count_message(message, self.count_tokens))

    def expires_at(self, created_at: float, now: float) -> float | None:
        """When a session saved now expires: the sooner of its ttl and its idle timeout."""
        if self.ttl is None:
            return None if self.idle is None else now + self.idle
        if self.idle is None:
            return created_at + self.ttl
        return min(created_at + self.ttl, now + self.idle)

    def create(self, user_id: str | None = None, *, session_id: str | None = None) -> Session:
        """A new, empty session; nothing is stored until it is saved."""
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise InvalidValue(f"user_id must be a non-empty string, got {user_id!r}")
        sid = new_session_id() if session_id is None else check_session_id(session_id)
        return Session(self, sid, user_id)

    def validate_stale(self, session: Session) -> bool:
        """Run `validate` on the session if it has stale keys; True when it ran. The adapters
        call this after loading a request's session."""
        ran, result = self._validate(session)
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()
            raise ConfigurationError(
                "Store(validate=...) returned an awaitable in a blocking request: give a plain "
                "function, or use the async adapters (statemw.asgi, async @stateful)"
            )
        return ran

    async def avalidate_stale(self, session: Session) -> bool:
        """validate_stale for async adapters: `validate` may be a coroutine function."""
        ran, result = self._validate(session)
        if inspect.isawaitable(result):
            await result
        return ran

    def _validate(self, session: Session) -> tuple[bool, object]:
        """(whether `validate` ran, what it returned): it runs when the session has stale keys."""
        if self.validate is None:
            return False, None
        stale = session.stale_keys()
        if not stale:
            return False, None
        return True, self.validate(session, stale)

    # -- operations, each one flow of backend steps ----------------------------------------------

    def _get(self, session_id: str) -> StoreFlow[Session | None]:
        sid = check_session_id(session_id)
        snap = yield from ask(Load(sid, self.readahead.size(), self.clock()))
        return None if snap is None else Session.loaded(self, snap)

    def _load(self, session_id: str) -> StoreFlow[Session]:
        session = yield from self._get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def _user_state(self, user_id: str) -> StoreFlow[UserState]:
        ref, header = yield from self._find_user(user_id)
        return UserState(self, user_id, header, ref)

    def _find_user(self, user_id: str) -> StoreFlow[tuple[str, SessionHeader | None]]:
        """What the user is stored under, and the user's live record. Encrypting, a user may be
        under any configured key's hash (or the plain id, from before encryption): the first
        that holds the user's record or sessions wins; a new user gets the first key's."""
        refs = self.codec.user_refs(user_id)
        for ref in refs:
            header = yield from ask(ReadHeader(user_record_id(ref), self.clock()))
            if header is not None:
                return ref, header
            if len(refs) > 1 and (yield from ask(UserSessions(ref, self.clock()))):
                return ref, None
        return refs[0], None

    def _sessions_of(self, user_id: str) -> StoreFlow[list[str]]:
        """The user's live session ids, oldest first (under the first ref that has any)."""
        for ref in self.codec.user_refs(user_id):
            ids = yield from ask(UserSessions(ref, self.clock()))
            if ids:
                return ids
        return []

    def _created(self, user_id: str | None, session_id: str | None) -> StoreFlow[Session]:
        """create(), with the user's shared state read ahead so `session.user` does no I/O."""
        session = self.create(user_id, session_id=session_id)
        if user_id is not None:
            session.attach_user((yield from self._user_state(user_id)))
        return session

    def _current_session_id(self, user_id: str) -> StoreFlow[str | None]:
        ids = yield from self._sessions_of(user_id)
        return ids[-1] if ids else None

    def _child(self, parent: Session, name: str) -> StoreFlow[Session]:
        sid = f"{parent.id}/{check_child_name(name)}"
        snap = None
        if not parent.is_new:
            snap = yield from ask(Load(sid, self.readahead.size(), self.clock()))
        if snap is None:
            return Session(self, sid, parent.user_id, parent=parent)
        return Session.loaded(self, snap, parent)

    def _save(self, session: Session, strict: bool) -> StoreFlow[None]:
        root = session.root
        user_id = root.user_to_look_up() if self.codec.encrypted else None
        if user_id is not None:
            ref, _ = yield from self._find_user(user_id)  # which key's hash the user has
            root.attach_user_ref(ref)
        for target, delta in session.save_plan(self.clock(), strict=strict):
            result = yield from ask(Commit(delta))
            target.committed(result, delta)

    def _delete(self, session: Session | str) -> StoreFlow[bool]:
        sid = session if isinstance(session, str) else session.id
        existed = yield from ask(Delete(check_session_id(sid)))
        if isinstance(session, Session):
            session.reset(new_session_id())
        return existed

    def _rotate(self, session: Session) -> StoreFlow[str]:
        new_id = new_session_id()
        if not session.is_new:
            yield from ask(Rename(session.id, new_id, self.clock()))
        session.renamed(new_id)
        return new_id

    def _user_sessions(self, user_id: str, offset: int, limit: int) -> StoreFlow[list[str]]:
        ids = yield from self._sessions_of(user_id)
        return ids[offset : offset + limit]

    def _over_budget(self, session: Session) -> bool:
        """The automatic compaction policy: is this session over compact_at tokens?"""
        return self.compact_at is not None and session.token_count() > self.compact_at

    # -- blocking --------------------------------------------------------------------------------

    # Each operation asks telemetry.observer() once: None (no OpenTelemetry provider) costs
    # that check alone; an observer wraps the same flow in a span and metrics.

    def get(self, session_id: str) -> Session | None:
        """The stored session, or None when there is none (or it expired)."""
        if (obs := telemetry.observer()) is not None:
            return obs.run("load", self, self._get(session_id), session_id)
        return drive(self._get(session_id), self.backend)

    def load(self, session_id: str) -> Session:
        """The stored session; SessionNotFound when there is none (or it expired)."""
        if (obs := telemetry.observer()) is not None:
            return obs.run("load", self, self._load(session_id), session_id)
        return drive(self._load(session_id), self.backend)

    def user_state(self, user_id: str) -> UserState:
        """The state shared by a user's sessions, as stored now (`session.user` reads it)."""
        return drive(self._user_state(user_id), self.backend)

    def current_session_id(self, user_id: str) -> str | None:
        """The user's most recent live session (what a UserID key continues), or None."""
        return drive(self._current_session_id(user_id), self.backend)

    def load_child(self, parent: Session, name: str) -> Session:
        """The sub-session `name` of `parent` (`parent.child(name)` calls this)."""
        if (obs := telemetry.observer()) is not None:
            return obs.run("load", self, self._child(parent, name), f"{parent.id}/{name}")
        return drive(self._child(parent, name), self.backend)

    def save(self, session: Session, *, strict: bool = False) -> None:
        """Commit the session's changes (see Session.save)."""
        if self._over_budget(session):
            assert self.summarize is not None
            session.compact(self.summarize, keep_last=self.keep_last)
        if (obs := telemetry.observer()) is not None:
            return obs.run("save", self, self._save(session, strict), session.id)
        drive(self._save(session, strict), self.backend)

    def delete(self, session: Session | str) -> bool:
        """Remove a session and its sub-sessions; True if one was stored."""
        if (obs := telemetry.observer()) is not None:
            sid = session if isinstance(session, str) else session.id
            return obs.run("delete", self, self._delete(session), sid)
        return drive(self._delete(session), self.backend)

    def rotate(self, session: Session) -> str:
        """Move a session to a fresh id (see Session.rotate); returns the new id."""
        return drive(self._rotate(session), self.backend)

    def forget_user(self, user_id: str) -> int:
        """Remove every session of the user and the user's state; the number of sessions removed."""
        if (obs := telemetry.observer()) is not None:
            return obs.call("forget_user", self, lambda: self._forget_user(user_id))
        removed = self._forget_user(user_id)
        telemetry.forgot_user(removed, telemetry.backend_name(self.url))
        return removed

    def _forget_user(self, user_id: str) -> int:
        """Under every ref the user may be stored under (encrypting: each key's hash)."""
        return sum(self.backend.forget_user(ref) for ref in self.codec.user_refs(user_id))

    def user_sessions(self, user_id: str, *, offset: int = 0, limit: int = 50) -> list[str]:
        """Ids of the user's live sessions, oldest first, one page at a time."""
        return drive(self._user_sessions(user_id, offset, limit), self.backend)

    def session_ids(self) -> Iterator[str]:
        """Every stored top-level session id (live or not yet purged)."""
        return self.backend.session_ids()

    def purge(self, progress: Progress | None = None) -> int:
        """Remove expired sessions and expired keys; the number of sessions removed.

        `progress(done, total)` is called as records are looked at (for a progress bar)."""
        if (obs := telemetry.observer()) is not None:
            return obs.call("purge", self, lambda: self.backend.purge(self.clock(), progress))
        started = time.perf_counter()
        removed = self.backend.purge(self.clock(), progress)
        telemetry.purged(removed, time.perf_counter() - started, telemetry.backend_name(self.url))
        return removed

    # -- awaited twins ---------------------------------------------------------------------------

    async def aget(self, session_id: str) -> Session | None:
        if (obs := telemetry.observer()) is not None:
            return await obs.arun("load", self, self._get(session_id), session_id)
        return await adrive(self._get(session_id), self.abackend)

    async def aload(self, session_id: str) -> Session:
        if (obs := telemetry.observer()) is not None:
            return await obs.arun("load", self, self._load(session_id), session_id)
        return await adrive(self._load(session_id), self.abackend)

    async def auser_state(self, user_id: str) -> UserState:
        return await adrive(self._user_state(user_id), self.abackend)

    async def acreate(
        self, user_id: str | None = None, *, session_id: str | None = None
    ) -> Session:
        """create(), with the user's shared state read ahead so `session.user` does no I/O."""
        return await adrive(self._created(user_id, session_id), self.abackend)

    async def acurrent_session_id(self, user_id: str) -> str | None:
        return await adrive(self._current_session_id(user_id), self.abackend)

    async def aload_child(self, parent: Session, name: str) -> Session:
        if (obs := telemetry.observer()) is not None:
            return await obs.arun("load", self, self._child(parent, name), f"{parent.id}/{name}")
        return await adrive(self._child(parent, name), self.abackend)

    async def asave(self, session: Session, *, strict: bool = False) -> None:
        if self._over_budget(session):
            assert self.summarize is not None
            await session.acompact(self.summarize, keep_last=self.keep_last)
        if (obs := telemetry.observer()) is not None:
            return await obs.arun("save", self, self._save(session, strict), session.id)
        await adrive(self._save(session, strict), self.abackend)

    async def adelete(self, session: Session | str) -> bool:
        if (obs := telemetry.observer()) is not None:
            sid = session if isinstance(session, str) else session.id
            return await obs.arun("delete", self, self._delete(session), sid)
        return await adrive(self._delete(session), self.abackend)

    async def arotate(self, session: Session) -> str:
        return await adrive(self._rotate(session), self.abackend)

    async def aforget_user(self, user_id: str) -> int:
        if (obs := telemetry.observer()) is not None:
            return await obs.acall("forget_user", self, lambda: self._aforget_user(user_id))
        removed = await self._aforget_user(user_id)
        telemetry.forgot_user(removed, telemetry.backend_name(self.url))
        return removed

    async def _aforget_user(self, user_id: str) -> int:
        return sum([await self.abackend.forget_user(r) for r in self.codec.user_refs(user_id)])

    async def auser_sessions(self, user_id: str, *, offset: int = 0, limit: int = 50) -> list[str]:
        return await adrive(self._user_sessions(user_id, offset, limit), self.abackend)

    def asession_ids(self) -> AsyncIterator[str]:
        return self.abackend.session_ids()

    async def apurge(self, progress: Progress | None = None) -> int:
        if (obs := telemetry.observer()) is not None:
            now = self.clock()
            return await obs.acall("purge", self, lambda: self.abackend.purge(now, progress))
        started = time.perf_counter()
        removed = await self.abackend.purge(self.clock(), progress)
        telemetry.purged(removed, time.perf_counter() - started, telemetry.backend_name(self.url))
        return removed

    # -- live changes ----------------------------------------------------------------------------

    def subscribe(self, session_id: str, *, timeout: float | None = None) -> Changes:
        """Listen to a session's commits from here on (any process, any device).

            with store.subscribe(sid, timeout=15) as changes:
                for change in changes: ...      # ends after 15 s without a change

        Redis: pub/sub; memory: in-process; diskcache: also polls (other processes write).
        """
        return Changes(self.backend.subscribe(check_session_id(session_id)), timeout)

    def asubscribe(self, session_id: str, *, timeout: float | None = None) -> AsyncChanges:
        """The async twin: `async with store.asubscribe(sid) as changes: async for c in changes`."""
        sid = check_session_id(session_id)
        return AsyncChanges(lambda: self.abackend.subscribe(sid), timeout)


register(Store)
