"""A dict that remembers what changed: the state of a session and of a user.

Every mutating method marks the mapping modified and records the key, so a save sends only those
keys. A mutable value handed out (`session["cart"].append(x)`) is remembered as *lent*, with its
encoding at that moment; a save compares only lent values with their encoding, so finding what
changed costs what the request touched, not the size of the state. Keys may carry an expiry time
(`set(key, value, ttl=...)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from statemw.codec import STORABLE, pack
from statemw.errors import InvalidValue, LimitExceeded, UnencodableValue

_MISSING: Any = object()
Clock = Callable[[], float]

IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, datetime, date, UUID, Decimal})
"""Value types that cannot change in place, so handing them out needs no watching."""


class TrackedState(dict[str, Any]):
    """dict subclass (so json.dumps, dict() and JSONResponse work) that tracks its changes."""

    # slots: a session is built on every request, and a __dict__ of this many attributes
    # costs more to fill than the rest of its construction
    __slots__ = (
        "_clock",
        "_deleted",
        "_expiry",
        "_forced",
        "_lent",
        "_max_value_bytes",
        "_next_expiry",
        "_saved_changes",
        "_size",
        "_sizes",
        "_touched",
        "accessed",
    )
    _clock: Clock

    def _init_tracking(
        self,
        values: Mapping[str, Any],
        clock: Clock,
        *,
        expiry: Mapping[str, float] | None = None,
        sizes: Mapping[str, int] | None = None,
        max_value_bytes: int | None = None,
    ) -> None:
        """Fill with loaded values; `expiry`: key -> expires_at (keys with a TTL); `sizes`: key ->
        bytes as stored (for the state size limit)."""
        dict.clear(self)
        dict.update(self, values)
        self._expiry: dict[str, float] = dict(expiry or {})
        self._next_expiry = min(self._expiry.values(), default=math.inf)
        self._sizes: dict[str, int] = dict(sizes or {})
        self._size = sum(self._sizes.values())
        self._touched: dict[str, None] = {}  # in the order written, so the store keeps it
        self._deleted: set[str] = set()
        self._lent: dict[str, bytes] = {}
        self._clock = clock
        self._max_value_bytes = max_value_bytes
        self._forced = False
        self._saved_changes = False
        self.accessed = False

    # -- change tracking ---------------------------------------------------------------------

    @property
    def modified(self) -> bool:
        """True once anything was written since load, saved or not, as Flask's and Starlette's
        sessions mean it. Set it to True to force a save (Flask's idiom)."""
        return self._saved_changes or self.unsaved

    @modified.setter
    def modified(self, value: bool) -> None:
        self._forced = value

    @property
    def unsaved(self) -> bool:
        """True when a save would write something now."""
        return self._forced or bool(self._touched or self._deleted) or self._mutated_in_place()

    @property
    def forced(self) -> bool:
        """`modified = True` was set: save even when nothing else changed."""
        return self._forced

    def _mutated_in_place(self) -> bool:
        if not self._lent:
            return False
        return any(
            _packs_differently(dict.get(self, key, _MISSING), packed)
            for key, packed in self._lent.items()
        )

    def _lend(self, key: str, value: Any) -> Any:
        """Hand a value out; a mutable one is remembered with its encoding, to see changes."""
        if type(value) not in IMMUTABLE and key not in self._lent and key not in self._touched:
            try:
                self._lent[key] = pack(value)
            except (TypeError, OverflowError, ValueError):
                self._lent[key] = b""  # cannot tell: it will be written
        return value

    def _lend_all(self) -> None:
        for key, value in dict.items(self):
            self._lend(key, value)

    def _touch(self, key: str) -> None:
        if not isinstance(key, str):
            raise InvalidValue(f"state keys are strings, got {type(key).__name__}: {key!r}")
        self._touched[key] = None
        self._deleted.discard(key)
        self._lent.pop(key, None)
        if self._expiry.pop(key, None) is not None:
            self._next_expiry = min(self._expiry.values(), default=math.inf)

    def _check(self, key: str, value: Any) -> None:
        try:
            size = len(pack(value))
        except (TypeError, OverflowError, ValueError) as exc:
            raise UnencodableValue(
                f"state key {key!r}: cannot store {type(value).__name__} ({exc}); store {STORABLE}"
            ) from exc
        if self._max_value_bytes is not None and size > self._max_value_bytes:
            raise LimitExceeded(
                f"state key {key!r}: value is {size} bytes, over max_value_bytes="
                f"{self._max_value_bytes}"
            )

    def changes(self) -> tuple[dict[str, tuple[Any, float | None]], list[str]]:
        """Keys to write (value, expires_at) and keys to delete since load (pure). Costs what was
        written or handed out, not the size of the state."""
        self._drop_expired()
        sets: dict[str, tuple[Any, float | None]] = {}
        for key in self._touched:
            sets[key] = (dict.__getitem__(self, key), self._expiry.get(key))
        for key, packed in self._lent.items():
            value = dict.get(self, key, _MISSING)
            if value is not _MISSING and _packs_differently(value, packed):
                sets[key] = (value, self._expiry.get(key))
        return sets, sorted(self._deleted)

    def size_after(self, written: Mapping[str, int], deleted: list[str]) -> int:
        """Bytes the state takes as stored once `written` (key -> size) and `deleted` land."""
        sizes = self._sizes
        replaced = sum(sizes.get(k, 0) for k in written) + sum(sizes.get(k, 0) for k in deleted)
        return self._size - replaced + sum(written.values())

    def mark_committed(self, written: Mapping[str, int], deleted: list[str]) -> None:
        """After a save: what was written is the baseline now."""
        self._size = self.size_after(written, deleted)
        for key in deleted:
            self._sizes.pop(key, None)
        self._sizes.update(written)
        self._saved_changes = True
        self._touched.clear()
        self._deleted.clear()
        self._lent.clear()
        self._forced = False

    # -- expiry ------------------------------------------------------------------------------

    def _drop_expired(self) -> None:
        if self._next_expiry > self._clock():
            return
        now = self._clock()
        for key in [k for k, exp in self._expiry.items() if exp <= now]:
            del self._expiry[key]
            self._lent.pop(key, None)
            dict.pop(self, key, None)
            if key in self._touched:  # an unsaved write expired: what it replaced is gone too
                del self._touched[key]
                self._deleted.add(key)
        self._next_expiry = min(self._expiry.values(), default=math.inf)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store a value; with `ttl` (seconds) it is gone after that long, also from the store."""
        if ttl is not None and ttl <= 0:
            raise InvalidValue(f"ttl must be positive seconds, got {ttl!r}")
        self[key] = value
        if ttl is not None:
            expires_at = self._clock() + ttl
            self._expiry[key] = expires_at
            self._next_expiry = min(self._next_expiry, expires_at)

    def expires_at(self, key: str) -> float | None:
        """When a key set with a ttl expires (clock seconds), None for lasting keys."""
        return self._expiry.get(key)

    # -- reads (expired keys vanish; mutable values handed out are watched) -------------------

    def __getitem__(self, key: str) -> Any:
        self.accessed = True
        self._drop_expired()
        return self._lend(key, dict.__getitem__(self, key))

    def get(self, key: str, default: Any = None) -> Any:
        self.accessed = True
        self._drop_expired()
        value = dict.get(self, key, _MISSING)
        return default if value is _MISSING else self._lend(key, value)

    def __contains__(self, key: object) -> bool:
        self._drop_expired()
        return dict.__contains__(self, key)

    def __iter__(self) -> Iterator[str]:
        self._drop_expired()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._drop_expired()
        return dict.__len__(self)

    def keys(self) -> Any:
        self._drop_expired()
        return dict.keys(self)

    def items(self) -> Any:
        self._drop_expired()
        self._lend_all()
        return dict.items(self)

    def values(self) -> Any:
        self._drop_expired()
        self._lend_all()
        return dict.values(self)

    # -- writes (all tracked) ----------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key, value)
        self._touch(key)
        self.accessed = True
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self.accessed = True
        self._drop_expired()
        dict.__delitem__(self, key)
        self._touched.pop(key, None)
        self._lent.pop(key, None)
        self._expiry.pop(key, None)
        self._deleted.add(key)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> TrackedState:  # type: ignore[override]
        self.update(other)
        return self

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self[key] = default
        return default

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        if key in self:
            value = dict.__getitem__(self, key)
            del self[key]
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def popitem(self) -> tuple[str, Any]:
        self._drop_expired()
        key, value = dict.popitem(self)
        dict.__setitem__(self, key, value)
        del self[key]
        return key, value

    def clear(self) -> None:
        for key in list(dict.keys(self)):
            del self[key]

    def __reduce__(self) -> Any:  # pickles and copies as a plain dict
        return (dict, (dict(self),))

    def copy(self) -> dict[str, Any]:
        return dict(self)

    def __or__(self, other: Any) -> dict[str, Any]:  # type: ignore[override]
        return {**self, **dict(other)}


def _packs_differently(value: Any, packed: bytes) -> bool:
    if value is _MISSING:
        return False
    try:
        return pack(value) != packed
    except (TypeError, OverflowError, ValueError):
        return True
