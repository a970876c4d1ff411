"""Does a turn cost the same at message 10 and message 100,000?

A turn: load the session, add one message, read the last 20, save. Prints the median per-turn
time for statemw on memory and diskcache at each size, and its ratio to the 10-message case;
and, for contrast, a whole-blob store (what cookie/Flask-Session-style stores do: the session's
full message list serialized on every save) on the same diskcache, measured in the same run.

    .venv/bin/python bench/growth.py [--turns 200] [--sizes 10,1000,20000,100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import diskcache

from statemw import Store


def fill(store: Store, n: int) -> str:
    session = store.create(user_id="bench")
    batch = 1000
    for start in range(0, n, batch):
        for i in range(start, min(n, start + batch)):
            session.add_message("user" if i % 2 else "assistant", f"message {i} " + "x" * 60)
        session.save()
    return session.id


def statemw_turn(store: Store, session_id: str) -> Callable[[], None]:
    def turn() -> None:
        session = store.load(session_id)
        session.add_message("user", "and one more thing " + "y" * 40)
        recent = session.get_history(last=20)  # what the README tells users to call
        assert len(recent) == 20
        session.save()

    return turn


def blob_turn(cache: diskcache.Cache, key: str) -> Callable[[], None]:
    def turn() -> None:
        record = json.loads(cache[key])
        record["messages"].append({"role": "user", "content": "and one more thing " + "y" * 40})
        recent = record["messages"][-20:]
        assert len(recent) == 20
        cache[key] = json.dumps(record)

    return turn


def median_ms(turn: Callable[[], None], turns: int) -> float:
    for _ in range(5):
        turn()
    times = []
    for _ in range(turns):
        start = time.perf_counter()
        turn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--sizes", default="10,1000,20000,100000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("memory", "diskcache"):
            rows[f"statemw {name}"] = []
            for n in sizes:
                url = "memory://" if name == "memory" else f"diskcache://{tmp}/{name}-{n}"
                store = Store(url)
                sid = fill(store, max(n, 20))
                rows[f"statemw {name}"].append(median_ms(statemw_turn(store, sid), args.turns))
                store.close()
        rows["whole-blob diskcache (baseline)"] = []
        for n in sizes:
            cache = diskcache.Cache(f"{tmp}/blob-{n}")
            messages = [
                {"role": "user", "content": f"message {i} " + "x" * 60} for i in range(max(n, 20))
            ]
            cache["s"] = json.dumps({"user_id": "bench", "messages": messages})
            turns = args.turns if n <= 20000 else max(10, args.turns // 10)
            rows["whole-blob diskcache (baseline)"].append(median_ms(blob_turn(cache, "s"), turns))
            cache.close()

    header = f"{'store':34}" + "".join(f"{n:>12,}" for n in sizes) + "   ratio (largest / 10)"
    print(f"median ms per turn (load, add 1, read last 20, save), {args.turns} turns")
    print(header)
    for name, values in rows.items():
        cells = "".join(f"{v:12.3f}" for v in values)
        print(f"{name:34}{cells}   {values[-1] / values[0]:.2f}")


if __name__ == "__main__":
    main()
