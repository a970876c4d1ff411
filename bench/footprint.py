"""Bytes a stored session and a stored message cost in each store.

The workload is a chat app's: each session has a user, three state keys (a short string, an
int, a list of two strings) and a log of messages alternating user (about 100 characters) and
assistant (about 400). Per store it writes --sessions sessions with no messages, then the same
number again with --messages messages each (after a first batch that warms the store up: the
users' index keys, tables and pages exist), and measures the store's growth:
- memory://: what tracemalloc sees the process allocate;
- diskcache://: the size of its directory (SQLite file and value files);
- redis://: `used_memory` of a private redis-server started here (nothing else on it);
- redis+cluster://: `used_memory` summed over a private 3-master cluster;
- postgresql://: `pg_total_relation_size` of the store's tables (with indexes and TOAST), in a
  schema of its own on --postgres (skipped when nothing answers there).
Per session = growth of the first batch / sessions; per message = (growth of the second batch
minus the per-session cost) / messages. "payload" is what the codec produced for one message
(the bytes any store must keep), for comparison.

    .venv/bin/python bench/footprint.py [--sessions 2000] [--messages 50]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import subprocess
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from local_cluster import LocalCluster, answers, free_cluster_port

from statemw import Store

USER_TEXT = "Can you find me a flight from Bangalore to Berlin next Tuesday, morning if possible?"
ASSISTANT_TEXT = (
    "Here are three options for Tuesday morning. Lufthansa LH755 leaves Bangalore at 05:10 and "
    "lands in Frankfurt at 11:35, connecting to Berlin at 13:00. Air India AI131 leaves at 06:40 "
    "via Mumbai. Emirates EK565 leaves at 04:25 via Dubai and arrives at 14:20. Shall I hold "
    "one of them for you, or would you prefer to compare prices first?"
)


def fill(store: Store, sessions: int, messages: int) -> None:
    for i in range(sessions):
        session = store.create(user_id=f"user{i % 500}")
        session["location"] = "Bangalore"
        session["turns"] = i
        session["airlines"] = ["LH", "AI"]
        for m in range(messages):
            if m % 2:
                session.add_message("assistant", ASSISTANT_TEXT)
            else:
                session.add_message("user", USER_TEXT)
        session.save()


def payload_bytes(store: Store) -> float:
    """The codec's bytes for one message of the workload, on average."""
    from statemw.messages import make_message

    sizes = []
    for role, text in (("user", USER_TEXT), ("assistant", ASSISTANT_TEXT)):
        record = store.new_record(make_message(role, text, {}), 0)
        sizes.append(len(store.codec.encode(record.to_wire(), what="message")))
    return sum(sizes) / len(sizes)


def measure(
    make: Callable[[], Store], size: Callable[[], int], sessions: int, messages: int
) -> tuple[float, float]:
    store = make()
    try:
        start = size()
        fill(store, sessions, 0)
        after_sessions = size()
        fill(store, sessions, messages)
        after_messages = size()
    finally:
        store.close()
    per_session = (after_sessions - start) / sessions
    per_message = (after_messages - after_sessions - per_session * sessions) / (sessions * messages)
    return per_session, per_message


def redis_used(ports: list[int]) -> Callable[[], int]:
    def used() -> int:
        total = 0
        for port in ports:
            client = redis.Redis(port=port)
            total += int(client.info("memory")["used_memory"])
            client.close()
        return total

    return used


def dir_size(path: Path) -> Callable[[], int]:
    def size() -> int:
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    return size


def traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    n, m = args.sessions, args.messages
    rows: list[tuple[str, float, float]] = []

    tracemalloc.start()
    rows.append(("memory", *measure(lambda: Store("memory://"), traced, n, m)))
    tracemalloc.stop()

    tmp = Path(tempfile.mkdtemp(prefix="statemw-footprint-"))
    try:
        url = f"diskcache://{tmp / 'store'}"
        rows.append(("diskcache", *measure(lambda: Store(url), dir_size(tmp), n, m)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    port = free_cluster_port()
    rdir = Path(tempfile.mkdtemp(prefix="statemw-footprint-redis-"))
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(rdir)),
            *("--save", "", "--appendonly", "no"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        while not answers(port):
            time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        rows.append(("redis", *measure(lambda: Store(url), redis_used([port]), n, m)))
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(rdir, ignore_errors=True)

    with LocalCluster(masters=3) as cluster:
        ports = [node.port for node in cluster.nodes]
        curl = cluster.url
        rows.append(("redis cluster", *measure(lambda: Store(curl), redis_used(ports), n, m)))

    try:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True, connect_timeout=3) as conn:

            def relations() -> int:
                row = conn.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relkind = 'r'",
                    (schema,),
                ).fetchone()
                return int(row[0]) if row else 0

            purl = f"{args.postgres}?schema={schema}"
            try:
                rows.append(("postgresql", *measure(lambda: Store(purl), relations, n, m)))
            finally:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    except psycopg.OperationalError as exc:
        print(f"(postgresql skipped: {exc})")

    payload = payload_bytes(Store("memory://"))
    print(f"{n} sessions, then {n} more with {m} messages each; payload {payload:.0f} B/message")
    print(f"{'store':<14} {'B/session':>10} {'B/message':>10} {'x payload':>10}")
    for name, per_session, per_message in rows:
        print(
            f"{name:<14} {per_session:>10.0f} {per_message:>10.0f} {per_message / payload:>10.2f}"
        )


if __name__ == "__main__":
    main()
