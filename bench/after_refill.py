"""A turn's cost by how many turns it comes after bench/web.py's harness started a fresh
conversation (issue 9).

bench/web.py keeps a turn cell near L messages by starting a fresh conversation of L messages
(untimed, through the product's own API, 1,000 messages a request) every max(10, L/50) turns.
The turns right after that fill run slower than the ones after them, so at L = 100 and 1,000,
where a conversation lasts 10 and 20 turns, a cell's median sits a few percent above the settled
turn, and at L = 10,000 (200 turns) it does not. This prints, per product and L, the median µs of
the turns at each position after a fill (0: the first turn on the fresh conversation), with
bench/web.py's own products, cells and checks, in one process:

    /tmp/webbench/bin/python bench/after_refill.py statemw-starlette-memory starsessions-redis
    /tmp/webbench/bin/python bench/after_refill.py statemw-flask-redis --sizes 100 --turns 3000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web  # bench/ is not a package: its modules import each other by path

SHOWN = 12
"""Positions printed after a fill (the rest are in the overall median)."""


async def by_position(product: str, size: int, turns: int) -> tuple[float, dict[int, float]]:
    """The cell's median µs per turn, and the median at each position after a fill."""
    async with web.started_cell(product, "turn", size, warm=100) as cell:
        times: dict[int, list[float]] = defaultdict(list)
        every: list[float] = []
        for _ in range(turns):
            position = cell.in_batch % cell.batch
            us = await cell.one() / 1000
            times[position].append(us)
            every.append(us)
    return statistics.median(every), {p: statistics.median(t) for p, t in sorted(times.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("products", nargs="+", help="bench/web.py product names")
    parser.add_argument("--sizes", default="100,1000,10000", help="L values, comma-separated")
    parser.add_argument("--turns", type=int, default=2000, help="timed turns per cell")
    args = parser.parse_args()
    web.check_products(parser, args.products)
    try:
        for product in args.products:
            for size in (int(s) for s in args.sizes.split(",")):
                median, positions = asyncio.run(by_position(product, size, args.turns))
                shown = ", ".join(f"{p}: {us:,.0f}" for p, us in positions.items() if p < SHOWN)
                print(f"{product} L={size:,}: median {median:,.1f} µs; by position {shown}")
    finally:
        web.redis_cleanup_after(args.products)


if __name__ == "__main__":
    main()
