"""Redis server instructions per statemw operation, counted by valgrind (callgrind) on a
redis-server of its own, with the Redis commands each one runs (INFO commandstats).

Time on a shared 2-core VM moves by 25 % between runs; the server's instruction count does not,
so this says whether a change to the Lua scripts or the commit's arguments helps. Compare two
checkouts by running it with each on PYTHONPATH:

    PYTHONPATH=. .venv/bin/python bench/redis_server_cpu.py
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/redis_server_cpu.py --user

Needs valgrind (Debian's `valgrind`, with callgrind_control) and redis-server; listens on
127.0.0.1 only. About a minute.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import redis

import statemw
from statemw.backends.redis.lua import COMMIT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user", action="store_true", help="sessions of a user (user_id)")
    parser.add_argument("--ops", type=int, default=300, help="operations of each kind")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"needs {tool}")
    print(f"statemw from {Path(statemw.__file__).parent}, user sessions: {args.user}")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        server = subprocess.Popen(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out.%p",
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port)
            for _ in range(300):  # valgrind starts the server slowly
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            run(client, server.pid, port, tmp, args.user, args.ops)
        finally:
            server.terminate()
            server.wait(30)


def run(client: redis.Redis, pid: int, port: int, tmp: str, user: bool, ops: int) -> None:
    store = statemw.Store(f"redis://127.0.0.1:{port}/0?key_prefix=cpu:")

    def new() -> statemw.Session:
        session = store.create(user_id="u1" if user else None)
        session.add_message("user", "hello")
        session.save()
        return session

    def turns(n: int) -> None:
        sid = new().id
        for i in range(n):
            if i and i % 10 == 0:
                sid = new().id
            session = store.load(sid)
            session.get_history(last=20)
            session.add_message("user", "x" * 70)
            session.save()

    def appends(n: int) -> None:
        session = new()
        for _ in range(n):
            session.add_message("user", "x" * 70)
            session.save()

    def state_saves(n: int) -> None:
        session = new()
        for i in range(n):
            session["k"] = i
            session.save()

    def loads(n: int) -> None:
        session = new()
        for _ in range(5):
            session.add_message("user", "x" * 70)
        session.save()
        for _ in range(n):
            store.load(session.id).get_history(last=20)

    long_id = ""

    def long_loads(n: int) -> None:
        """A 150-message conversation loaded for its last 20 (the first call makes it)."""
        nonlocal long_id
        if not long_id:
            session = new()
            for i in range(149):
                session.add_message("assistant" if i % 2 else "user", "x" * 70)
            session.save()
            long_id = session.id
        for _ in range(n):
            store.load(long_id).get_history(last=20)

    def creates(n: int) -> None:
        for _ in range(n):
            new()

    # (label, operation, how many are counted, how many go first): the long loads go after
    # more than an EPOCH of them, by when a load reads what the requests read (statemw._readahead)
    cases: list[tuple[str, Callable[[int], None], int, int]] = [
        ("turn (a new session every 10)", turns, ops, 3),
        ("commit, one message appended", appends, ops, 3),
        ("commit, one state key set", state_saves, ops, 3),
        ("create with one message", creates, ops // 3, 3),
        ("load, window of 20", loads, ops, 3),
        ("load 150 messages, last=20", long_loads, ops, 300),
    ]
    cases += [(label, repeated(op), ops, 3) for label, op in raw_operations(client)]
    print(f"{'operation':34s} {'instructions':>14s} {'commands':>9s}  (per operation)")
    for label, fn, n, warm in cases:
        fn(warm)
        client.config_resetstat()
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        fn(n)
        before = set(glob.glob(f"{tmp}/callgrind.out.*"))
        subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
        for _ in range(100):
            dumped = set(glob.glob(f"{tmp}/callgrind.out.*")) - before
            if dumped:
                break
            time.sleep(0.1)
        time.sleep(0.3)  # let the dump finish writing
        latest = max(dumped, key=os.path.getmtime)
        lines = Path(latest).read_text().splitlines()
        instructions = next(
            int(line.split()[1]) for line in lines if line.startswith(("summary:", "totals:"))
        )
        for path in dumped:
            os.remove(path)
        stats = client.info("commandstats")
        commands = sum(v["calls"] for k, v in stats.items() if k != "cmdstat_config|resetstat")
        print(f"{label:34s} {instructions / n / 1000:12.1f}k {commands / n:9.2f}")
    client.flushdb()
    store.close()


def repeated(op: Callable[[], object]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            op()

    return run


def commit_meta_fields() -> tuple[str, ...]:
    """The header fields lua.COMMIT reads with its one HMGET, read off the script itself, so the
    raw lines measure the same HMGET as the checkout measured."""
    found = re.search(r"local meta = redis\.call\('HMGET', h,([^)]*)\)", COMMIT)
    if found is None:
        raise SystemExit("lua.COMMIT no longer reads its header with one HMGET: update this script")
    return tuple(re.findall(r"'([^']+)'", found.group(1)))


def raw_operations(client: redis.Redis) -> list[tuple[str, Callable[[], object]]]:
    """What statemw's scripts are measured against: the peers' GET and SET, bench/web.py's raw
    floors, and the fixed costs of a script (the call, its msgpack arguments, one redis.call)."""
    client.rpush("raw:m", *[b"x" * 170] * 20)
    client.hset("raw:h", mapping={"_v": 1, "_mc": 20, "s:user": "bench"})
    nothing = client.register_script("return 1")
    unpack = client.register_script("local t = {cmsgpack.unpack(ARGV[1])} return 1")
    args = msgpack.packb(list(range(25)))
    commit_meta = commit_meta_fields()
    lua_meta = ", ".join(f"'{field}'" for field in commit_meta)
    hmget = client.register_script(f"return redis.call('HMGET', KEYS[1], {lua_meta})")

    def get_set() -> None:
        client.get("raw:k")
        client.set("raw:k", b"y" * 200, ex=100)

    def floor_read() -> None:
        pipe = client.pipeline()
        pipe.hgetall("raw:h")
        pipe.lrange("raw:m", 0, 19)
        pipe.execute()

    def floor_write() -> None:
        pipe = client.pipeline()
        pipe.rpush("raw:w", b"x" * 170)
        pipe.hset("raw:wh", "f", "v")
        pipe.expire("raw:w", 100)
        pipe.expire("raw:wh", 100)
        pipe.execute()

    # What the commit script does for one appended message, as plain commands in a MULTI (what
    # a commit without a script would cost Redis at least, merging nothing), and as a script of
    # just those calls on its msgpack arguments: the rest of a commit is the script's own logic.
    commit_calls = client.register_script(
        "local t = {cmsgpack.unpack(ARGV[1])}"
        f" redis.call('HMGET', KEYS[1], {lua_meta})"
        " redis.call('HSET', KEYS[1], '_rev', 5, '_ua', '1765000000.5', '_mc', 3, '_tt', 7)"
        " redis.call('RPUSH', KEYS[2], ARGV[2])"
        " redis.call('PEXPIRE', KEYS[1], 100000)"
        " redis.call('PEXPIRE', KEYS[2], 100000)"
        " redis.call('PUBLISH', KEYS[3], '5')"
    )

    def commit_writes() -> None:
        pipe = client.pipeline()
        pipe.hmget("raw:ch", commit_meta)
        pipe.hset("raw:ch", mapping={"_rev": 5, "_ua": "1765000000.5", "_mc": 3, "_tt": 7})
        pipe.rpush("raw:cm", b"x" * 170)
        pipe.pexpire("raw:ch", 100_000)
        pipe.pexpire("raw:cm", 100_000)
        pipe.publish("raw:cc", "5")
        pipe.execute()

    return [
        ("raw: PING", client.ping),
        ("raw: GET + SET of 200 bytes", get_set),
        ("raw: MULTI HGETALL + LRANGE 20", floor_read),
        ("raw: MULTI RPUSH, HSET, 2 EXPIRE", floor_write),
        ("raw: EVALSHA of 'return 1'", nothing),
        ("raw: EVALSHA unpacking 25 args", lambda: unpack(args=[args])),
        ("raw: EVALSHA HMGET of 11 fields", lambda: hmget(keys=["raw:h"])),
        ("raw: the commit's calls, MULTI", commit_writes),
        (
            "raw: the commit's calls, a script",
            lambda: commit_calls(keys=["raw:ch", "raw:cm", "raw:cc"], args=[args, b"x" * 170]),
        ),
    ]


if __name__ == "__main__":
    main()
