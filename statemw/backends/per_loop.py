"""One resource per event loop (a redis.asyncio client, a psycopg async pool), closed when that
loop shuts down, and then forgotten.

Such resources belong to the loop that opened them, and apps run several loops: a Starlette
TestClient per request, Flask's async views, `asyncio.run` per job. Each loop's resource has a
suspended async generator beside it, which the loop registers on its first step; `asyncio.run`
and `asyncio.Runner` close such generators (shutdown_asyncgens) before closing the loop, and its
`finally` closes the resource in the right loop. It forgets the resource first: the map is keyed
weakly by the loop, but the generator holds its loop (its finalizer is the loop's), so an entry
left behind would keep its loop forever; and under `asyncio.run` the close itself may be
cancelled.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

R = TypeVar("R")


class PerLoop(Generic[R]):
    """The resources of the loops in use, each closed by `shut` when its loop shuts down."""

    def __init__(self, shut: Callable[[R], Awaitable[None]]) -> None:
        self._shut = shut
        self.entries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, R] = (
            weakref.WeakKeyDictionary()
        )
        self._finalizers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()

    async def add(self, loop: asyncio.AbstractEventLoop, resource: R) -> R:
        """`resource` is `loop`'s (the running one) until that loop shuts down. Registered
        before this awaits anything, so another task of the loop finds it at once."""
        finalizer = self._close_at_shutdown(loop, resource)
        self.entries[loop] = resource
        self._finalizers[loop] = finalizer
        await anext(finalizer)
        return resource

    async def _close_at_shutdown(
        self, loop: asyncio.AbstractEventLoop, resource: R
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if self.entries.get(loop) is resource:  # unless `close` already took it
                del self.entries[loop]
                del self._finalizers[loop]
            await self._shut(resource)

    async def close(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close `loop`'s resource now (the store's aclose), if it has one."""
        self.entries.pop(loop, None)
        finalizer = self._finalizers.pop(loop, None)
        if finalizer is not None:
            await finalizer.aclose()
