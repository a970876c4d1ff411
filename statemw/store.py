"""Store: where sessions live. Opens a backend from a URL, and turns Sessions into deltas and back.

The logic (building sessions from snapshots, computing a save's deltas) is written once here, in
plain methods; each public operation is a thin sync or async sequence of backend calls around it.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from statemw.backends.base import AsyncBackend, AsyncChanges, Backend, Changes, Progress
from statemw.codec import Codec, KeyLike, pack
from statemw.errors import (
    ConfigurationError,
    CorruptRecord,
    InvalidValue,
    LimitExceeded,
    SessionNotFound,
)
from statemw.ids import check_child_name, check_session_id, new_session_id
from statemw.messages import Fetch, Message, MessageLog, Record
from statemw.records import Delta, Entry, Header, Snapshot, Summary, user_record_id
from statemw.session import Session, UserState
from statemw.state import Clock, TrackedState, plain_entries
from statemw.tokens import TokenCounter, approx_tokens, count_message

DAY = 86400.0


def default_url() -> str:
    """STATEMW_URL, else a diskcache directory under the user's state dir."""
    url = os.environ.get("STATEMW_URL")
    if url:
        return url
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return "diskcache://" + os.path.join(base, "statemw")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _open(url: str, options: dict[str, Any]) -> tuple[Backend, AsyncBackend]:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from statemw.backends.memory import open_memory
        from statemw.backends.threaded import ThreadedAsync

        backend = open_memory()
        return backend, ThreadedAsync(backend, inline=True)
    if scheme == "diskcache":
        from statemw.backends.disk import open_disk
        from statemw.backends.threaded import ThreadedAsync

        path = url[len("diskcache://") :]
        if not path:
            raise ConfigurationError("diskcache URL needs a directory: diskcache:///var/lib/app")
        disk = open_disk(os.path.expanduser(path), **options)
        return disk, ThreadedAsync(disk)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix"):
        try:
            from statemw.backends.redis import open_redis
        except ImportError as exc:
            raise ConfigurationError(
                "the Redis backend needs redis-py: pip install 'statemw[redis]'"
            ) from exc
        return open_redis(url, **options)
    if scheme in ("postgresql", "postgres"):
        try:
            from statemw.backends.postgres import open_postgres
        except ImportError as exc:
            raise ConfigurationError(
                "the PostgreSQL backend needs psycopg 3: pip install 'statemw[postgres]'"
            ) from exc
        return open_postgres(url, **options)
    raise ConfigurationError(
        f"unknown store URL {_redact(url)!r}: use memory://, diskcache:///path, "
        "redis://host:port/db, rediss://..., redis+cluster://... or postgresql://user@host/db"
    )


# Sizes statemw refuses by default, with a clear LimitExceeded, before anything is written.
MAX_MESSAGE_BYTES = 1 << 20
MAX_VALUE_BYTES = 1 << 20
MAX_STATE_BYTES = 8 << 20


