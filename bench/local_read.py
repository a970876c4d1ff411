"""What a Redis turn would cost if its load needed no round trip (issue 9): an upper bound, not a
feature.

A statemw turn on Redis makes two round trips, the load and the commit; starsessions and
Flask-Session make two as well (GET, SET). The one change of design left that would cut a round
trip is a process-local copy of the sessions a process has loaded, kept true by Redis telling
the process what changed (client-side caching). This measures what that could buy before anyone
builds it: the same bench/web.py products and L=0 turn cells, once as they are and once with
every load served from a local mirror (a memory backend that applies each commit the Redis
backend makes), next to the peers, all in one process, in rounds. The mirror costs what a real
local copy would cost (a memory-backend load and a delta applied) and does no invalidation, so
it is a bound on the gain, not a design.

    /tmp/webbench/bin/python bench/local_read.py
    /tmp/webbench/bin/python bench/local_read.py --turns 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

from statemw.backends import open_backend
from statemw.backends.kv import KVBackend
from statemw.backends.memory import open_memory
from statemw.records import Committed, Delta, Snapshot

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web  # bench/ is not a package: its modules import each other by path

PAIRS = (
    ("statemw-starlette-redis", "starsessions-redis"),
    ("statemw-flask-redis", "flask-session-redis"),
)


class Mirrored:
    """A Redis backend whose loads come from a memory mirror of what it committed, when the
    mirror has the session (the fill before a cell goes through both)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.mirror: KVBackend = open_memory()

    def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        snap = self.mirror.load(session_id, window, now)
        return snap if snap is not None else self.real.load(session_id, window, now)

    def commit(self, delta: Delta) -> Committed:
        committed: Committed = self.real.commit(delta)
        self.mirror.commit(delta)
        return committed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class AsyncMirrored(Mirrored):
    """The awaited twin: Redis is awaited, the mirror called in the loop (as memory:// is)."""

    async def load(self, session_id: str, window: int, now: float) -> Snapshot | None:  # type: ignore[override]
        snap = self.mirror.load(session_id, window, now)
        return snap if snap is not None else await self.real.load(session_id, window, now)

    async def commit(self, delta: Delta) -> Committed:  # type: ignore[override]
        committed: Committed = await self.real.commit(delta)
        self.mirror.commit(delta)
        return committed


@contextmanager
def mirrored_redis() -> Iterator[None]:
    """Stores opened meanwhile on a Redis URL read through a mirror."""

    def open_mirrored(url: str, options: dict[str, Any]) -> tuple[Any, Any]:
        sync, aio = open_backend(url, options)
        if url.startswith("redis"):
            return Mirrored(sync), AsyncMirrored(aio)
        return sync, aio

    with mock.patch("statemw.store.open_backend", open_mirrored):
        yield


async def median_turn(product: str, turns: int) -> float:
    async with web.started_cell(product, "turn", 0, warm=200) as cell:
        times = [await cell.one() for _ in range(turns)]
    return statistics.median(times) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=3000, help="timed turns per cell")
    parser.add_argument("--rounds", type=int, default=3, help="each cell the least of its rounds")
    args = parser.parse_args()
    cells = [(p, False) for pair in PAIRS for p in pair] + [(s, True) for s, _ in PAIRS]
    best: dict[tuple[str, bool], float] = {}
    try:
        for round_ in range(args.rounds):
            for product, mirror in cells if round_ % 2 == 0 else cells[::-1]:
                with mirrored_redis() if mirror else nullcontext():
                    us = asyncio.run(median_turn(product, args.turns))
                best[product, mirror] = min(us, best.get((product, mirror), us))
    finally:
        web.redis_cleanup_after([p for pair in PAIRS for p in pair])
    print(f"L=0 turn, median µs, the least of {args.rounds} rounds of {args.turns} turns")
    print(f"{'':26} {'as it is':>9} {'no read':>9} {'peer':>9} {'ratio':>7} {'no read':>8}")
    for statemw_product, peer in PAIRS:
        now, bound = best[statemw_product, False], best[statemw_product, True]
        other = best[peer, False]
        print(
            f"{statemw_product:26} {now:9.1f} {bound:9.1f} {other:9.1f} "
            f"{now / other:6.2f}x {bound / other:7.2f}x"
        )
    print(f"(peers: {', '.join(peer for _, peer in PAIRS)}; ratio = statemw / peer)")


if __name__ == "__main__":
    main()
