"""How the Redis backend reports trouble: every redis-py or socket fault is StoreUnavailable."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import redis

from statemw._report import Health
from statemw.errors import StoreUnavailable

FAULTS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)

DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
    OSError,
)
"""The faults that mean a server (a cluster shard) cannot be reached now: what a load may outlive
when only the user's shard is down. A script error is not one of them."""


def unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"redis: {type(exc).__name__}: {exc}")


def failed(health: Health | None, exc: BaseException) -> StoreUnavailable:
    """The StoreUnavailable to raise for a driver fault; `health` hears of it (an outage is
    logged once). The per-operation paths call this directly: a context manager there costs more
    than the rest of the wrapping together."""
    error = unavailable(exc)
    if health is not None:
        health.failed(error)
    return error


def answered(health: Health | None) -> None:
    """The server answered: end an outage `health` knew of."""
    if health is not None and health.down:
        health.recovered()


@contextmanager
def faults(health: Health | None = None) -> Iterator[None]:
    """Driver faults as StoreUnavailable, for the calls outside an operation (subscribe, scan)."""
    try:
        yield
    except FAULTS as exc:
        raise failed(health, exc) from exc
    answered(health)


@asynccontextmanager
async def afaults(health: Health | None = None) -> AsyncIterator[None]:
    try:
        yield
    except FAULTS as exc:
        raise failed(health, exc) from exc
    answered(health)
