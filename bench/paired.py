"""Two or more products' web turns, interleaved in one process: a ratio that the hour cannot move.

bench/web.py runs each product in a child process of its own, one after another, and compares
cells from different minutes. On these VMs a Redis round trip costs 63 µs in one minute and 130
in the next, so a ratio between two Redis products moves with the minute it was taken in: in one
hour, the same code measured 1.01x and 1.97x starsessions-redis. This script takes the same
requests (bench/web.py's products, handlers, cookie jar and checks) but alternates the products
in short slices within one process, so each slice pair shares the minute, and reports the
median of the per-slice ratios against the first product.

    /tmp/webbench/bin/python bench/paired.py starsessions-redis statemw-starlette-redis
    /tmp/webbench/bin/python bench/paired.py flask-session-redis statemw-flask-redis --size 100

Uses bench/web.py's venv and Redis database (its keys deleted afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import web


async def paired(names: list[str], kind: str, size: int, slices: int, per_slice: int) -> None:
    products = [web.BY_NAME[name] for name in names]
    medians: dict[str, list[float]] = {name: [] for name in names}
    with web.scratch() as tmp:
        apps = [p.build(f"{tmp}/{p.name}") for p in products]
        try:
            cells = [web.Cell(app, kind, size) for app in apps]
            for cell in cells:
                await cell.start()
            for n in range(slices):
                order = list(zip(names, cells, strict=True))
                for name, cell in order if n % 2 == 0 else reversed(order):
                    for _ in range(20):
                        await cell.one()
                    gc.collect()
                    samples = [await cell.one() for _ in range(per_slice)]
                    medians[name].append(statistics.median(samples) / 1000)
        finally:
            for app in apps:
                await app.close()
            web.redis_cleanup_after(names)
    base = names[0]
    print(f"{kind} at L={size:,}: {slices} slices of {per_slice} requests each, interleaved")
    for name in names:
        us = medians[name]
        ratios = [a / b for a, b in zip(us, medians[base], strict=True)]
        print(
            f"  {name:30s} {statistics.median(us):8.1f} µs (slices {min(us):.1f}-{max(us):.1f})"
            f"  {statistics.median(ratios):5.2f}x {base}"
            f" (slices {min(ratios):.2f}-{max(ratios):.2f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "products", nargs="+", help="bench/web.py product names; the first is the base"
    )
    parser.add_argument("--kind", default="turn", choices=["turn", "read", "untouched"])
    parser.add_argument("--size", type=int, default=0, help="messages already there (L)")
    parser.add_argument("--slices", type=int, default=10, help="slices per product")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per slice")
    args = parser.parse_args()
    web.check_products(parser, args.products)
    asyncio.run(paired(args.products, args.kind, args.size, args.slices, args.requests))


if __name__ == "__main__":
    main()
