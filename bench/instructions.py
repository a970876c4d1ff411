"""Instructions per request through a product's middleware, counted by valgrind (callgrind).

Time on a shared 2-core VM moves by 25 % between runs; an instruction count does not move at all
(the same code, input and environment give the same count), so it tells whether a change to
statemw's per-request work helped before a timed run (bench/web.py) says by how much. It runs
bench/web.py's own products and cells (the same apps, handlers and cookie jar) under
`valgrind --tool=callgrind` twice, with N and 6N requests, and divides the difference by 5N, so
Python's start-up and imports drop out.

    /tmp/webbench/bin/python bench/instructions.py statemw-starlette-memory starsessions-memory
    /tmp/webbench/bin/python bench/instructions.py statemw-flask-redis --kind read --size 100
    /tmp/webbench/bin/python bench/instructions.py statemw-starlette-memory --caches

`--caches` runs cachegrind with its cache simulation instead, and adds the first-level
instruction- and data-cache misses per request: what makes one product's instruction cost
more time than another's (a larger working set of code and data).

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


EVENTS = {
    "instructions": r"I\s+refs:\s+([\d,]+)",
    "I1 misses": r"I1\s+misses:\s+([\d,]+)",
    "D1 misses": r"D1\s+misses:\s+([\d,]+)",
}
"""What --caches reads off cachegrind's summary (first-level instruction and data caches)."""


def counts(
    product: str, kind: str, size: int, count: int, fills_only: bool = False, caches: bool = False
) -> dict[str, int]:
    """Instructions (callgrind), or with `caches` also the first-level cache misses (cachegrind's
    simulation of this machine's caches), for a whole child process."""
    tool = (
        ["--tool=cachegrind", "--cache-sim=yes", "--cachegrind-out-file=/dev/null"]
        if caches
        else ["--tool=callgrind", "--callgrind-out-file=/dev/null"]
    )
    out = subprocess.run(
        [
            "valgrind",
            *tool,
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
    patterns = EVENTS if caches else {"instructions": r"Collected : (\d+)"}
    found: dict[str, int] = {}
    for event, pattern in patterns.items():
        match = re.search(pattern, out.stderr)
        if match is None:
            raise SystemExit(f"no {event} from valgrind:\n{out.stderr[-2000:]}")
        found[event] = int(match.group(1).replace(",", ""))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("products", nargs="+", help="bench/web.py product names")
    parser.add_argument("--kind", default="turn", choices=["turn", "read", "untouched"])
    parser.add_argument("--size", type=int, default=0, help="messages already there (L)")
    parser.add_argument("--count", type=int, default=100, help="N: requests in the short run")
    parser.add_argument(
        "--caches",
        action="store_true",
        help="also first-level cache misses (cachegrind's cache simulation; slower)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fills-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        requests(args.products[0], args.kind, args.size, args.count, args.fills_only)
        return
    sys.path.insert(0, str(HERE))
    import web  # the children share its run id (web.RUN), so one cleanup takes all their keys

    try:
        measure(args.products, args.kind, args.size, args.count, args.caches)
    finally:
        web.redis_cleanup_after(args.products)


def measure(products: list[str], kind: str, size: int, n: int, caches: bool) -> None:
    events = list(EVENTS) if caches else ["instructions"]
    tool = "cachegrind" if caches else "callgrind"
    print(f"{kind} at L={size:,}: {', '.join(events)} per request ({tool}, differential)")
    for product in products:
        long, short = (counts(product, kind, size, c, caches=caches) for c in (6 * n, n))
        total = {e: long[e] - short[e] for e in events}
        refills = fills(kind, size, 6 * n) - fills(kind, size, n)
        if refills:
            long, short = (
                counts(product, kind, size, c, fills_only=True, caches=caches) for c in (6 * n, n)
            )
            for e in events:
                total[e] -= round(refills * (long[e] - short[e]) / (5 * n))
        row = " ".join(f"{total[e] // (5 * n):>12,}" for e in events)
        print(f"  {product:32s} {row}", flush=True)


if __name__ == "__main__":
    main()
