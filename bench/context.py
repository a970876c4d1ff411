"""What does get_history(max_tokens=T) read from a long conversation?

For sessions of 1,000 and 100,000 messages (memory and diskcache), loads the session and asks
for a 4,000-token window; prints how many messages the store read (the load's window included),
the backend calls that read them, how many were returned, and the median time of load + get_history.

    .venv/bin/python bench/context.py [--sizes 1000,100000] [--budget 4000] [--runs 30] [--semantic]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from statemw import Store


def fill(store: Store, n: int) -> str:
    session = store.create()
    for start in range(0, n, 1000):
        for i in range(start, min(n, start + 1000)):
            role = "user" if i % 2 == 0 else "assistant"
            session.add_message(role, f"message {i}: " + "lorem ipsum dolor sit amet " * 4)
        session.save()
    return session.id


def measure(store: Store, sid: str, budget: int, runs: int) -> tuple[int, int, int, float]:
    backend: Any = store.backend
    read = {"messages": 0, "calls": 0}
    real_load, real_read = backend.load, backend.read_messages

    def counting_load(session_id: str, window: int, now: float) -> Any:
        snap = real_load(session_id, window, now)
        read["messages"] += len(snap.window)
        read["calls"] += 1
        return snap

    def counting_read(session_id: str, start: int, stop: int) -> list[bytes]:
        out: list[bytes] = real_read(session_id, start, stop)
        read["messages"] += len(out)
        read["calls"] += 1
        return out

    backend.load, backend.read_messages = counting_load, counting_read
    times = []
    returned = 0
    for _ in range(runs):
        read["messages"] = read["calls"] = 0
        start = time.perf_counter()
        returned = len(store.load(sid).get_history(max_tokens=budget))
        times.append(time.perf_counter() - start)
    backend.load, backend.read_messages = real_load, real_read
    return read["messages"], read["calls"], returned, statistics.median(times) * 1000


def embed(text: str) -> list[float]:
    """A stand-in embedding: cheap, so the figures are the library's cost, not a model's."""
    return [float(len(text)), float(text.count("1")), 1.0]


def measure_semantic(store: Store, sid: str, budget: int, runs: int) -> tuple[int, float]:
    """Messages read and median ms of a semantic get_history once every vector is cached."""
    session = store.load(sid)
    session.get_history(max_tokens=budget, relevant_to="message 1", embed=embed, k=5)
    session.save()  # commits the vectors computed above
    backend: Any = store.backend
    read = {"messages": 0}
    real_read = backend.read_messages

    def counting_read(session_id: str, start: int, stop: int) -> list[bytes]:
        out: list[bytes] = real_read(session_id, start, stop)
        read["messages"] += len(out)
        return out

    backend.read_messages = counting_read
    times = []
    for _ in range(runs):
        read["messages"] = 0
        again = store.load(sid)
        start = time.perf_counter()
        again.get_history(max_tokens=budget, relevant_to="message 1", embed=embed, k=5)
        times.append(time.perf_counter() - start)
    backend.read_messages = real_read
    return read["messages"], statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--semantic", action="store_true", help="also time relevant_to=")
    args = parser.parse_args()
    print(f"get_history(max_tokens={args.budget}) after a load, median of {args.runs}")
    print(f"{'store':10}{'messages':>10}{'read':>8}{'calls':>7}{'returned':>10}{'ms':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("memory", "diskcache"):
            for n in (int(s) for s in args.sizes.split(",")):
                url = "memory://" if kind == "memory" else f"diskcache://{tmp}/{n}"
                store = Store(url)
                sid = fill(store, n)
                read, calls, returned, ms = measure(store, sid, args.budget, args.runs)
                print(f"{kind:10}{n:>10,}{read:>8}{calls:>7}{returned:>10}{ms:>9.2f}")
                if args.semantic:
                    read, ms = measure_semantic(store, sid, args.budget, max(3, args.runs // 5))
                    print(f"{'  semantic':10}{n:>10,}{read:>8}{'':>7}{'':>10}{ms:>9.2f}")
                store.close()


if __name__ == "__main__":
    main()
