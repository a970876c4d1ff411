"""Does a long-running app keep what expired? RSS and stored records over N requests.

Each request goes through the ASGI middleware (statemw.asgi.StateMiddleware, called directly as
an ASGI app) without a cookie, so it starts a new session: the handler sets a key and adds a
message (a short-lived session, as a bot's one-off visitor leaves). The store's clock is a
simulated one that moves `--step` seconds per request, so `--idle` seconds of session lifetime
pass in idle/step requests and many expiry periods fit in one run. Prints, every `--every`
requests: requests done, sessions that ever lived, records the store holds, and the process's
RSS. With statemw reclaiming expired sessions by itself (memory, diskcache), both stay flat once
the first sessions expire; `--no-reclaim` turns that off, to show what it prevents.

    .venv/bin/python bench/soak.py --store memory --requests 50000
    .venv/bin/python bench/soak.py --store diskcache --requests 50000
    .venv/bin/python bench/soak.py --store memory --requests 50000 --no-reclaim
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import tempfile

from starlette.types import Message, Receive, Scope, Send

from statemw import Store
from statemw.asgi import StateMiddleware
from statemw.backends.disk import DiskKV
from statemw.backends.kv import KVBackend
from statemw.backends.memory import MemoryKV


class Clock:
    """Store time that moves only when the soak says so."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def handler(scope: Scope, receive: Receive, send: Send) -> None:
    """A one-off visitor: something remembered, one message logged."""
    session = scope["session"]
    session["visits"] = session.get("visits", 0) + 1
    session.add_message("user", "hello, I am just passing through " + "x" * 200)
    body = b"ok"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def disk_mb(directory: str) -> float:
    return (
        sum(
            os.path.getsize(os.path.join(root, name))
            for root, _, names in os.walk(directory)
            for name in names
        )
        / 1e6
    )


def records(store: Store) -> int:
    backend = store.backend
    assert isinstance(backend, KVBackend)
    kv = backend.kv
    if isinstance(kv, MemoryKV):
        return len(kv._data)
    assert isinstance(kv, DiskKV)
    return len(kv._cache)


async def soak(args: argparse.Namespace) -> None:
    directory = tempfile.mkdtemp(prefix="statemw-soak-")
    url = "memory://" if args.store == "memory" else f"diskcache://{directory}"
    clock = Clock()
    store = Store(url, idle=args.idle, clock=clock)
    if args.no_reclaim:
        backend = store.backend
        assert isinstance(backend, KVBackend)
        backend.reclaim = lambda now: 0  # type: ignore[method-assign]
    app = StateMiddleware(handler, store=store, secret_key="soak-secret")

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "query_string": b"",
        "scheme": "http",
        "server": ("soak", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    print(
        f"store={args.store} idle={args.idle:g}s step={args.step:g}s "
        f"(a session lives {args.idle / args.step:,.0f} requests)"
        + (" reclaim=off" if args.no_reclaim else "")
    )
    print(f"{'requests':>9} {'store s':>8} {'records':>8} {'RSS MB':>7} {'disk MB':>8}")
    for n in range(1, args.requests + 1):
        await app(dict(scope), receive, send)
        assert sent[0]["status"] == 200, sent
        sent.clear()
        clock.now += args.step
        if n % args.every == 0:
            gc.collect()
            disk = "-" if args.store == "memory" else f"{disk_mb(directory):.1f}"
            print(
                f"{n:9,} {n * args.step:8,.0f} {records(store):8,} {rss_mb():7.1f} {disk:>8}",
                flush=True,
            )
    store.close()
    shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["memory", "diskcache"], default="memory")
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--idle", type=float, default=60.0, help="session lifetime (store s)")
    parser.add_argument("--step", type=float, default=0.01, help="store seconds per request")
    parser.add_argument("--every", type=int, default=5_000, help="print every this many")
    parser.add_argument("--no-reclaim", action="store_true", help="what it was before")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
