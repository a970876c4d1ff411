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


class DiskKV:
    def __init__(self, directory: str, timeout: float = 60.0) -> None:
        try:
            self._cache: Any = diskcache.Cache(directory, timeout=timeout, eviction_policy="none")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open diskcache directory {directory!r}: {exc}") from exc
        self.directory = directory

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self._cache.transact(retry=True):
                yield
        except (sqlite3.OperationalError, diskcache.Timeout) as exc:
            raise StoreUnavailable(f"diskcache {self.directory!r}: {exc}") from exc

    def get(self, key: str) -> bytes | None:
        value: bytes | None = self._cache.get(key, retry=True)
        return value

    def set(self, key: str, value: bytes) -> None:
        self._cache.set(key, value, retry=True)

    def delete(self, key: str) -> None:
        self._cache.delete(key, retry=True)

    def keys(self, prefix: str) -> Iterator[str]:
        for key in self._cache.iterkeys():
            if isinstance(key, str) and key.startswith(prefix):
                yield key

    def close(self) -> None:
        self._cache.close()


def open_disk(directory: str) -> KVBackend:
    return KVBackend(DiskKV(directory))
