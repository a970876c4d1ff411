"""Round trips and latency of one turn on the PostgreSQL backend, at 10 and 100,000 messages.

A turn is what a handler does: load the session, add one message, read the last 20
(`get_history(last=20)`), save. For each history size it prints the median and p90 per-turn
time (sync, and async on one event loop), the round trips the backend sent for the load, for
`get_history` and for the save (counted by statemw's round-trip counter, which the
backends bump once per statement, script or pipeline they send), and beside them,
measured in the same run:
- the raw floor: one `SELECT 1` round trip with psycopg on a connection of the same pool,
  and twice that (a turn can not do less than one round trip to read and one to write);
- the Redis backend doing the same turns (when a Redis answers at --redis).

    .venv/bin/python bench/postgres_turn.py [--url postgresql://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0] [--turns 300] [--sizes 10,100000]

The PostgreSQL tables live in a schema of their own (bench_<random>), dropped at the end.
Each save waits for its WAL flush (the durability Redis here does not offer); to see the cost
without it, pass --url '...?options=-c%20synchronous_commit%3Doff'.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg

from statemw import Store, _report
from statemw.backends.postgres import PostgresBackend

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
    assert len(session.get_history(last=HISTORY)) == HISTORY
    session.save()


async def aturn(store: Store, session_id: str) -> None:
    session = await store.aload(session_id)
    session.add_message("user", "and one more thing " + "y" * 40)
    assert len(session.get_history(last=HISTORY)) == HISTORY
    await session.asave()


def timed(fn: Callable[[], object], turns: int) -> list[float]:
    times = []
    for _ in range(turns):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def round_trips(store: Store, session_id: str) -> tuple[int, int, int]:
    """Round trips of one load, of get_history(last=20), and of one save: counted where the
    backend's connections send each statement (`_Connection.query` bumps statemw's round-trip
    counter, the one telemetry and the Redis backend use too)."""
    counter = [0]
    token = _report.ROUND_TRIPS.set(counter)
    try:
        session = store.load(session_id)
        loads = counter[0]
        session.add_message("user", "counted")
        assert len(session.get_history(last=HISTORY)) == HISTORY
        history = counter[0] - loads
        session.save()
        return loads, history, counter[0] - loads - history
    finally:
        _report.ROUND_TRIPS.reset(token)


def select_one_floor(backend: PostgresBackend, turns: int) -> float:
    """Median ms of one `SELECT 1` round trip on a connection of the backend's own pool."""
    with backend.pool().connection() as conn:
        return statistics.median(timed(lambda: conn.execute("SELECT 1").fetchall(), turns))


def settle(url: str, schema: str) -> None:
    """After the bulk fill: vacuum and checkpoint now, so autovacuum's catch-up (it freezes the
    pages of a freshly filled table, writing WAL) does not compete with the turns measured."""
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("sessions", "state", "messages", "vectors"):
            conn.execute(f'VACUUM (ANALYZE, FREEZE) "{schema}".{table}'.encode())
        conn.execute(b"CHECKPOINT")


def measure(
    label: str,
    store: Store,
    sizes: list[int],
    turns: int,
    after_fill: Callable[[], None] | None = None,
) -> None:
    """Fill a session per size, then alternate their turns, so every size is measured under
    the same conditions (a shared machine's disk and CPU come and go)."""
    loop = asyncio.new_event_loop()
    try:
        sids = [fill(store, max(n, HISTORY)) for n in sizes]
        if after_fill is not None:
            after_fill()
        for _ in range(20):  # warm up: connections open, statements prepared
            for sid in sids:
                turn(store, sid)
                loop.run_until_complete(aturn(store, sid))
        trips = [round_trips(store, sid) for sid in sids]
        sync_times: list[list[float]] = [[] for _ in sids]
        async_times: list[list[float]] = [[] for _ in sids]
        for _ in range(turns):
            for k, sid in enumerate(sids):
                sync_times[k] += timed(lambda: turn(store, sid), 1)  # noqa: B023
                async_times[k] += timed(lambda: loop.run_until_complete(aturn(store, sid)), 1)  # noqa: B023
        base = statistics.median(sync_times[0])
        for n, (loads, history, saves), times, atimes in zip(
            sizes, trips, sync_times, async_times, strict=True
        ):
            median = statistics.median(times)
            p90 = statistics.quantiles(times, n=10)[-1]
            print(
                f"{label:>10} {n:>9} {median:>8.3f} {p90:>7.3f} {statistics.median(atimes):>9.3f} "
                f"{loads:>6} {history:>8} {saves:>6}   x{median / base:.2f} of the smallest"
            )
    finally:
        loop.run_until_complete(store.aclose())
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--sizes", default="10,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = Store(f"{args.url}{'&' if '?' in args.url else '?'}schema={schema}")
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    print(
        f"{'backend':>10} {'messages':>9} {'sync ms':>8} {'p90':>7} {'async ms':>9} "
        f"{'load':>6} {'history':>8} {'save':>6}   (round trips per turn)"
    )
    try:
        measure(
            "postgres", store, sizes, args.turns, lambda: settle(args.url.split("?")[0], schema)
        )
        floor = select_one_floor(backend, args.turns * 2)
        print(
            f"{'floor':>10} {'':>9} {floor:>8.3f}   one SELECT 1 round trip; "
            f"{2 * floor:.3f} ms for the two a turn needs at least"
        )
    finally:
        store.close()
        with psycopg.connect(args.url.split("?")[0], autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())

    prefix = f"statemw-bench-{uuid.uuid4().hex[:8]}:"
    redis_store = Store(args.redis, key_prefix=prefix)
    try:
        redis_store.get("a" * 24)
    except Exception as exc:  # no Redis here: the PostgreSQL numbers stand alone
        print(f"{'redis':>10} skipped ({exc})")
        redis_store.close()
        return
    try:
        measure("redis", redis_store, sizes, args.turns)
    finally:
        import redis

        admin = redis.Redis.from_url(args.redis)
        for key in admin.scan_iter(match=prefix + "*", count=1000):
            admin.delete(key)
        admin.close()
        redis_store.close()


if __name__ == "__main__":
    main()
