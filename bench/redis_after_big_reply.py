"""How long Redis takes to answer a PING right after it sent a big reply (issue 9).

bench/web.py times a one-key save in a 10-key session right after a 100,000-key session was
loaded. On Redis that load is one HGETALL of about 3.5 MB, and the save after it waits several
times longer than a save after nothing. This shows the wait without statemw in the loop: PINGs
on a raw socket (a few bytes each way, no parsing, the garbage collector off) right after

- HGETALL of a hash of 100,000 fields shaped like a statemw header's state fields,
- GET of a 4 MB string (one big value instead of 200,000 small ones),
- nothing (the baseline),

each repeated, printing µs per PING in order. Uses db 15 of the local Redis under a key of its
own, deleted at the end; loopback only. A few seconds.

    /tmp/webbench/bin/python bench/redis_after_big_reply.py [--repeat 5] [--pings 8]
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import time
import uuid
from collections.abc import Callable

import redis

HOST, PORT, DB = "127.0.0.1", 6379, 15
FIELDS = 100_000


def pings(sock: socket.socket, count: int) -> list[int]:
    """µs per PING, one after another, on a connection that only ever sends PINGs."""
    buf = bytearray(64)
    out = []
    for _ in range(count):
        start = time.perf_counter_ns()
        sock.sendall(b"PING\r\n")
        sock.recv_into(buf)  # "+PONG\r\n" fits in one read
        out.append((time.perf_counter_ns() - start) // 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pings", type=int, default=8)
    args = parser.parse_args()

    client = redis.Redis(host=HOST, port=PORT, db=DB)
    base = f"statemw-bench-after-big-reply:{uuid.uuid4().hex[:8]}:"
    hash_key, string_key = base + "h", base + "s"
    sock = socket.create_connection((HOST, PORT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        fill = client.pipeline(transaction=False)
        for i in range(FIELDS):
            fill.hset(hash_key, f"s:key{i}", b"\x00" + f"value {i}".encode() + b"\x00" * 24)
            if i % 5_000 == 4_999:
                fill.execute()
        fill.execute()
        client.set(string_key, b"x" * 4_000_000)
        cases: dict[str, Callable[[], object]] = {
            f"after HGETALL of {FIELDS:,} fields": lambda: client.hgetall(hash_key),
            "after GET of a 4 MB string": lambda: client.get(string_key),
            "after nothing": lambda: None,
        }
        gc.disable()
        print(f"µs per PING, in order, on a raw socket ({args.repeat} repeats)")
        for name, before in cases.items():
            firsts = []
            for _ in range(args.repeat):
                reply = before()
                times = pings(sock, args.pings)
                del reply
                firsts.append(times[0])
                print(f"  {name:34s} {times}")
            print(f"  {name:34s} first PING median {statistics.median(firsts):,.0f} µs")
    finally:
        gc.enable()
        sock.close()
        client.delete(hash_key, string_key)
        client.close()


if __name__ == "__main__":
    main()
