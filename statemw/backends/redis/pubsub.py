"""store.subscribe on Redis: a session's channel, which the commit and delete scripts PUBLISH to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

from statemw.backends.redis import ops
from statemw.backends.redis.faults import FAULTS, afaults, faults
from statemw.changes import Change
from statemw.errors import StoreUnavailable

SUBSCRIBE_CONFIRM_SECONDS = 5.0
LISTEN_STEP_SECONDS = 1.0
"""A listener blocks on the socket at most this long per read, so socket timeouts never fire."""


def _steps(timeout: float | None) -> Iterator[float]:
    """Successive read timeouts covering `timeout` seconds (forever when None)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    first = True
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0 and not first:
            return
        first = False  # even wait=0 reads once: a change already delivered is returned
        yield (
            LISTEN_STEP_SECONDS
            if remaining is None
            else min(max(remaining, 0.0), LISTEN_STEP_SECONDS)
        )


class RedisSubscription:
    """A session's channel on a pub/sub connection of its own (the commit script PUBLISHes)."""

    def __init__(self, client: Any, layout: ops.KeyLayout, session_id: str) -> None:
        self.session_id = session_id
        self._pubsub = client.pubsub()
        with faults():
            self._pubsub.subscribe(layout.channel(session_id))
            for step in _steps(SUBSCRIBE_CONFIRM_SECONDS):  # confirmed: later commits are seen
                message = self._pubsub.get_message(timeout=step)
                if message is not None and message["type"] == "subscribe":
                    return
        raise StoreUnavailable("redis: SUBSCRIBE was not confirmed")

    def get(self, wait: float | None) -> Change | None:
        with faults():
            for step in _steps(wait):
                message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=step)
                if message is not None and message["type"] == "message":
                    return ops.parse_change(self.session_id, message["data"])
        return None

    def close(self) -> None:
        with suppress(*FAULTS):
            self._pubsub.close()


class AsyncRedisSubscription:
    """RedisSubscription over the asyncio client; cancelling a waiting get() is safe."""

    def __init__(self, pubsub: Any, session_id: str) -> None:
        self.session_id = session_id
        self._pubsub = pubsub

    @classmethod
    async def open(
        cls, client: Any, layout: ops.KeyLayout, session_id: str
    ) -> AsyncRedisSubscription:
        pubsub = client.pubsub()
        async with afaults():
            await pubsub.subscribe(layout.channel(session_id))
            for step in _steps(SUBSCRIBE_CONFIRM_SECONDS):
                message = await pubsub.get_message(timeout=step)
                if message is not None and message["type"] == "subscribe":
                    return cls(pubsub, session_id)
        await pubsub.aclose()
        raise StoreUnavailable("redis: SUBSCRIBE was not confirmed")

    async def get(self, wait: float | None) -> Change | None:
        async with afaults():
            for step in _steps(wait):
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=step
                )
                if message is not None and message["type"] == "message":
                    return ops.parse_change(self.session_id, message["data"])
        return None

    async def close(self) -> None:
        with suppress(*FAULTS):
            await self._pubsub.aclose()
