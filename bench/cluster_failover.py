"""A master SIGKILLed under load on a 3-master, 3-replica Redis Cluster: is anything lost,
duplicated or stranded?

Starts the cluster from `redis-server` on free loopback ports (append-only file, fsync always,
cluster-node-timeout 2 s), then runs for --seconds:
- --writers processes, each a loop of turns (load, append a numbered message, save) over
  --sessions shared sessions spread over every shard, each session of one of --users users;
- --creators processes, each a loop creating sessions for those users (one state key, one
  message, and in every other create a write to the user's state).
After --kill-at seconds it SIGKILLs the master that holds the first user's record (so creates
are cut between their two shards) and lets the replica take over. Then it checks, on the
promoted cluster:
- lost: acknowledged messages missing from their session; duplicated: messages stored twice;
- stranded: stored sessions that their user's user_sessions() does not list (read before any
  load or purge could repair the index);
- forgettable: after forget_user for every user, no session of theirs is left in any shard.
It prints one line per run and exits 1 when any check fails. Nothing here is timed tightly:
it is a by-hand check (about 25 s a run), too slow for the test suite.

    .venv/bin/python bench/cluster_failover.py [--runs 3] [--seconds 14] [--kill-at 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from local_cluster import LocalCluster

from statemw import Store
from statemw.backends.redis.client import RedisBackend
from statemw.errors import SessionNotFound, StoreUnavailable


def ready(barrier: Any, seconds: float) -> float:
    """Wait for every process and the killer to be ready; the time to stop at."""
    barrier.wait(timeout=120)
    return time.time() + seconds


def writer(
    url: str, prefix: str, sessions: list[str], wid: int, go: Any, seconds: float, out: str
) -> None:
    store = Store(url, key_prefix=prefix)
    stop_at = ready(go, seconds)
    acked: list[tuple[str, str]] = []
    unknown: list[tuple[str, str]] = []
    errors = degraded = 0
    seq = 0
    while time.time() < stop_at:
        sid = sessions[(wid + seq) % len(sessions)]
        text = f"w{wid}-{seq}"
        seq += 1
        try:
            session = store.load(sid)
        except StoreUnavailable:
            errors += 1
            time.sleep(0.02)
            continue
        degraded += session.user_unavailable
        session.add_message("user", text)
        try:
            session.save()
        except StoreUnavailable:
            errors += 1
            unknown.append((sid, text))  # it may have committed
            time.sleep(0.02)
            continue
        acked.append((sid, text))
    store.close()
    result = {"acked": acked, "unknown": unknown, "errors": errors, "degraded": degraded}
    Path(out).write_text(json.dumps(result))


def creator(
    url: str, prefix: str, users: list[str], cid: int, go: Any, seconds: float, out: str
) -> None:
    store = Store(url, key_prefix=prefix)
    stop_at = ready(go, seconds)
    acked: list[tuple[str, str]] = []
    unknown: list[tuple[str, str]] = []
    errors = 0
    n = 0
    while time.time() < stop_at:
        user = users[n % len(users)]
        n += 1
        session = store.create(user_id=user)
        session["n"] = n
        session.add_message("user", f"c{cid}-{n}")
        try:
            if n % 2:  # half the creates write the user's state too (read first: its shard)
                session.user[f"last-{cid}"] = n
            session.save()
        except StoreUnavailable:
            errors += 1
            unknown.append((session.id, user))
            time.sleep(0.02)
            continue
        acked.append((session.id, user))
    store.close()
    Path(out).write_text(json.dumps({"acked": acked, "unknown": unknown, "errors": errors}))


def stored_sessions(store: Store) -> dict[str, str]:
    """Every top-level session stored in any shard, with its user: read from the keys."""
    backend = store.backend
    assert isinstance(backend, RedisBackend)
    client, layout = backend.client, backend.layout
    found: dict[str, str] = {}
    for key in client.scan_iter(match=layout.header_pattern(), count=1000):
        sid = layout.sid_of_header_key(key.decode())
        if sid is None or "/" in sid or sid.startswith("~u:"):
            continue
        uid = client.hget(key, "_uid")
        if uid is not None:
            found[sid] = uid.decode()
    return found


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"fo{uuid.uuid4().hex[:6]}:"
    users = [f"user{i}" for i in range(args.users)]
    with LocalCluster(
        masters=3, replicas=1, appendfsync="always", full_coverage=args.full_coverage
    ) as cluster:
        store = Store(cluster.url, key_prefix=prefix)
        shared = []
        for i in range(args.sessions):
            session = store.create(user_id=users[i % len(users)])
            session.save()
            shared.append(session.id)
        backend = store.backend
        assert isinstance(backend, RedisBackend)
        victim_node = backend.client.get_node_from_key(backend.layout.user_index(users[0]))
        victim = cluster.node(victim_node.port)
        store.close()

        tmp = Path(tempfile.mkdtemp(prefix="statemw-failover-"))
        ctx = multiprocessing.get_context("spawn")
        go = ctx.Barrier(args.writers + args.creators + 1)
        procs = []
        for w in range(args.writers):
            target = (cluster.url, prefix, shared, w, go, args.seconds, str(tmp / f"w{w}.json"))
            procs.append(ctx.Process(target=writer, args=target))
        for c in range(args.creators):
            target = (cluster.url, prefix, users, c, go, args.seconds, str(tmp / f"c{c}.json"))
            procs.append(ctx.Process(target=creator, args=target))
        for p in procs:
            p.start()
        go.wait(timeout=120)  # every process has imported statemw and opened its store
        time.sleep(args.kill_at)
        victim.kill()
        killed = time.monotonic()
        failover = cluster.wait_ok(deadline=killed + 60)
        for p in procs:
            p.join(timeout=args.seconds + 60)
        writers = [json.loads((tmp / f"w{w}.json").read_text()) for w in range(args.writers)]
        creators = [json.loads((tmp / f"c{c}.json").read_text()) for c in range(args.creators)]

        store = Store(cluster.url, key_prefix=prefix)
        seen: Counter[str] = Counter()
        for sid in shared:
            seen.update(m["content"] for m in store.load(sid).messages)
        acked = [text for w in writers for _, text in w["acked"]]
        unknown = [text for w in writers for _, text in w["unknown"]]
        lost = [t for t in acked if seen[t] == 0]
        duplicated = [t for t, n in seen.items() if n > 1]

        on_disk = stored_sessions(store)
        listed = {u: set(store.user_sessions(u, limit=10**9)) for u in users}
        stranded = [sid for sid, uid in on_disk.items() if sid not in listed.get(uid, set())]
        created_acked = [sid for c in creators for sid, _ in c["acked"]]
        created_missing = [sid for sid in created_acked if sid not in on_disk]
        for user in users:
            store.forget_user(user)
        left = stored_sessions(store)
        reachable = 0
        for sid in on_disk:
            try:
                store.load(sid)
                reachable += 1
            except SessionNotFound:
                pass
        store.close()
    return {
        "saves_acked": len(acked),
        "saves_unknown": len(unknown),
        "unknown_committed": sum(seen[t] > 0 for t in unknown),
        "lost": len(lost) + len(created_missing),
        "duplicated": len(duplicated),
        "creates_acked": len(created_acked),
        "creates_failed": sum(len(c["unknown"]) for c in creators),
        "stored_sessions": len(on_disk),
        "stranded": len(stranded),
        "left_after_forget": len(left),
        "loadable_after_forget": reachable,
        "store_unavailable": sum(w["errors"] for w in writers) + sum(c["errors"] for c in creators),
        "degraded_loads": sum(w["degraded"] for w in writers),
        "failover_s": round(failover, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=14.0)
    parser.add_argument("--kill-at", type=float, default=4.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--creators", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument(
        "--full-coverage",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="cluster-require-full-coverage (default no: other shards serve during a failover)",
    )
    args = parser.parse_args()
    failed = False
    for run in range(1, args.runs + 1):
        result = one_run(args)
        print(f"run {run}: " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        bad = ("lost", "duplicated", "stranded", "left_after_forget", "loadable_after_forget")
        failed |= any(result[k] for k in bad)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
