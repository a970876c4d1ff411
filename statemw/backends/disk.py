"""diskcache:///path — the embedded default: one machine, many processes, survives restarts.

diskcache keeps each key in SQLite (large values in files); `Cache.transact()` holds SQLite's
write lock across a save, so processes sharing the directory commit one at a time.

Async code runs a call in the event loop itself when it cannot wait: with `nonblocking()` the
call uses a second connection whose SQLite busy timeout is zero, so where another process holds
the write lock it raises WouldBlock at once (before writing anything) and the caller runs it in
a worker thread instead. A read or a save that meets no lock costs no thread hop.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import diskcache

from statemw import _report
from statemw.backends.base import WouldBlock
from statemw.backends.kv import KVBackend
from statemw.errors import ConfigurationError, StoreUnavailable

_FAULTS = (OSError, sqlite3.Error, diskcache.Timeout)
POLL_INTERVAL = 0.2
"""store.subscribe re-reads a session's header this often: other processes write here too."""

_inline: ContextVar[bool] = ContextVar("statemw_disk_inline", default=False)


DBNAME = "cache.db"
SETTINGS = {"eviction_policy": "none", "sqlite_secure_delete": 1}
"""secure_delete: SQLite overwrites what it deletes, so a removed record leaves no bytes in the
database's pages (scrub() then clears the WAL)."""
_SCHEDULE = (
    "CREATE TABLE IF NOT EXISTS statemw_expiry (sid TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS statemw_expiry_at ON statemw_expiry (at)",
)


class DiskKV:
    """The KV primitives over a diskcache.Cache, opened (and the directory made) on first use.

    `create=False`: use only a store that exists; a directory without one raises
    ConfigurationError and nothing is created (the CLI looks into stores, it never makes one).
    `timeout`: seconds to wait for another process's lock, when opening too."""

    def __init__(self, directory: str, timeout: float = 60.0, create: bool = True) -> None:
        self.directory = directory
        self.timeout = timeout
        self.create = create
        self.health = _report.health(f"diskcache {directory!r}")
        self._waiting: Any = None  # waits up to `timeout` for another writer
        self._at_once: Any = None  # gives up at once (nonblocking mode)

    @contextmanager
    def nonblocking(self) -> Iterator[None]:
        """Calls inside raise WouldBlock instead of waiting for another process's lock."""
        token = _inline.set(True)
        try:
            yield
        finally:
            _inline.reset(token)

    @property
    def _cache(self) -> Any:
        if _inline.get():
            if self._at_once is None:
                self._at_once = self._open(0.0)
            return self._at_once
        if self._waiting is None:
            self._waiting = self._open(self.timeout)
        return self._waiting

    def _open(self, timeout: float) -> Any:
        path = os.path.join(self.directory, DBNAME)
        if not self.create and not os.path.isfile(path):
            raise ConfigurationError(f"no store at diskcache://{self.directory} (no {path})")
        with self._faults():
            self._wait_for_lock(path, timeout)
            cache = diskcache.Cache(self.directory, timeout=timeout, **SETTINGS)
            for statement in _SCHEDULE:
                cache._con.execute(statement)
            return cache

    @staticmethod
    def _wait_for_lock(path: str, timeout: float) -> None:
        """Wait up to `timeout` for another process's write lock before diskcache opens the
        cache: opening writes its settings, and diskcache retries that for 60 s whatever the
        timeout. Raises sqlite3's "database is locked" when the wait runs out."""
        if not os.path.isfile(path):
            return
        con = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
        finally:
            con.close()

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """SQLite and file-system failures surface as the one StoreUnavailable apps map to 503;
        a lock met in nonblocking mode as WouldBlock."""
        try:
            yield
        except (diskcache.Timeout, sqlite3.OperationalError) as exc:
            locked = isinstance(exc, diskcache.Timeout) or "locked" in str(exc)
            if _inline.get() and locked:
                raise WouldBlock from exc
            if locked:
                message = f"is locked by another process (gave up after {self.timeout:g} s)"
                raise self._unavailable(exc, message) from exc
            raise self._unavailable(exc) from exc
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        if self.health.down:
            self.health.recovered()

    def _unavailable(self, exc: BaseException, message: str | None = None) -> StoreUnavailable:
        what = f"diskcache {self.directory!r}"
        error = StoreUnavailable(f"{what} {message}" if message else f"{what}: {exc}")
        self.health.failed(error)  # an outage is logged once, its end too
        return error

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._faults(), self._cache.transact(retry=not _inline.get()):
            yield

    def get(self, key: str) -> bytes | None:
        with self._faults():
            value: bytes | None = self._cache.get(key, retry=not _inline.get())
        return value

    def set(self, key: str, value: bytes) -> None:
        with self._faults():
            self._cache.set(key, value, retry=not _inline.get())

    def delete(self, key: str) -> None:
        with self._faults():
            self._cache.delete(key, retry=not _inline.get())

    def keys(self, prefix: str) -> Iterator[str]:
        with self._faults():
            keys = [k for k in self._cache.iterkeys() if isinstance(k, str)]
        yield from (k for k in keys if k.startswith(prefix))

    # The expiry schedule: a table of our own in diskcache's database, written through the
    # cache's connection (diskcache.Cache._con, the one its transact() holds), so scheduling a
    # new session is part of the save's transaction.

    def schedule(self, record_id: str, at: float) -> None:
        with self._faults():
            self._cache._con.execute(
                "INSERT OR REPLACE INTO statemw_expiry (sid, at) VALUES (?, ?)", (record_id, at)
            )

    def take_due(self, now: float, limit: int) -> list[str]:
        with self._faults():
            con = self._cache._con
            rows = con.execute(
                "SELECT sid FROM statemw_expiry WHERE at <= ? ORDER BY at LIMIT ?", (now, limit)
            ).fetchall()
            con.executemany("DELETE FROM statemw_expiry WHERE sid = ?", rows)
        return [str(sid) for (sid,) in rows]

    def scrub(self) -> None:
        """Write the WAL back and truncate it: what was deleted leaves no bytes in any file."""
        with self._faults():
            self._cache._con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        for cache in (self._waiting, self._at_once):
            if cache is not None:
                cache.close()


def open_disk(directory: str, **options: Any) -> tuple[KVBackend, DiskKV]:
    """`options`: timeout (seconds a save waits for another process's transaction), create
    (False: only open a store that exists)."""
    kv = DiskKV(directory, **options)
    return KVBackend(kv, name="diskcache", poll_interval=POLL_INTERVAL), kv
