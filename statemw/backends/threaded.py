"""An AsyncBackend over a blocking one (memory, diskcache): each call runs in the event loop when
it cannot wait, else in a worker thread.

- memory: always in the loop (a dict under a lock; nothing waits long);
- diskcache: first in the loop with a connection that gives up at once when another process
  holds the write lock (WouldBlock, raised before anything is written), then in a thread.
Threads come from asyncio, or from anyio under any other event loop (trio).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import TypeVar

from statemw.backends.base import Backend, Progress, WouldBlock
from statemw.changes import Change, Subscription
from statemw.records import Committed, Delta, SessionHeader, Snapshot

T = TypeVar("T")


def on_asyncio() -> bool:
    """Is an asyncio event loop running this (not trio, say)?"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def to_thread(fn: Callable[..., T], *args: object) -> T:
    """Run a blocking call in a worker thread of whichever event loop runs this."""
    if not on_asyncio():  # trio, through anyio (Starlette brings it)
        import anyio

        return await anyio.to_thread.run_sync(functools.partial(fn, *args))
    return await asyncio.to_thread(fn, *args)


class ThreadedAsync:
    """Awaitable twin of a sync backend. `nonblocking`: a context in which the backend's calls
    raise WouldBlock instead of waiting (None with `inline=True`: always in the loop)."""

    def __init__(
        self,
        sync: Backend,
        *,
        inline: bool = False,
        nonblocking: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self.sync = sync
        self._inline = inline
        self._nonblocking = nonblocking
        # adrive drives flows on the blocking backend itself when no call can wait
        self.blocking_inline = sync if inline else None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._inline:
            return fn(*args)
        if self._nonblocking is not None:
            try:
                with self._nonblocking():
                    return fn(*args)
            except WouldBlock:
                pass  # another process holds the lock: wait for it in a thread
        return await to_thread(fn, *args)

    async def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        return await self._run(self.sync.load, session_id, window, now)

    async def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        return await self._run(self.sync.read_messages, session_id, start, stop)

    async def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        return await self._run(self.sync.read_vectors, session_id, start, stop)

    async def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        return await self._run(self.sync.read_vectors_at, session_id, positions)

    async def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        return await self._run(self.sync.read_header, session_id, now)

    async def commit(self, delta: Delta) -> Committed:
        return await self._run(self.sync.commit, delta)

    async def delete(self, session_id: str) -> bool:
        return await self._run(self.sync.delete, session_id)

    async def rename(self, old_id: str, new_id: str, now: float) -> None:
        await self._run(self.sync.rename, old_id, new_id, now)

    async def user_sessions(self, user_id: str, now: float) -> list[str]:
        return await self._run(self.sync.user_sessions, user_id, now)

    async def forget_user(self, user_id: str) -> int:
        return await self._run(self.sync.forget_user, user_id)

    async def session_ids(self) -> AsyncIterator[str]:
        ids = await to_thread(lambda: list(self.sync.session_ids()))
        for session_id in ids:
            yield session_id

    async def purge(self, now: float, progress: Progress | None = None) -> int:
        return await to_thread(self.sync.purge, now, progress)  # long: never in the loop

    async def close(self) -> None:
        self.sync.close()

    async def subscribe(self, session_id: str) -> ThreadedSubscription:
        return ThreadedSubscription(await self._run(self.sync.subscribe, session_id))


class ThreadedSubscription:
    """Awaitable twin of a sync subscription; uses its own `aget` when it has one (local ones)."""

    def __init__(self, sync: Subscription) -> None:
        self.sync = sync

    async def get(self, wait: float | None) -> Change | None:
        aget = getattr(self.sync, "aget", None)
        if aget is not None:
            change: Change | None = await aget(wait)
            return change
        return await to_thread(self.sync.get, wait)

    async def close(self) -> None:
        self.sync.close()
