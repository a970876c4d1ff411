"""A Redis Cluster on loopback for the bench scripts: N masters (and R replicas each) started
from the `redis-server` binary, joined with `redis-cli --cluster create`, removed at the end.

    with LocalCluster(masters=3, replicas=1, appendfsync="always") as cluster:
        store = Store(cluster.url)
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

STARTUP_SECONDS = 20.0


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class Node:
    """One redis-server process of the cluster, in a directory of its own."""

    def __init__(self, port: int, extra: list[str]) -> None:
        self.port = port
        self.dir = Path(tempfile.mkdtemp(prefix="statemw-cluster-"))
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--save", ""]
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            args + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def info(self, section: str) -> dict[str, str]:
        client = self.client()
        try:
            text = client.execute_command("INFO", section)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        if isinstance(text, dict):
            return {k: str(v) for k, v in text.items()}
        return dict(line.split(":", 1) for line in text.decode().splitlines() if ":" in line)

    def kill(self) -> None:
        """SIGKILL: the process dies mid-write, as a crashed machine would."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def answers(port: int) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


class LocalCluster:
    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        *,
        appendfsync: str | None = None,
        node_timeout_ms: int = 2000,
        maxmemory: str | None = None,
        full_coverage: bool = True,
    ) -> None:
        self.masters, self.replicas = masters, replicas
        extra = ["--cluster-node-timeout", str(node_timeout_ms)]
        if appendfsync is None:
            extra += ["--appendonly", "no"]
        else:
            extra += ["--appendonly", "yes", "--appendfsync", appendfsync]
        if not full_coverage:  # the other shards keep serving while one shard has no master
            extra += ["--cluster-require-full-coverage", "no"]
        if maxmemory is not None:
            extra += ["--maxmemory", maxmemory]
        self.extra = extra
        self.nodes: list[Node] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def start(self) -> None:
        count = self.masters * (1 + self.replicas)
        self.nodes = [Node(free_cluster_port(), self.extra) for _ in range(count)]
        deadline = time.monotonic() + STARTUP_SECONDS
        for node in self.nodes:
            while not answers(node.port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {node.port} did not start")
                time.sleep(0.05)
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [
                *("redis-cli", "--cluster", "create", *addresses),
                *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.wait_ok(deadline=time.monotonic() + 60)

    def live(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None]

    def wait_ok(self, deadline: float) -> float:
        """Wait until every live node says cluster_state:ok and every master has its replicas
        in sync; the seconds waited."""
        start = time.monotonic()
        while True:
            try:
                if all(self._ok(node) for node in self.live()):
                    return time.monotonic() - start
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ready")
            time.sleep(0.05)

    def _ok(self, node: Node) -> bool:
        if node.info("cluster").get("cluster_enabled") != "1":
            return False
        client = node.client()
        try:
            state = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        finally:
            client.close()
        if b"cluster_state:ok" not in state:
            return False
        replication = node.info("replication")
        if replication.get("role") == "master":
            return int(replication.get("connected_slaves", "0")) >= self._expected_replicas()
        return replication.get("master_link_status") == "up"

    def _expected_replicas(self) -> int:
        # after a failover the dead master's shard has one replica fewer until it comes back
        return 0 if len(self.live()) < len(self.nodes) else self.replicas

    def master_ports(self) -> list[int]:
        return [n.port for n in self.live() if n.info("replication").get("role") == "master"]

    def node(self, port: int) -> Node:
        return next(n for n in self.nodes if n.port == port)

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()
