"""The contract between the Store and a backend, in a sync and an async flavour, and the steps
store flows yield to reach it.

A backend stores headers, message logs and vectors as bytes; it applies a save's Delta atomically
(merging with concurrent saves by `records.apply_delta` or its equivalent) and reads a load's
Snapshot in as few round trips as it can. It never decodes values or messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeAlias, TypeVar

from statemw._drive import Flow, Step
from statemw.changes import AsyncSubscription, Subscription
from statemw.records import Committed, Delta, SessionHeader, Snapshot

T = TypeVar("T")
R = TypeVar("R")

Progress = Callable[[int, int], None]
"""progress(done, total) for long sweeps (the CLI draws a bar with it)."""


class WouldBlock(Exception):
    """A call made in a backend's nonblocking mode met a lock another process holds; nothing
    was written. The async shell runs the call again where it may wait (a worker thread)."""


class Backend(Protocol):
    """Blocking backend calls (Flask, WSGI, plain scripts)."""

    def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        """The header, the last `window` messages after any summary, the leading system
        messages when the window does not reach them, parents' and the user's headers."""

    def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        """Encoded messages [start, stop) of the log (clamped to what exists)."""

    def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        """Cached vectors of messages in [start, stop), by position. Positions below 0 hold
        the client's own index records (statemw._semantic), at most as many as messages; a
        save writes them like vectors, a new log drops them with the vectors."""

    def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        """Cached vectors at these positions (in one call), by position."""

    def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        """The header alone (state, counters), None when absent or expired."""

    def commit(self, delta: Delta) -> Committed:
        """Apply a save atomically; what the store holds now (revision, counts)."""

    def delete(self, session_id: str) -> bool:
        """Remove a session, its sub-sessions and its messages; False when there was none."""

    def rename(self, old_id: str, new_id: str, now: float) -> None:
        """Move a session (and sub-sessions) to a new id, atomically where the backend can."""

    def user_sessions(self, user_id: str, now: float) -> list[str]:
        """Ids of a user's live sessions, oldest first."""

    def forget_user(self, user_id: str) -> int:
        """Remove every session of the user and the user's state; the number of sessions."""

    def session_ids(self) -> Iterator[str]:
        """Every stored top-level session id (live or not yet purged)."""

    def purge(self, now: float, progress: Progress | None = None) -> int:
        """Remove expired sessions and expired state keys; the number of sessions removed.

        `progress(done, total)` is called after each stored record is looked at."""

    def close(self) -> None: ...

    def subscribe(self, session_id: str) -> Subscription:
        """Start listening to a session's commits (see statemw.changes)."""


class AsyncBackend(Protocol):
    """The same calls as awaitables (Starlette, FastAPI, any asyncio code)."""

    async def load(self, session_id: str, window: int, now: float) -> Snapshot | None: ...

    async def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]: ...

    async def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]: ...

    async def read_vectors_at(
        self, session_id: str, positions: Sequence[int]
    ) -> dict[int, bytes]: ...

    async def read_header(self, session_id: str, now: float) -> SessionHeader | None: ...

    async def commit(self, delta: Delta) -> Committed: ...

    async def delete(self, session_id: str) -> bool: ...

    async def rename(self, old_id: str, new_id: str, now: float) -> None: ...

    async def user_sessions(self, user_id: str, now: float) -> list[str]: ...

    async def forget_user(self, user_id: str) -> int: ...

    def session_ids(self) -> AsyncIterator[str]: ...

    async def purge(self, now: float, progress: Progress | None = None) -> int: ...

    async def close(self) -> None: ...

    async def subscribe(self, session_id: str) -> AsyncSubscription: ...


# -- the steps a store flow yields: one per backend call, each run sync or async ------------------

StoreFlow: TypeAlias = Flow[Backend, AsyncBackend, T]
"""A store operation written once (statemw._drive): yields backend steps, returns a T."""

StoreStep: TypeAlias = Step[Backend, AsyncBackend, R]


@dataclass(slots=True)
class Load(StoreStep[Snapshot | None]):
    session_id: str
    window: int
    now: float

    def run(self, io: Backend) -> Snapshot | None:
        return io.load(self.session_id, self.window, self.now)

    async def arun(self, aio: AsyncBackend) -> Snapshot | None:
        return await aio.load(self.session_id, self.window, self.now)


@dataclass(slots=True)
class ReadMessages(StoreStep[list[bytes]]):
    session_id: str
    start: int
    stop: int

    def run(self, io: Backend) -> list[bytes]:
        return io.read_messages(self.session_id, self.start, self.stop)

    async def arun(self, aio: AsyncBackend) -> list[bytes]:
        return await aio.read_messages(self.session_id, self.start, self.stop)


@dataclass(slots=True)
class ReadVectors(StoreStep[dict[int, bytes]]):
    session_id: str
    start: int
    stop: int

    def run(self, io: Backend) -> dict[int, bytes]:
        return io.read_vectors(self.session_id, self.start, self.stop)

    async def arun(self, aio: AsyncBackend) -> dict[int, bytes]:
        return await aio.read_vectors(self.session_id, self.start, self.stop)


@dataclass(slots=True)
class ReadVectorsAt(StoreStep[dict[int, bytes]]):
    session_id: str
    positions: tuple[int, ...]

    def run(self, io: Backend) -> dict[int, bytes]:
        return io.read_vectors_at(self.session_id, self.positions)

    async def arun(self, aio: AsyncBackend) -> dict[int, bytes]:
        return await aio.read_vectors_at(self.session_id, self.positions)


@dataclass(slots=True)
class ReadHeader(StoreStep[SessionHeader | None]):
    session_id: str
    now: float

    def run(self, io: Backend) -> SessionHeader | None:
        return io.read_header(self.session_id, self.now)

    async def arun(self, aio: AsyncBackend) -> SessionHeader | None:
        return await aio.read_header(self.session_id, self.now)


@dataclass(slots=True)
class Commit(StoreStep[Committed]):
    delta: Delta

    def run(self, io: Backend) -> Committed:
        return io.commit(self.delta)

    async def arun(self, aio: AsyncBackend) -> Committed:
        return await aio.commit(self.delta)


@dataclass(slots=True)
class Delete(StoreStep[bool]):
    session_id: str

    def run(self, io: Backend) -> bool:
        return io.delete(self.session_id)

    async def arun(self, aio: AsyncBackend) -> bool:
        return await aio.delete(self.session_id)


@dataclass(slots=True)
class Rename(StoreStep[None]):
    old_id: str
    new_id: str
    now: float

    def run(self, io: Backend) -> None:
        io.rename(self.old_id, self.new_id, self.now)

    async def arun(self, aio: AsyncBackend) -> None:
        await aio.rename(self.old_id, self.new_id, self.now)


@dataclass(slots=True)
class UserSessions(StoreStep[list[str]]):
    user_id: str
    now: float

    def run(self, io: Backend) -> list[str]:
        return io.user_sessions(self.user_id, self.now)

    async def arun(self, aio: AsyncBackend) -> list[str]:
        return await aio.user_sessions(self.user_id, self.now)
