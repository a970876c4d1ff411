"""Start a demo app as a real server process on a free loopback port (for browser/restart tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class DemoServer:
    """`python -m examples.<app>` with its store in `data_dir`; restartable on the same data."""

    def __init__(self, app: str, data_dir: Path) -> None:
        self.app = app
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.clock_file = data_dir.parent / f"{data_dir.name}.clock"
        self.clock_offset = 0.0

    def advance_clock(self, seconds: float) -> None:
        """Move the server's store clock ahead (DEMO_CLOCK_FILE): time passes, nobody waits."""
        self.clock_offset += seconds
        self.clock_file.write_text(str(self.clock_offset))

    def start(self, timeout: float = 30.0) -> None:
        env = {
            **os.environ,
            "PORT": str(self.port),
            "STATEMW_URL": f"diskcache://{self.data_dir}",
            "DEMO_SECRET": "browser-test-secret",
            "DEMO_CLOCK_FILE": str(self.clock_file),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("OPENAI_BASE_URL", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"examples.{self.app}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"demo server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/api/state", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)  # the server is still starting; nothing to wait on but the port
        raise TimeoutError(f"demo server did not answer on {self.url} in {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
