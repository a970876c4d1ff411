"""memory:// — one process, for tests and prototypes (still encoded, so tests mean something)."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from statemw.backends.kv import KVBackend


class MemoryKV:
    """A dict under one lock; a transaction buffers its writes and applies them only on success."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._local = threading.local()
        self._due: list[tuple[float, str]] = []  # a heap: when each record may have expired

    def _pending(self) -> dict[str, bytes | None] | None:
        return getattr(self._local, "pending", None)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            if self._pending() is not None:  # nested: the outer transaction commits
                yield
                return
            pending: dict[str, bytes | None] = {}
            self._local.pending = pending
            try:
                yield
            finally:
                self._local.pending = None
            for key, value in pending.items():
                if value is None:
                    self._data.pop(key, None)
                else:
                    self._data[key] = value

    def get(self, key: str) -> bytes | None:
        pending = self._pending()
        if pending is not None and key in pending:
            return pending[key]
        with self._lock:
            return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        with self.transaction():
            pending = self._pending()
            assert pending is not None
            pending[key] = value

    def delete(self, key: str) -> None:
        with self.transaction():
            pending = self._pending()
            assert pending is not None
            pending[key] = None

    def keys(self, prefix: str) -> Iterator[str]:
        with self._lock:
            keys = [k for k in self._data if k.startswith(prefix)]
        yield from keys

    def schedule(self, record_id: str, at: float) -> None:
        with self._lock:
            heapq.heappush(self._due, (at, record_id))

    def take_due(self, now: float, limit: int) -> list[str]:
        with self._lock:
            taken: list[str] = []
            while self._due and self._due[0][0] <= now and len(taken) < limit:
                taken.append(heapq.heappop(self._due)[1])
            return taken

    def scrub(self) -> None:
        pass  # a dict keeps nothing it dropped

    def close(self) -> None:
        pass


def open_memory() -> KVBackend:
    return KVBackend(MemoryKV())