class Store:
    """Sessions in a backend named by URL. Does no I/O until first used.

        Store("memory://")                                  tests, one process
        Store("diskcache:///var/lib/app/sessions")          one machine, survives restarts
        Store("redis://127.0.0.1:6379/0", ttl=30*DAY)       many servers
        Store(url, encryption_key=KEY)                      AES-GCM at rest; a list rotates

    ttl: a session's absolute lifetime in seconds (None: no limit). idle: seconds without a save
    after which it expires (sliding; None: never). window: messages a load reads up front.
    compact_at + summarize: on save, a session whose token_count() is over compact_at is first
    compacted (session.compact(summarize, keep_last=keep_last)).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        ttl: float | None = None,
        idle: float | None = 30 * DAY,
        encryption_key: KeyLike | Sequence[KeyLike] | None = None,
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
        **backend_options: Any,
    ) -> None:
        for name, value in (("ttl", ttl), ("idle", idle)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name} must be positive seconds or None, got {value!r}")
        if window < 0:
            raise ConfigurationError(f"window must be >= 0, got {window!r}")
        if (compact_at is None) != (summarize is None):
            raise ConfigurationError("compact_at and summarize go together")
        self.url = url or default_url()
        self.ttl = ttl
        self.idle = idle
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
        self.codec = Codec(encryption_key)
        self._options = backend_options
        self._backends: tuple[Backend, AsyncBackend] | None = None

    def __repr__(self) -> str:
        return f"Store({_redact(self.url)!r})"

    @property
    def backend(self) -> Backend:
        return self._open()[0]

    @property
    def abackend(self) -> AsyncBackend:
        return self._open()[1]

    def _open(self) -> tuple[Backend, AsyncBackend]:
        if self._backends is None:
            self._backends = _open(self.url, self._options)
        return self._backends

    def close(self) -> None:
        if self._backends is not None:
            self._backends[0].close()

    async def aclose(self) -> None:
        if self._backends is not None:
            await self._backends[1].close()

    # -- encoding (pure) ---------------------------------------------------------------------------

    def new_record(self, message: Message, position: int) -> Record:
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
        return Record(message, count_message(message, self.count_tokens), self.clock())

    def decode_record(self, session_id: str, data: bytes) -> Record:
        wire = self.codec.decode(data, session_id=session_id)
        try:
            return Record.from_wire(wire)
        except (ValueError, TypeError) as exc:
            raise CorruptRecord(session_id, f"bad message record ({exc})") from exc

    def new_summary(self, text: str, upto: int, covered_tokens: int) -> Summary:
        message = {"role": "system", "content": text, "summary": True}
        value = self.codec.encode(message, what="summary")
        return Summary(value, upto, covered_tokens, count_message(message, self.count_tokens))

    def decode_summary(self, session_id: str, summary: Summary) -> Message:
        message = self.codec.decode(summary.value, session_id=session_id)
        if not isinstance(message, dict):
            raise CorruptRecord(session_id, "summary is not a message")
        return message

    def encode_vector(self, session_id: str, vector: Sequence[float]) -> bytes:
        return self.codec.encode([float(x) for x in vector], what=f"vector of {session_id!r}")

    def _decode_vectors(self, session_id: str, raw: dict[int, bytes]) -> dict[int, list[float]]:
        return {p: list(self.codec.decode(v, session_id=session_id)) for p, v in raw.items()}

    def read_vectors(self, session: Session, start: int, stop: int) -> dict[int, list[float]]:
        """Cached embedding vectors of messages [start, stop), by position."""
        raw = self.backend.read_vectors(session.id, start, stop)
        return self._decode_vectors(session.id, raw)

    async def aread_vectors(
        self, session: Session, start: int, stop: int
    ) -> dict[int, list[float]]:
        raw = await self.abackend.read_vectors(session.id, start, stop)
        return self._decode_vectors(session.id, raw)

    def _expires_at(self, created_at: float, now: float) -> float | None:
        limits = [
            t
            for t in (
                None if self.ttl is None else created_at + self.ttl,
                None if self.idle is None else now + self.idle,
            )
            if t is not None
        ]
        return min(limits) if limits else None

    # -- building sessions (pure) --------------------------------------------------------------

    def create(self, user_id: str | None = None, *, session_id: str | None = None) -> Session:
        """A new, empty session; nothing is stored until it is saved."""
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise InvalidValue(f"user_id must be a non-empty string, got {user_id!r}")
        sid = new_session_id() if session_id is None else check_session_id(session_id)
        return self._new_session(sid, user_id)

    def _new_session(self, sid: str, user_id: str | None, parent: Session | None = None) -> Session:
        log = MessageLog(0, 0, [], self._fetcher(sid), lambda b: self.decode_record(sid, b))
        return Session(
            store=self,
            session_id=sid,
            user_id=user_id,
            header=None,
            state={},
            log=log,
            clock=self.clock,
            parent=parent,
        )

    def _fetcher(self, sid: str) -> Fetch:
        return functools.partial(self.read_records, sid)

    def _decoder(self, sid: str) -> Callable[[bytes], Any]:
        return lambda data: self.codec.decode(data, session_id=sid)

    def _user_state(self, user_id: str, header: Header | None, now: float) -> UserState:
        user = UserState(user_id, stored=header is not None)
        entries = {} if header is None else header.state
        user._init_tracking(
            plain_entries(entries, self._decoder(user_record_id(user_id)), now),
            self.clock,
            max_value_bytes=self.max_value_bytes,
        )
        return user

    def _from_snapshot(self, snap: Snapshot, parent: Session | None = None) -> Session:
        header = snap.header
        sid = header.session_id
        now = self.clock()
        inherited: dict[str, Any] = {}
        if parent is None:
            for ancestor in reversed(snap.parents):  # nearest ancestor wins
                decode = self._decoder(ancestor.session_id)
                inherited.update(
                    {k: v for k, (v, _, _) in plain_entries(ancestor.state, decode, now).items()}
                )
        log = MessageLog(
            header.message_count,
            snap.window_start,
            list(snap.window),
            self._fetcher(sid),
            lambda b: self.decode_record(sid, b),
        )
        return Session(
            store=self,
            session_id=sid,
            user_id=header.user_id,
            header=header,
            state=plain_entries(header.state, self._decoder(sid), now),
            log=log,
            clock=self.clock,
            parent=parent,
            inherited=inherited,
            user=None
            if parent is not None or header.user_id is None
            else self._user_state(header.user_id, snap.user, now),
        )

    # -- planning a save (pure) ----------------------------------------------------------------

    def _state_delta(
        self, sid: str, state: TrackedState, now: float, create: Header | None
    ) -> Delta:
        sets, deletes, size = state.changes(now)
        entries = {
            k: Entry(self.codec.encode(v, what=f"state key {k!r} of session {sid!r}"), now, exp)
            for k, (v, exp) in sets.items()
        }
        if self.max_state_bytes is not None and size > self.max_state_bytes:
            raise LimitExceeded(
                f"session {sid!r}: state is {size} bytes, over max_state_bytes="
                f"{self.max_state_bytes}"
            )
        return Delta(session_id=sid, now=now, create=create, set=entries, delete=deletes)

    def _session_delta(self, session: Session, now: float, strict: bool) -> Delta:
        header = session._header
        created_at = now if header is None else header.created_at
        create = None
        if header is None:
            create = Header(session.id, session.user_id, created_at=now, updated_at=now)
        delta = self._state_delta(session.id, session, now, create)
        log = session._log
        delta.append = [
            self.codec.encode(r.to_wire(), what=f"message of session {session.id!r}")
            for r in log.appended
        ]
        delta.append_tokens = sum(r.tokens for r in log.appended)
        delta.replace_log = log.replaced
        delta.summary = session._pending_summary
        delta.vectors = dict(session._pending_vectors)
        delta.expires_at = self._expires_at(created_at, now)
        if strict:
            delta.expected_revision = session.revision
        return delta

    def _over_budget(self, session: Session) -> bool:
        """The automatic compaction policy: is this session over compact_at tokens?"""
        return self.compact_at is not None and session.token_count() > self.compact_at

    def _plan(self, session: Session, *, strict: bool) -> list[tuple[Any, Delta]]:
        """The deltas a save commits, in order: new ancestors, the session, user state, children."""
        now = self.clock()
        chain = []
        ancestor = session.parent
        while ancestor is not None and ancestor.is_new:
            chain.append(ancestor)
            ancestor = ancestor.parent
        plan: list[tuple[Any, Delta]] = [
            (a, self._session_delta(a, now, False)) for a in reversed(chain)
        ]
        self._plan_tree(session, now, strict, plan)
        user = session.root._user
        if user is not None and user.modified:
            create = Header(user_record_id(user.user_id), user.user_id, now, now)
            plan.append((user, self._state_delta(create.session_id, user, now, create)))
        return plan

    def _plan_tree(
        self, session: Session, now: float, strict: bool, plan: list[tuple[Any, Delta]]
    ) -> None:
        delta = self._session_delta(session, now, strict)
        if session.is_new or not delta.empty or session._forced:
            plan.append((session, delta))
        for child in session._children.values():
            if child.modified:
                self._plan_tree(child, now, False, plan)

    def _committed(self, target: Any, header: Header) -> None:
        if isinstance(target, Session):
            target._header = header
            target._log.committed(header.message_count)
            target._pending_summary = None
            target._pending_vectors.clear()
        elif isinstance(target, UserState):
            target.stored = True
        target.mark_committed()

    # -- sync operations -------------------------------------------------------------------------

    def get(self, session_id: str) -> Session | None:
        """The stored session, or None when there is none (or it expired)."""
        snap = self.backend.load(check_session_id(session_id), self.window, self.clock())
        return None if snap is None else self._from_snapshot(snap)

    def user_state(self, user_id: str) -> UserState:
        """The state shared by a user's sessions, as stored now (`session.user` reads it)."""
        now = self.clock()
        return self._user_state(
            user_id, self.backend.read_header(user_record_id(user_id), now), now
        )

    def current_session_id(self, user_id: str) -> str | None:
        """The user's most recent live session (what a UserID key continues), or None."""
        ids = self.backend.user_sessions(user_id, self.clock())
        return ids[-1] if ids else None

    def load(self, session_id: str) -> Session:
        """The stored session; SessionNotFound when there is none (or it expired)."""
        session = self.get(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    def load_child(self, parent: Session, name: str) -> Session:
        sid = f"{parent.id}/{check_child_name(name)}"
        snap = None if parent.is_new else self.backend.load(sid, self.window, self.clock())
        if snap is None:
            return self._new_session(sid, parent.user_id, parent)
        return self._from_snapshot(snap, parent)

    def save(
        self, session: Session, *, strict: bool = False, only_if_modified: bool = False
    ) -> None:
        """Commit the session's changes (see Session.save); adapters pass only_if_modified."""
        if only_if_modified and not session.modified:
            return
        if self._over_budget(session):
            assert self.summarize is not None
            session.compact(self.summarize, keep_last=self.keep_last)
        for target, delta in self._plan(session, strict=strict):
            self._committed(target, self.backend.commit(delta))

    def delete(self, session: Session | str) -> bool:
        """Remove a session and its sub-sessions; True if one was stored."""
        sid = session if isinstance(session, str) else session.id
        existed = self.backend.delete(check_session_id(sid))
        if isinstance(session, Session):
            self._reset(session)
        return existed

    def rotate(self, session: Session) -> str:
        new_id = new_session_id()
        if not session.is_new:
            self.backend.rename(session.id, new_id, self.clock())
        self._renamed(session, new_id)
        return new_id

    def forget_user(self, user_id: str) -> int:
        """Remove every session of the user and the user's state; the number of sessions removed."""
        return self.backend.forget_user(user_id)

    def user_sessions(self, user_id: str, *, offset: int = 0, limit: int = 50) -> list[str]:
        """Ids of the user's live sessions, oldest first, one page at a time."""
        return self.backend.user_sessions(user_id, self.clock())[offset : offset + limit]

    def session_ids(self) -> Iterator[str]:
        return self.backend.session_ids()

    def purge(self, progress: Progress | None = None) -> int:
        """Remove expired sessions and expired keys; the number of sessions removed.

        `progress(done, total)` is called as records are looked at (for a progress bar)."""
        return self.backend.purge(self.clock(), progress)

    def read_records(self, session_id: str, start: int, stop: int) -> list[Record]:
        return [
            self.decode_record(session_id, b)
            for b in self.backend.read_messages(session_id, start, stop)
        ]

    # -- async twins -----------------------------------------------------------------------------

    async def acreate(
        self, user_id: str | None = None, *, session_id: str | None = None
    ) -> Session:
        """create(), with the user's shared state read ahead so `session.user` does no I/O."""
        session = self.create(user_id, session_id=session_id)
        if user_id is not None:
            session._user = await self.auser_state(user_id)
        return session

    async def acurrent_session_id(self, user_id: str) -> str | None:
        ids = await self.abackend.user_sessions(user_id, self.clock())
        return ids[-1] if ids else None

    async def auser_state(self, user_id: str) -> UserState:
        now = self.clock()
        header = await self.abackend.read_header(user_record_id(user_id), now)
        return self._user_state(user_id, header, now)

    async def aget(self, session_id: str) -> Session | None:
        snap = await self.abackend.load(check_session_id(session_id), self.window, self.clock())
        return None if snap is None else self._from_snapshot(snap)

    async def aload(self, session_id: str) -> Session:
        session = await self.aget(session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return session

    async def aload_child(self, parent: Session, name: str) -> Session:
        sid = f"{parent.id}/{check_child_name(name)}"
        snap = None if parent.is_new else await self.abackend.load(sid, self.window, self.clock())
        if snap is None:
            return self._new_session(sid, parent.user_id, parent)
        return self._from_snapshot(snap, parent)

    async def asave(
        self, session: Session, *, strict: bool = False, only_if_modified: bool = False
    ) -> None:
        if only_if_modified and not session.modified:
            return
        if self._over_budget(session):
            assert self.summarize is not None
            await session.acompact(self.summarize, keep_last=self.keep_last)
        for target, delta in self._plan(session, strict=strict):
            self._committed(target, await self.abackend.commit(delta))

    async def adelete(self, session: Session | str) -> bool:
        sid = session if isinstance(session, str) else session.id
        existed = await self.abackend.delete(check_session_id(sid))
        if isinstance(session, Session):
            self._reset(session)
        return existed

    async def arotate(self, session: Session) -> str:
        new_id = new_session_id()
        if not session.is_new:
            await self.abackend.rename(session.id, new_id, self.clock())
        self._renamed(session, new_id)
        return new_id

    async def aforget_user(self, user_id: str) -> int:
        return await self.abackend.forget_user(user_id)

    async def auser_sessions(self, user_id: str, *, offset: int = 0, limit: int = 50) -> list[str]:
        ids = await self.abackend.user_sessions(user_id, self.clock())
        return ids[offset : offset + limit]

    def asession_ids(self) -> AsyncIterator[str]:
        return self.abackend.session_ids()

    async def apurge(self, progress: Progress | None = None) -> int:
        return await self.abackend.purge(self.clock(), progress)

    async def aread_records(self, session_id: str, start: int, stop: int) -> list[Record]:
        data = await self.abackend.read_messages(session_id, start, stop)
        return [self.decode_record(session_id, b) for b in data]

    # -- after delete / rotate (pure) ------------------------------------------------------------

    def _reset(self, session: Session) -> None:
        """A deleted session starts over: empty, new id, flagged so adapters expire the cookie."""
        fresh = self._new_session(new_session_id(), session.user_id)
        dict.clear(session)
        session._init_tracking({}, self.clock, max_value_bytes=self.max_value_bytes)
        session.id = fresh.id
        session._header = None
        session._log = fresh._log
        session._children.clear()
        session._user = None  # re-read on use: forget_user may have removed it too
        session._pending_summary = None
        session._pending_vectors.clear()
        session.deleted = True

    def _renamed(self, session: Session, new_id: str) -> None:
        session.id = new_id
        if session._header is not None:
            session._header.session_id = new_id
        session._log._fetch = self._fetcher(new_id)
        for name, child in session._children.items():
            self._renamed(child, f"{new_id}/{name}")

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


_default: Store | None = None


def configure(store: Store | str | None) -> Store | None:
    """Set the store Session.create and Session.load use (a Store or a URL; None resets)."""
    global _default
    _default = Store(store) if isinstance(store, str) else store
    return _default


def default_store() -> Store:
    """The configured store, else one on STATEMW_URL or the default diskcache directory."""
    global _default
    if _default is None:
        _default = Store()
    return _default
