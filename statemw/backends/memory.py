"""memory:// — one process, for tests and prototypes (still encoded, so tests mean something)."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator
from types import TracebackType

from statemw.backends.kv import KVBackend


class MemoryKV:
    """A dict under one lock; a transaction buffers its writes and applies them only on success."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.RLock()
        self._local = threading.local()  # .pending: the writes of this thread's transaction
        self._due: list[tuple[float, str]] = []  # a heap: when each record may have expired

    def transaction(self) -> _Transaction:
        return _Transaction(self)

    def get(self, key: str) -> bytes | None:
        pending: dict[str, bytes | None] | None = getattr(self._local, "pending", None)
        if pending is not None and key in pending:
            return pending[key]
        with self._lock:  # never in the middle of another thread's commit
            return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending[key] = value
        else:
            with self._lock:
                self._data[key] = value

    def delete(self, key: str) -> None:
        pending = getattr(self._local, "pending", None)
        if pending is not None:
            pending[key] = None
        else:
            with self._lock:
                self._data.pop(key, None)

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


class _Transaction:
    """Holds the lock; the outermost one applies the buffered writes when its block succeeds."""

    __slots__ = ("_kv", "_outermost")

    def __init__(self, kv: MemoryKV) -> None:
        self._kv = kv
        self._outermost = False

    def __enter__(self) -> None:
        kv = self._kv
        kv._lock.acquire()
        if getattr(kv._local, "pending", None) is None:
            kv._local.pending = {}
            self._outermost = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        kv = self._kv
        try:
            if self._outermost:
                pending: dict[str, bytes | None] = kv._local.pending
                kv._local.pending = None
                if exc_type is None:
                    data = kv._data
                    for key, value in pending.items():
                        if value is None:
                            data.pop(key, None)
                        else:
                            data[key] = value
        finally:
            kv._lock.release()


def open_memory() -> KVBackend:
    return KVBackend(MemoryKV())
