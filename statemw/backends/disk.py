"""diskcache:///path — the embedded default: one machine, many processes, survives restarts.

diskcache keeps each key in SQLite (large values in files); `Cache.transact()` holds SQLite's
write lock across a save, so processes sharing the directory commit one at a time.

Async code runs a call in the event loop itself when it cannot wait: with `nonblocking()` the
call uses a second connection whose SQLite busy timeout is zero, so where another process holds
the write lock it raises WouldBlock at once (before writing anything) and the caller runs it in
a worker thread instead. A read or a save that meets no lock costs no thread hop.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import diskcache

from statemw import _report
from statemw.backends.base import WouldBlock
from statemw.backends.kv import KVBackend
from statemw.errors import StoreUnavailable

_FAULTS = (OSError, sqlite3.Error, diskcache.Timeout)
POLL_INTERVAL = 0.2
"""store.subscribe re-reads a session's header this often: other processes write here too."""

_inline: ContextVar[bool] = ContextVar("statemw_disk_inline", default=False)


class DiskKV:
    """The KV primitives over a diskcache.Cache, opened (and the directory made) on first use."""

    def __init__(self, directory: str, timeout: float = 60.0) -> None:
        self.directory = directory
        self.timeout = timeout
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
        with self._faults():
            return diskcache.Cache(self.directory, timeout=timeout, eviction_policy="none")

    @contextmanager
    def _faults(self) -> Iterator[None]:
        """SQLite and file-system failures surface as the one StoreUnavailable apps map to 503;
        a lock met in nonblocking mode as WouldBlock."""
        try:
            yield
        except (diskcache.Timeout, sqlite3.OperationalError) as exc:
            if _inline.get() and (isinstance(exc, diskcache.Timeout) or "locked" in str(exc)):
                raise WouldBlock from exc
            raise self._unavailable(exc) from exc
        except _FAULTS as exc:
            raise self._unavailable(exc) from exc
        if self.health.down:
            self.health.recovered()

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        error = StoreUnavailable(f"diskcache {self.directory!r}: {exc}")
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

    def close(self) -> None:
        for cache in (self._waiting, self._at_once):
            if cache is not None:
                cache.close()


def open_disk(directory: str, **options: Any) -> tuple[KVBackend, DiskKV]:
    """`options`: timeout (seconds a save waits for another process's transaction)."""
    kv = DiskKV(directory, **options)
    return KVBackend(kv, poll_interval=POLL_INTERVAL), kv
