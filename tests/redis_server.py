"""Real redis-server processes for the tests: the shared one, and private ones a test may kill.

The shared server is 127.0.0.1:6379 when it answers PING, else one started from the
`redis-server` binary on a free loopback port. Each test run uses its own key prefix and deletes
its keys at the end. With CI=true and no Redis at all the run fails; elsewhere Redis tests skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import redis

RUN_PREFIX = f"statemw-test-{os.getpid()}-{uuid.uuid4().hex[:8]}:"
STARTUP_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too, and still a port."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


class RedisServer:
    """A redis-server child process on a loopback port, with its own directory."""

    def __init__(self, port: int | None = None, *extra: str) -> None:
        self.port = port or free_port()
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix="statemw-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--save", "", "--appendonly", "no", *self.extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_SECONDS
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: the server dies mid-whatever, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        self.kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_shared: tuple[str, RedisServer | None] | None = None


def shared_url() -> str:
    """The base URL of the shared server (started on first use)."""
    global _shared
    if _shared is None:
        if answers(6379):
            _shared = ("redis://127.0.0.1:6379/0", None)
        elif shutil.which("redis-server"):
            server = RedisServer().start()
            _shared = (server.url, server)
        elif os.environ.get("CI") == "true":
            pytest.fail("CI=true but no Redis: nothing answers on 6379 and no redis-server binary")
        else:
            pytest.skip("no Redis here (nothing on 127.0.0.1:6379, no redis-server binary)")
    return _shared[0]


def isolated_url(name: str) -> str:
    """A store URL on the shared server whose keys are this test's alone."""
    return f"{shared_url()}?key_prefix={RUN_PREFIX}{uuid.uuid4().hex[:12]}-{name[:40]}:"


def cleanup() -> None:
    """Delete this run's keys and stop a server this run started."""
    global _shared
    if _shared is None:
        return
    url, server = _shared
    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=RUN_PREFIX + "*", count=1000))
        for start in range(0, len(batch), 500):
            client.delete(*batch[start : start + 500])
    finally:
        client.close()
        if server is not None:
            server.remove()
        _shared = None


def raw_redis_values(backend: object) -> list[bytes]:
    """Every byte string a Redis store holds under its prefix (field names and values)."""
    from statemw.backends.redis.client import RedisBackend

    assert isinstance(backend, RedisBackend)
    client = backend.client
    out: list[bytes] = []
    for key in client.scan_iter(match=backend.layout.prefix + "*"):
        kind = client.type(key)
        if kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"zset":
            out += client.zrange(key, 0, -1)
        elif kind == b"string":
            value = client.get(key)
            if value is not None:  # expired since SCAN named it
                out.append(value)
        elif kind != b"none":  # b"none": expired since SCAN named it
            raise AssertionError(f"a Redis {kind!r} under the prefix: {key!r}")
    return out


def append_worker(url: str, session_id: str, worker: int, count: int) -> None:
    """One process of the multi-process test: `count` turns, each a load, an append, a save."""
    from statemw import Store

    store = Store(url)
    try:
        for i in range(count):
            session = store.load(session_id)
            session.add_message("user", f"w{worker}-{i}")
            session.save()
    finally:
        store.close()
