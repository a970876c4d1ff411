"""Live changes of a session (store.subscribe / store.asubscribe): what a subscriber sees.

with store.subscribe(session_id, timeout=15) as changes:
    for change in changes: ...          # Change(session_id, revision, message_count, ...)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Change:
    """One committed change of a session, as a subscriber sees it.

    `keys` are the state keys the save set or deleted (empty when only messages were added);
    `deleted` marks the session's removal. Changes a poller coalesces carry the latest revision.
    """

    session_id: str
    revision: int
    message_count: int
    keys: tuple[str, ...] = ()
    deleted: bool = False


class Subscription(Protocol):
    """A registered listener on one session: changes committed after it was opened."""

    def get(self, wait: float | None) -> Change | None:
        """The next change, or None when `wait` seconds pass without one (None: no limit)."""

    def close(self) -> None: ...


class AsyncSubscription(Protocol):
    async def get(self, wait: float | None) -> Change | None: ...

    async def close(self) -> None: ...


class Changes:
    """What store.subscribe returns: iterate for changes; `with` (or close()) to stop listening.

    Already registered when returned, so a save made right after is seen. With `timeout`, the
    iteration ends once that many seconds pass without a change (an SSE endpoint's heartbeat).
    """

    def __init__(self, subscription: Subscription, timeout: float | None) -> None:
        self._sub = subscription
        self._timeout = timeout

    def __iter__(self) -> Iterator[Change]:
        while (change := self._sub.get(self._timeout)) is not None:
            yield change

    def get(self, wait: float | None = None) -> Change | None:
        return self._sub.get(wait)

    def close(self) -> None:
        self._sub.close()

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncChanges:
    """What store.asubscribe returns: `async with` registers at once; `async for` on first use."""

    def __init__(
        self, open_: Callable[[], Awaitable[AsyncSubscription]], timeout: float | None
    ) -> None:
        self._open = open_
        self._sub: AsyncSubscription | None = None
        self._timeout = timeout

    async def start(self) -> AsyncChanges:
        if self._sub is None:
            self._sub = await self._open()
        return self

    async def get(self, wait: float | None = None) -> Change | None:
        await self.start()
        assert self._sub is not None
        return await self._sub.get(wait)

    def __aiter__(self) -> AsyncChanges:
        return self

    async def __anext__(self) -> Change:
        change = await self.get(self._timeout)
        if change is None:
            raise StopAsyncIteration
        return change

    async def close(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.close()

    async def __aenter__(self) -> AsyncChanges:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
