"""A dict that remembers what changed: the state of a session and of a user.

Every mutating method marks the mapping modified and records the key, so a save sends only those
keys. A mutable value handed out (`session["cart"].append(x)`) is remembered as *lent*, with its
encoding at that moment; a save compares only lent values with their encoding, so finding what
changed costs what the request touched, not the size of the state. Keys may carry an expiry time
(`set(key, value, ttl=...)`) and a time after which they are due for a check
(`set(key, value, confirm_after=...)`: the value stays, but `stale_keys()` lists it until it is
set again or confirmed).

One module, past 400 lines, because it is one idea: the dict and its change tracking, which
every write method must keep in step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from statemw._state_parts import StoredSizes
from statemw.codec import STORABLE, pack
from statemw.errors import InvalidValue, LimitExceeded, UnencodableValue
from statemw.records import Entry

_MISSING: Any = object()
Clock = Callable[[], float]


class StaleKey(str):
    """A key due for a check, as `stale_keys()` lists it: the key itself (a str, so
    `"location" in session.stale_keys()` and `del session[key]` work), plus where it lives and
    how old it is.

    scope: "session" (the session's own state), "parent" (an ancestor's state, which a
        sub-session reads through), or "user" (`session.user`).
    owner: the id of the record holding it: the session's id, the ancestor's id, or the user id.
    updated_at: when it was last set or confirmed; stale_at: updated_at + confirm_after.
    """

    scope: str
    owner: str
    updated_at: float
    confirm_after: float

    def __new__(
        cls, key: str, scope: str, owner: str, updated_at: float, confirm_after: float
    ) -> StaleKey:
        self = super().__new__(cls, key)
        self.scope = scope
        self.owner = owner
        self.updated_at = updated_at
        self.confirm_after = confirm_after
        return self

    @property
    def key(self) -> str:
        return str(self)

    @property
    def stale_at(self) -> float:
        return self.updated_at + self.confirm_after

    def __repr__(self) -> str:
        return f"StaleKey({str(self)!r}, scope={self.scope!r}, owner={self.owner!r})"

    def __reduce__(self) -> Any:
        args = (str(self), self.scope, self.owner, self.updated_at, self.confirm_after)
        return (StaleKey, args)


IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, datetime, date, UUID, Decimal})
"""Value types that cannot change in place, so handing them out needs no watching."""


class TrackedState(dict[str, Any]):
    """dict subclass (so json.dumps, dict() and JSONResponse work) that tracks its changes."""

    # slots: a session is built on every request, and a __dict__ of this many attributes
    # costs more to fill than the rest of its construction
    __slots__ = (
        "_checks",
        "_clock",
        "_deleted",
        "_entries",
        "_expiry",
        "_forced",
        "_lent",
        "_max_value_bytes",
        "_next_expiry",
        "_next_stale",
        "_saved_changes",
        "_sizes",
        "_touched",
        "_updated",
        "accessed",
    )
    _clock: Clock

    def _init_tracking(
        self,
        values: Mapping[str, Any],
        clock: Clock,
        *,
        expiry: Mapping[str, float] | None = None,
        sizes: StoredSizes | None = None,
        max_value_bytes: int | None = None,
        checks: Mapping[str, tuple[float, float]] | None = None,
        entries: Mapping[str, Entry] | None = None,
    ) -> None:
        """Fill with loaded values; `expiry`: key -> expires_at (keys with a TTL); `sizes`: bytes
        each key takes as stored (for the state size limit; taken over, its base shared); `checks`:
        key -> (confirm_after, stale_at) (keys set with confirm_after); `entries`: the stored
        entries (their `updated_at`)."""
        if values is not self:  # (a codec may have decoded them into this dict)
            dict.clear(self)
            dict.update(self, values)
        self._expiry: dict[str, float] = dict(expiry or {})
        self._next_expiry = min(self._expiry.values(), default=math.inf)
        self._sizes = StoredSizes() if sizes is None else sizes  # taken over; its base is shared
        self._touched: dict[str, None] = {}  # in the order written, so the store keeps it
        self._deleted: set[str] = set()
        self._lent: dict[str, bytes] = {}
        self._clock = clock
        self._max_value_bytes = max_value_bytes
        self._entries: Mapping[str, Entry] = {} if entries is None else entries
        self._updated: dict[str, float] = {}  # keys set or confirmed by this object: when
        self._checks: dict[str, tuple[float, float]] = dict(checks) if checks else {}
        self._next_stale = min([c[1] for c in self._checks.values()]) if self._checks else math.inf
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
        self._updated[key] = self._clock()
        self._deleted.discard(key)
        self._lent.pop(key, None)
        self._checks.pop(key, None)  # _next_stale stays a lower bound: the next scan fixes it
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
        size = self._sizes.get
        replaced = sum([size(k) for k in written]) + sum([size(k) for k in deleted])
        return self._sizes.total - replaced + sum(written.values())

    def mark_committed(
        self,
        written: Mapping[str, int],
        deleted: list[str],
        updated: Mapping[str, float] | None = None,
    ) -> None:
        """After a save: what was written is the baseline now (`updated`: key -> updated_at as
        written)."""
        if updated:
            self._updated.update(updated)
        for key in deleted:
            self._sizes.set(key, 0)
        for key, size in written.items():
            self._sizes.set(key, size)
        self._saved_changes = True
        self._touched.clear()
        self._deleted.clear()
        self._lent.clear()
        self._forced = False

    # -- expiry ------------------------------------------------------------------------------

    def _drop_expired(self) -> None:
        due = self._next_expiry
        if due == math.inf or due > self._clock():  # (no TTL key: not even a clock read)
            return
        now = self._clock()
        for key in [k for k, exp in self._expiry.items() if exp <= now]:
            del self._expiry[key]
            self._lent.pop(key, None)
            self._checks.pop(key, None)
            self._updated.pop(key, None)
            dict.pop(self, key, None)
            if key in self._touched:  # an unsaved write expired: what it replaced is gone too
                del self._touched[key]
                self._deleted.add(key)
        self._next_expiry = min(self._expiry.values(), default=math.inf)

    def set(
        self,
        key: str,
        value: Any,
        ttl: float | None = None,
        *,
        confirm_after: float | None = None,
    ) -> None:
        """Store a value; with `ttl` (seconds) it is gone after that long, also from the store;
        with `confirm_after` (seconds) it stays but is *stale* after that long: `stale_keys()`
        lists it until it is set again or confirmed. A write replaces both: `session[key] = v`
        keeps the value for good and never asks for a check."""
        if ttl is not None and ttl <= 0:
            raise InvalidValue(f"ttl must be positive seconds, got {ttl!r}")
        if confirm_after is not None and not confirm_after > 0:
            raise InvalidValue(f"confirm_after must be positive seconds, got {confirm_after!r}")
        self[key] = value
        now = self._updated[key]
        if ttl is not None:
            expires_at = now + ttl
            self._expiry[key] = expires_at
            self._next_expiry = min(self._next_expiry, expires_at)
        if confirm_after is not None:
            self._checks[key] = (confirm_after, now + confirm_after)
            self._next_stale = min(self._next_stale, now + confirm_after)

    def expires_at(self, key: str) -> float | None:
        """When a key set with a ttl expires (clock seconds), None for lasting keys."""
        return self._expiry.get(key)

    # -- age: when a value was set, when it is due for a check -----------------------------------

    def updated_at(self, key: str) -> float | None:
        """When the value was last set or confirmed (clock seconds); None when there is none.
        A value changed in place (`session["cart"].append(x)`) counts as set when it is saved."""
        self._drop_expired()
        if not dict.__contains__(self, key):
            return None
        when = self._updated.get(key)
        if when is None:
            entry = self._entries.get(key)
            when = None if entry is None else entry.updated_at
        return when

    def stale_at(self, key: str) -> float | None:
        """When a key set with confirm_after is due for a check (None: never, or no such key)."""
        self._drop_expired()
        check = self._checks.get(key)
        return None if check is None else check[1]

    def confirm(self, key: str) -> None:
        """The value is still true: its age starts over (it is no longer stale), its value, ttl
        and confirm_after stay. Saved like a write. KeyError when there is no such key."""
        self._drop_expired()
        if not dict.__contains__(self, key):
            raise KeyError(key)
        now = self._clock()
        self._touched[key] = None
        self._updated[key] = now
        self._lent.pop(key, None)
        self.accessed = True
        check = self._checks.get(key)
        if check is not None:
            self._checks[key] = (check[0], now + check[0])

    def stale_keys(self) -> list[StaleKey]:
        """The keys due for a check now (set with confirm_after, not confirmed since)."""
        return [
            StaleKey(key, self._scope, self._owner, stale - after, after)
            for key, after, stale in self._stale(self._clock())
        ]

    _scope = "session"

    @property
    def _owner(self) -> str:
        return ""

    def _stale(self, now: float) -> list[tuple[str, float, float]]:
        """(key, confirm_after, stale_at) of the keys stale at `now`; O(1) while none is due."""
        if self._next_stale > now:
            return []
        self._drop_expired()
        out = [
            (key, after, stale)
            for key, (after, stale) in self._checks.items()
            if stale <= now and dict.__contains__(self, key)
        ]
        self._next_stale = min(
            (stale for _, stale in self._checks.values() if stale > now), default=math.inf
        )
        if out:
            self._next_stale = min(self._next_stale, now)
        return out

    def _written_entry(self, key: str, value: bytes, expires_at: float | None, now: float) -> Entry:
        """The entry a save writes for `key` (a key changed in place counts as set `now`)."""
        when = self._updated[key] if key in self._touched else now
        check = self._checks.get(key)
        return Entry(value, when, expires_at, None if check is None else check[0])

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
        self._checks.pop(key, None)
        self._updated.pop(key, None)
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
