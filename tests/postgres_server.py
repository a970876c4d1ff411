"""The PostgreSQL the tests use: 127.0.0.1:5432, user postgres (trust auth), database `test`.

Each Store gets a schema of its own (`isolated_url`), named with this run's prefix, so runs and
tests never see each other's rows; `cleanup()` drops this run's schemas at the end. With CI=true
and no server answering, the run fails; elsewhere PostgreSQL tests skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

BASE_URL = os.environ.get("STATEMW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RUN_PREFIX = f"t_{os.getpid()}_{uuid.uuid4().hex[:6]}_"

_checked: bool | None = None


def answers(url: str = BASE_URL) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error:
        return False
    return True


def base_url() -> str:
    """The server's URL, once it answered; fails under CI=true when it does not, else skips."""
    global _checked
    if _checked is None:
        _checked = answers()
    if not _checked:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL does not answer at {BASE_URL}")
        pytest.skip(f"no PostgreSQL here ({BASE_URL} does not answer)")
    return BASE_URL


BIN = (
    Path("/usr/lib/postgresql")
    / (
        sorted(os.listdir("/usr/lib/postgresql"))[-1]
        if os.path.isdir("/usr/lib/postgresql")
        else "-"
    )
    / "bin"
)


class PostgresServer:
    """A private PostgreSQL cluster on a free port, for tests that restart or kill a server
    (the shared one on 5432 is never touched). Runs as the `postgres` user when we are root."""

    def __init__(self) -> None:
        from tests.redis_server import free_port

        if not (BIN / "initdb").exists():
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI=true but no PostgreSQL server binaries in {BIN}")
            pytest.skip(f"no PostgreSQL server binaries in {BIN}")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="statemw-pg-"))
        self._pg(
            "initdb",
            "-D",
            str(self.dir / "data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(BIN / tool), *args]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _ctl(self, action: str, *args: str) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        data = str(self.dir / "data")
        self._pg(
            "pg_ctl", action, "-D", data, "-w", "-o", options, "-l", str(self.dir / "log"), *args
        )

    def start(self) -> PostgresServer:
        self._ctl("start")
        return self

    def restart(self) -> None:
        """A fast shutdown (sessions are ended, transactions rolled back), then start again."""
        self._ctl("restart", "-m", "fast")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # not running
            self._ctl("stop", "-m", "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def new_schema() -> str:
    return f"{RUN_PREFIX}{uuid.uuid4().hex[:10]}"


def isolated_url(**options: Any) -> str:
    """A store URL whose tables live in a schema of their own (made on first use)."""
    query = "&".join(f"{k}={v}" for k, v in {"schema": new_schema(), **options}.items())
    return f"{base_url()}?{query}"


def execute(statement: str, url: str = BASE_URL) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (tests poke at rows with it)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement.encode())
        return cursor.fetchall() if cursor.description is not None else []


def raw_postgres_values(backend: object) -> list[bytes]:
    """Every value a PostgreSQL store holds: each column of each row of its schema's tables."""
    import psycopg

    from statemw.backends.postgres import PostgresBackend

    assert isinstance(backend, PostgresBackend)
    out: list[bytes] = []

    def collect(value: object) -> None:
        if isinstance(value, bytes):
            out.append(value)
        elif isinstance(value, list):
            for item in value:
                collect(item)
        elif value is not None:
            out.append(str(value).encode())

    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        for table in ("sessions", "state", "messages", "vectors"):
            statement = f'SELECT * FROM "{backend.settings.schema}".{table}'
            for row in conn.execute(statement.encode(), binary=True).fetchall():
                collect(list(row))
    return out


def cleanup() -> None:
    """Drop every schema this run made."""
    if not _checked:
        return
    rows = execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE '"
        + RUN_PREFIX.replace("_", r"\_")
        + "%'"
    )
    for (name,) in rows:
        execute(f'DROP SCHEMA "{name}" CASCADE')


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
