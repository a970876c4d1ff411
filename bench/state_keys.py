"""One key changed in a session of many keys, through each product's middleware: the state's
length, where bench/web.py measures the conversation's.

The request does `session["hits"] = session.get("hits", 0) + 1` on a session that already holds
K other keys (K = 10 to 10,000), through statemw's StateMiddleware / FlaskState and the peers'
own middleware (bench/web.py's products, apps and cookie jar). statemw loads the whole state and
writes back only the key that changed; starsessions and Flask-Session load and write back the
whole session. Every answer carries the key count and the hits, so each proves it saw its own
session. Cells run in rounds in one process; each is the least of its round medians.

    /tmp/webbench/bin/python bench/state_keys.py
    /tmp/webbench/bin/python bench/state_keys.py --only memory --keys 10,1000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web  # bench/ is not a package: its modules import each other by path

PAIRS = (
    ("statemw-starlette-memory", "starsessions-memory"),
    ("statemw-starlette-redis", "starsessions-redis"),
    ("statemw-flask-redis", "flask-session-redis"),
    ("statemw-flask-diskcache", "flask-session-filesystem"),
)
FILL = 1_000
"""Keys set per fill request."""


async def median_hit(product: str, keys: int, seconds: float) -> float:
    """Median µs of the one-key request on a fresh session of `keys` keys."""
    with web.scratch() as tmp:
        app = web.BY_NAME[product].build(tmp)
        try:
            done, own = 0, None  # own: keys the product keeps itself (Flask's _permanent)
            while done < keys:
                n = min(FILL, keys - done)
                reply = await app.client.request("POST", "/keys", f"start={done}&n={n}")
                done += n
                if own is None:
                    own = int(reply.body) - n
                web.check(reply, str(own + done))
            hits = 0

            async def one() -> int:
                nonlocal hits
                reply = await app.client.request("POST", "/key")
                hits += 1
                web.check(reply, f"{(own or 0) + keys + 1} {hits}")
                return reply.ns

            result = await web.adaptive(one, seconds, least=20)
            return float(result["us"])
        finally:
            await app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", default="10,100,1000,10000", help="state sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="each cell the least of its rounds")
    parser.add_argument("--seconds", type=float, default=0.5, help="measured time per cell")
    parser.add_argument("--only", default="", help="pairs whose statemw product contains this")
    args = parser.parse_args()
    sizes = [int(k) for k in args.keys.split(",")]
    pairs = [pair for pair in PAIRS if args.only in pair[0]]
    products = [p for pair in pairs for p in pair]
    best: dict[tuple[str, int], float] = {}
    try:
        for round_ in range(args.rounds):
            for product in products if round_ % 2 == 0 else products[::-1]:
                for keys in sizes:
                    us = asyncio.run(median_hit(product, keys, args.seconds))
                    best[product, keys] = min(us, best.get((product, keys), us))
    finally:
        web.redis_cleanup_after(products)
    print(f"one key changed in a session of K keys: median µs, the least of {args.rounds} rounds")
    print(f"| product | {' | '.join(f'K={k:,}' for k in sizes)} |")
    print(f"|---|{'---:|' * len(sizes)}")
    for product in products:
        print(f"| {product} | {' | '.join(f'{best[product, k]:,.0f}' for k in sizes)} |")
    for ours, peer in pairs:
        ratios = " | ".join(f"{best[ours, k] / best[peer, k]:.2f}x" for k in sizes)
        print(f"| {ours} / {peer} | {ratios} |")


if __name__ == "__main__":
    main()
