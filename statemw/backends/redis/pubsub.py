"""store.subscribe on Redis: a session's channel, which the commit and delete scripts publish to.

On a single server that is classic pub/sub (PUBLISH/SUBSCRIBE). On Redis Cluster it is sharded
pub/sub (SPUBLISH/SSUBSCRIBE, Redis 7): the channel carries the session's hash tag, so a change
stays inside the shard that holds the session instead of crossing the cluster bus to every node.
"""

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


class _Verbs:
    """The pub/sub calls of one flavour: classic on a single server, sharded on a cluster."""

    def __init__(self, sharded: bool) -> None:
        self.subscribe = "ssubscribe" if sharded else "subscribe"
        self.read = "get_sharded_message" if sharded else "get_message"
        self.confirmed = "ssubscribe" if sharded else "subscribe"
        self.message = "smessage" if sharded else "message"
        # A shard that loses the channel's slot (resharding, failover) unsubscribes us itself.
        self.dropped = "sunsubscribe" if sharded else "unsubscribe"

    def change(self, session_id: str, message: dict[str, Any] | None) -> Change | None:
        """The change a message carries; StoreUnavailable when the server dropped us."""
        if message is None:
            return None
        kind = message["type"]
        if kind == self.message:
            return ops.parse_change(session_id, message["data"])
        if kind == self.dropped:
            raise StoreUnavailable("redis: the subscription was dropped (its slot moved)")
        return None


class RedisSubscription:
    """A session's channel on a pub/sub connection of its own (the commit script publishes)."""

    def __init__(self, client: Any, layout: ops.KeyLayout, session_id: str) -> None:
        self.session_id = session_id
        self._verbs = verbs = _Verbs(layout.cluster)
        self._pubsub = client.pubsub()
        with faults():
            getattr(self._pubsub, verbs.subscribe)(layout.channel(session_id))
            read = getattr(self._pubsub, verbs.read)
            for step in _steps(SUBSCRIBE_CONFIRM_SECONDS):  # confirmed: later commits are seen
                message = read(timeout=step)
                if message is not None and message["type"] == verbs.confirmed:
                    return
        raise StoreUnavailable("redis: SUBSCRIBE was not confirmed")

    def get(self, wait: float | None) -> Change | None:
        verbs = self._verbs
        read = getattr(self._pubsub, verbs.read)
        with faults():
            for step in _steps(wait):
                change = verbs.change(self.session_id, read(timeout=step))
                if change is not None:
                    return change
        return None

    def close(self) -> None:
        with suppress(*FAULTS):
            self._pubsub.close()


class AsyncRedisSubscription:
    """RedisSubscription over the asyncio client; cancelling a waiting get() is safe."""

    def __init__(self, pubsub: Any, verbs: _Verbs, session_id: str) -> None:
        self.session_id = session_id
        self._pubsub = pubsub
        self._verbs = verbs

    @classmethod
    async def open(
        cls, client: Any, layout: ops.KeyLayout, session_id: str
    ) -> AsyncRedisSubscription:
        verbs = _Verbs(layout.cluster)
        pubsub = client.pubsub()
        async with afaults():
            await getattr(pubsub, verbs.subscribe)(layout.channel(session_id))
            read = getattr(pubsub, verbs.read)
            for step in _steps(SUBSCRIBE_CONFIRM_SECONDS):
                message = await read(timeout=step)
                if message is not None and message["type"] == verbs.confirmed:
                    return cls(pubsub, verbs, session_id)
        await pubsub.aclose()
        raise StoreUnavailable("redis: SUBSCRIBE was not confirmed")

    async def get(self, wait: float | None) -> Change | None:
        verbs = self._verbs
        read = getattr(self._pubsub, verbs.read)
        async with afaults():
            for step in _steps(wait):
                change = verbs.change(self.session_id, await read(timeout=step))
                if change is not None:
                    return change
        return None

    async def close(self) -> None:
        with suppress(*FAULTS):
            await self._pubsub.aclose()
