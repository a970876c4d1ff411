"""Decoded message records (and state values and entries), kept by their stored bytes.

A conversation's window is read on every turn, and all but the newest of its records were decoded
by the turn before (when this process served it). Keyed by the record's bytes, an entry cannot
go stale: the same bytes decode to the same message. Only plain (unencrypted) records are kept, so a
store with encryption at rest holds no decrypted message longer than a session does.

A large state is read whole on every load, so its plain values (and, on Redis, its stored
entries) are kept the same way, by a byte budget (KeptByBytes). What a backend keeps of whole
states (Redis's kept states, the unions of a key-value store's buckets) is held by key within a
budget (WeighedKeeping).
"""

from __future__ import annotations

from typing import TypeVar

from statemw.messages import MessageRecord, kind_of

V = TypeVar("V")

CAPACITY = 4096
"""Records kept per store in each of two generations: when the newest is full it becomes the
older one, and the older one is forgotten. A record read from the older one moves to the newest,
so what is still read survives; a store holds at most twice this many."""

LARGEST = 4096
"""Bytes: a larger record is decoded each time it is read."""

_SCALARS = frozenset({str, int, float, bool, type(None)})

OVERHEAD = 128
"""Bytes a kept value costs beyond the bytes it was decoded from (its slot in the map, the bytes
object, the value), counted against a KeptByBytes budget: many small values fill it too."""


class Generations(dict[bytes, V]):
    """Bytes -> what a pure decode made of them, in two generations: when the newest is full
    (`_full`), it becomes the older one and the older one is forgotten; what is read from the
    older one (`recall`) moves to the newest, so what is still read survives. The same bytes
    always decode the same way, so an entry cannot go stale. Lock-free: dict reads and writes
    are atomic, and a lost entry costs one decode."""

    __slots__ = ("older",)

    def __init__(self) -> None:
        super().__init__()
        self.older: dict[bytes, V] = {}

    def recall(self, data: bytes, default: V | None = None) -> V | None:
        """What the older generation holds for `data`, moved to the newest, else `default`."""
        older = self.older  # replaced, never changed: another thread's keep may swap it now
        if data not in older:
            return default
        value = older[data]
        self._add(data, value)
        return value

    def _full(self) -> bool:
        raise NotImplementedError

    def _emptied(self) -> None:
        """The newest generation just became the older one."""

    def _add(self, data: bytes, value: V) -> None:
        if self._full():
            self.older = dict(self)
            self.clear()
            self._emptied()
        self[data] = value


class DecodedMessages(Generations[MessageRecord]):
    """Record bytes -> the record decoded from them, shared by every session that reads those
    bytes: Codec.decode_message reads it as a dict (a hit is one lookup, no copy), and the older
    generation (`recall`) after a miss; at most `capacity` records in each. Nothing in statemw
    changes a record's message, and a session copies a shared one before code outside statemw
    gets it (MessageLog.messages), so no session sees another's change."""

    __slots__ = ("capacity",)

    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__()
        self.capacity = capacity

    def keep(self, data: bytes, record: MessageRecord) -> MessageRecord:
        """The record just decoded from `data`, kept and marked shared with its kind worked
        out; returned as it is when large, with nested content (lists, dicts: a copy of the
        message's dict would share them) or with a key that is not a plain str (one a save
        encodes and keeps at once, Codec.keep_encoded, would not decode as it is)."""
        if len(data) > LARGEST:
            return record
        for key, value in record.message.items():
            if type(value) not in _SCALARS or type(key) is not str:
                return record
        record.kind = kind_of(record.message)
        record.shared = True
        self._add(data, record)
        return record

    def _full(self) -> bool:
        return len(self) >= self.capacity


class KeptByBytes(Generations[V]):
    """What a pure decode made of the bytes it read lately (a state value, a stored entry), in
    generations of about `budget` bytes each (each value counted with `overhead` beyond its
    bytes): a hit is one lookup. Bytes over `largest` are not kept. Only what nobody changes is
    kept (shared by every session that reads those bytes)."""

    __slots__ = ("budget", "held", "largest", "overhead")

    def __init__(self, budget: int, largest: int = LARGEST, overhead: int = OVERHEAD) -> None:
        super().__init__()
        self.budget = budget
        self.largest = largest
        self.overhead = overhead
        self.held = 0

    def keep(self, data: bytes, value: V) -> V:
        """`value`, decoded from `data`, kept (unless `data` is large); returned as it is."""
        if len(data) <= self.largest:
            self._add(data, value)
        return value

    def _full(self) -> bool:
        return self.held > self.budget

    def _emptied(self) -> None:
        self.held = 0

    def _add(self, data: bytes, value: V) -> None:
        super()._add(data, value)
        self.held += len(data) + self.overhead


class WeighedKeeping(dict[str, V]):
    """Key -> a value counted by `weigh`, up to `budget` in all: past it the map starts afresh,
    and a value heavier than the whole budget is not kept. Lock-free: dict reads and writes are
    atomic, and a value lost to a race costs the work of making it again."""

    __slots__ = ("budget", "held")

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = budget
        self.held = 0

    def weigh(self, value: V) -> int:
        raise NotImplementedError

    def keep(self, key: str, value: V) -> None:
        self.drop(key)
        weight = self.weigh(value)
        if weight > self.budget:
            return
        if self.held + weight > self.budget:
            self.clear()
        self[key] = value
        self.held += weight

    def drop(self, key: str) -> None:
        """Forget what is kept under `key`."""
        value = self.pop(key, None)
        if value is not None:
            self.held -= self.weigh(value)

    def clear(self) -> None:
        super().clear()
        self.held = 0
