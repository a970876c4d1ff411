"""Instructions per request through a product's middleware, counted by valgrind (callgrind).

Time on a shared 2-core VM moves by 25 % between runs; an instruction count does not move at all
(the same code, input and environment give the same count), so it tells whether a change to
statemw's per-request work helped before a timed run (bench/web.py) says by how much. It runs
bench/web.py's own products and cells (the same apps, handlers and cookie jar) under
`valgrind --tool=callgrind` twice, with N and 6N requests, and divides the difference by 5N, so
Python's start-up and imports drop out.

    /tmp/webbench/bin/python bench/instructions.py statemw-starlette-memory starsessions-memory
    /tmp/webbench/bin/python bench/instructions.py statemw-flask-redis --kind read --size 100

A turn cell starts a fresh conversation of L messages every max(10, L/50) turns, as in
bench/web.py; the fills are counted in a run of their own and taken out. Needs valgrind
(Debian's `valgrind`) and the bench venv of bench/web.py; about two minutes per product.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


WARM = 30


def requests(product: str, kind: str, size: int, count: int, fills_only: bool) -> None:
    """The child: `count` requests of one cell after a warm-up, or `count` fills alone."""
    sys.path.insert(0, str(HERE))
    import web

    found = {p.name: p for p in web.PRODUCTS}[product]

    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            app = found.build(tmp)
            cell = web.Cell(app, kind, size)
            await cell.start()
            for _ in range(WARM + count):
                await (cell.start() if fills_only else cell.one())
            await app.close()

    asyncio.run(run())


def fills(kind: str, size: int, count: int) -> int:
    """How many fresh conversations a cell starts in WARM + count requests (after its first)."""
    if kind != "turn":
        return 0
    sys.path.insert(0, str(HERE))
    import web

    return (WARM + count - 1) // web.batch_for(size)  # one each time a batch is used up


def instructions(product: str, kind: str, size: int, count: int, fills_only: bool = False) -> int:
    """Instructions callgrind counts for a whole child process."""
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            product,
            "--kind",
            kind,
            "--size",
            str(size),
            "--count",
            str(count),
            *(["--fills-only"] if fills_only else []),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Collected : (\d+)", out.stderr)
    if match is None:
        raise SystemExit(f"no count from valgrind:\n{out.stderr[-2000:]}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("products", nargs="+", help="bench/web.py product names")
    parser.add_argument("--kind", default="turn", choices=["turn", "read", "untouched"])
    parser.add_argument("--size", type=int, default=0, help="messages already there (L)")
    parser.add_argument("--count", type=int, default=100, help="N: requests in the short run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fills-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        requests(args.products[0], args.kind, args.size, args.count, args.fills_only)
        return
    kind, size, n = args.kind, args.size, args.count
    print(f"{kind} at L={size:,}: instructions per request (callgrind, differential)")
    for product in args.products:
        total = instructions(product, kind, size, 6 * n) - instructions(product, kind, size, n)
        refills = fills(kind, size, 6 * n) - fills(kind, size, n)
        if refills:
            per_fill = (
                instructions(product, kind, size, 6 * n, fills_only=True)
                - instructions(product, kind, size, n, fills_only=True)
            ) / (5 * n)
            total -= round(refills * per_fill)
        print(f"  {product:32s} {total // (5 * n):>12,}", flush=True)


if __name__ == "__main__":
    main()
