"""diskcache:///path — the embedded default: one machine, many processes, survives restarts.

diskcache keeps each key in SQLite (large values in files); `Cache.transact()` holds SQLite's
write lock across a save, so processes sharing the directory commit one at a time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import diskcache

from statemw.backends.kv import KVBackend
from statemw.errors import StoreUnavailable

_FAULTS = (OSError, sqlite3.Error, diskcache.Timeout)
POLL_INTERVAL = 0.2
"""store.subscribe re-reads a session's header this often: other processes write here too."""


@contextmanager
def _faults(directory: str) -> Iterator[None]:
    """SQLite and file-system failures surface as the one StoreUnavailable apps map to 503."""
    try:
        yield
    except _FAULTS as exc:
        raise StoreUnavailable(f"diskcache {directory!r}: {exc}") from exc


class DiskKV:
    """The KV primitives over a diskcache.Cache, opened (and the directory made) on first use."""

    def __init__(self, directory: str, timeout: float = 60.0) -> None:
        self.directory = directory
        self.timeout = timeout
        self._opened: Any = None

    @property
    def _cache(self) -> Any:
        if self._opened is None:
            with _faults(self.directory):
                self._opened = diskcache.Cache(
                    self.directory, timeout=self.timeout, eviction_policy="none"
                )
        return self._opened

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with _faults(self.directory), self._cache.transact(retry=True):
            yield

    def get(self, key: str) -> bytes | None:
        with _faults(self.directory):
            value: bytes | None = self._cache.get(key, retry=True)
        return value

    def set(self, key: str, value: bytes) -> None:
        with _faults(self.directory):
            self._cache.set(key, value, retry=True)

    def delete(self, key: str) -> None:
        with _faults(self.directory):
            self._cache.delete(key, retry=True)

    def keys(self, prefix: str) -> Iterator[str]:
        with _faults(self.directory):
            keys = [k for k in self._cache.iterkeys() if isinstance(k, str)]
        yield from (k for k in keys if k.startswith(prefix))

    def close(self) -> None:
        if self._opened is not None:
            self._opened.close()


def open_disk(directory: str, **options: Any) -> KVBackend:
    """`options`: timeout (seconds a save waits for another process's transaction)."""
    return KVBackend(DiskKV(directory, **options), poll_interval=POLL_INTERVAL)
