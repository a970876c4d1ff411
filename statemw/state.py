"""A dict that remembers what changed: the state of a session and of a user.

Every mutating method marks the mapping modified and records the key, so a save sends only those
keys. A value mutated in place (`session["cart"].append(x)`) is caught at save time by comparing
its encoding with the one loaded. Keys may carry an expiry time (`set(key, value, ttl=...)`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from statemw.codec import pack
from statemw.errors import InvalidValue, LimitExceeded, UnencodableValue
from statemw.records import Entry

_MISSING: Any = object()
Clock = Callable[[], float]


class TrackedState(dict[str, Any]):
    """dict subclass (so json.dumps, dict() and JSONResponse work) that tracks its changes."""

    _clock: Clock

    def _init_tracking(
        self,
        entries: Mapping[str, tuple[Any, bytes, float | None]],
        clock: Clock,
        *,
        max_value_bytes: int | None = None,
    ) -> None:
        """Fill with loaded values: key -> (value, its plain encoding, expires_at)."""
        dict.clear(self)
        dict.update(self, {k: v for k, (v, _, _) in entries.items()})
        self._baseline: dict[str, bytes] = {k: b for k, (_, b, _) in entries.items()}
        self._expiry: dict[str, float] = {
            k: exp for k, (_, _, exp) in entries.items() if exp is not None
        }
        self._touched: set[str] = set()
        self._deleted: set[str] = set()
        self._clock = clock
        self._max_value_bytes = max_value_bytes
        self._forced = False

    # -- change tracking ---------------------------------------------------------------------

    @property
    def modified(self) -> bool:
        """True once anything was written (or set to True to force a save of this state)."""
        return self._forced or bool(self._touched or self._deleted) or self._mutated_in_place()

    @modified.setter
    def modified(self, value: bool) -> None:
        self._forced = value

    def _mutated_in_place(self) -> bool:
        for key, value in dict.items(self):
            if key not in self._touched and _packs_differently(value, self._baseline.get(key)):
                return True
        return False

    def _touch(self, key: str) -> None:
        if not isinstance(key, str):
            raise InvalidValue(f"state keys are strings, got {type(key).__name__}: {key!r}")
        self._touched.add(key)
        self._deleted.discard(key)
        self._expiry.pop(key, None)

    def _check(self, key: str, value: Any) -> None:
        try:
            size = len(pack(value))
        except (TypeError, OverflowError, ValueError) as exc:
            raise UnencodableValue(
                f"state key {key!r}: cannot store {type(value).__name__} ({exc}); store plain "
                "data: None, bool, int, float, str, bytes, and lists and dicts of them"
            ) from exc
        if self._max_value_bytes is not None and size > self._max_value_bytes:
            raise LimitExceeded(
                f"state key {key!r}: value is {size} bytes, over max_value_bytes="
                f"{self._max_value_bytes}"
            )

    def changes(self, now: float) -> tuple[dict[str, tuple[Any, float | None]], list[str], int]:
        """Keys to write (value, expires_at), keys to delete since load, and the encoded size of
        the whole state (pure). Each value is encoded once, for both the comparison and the size."""
        sets: dict[str, tuple[Any, float | None]] = {}
        size = 0
        for key, value in dict.items(self):
            try:
                packed: bytes | None = pack(value)
            except (TypeError, OverflowError, ValueError):
                packed = None  # written, so the codec names the key in its error
            size += 0 if packed is None else len(packed)
            if key in self._touched or packed is None or packed != self._baseline.get(key):
                sets[key] = (value, self._expiry.get(key))
        return sets, sorted(self._deleted), size

    def mark_committed(self) -> None:
        self._baseline = {k: pack(v) for k, v in dict.items(self)}
        self._touched.clear()
        self._deleted.clear()
        self._forced = False

    # -- expiry ------------------------------------------------------------------------------

    def _drop_expired(self) -> None:
        if self._expiry:
            now = self._clock()
            for key in [k for k, exp in self._expiry.items() if exp <= now]:
                del self._expiry[key]
                self._baseline.pop(key, None)
                dict.pop(self, key, None)
                if key in self._touched:  # an unsaved write expired: what it replaced is gone too
                    self._touched.discard(key)
                    self._deleted.add(key)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store a value; with `ttl` (seconds) it is gone after that long, also from the store."""
        if ttl is not None and ttl <= 0:
            raise InvalidValue(f"ttl must be positive seconds, got {ttl!r}")
        self[key] = value
        if ttl is not None:
            self._expiry[key] = self._clock() + ttl

    def expires_at(self, key: str) -> float | None:
        """When a key set with a ttl expires (clock seconds), None for lasting keys."""
        return self._expiry.get(key)

    # -- reads (expired keys vanish) ---------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        self._drop_expired()
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        self._drop_expired()
        return dict.get(self, key, default)

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
        return dict.items(self)

    def values(self) -> Any:
        self._drop_expired()
        return dict.values(self)

    # -- writes (all tracked) ----------------------------------------------------------------

    def __setitem__(self, key: str, value: Any) -> None:
        self._check(key, value)
        self._touch(key)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        self._drop_expired()
        dict.__delitem__(self, key)
        self._touched.discard(key)
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
            return dict.__getitem__(self, key)
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


def _packs_differently(value: Any, baseline: bytes | None) -> bool:
    if baseline is None:
        return True
    try:
        return pack(value) != baseline
    except (TypeError, OverflowError, ValueError):
        return True


def plain_entries(
    entries: Mapping[str, Entry], decode: Callable[[bytes], Any], now: float
) -> dict[str, tuple[Any, bytes, float | None]]:
    """Decode loaded entries into (value, plain encoding, expires_at), skipping expired ones."""
    out: dict[str, tuple[Any, bytes, float | None]] = {}
    for key, entry in entries.items():
        if entry.live(now):
            value = decode(entry.value)
            out[key] = (value, pack(value), entry.expires_at)
    return out
