"""Round trips and latency of one turn on the Redis backend, at 10 and 100,000 messages.

A turn: load the session, add one message, read the last 20, save (as bench/growth.py). For each
size it prints the median and p90 per-turn time (sync and async clients), the round trips the
backend sent per turn (counted at the backend, one per script / command / pipeline), and the
commands Redis executed per turn (INFO commandstats delta: what a MULTI/EXEC or pipelined
design would count, too).

    .venv/bin/python bench/redis_turn.py [--url redis://127.0.0.1:6379/0] [--turns 300]
                                         [--sizes 10,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from statemw import Store
from statemw.backends.redis import ops as redis_ops
from statemw.backends.redis.client import AsyncRedisBackend, RedisBackend

HISTORY = 20


def fill(store: Store, n: int) -> str:
    session = store.create(user_id="bench")
    batch = 5000
    for start in range(0, n, batch):
        for i in range(start, min(n, start + batch)):
            session.add_message("user" if i % 2 else "assistant", f"message {i} " + "x" * 60)
        session.save()
    return session.id


def turn(store: Store, session_id: str) -> None:
    session = store.load(session_id)
    session.add_message("user", "and one more thing " + "y" * 40)
    assert len(session.get_history(last=HISTORY)) == HISTORY  # what the README tells users to call
    session.save()


async def aturn(store: Store, session_id: str) -> None:
    session = await store.aload(session_id)
    session.add_message("user", "and one more thing " + "y" * 40)
    assert len(await session.aget_history(last=HISTORY)) == HISTORY
    await session.asave()


def run_aturn(loop: asyncio.AbstractEventLoop, store: Store, session_id: str) -> None:
    loop.run_until_complete(aturn(store, session_id))


def count_calls(backend: RedisBackend) -> list[int]:
    """Wrap the backend's one I/O method: every round trip it makes goes through it."""
    counter = [0]
    original = backend.call

    def counting(call: redis_ops.RedisStep) -> Any:
        counter[0] += 1
        return original(call)

    backend.call = counting  # type: ignore[method-assign]
    return counter


def commands_executed(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def timed(fn: Callable[[], None], turns: int) -> list[float]:
    times = []
    for _ in range(turns):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--sizes", default="10,100000")
    args = parser.parse_args()

    prefix = f"statemw-bench-{uuid.uuid4().hex[:8]}:"
    store = Store(args.url, key_prefix=prefix)
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    assert isinstance(store.abackend, AsyncRedisBackend)
    admin = redis.Redis.from_url(args.url)
    loop = asyncio.new_event_loop()
    print(
        f"{'messages':>9} {'sync ms':>8} {'p90':>6} {'async ms':>9} {'trips/turn':>10} "
        f"{'redis cmds/turn':>15}"
    )
    base = None
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            sid = fill(store, max(n, HISTORY))
            for _ in range(10):  # warm up: scripts loaded, connections open
                turn(store, sid)
                loop.run_until_complete(aturn(store, sid))
            counter = count_calls(backend)
            before = commands_executed(admin)
            turn(store, sid)
            commands = commands_executed(admin) - before - 1  # the INFO reply itself
            trips = counter[0]
            del backend.call  # the counting wrapper: back to the class's method
            sync_times = timed(functools.partial(turn, store, sid), args.turns)
            async_times = timed(functools.partial(run_aturn, loop, store, sid), args.turns)
            median = statistics.median(sync_times)
            base = base or median
            p90 = statistics.quantiles(sync_times, n=10)[-1]
            print(
                f"{n:>9} {median:>8.3f} {p90:>6.3f} {statistics.median(async_times):>9.3f} "
                f"{trips:>10} {commands:>15}   (x{median / base:.2f} of the smallest)"
            )
    finally:
        for key in admin.scan_iter(match=prefix + "*", count=1000):
            admin.delete(key)
        admin.close()
        loop.run_until_complete(store.aclose())
        loop.close()
        store.close()


if __name__ == "__main__":
    main()
