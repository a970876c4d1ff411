"""A state decoded part by part, so a load reuses what the load before it decoded (no I/O).

Loading a state of many keys decoded every entry: a Python loop of about 0.2 µs a key, most of
a load of 10,000 keys, though nearly always the entries were the ones the last load decoded. A
backend that keeps a large state hands each load the same SharedEntries until they change
(PartedState, below). What a codec decodes of such a part is kept on it as a PlainState, true
until the first of its keys' TTLs runs out; a load copies maps from it instead of decoding each
entry, and decodes only the other parts (what changed since, at most a share of the state).

A state spread over many buckets (memory, diskcache) would still cost an insert per key to
gather bucket by bucket, so statemw._assembled keeps their union as one such part, with the
buckets rewritten since laid over it.

Mutable values (lists, dicts) are decoded again at every load: a session may change them in
place, and one session's change must never reach another's. The stored sizes of the keys are
not copied at all: a session keeps the shared ones with its own changes over them
(StoredSizes).
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass
from typing import Any

from statemw.records import Entry


class SharedEntries(dict[str, Entry]):
    """State entries a backend keeps and hands to every load that finds them unchanged (a
    Redis kept state, a key-value store's bucket or the union of its buckets): nobody changes
    them once built. `decoded` is what a codec made of them (below), so the loads after the
    first copy it instead of decoding each entry again."""

    __slots__ = ("decoded",)

    def __init__(self, entries: Mapping[str, Entry] | Iterable[tuple[str, Entry]] = ()) -> None:
        super().__init__(entries)
        self.decoded: Any = None


class PartedState(Mapping[str, Entry]):
    """A state as a backend assembled it from `parts`, applied in order: a SharedEntries part
    adds its entries, any other part sets a key to its entry or, for None, deletes it. Read
    only, for every reader: a key is looked up part by part, newest first, and the one dict of
    the whole state is built only for a reader that goes through it all (`flat`); a codec
    decodes the parts themselves (below), so a load builds none."""

    __slots__ = ("_flat", "parts")

    def __init__(self, parts: Sequence[Mapping[str, Entry | None]]) -> None:
        self.parts = tuple(parts)
        self._flat: dict[str, Entry] | None = None

    def flat(self) -> dict[str, Entry]:
        """The whole state as one dict (built once; read only)."""
        if self._flat is None:
            flat: dict[str, Entry] = {}
            for part in self.parts:
                if type(part) is SharedEntries:
                    flat.update(part)
                    continue
                for key, entry in part.items():
                    if entry is None:
                        flat.pop(key, None)
                    else:
                        flat[key] = entry
            self._flat = flat
        return self._flat

    def __getitem__(self, key: str) -> Entry:
        for part in reversed(self.parts):
            if key in part:
                entry = part[key]
                if entry is None:
                    break
                return entry
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.flat())

    def __len__(self) -> int:
        return len(self.flat())

    def keys(self) -> KeysView[str]:
        return self.flat().keys()

    def items(self) -> ItemsView[str, Entry]:
        return self.flat().items()

    def values(self) -> ValuesView[Entry]:
        return self.flat().values()

    def __repr__(self) -> str:
        return f"PartedState({self.flat()!r})"


class StoredSizes:
    """Bytes each state key takes as stored (0: none), and their total: a map that may be
    shared, read only, with other loads (`base`), and this holder's own changes over it."""

    __slots__ = ("base", "changed", "total")

    def __init__(self, base: Mapping[str, int] | None = None, total: int | None = None) -> None:
        self.base: Mapping[str, int] = {} if base is None else base
        self.changed: dict[str, int] = {}
        self.total = sum(self.base.values()) if total is None else total

    def get(self, key: str) -> int:
        size = self.changed.get(key)
        return self.base.get(key, 0) if size is None else size

    def set(self, key: str, size: int) -> None:
        self.total += size - self.get(key)
        self.changed[key] = size

    def as_dict(self) -> dict[str, int]:
        """Key -> size of every stored key, as one dict (for tests and inspection)."""
        merged = {**self.base, **self.changed}
        return {key: size for key, size in merged.items() if size}

    def __repr__(self) -> str:
        return f"StoredSizes({self.as_dict()!r}, total={self.total})"


@dataclass(slots=True)
class PlainState:
    """Entries decoded (without encryption) at `since`, true while no TTL has run out since,
    until `until`: their live values, the expiry of those with a TTL, their stored sizes and
    `size`, the sum of those; the checks of those with confirm_after; `gone`: the keys left out
    as expired; `fresh`: (key, stored value) of each mutable value, which a later reader decodes
    again. Read only: the maps may be shared by every session that loads these entries."""

    values: dict[str, Any]
    expiry: dict[str, float]
    sizes: dict[str, int]
    size: int
    checks: dict[str, tuple[float, float]]
    since: float
    until: float
    gone: list[str]
    fresh: list[tuple[str, bytes]]

    def holds_at(self, now: float) -> bool:
        return self.since <= now < self.until


Maps = tuple[dict[str, Any], dict[str, float], dict[str, int], dict[str, tuple[float, float]]]
"""values, expiry, sizes and checks of a state (as PlainState holds them)."""

Decoded = tuple[dict[str, Any], dict[str, float], StoredSizes, dict[str, tuple[float, float]]]
"""values, expiry, sizes and checks of a state as decode_parts gives them."""


def decode_parts(
    parts: Sequence[Mapping[str, Entry | None]],
    now: float,
    plain: Callable[[Mapping[str, Entry]], PlainState],
    value: Callable[[bytes], Any],
    into: dict[str, Any] | None = None,
) -> Decoded | None:
    """The live state the parts of a PartedState add up to, at `now`: each SharedEntries
    part's kept PlainState (made with `plain` when it has none that holds now), every other part
    decoded by `plain` and applied key by key; `value` decodes a mutable value again. None when
    a SharedEntries part holds a key that an earlier part holds live: which entry wins is then
    the whole state's to say, so the caller decodes that instead (no backend writes such parts).

    The common case, one shared part and overlays after it (a Redis kept state and the changes
    over it, a union of buckets and the buckets rewritten since), shares the part's sizes and
    lays the overlays' over them, instead of copying them; with `into`, an empty dict (the
    session that will hold them, changed through dict's own methods only), it puts the values
    there, so a large state's are copied once, not twice."""
    if parts and type(parts[0]) is SharedEntries and SharedEntries not in map(type, parts[1:]):
        before = parts[0].decoded
        kept = _kept(parts[0], now, plain)
        sizes = StoredSizes(kept.sizes, kept.size)
        renew = kept.fresh and kept is before  # its mutable values were handed out before
        if len(parts) == 1 and not renew:  # the maps as they are (read only)
            values = kept.values if into is None else _filled(into, kept.values)
            return values, kept.expiry, sizes, kept.checks
        values = dict(kept.values) if into is None else _filled(into, kept.values)
        expiry, checks = dict(kept.expiry), dict(kept.checks)
        if renew:
            _renew(values, kept, value)
        for part in parts[1:]:
            _lay_over(part, plain, values, expiry, checks, sizes.set)
        return values, expiry, sizes, checks
    values, expiry, checks = {}, {}, {}
    by_key: dict[str, int] = {}
    for part in parts:
        if type(part) is not SharedEntries:
            _lay_over(part, plain, values, expiry, checks, lambda k, n: _put(by_key, k, n or None))
            continue
        before = part.decoded
        kept = _kept(part, now, plain)
        if any(key in values for key in kept.gone):  # live before, expired here
            return None
        held = len(values) + len(kept.values)
        values.update(kept.values)
        if len(values) != held:  # a key in two parts: which one wins is the flat read's
            return None
        expiry.update(kept.expiry)
        by_key.update(kept.sizes)
        checks.update(kept.checks)
        if kept is before:  # its mutable values were handed out before
            _renew(values, kept, value)
    return values, expiry, StoredSizes(by_key), checks


def _renew(values: dict[str, Any], kept: PlainState, value: Callable[[bytes], Any]) -> None:
    """New copies of the mutable values of `kept` in `values`, which sessions were handed before
    (through dict's own methods: `values` may be a session's)."""
    for key, data in kept.fresh:
        dict.__setitem__(values, key, value(data))


def _filled(into: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`into` updated with `values` by dict's own update (`into` may be a session's state)."""
    dict.update(into, values)
    return into


def _lay_over(
    part: Mapping[str, Entry | None],
    plain: Callable[[Mapping[str, Entry]], PlainState],
    values: dict[str, Any],
    expiry: dict[str, float],
    checks: dict[str, tuple[float, float]],
    set_size: Callable[[str, int], None],
) -> None:
    """Apply an overlay (key -> entry, None: deleted) to decoded maps, in place; a key's new
    stored size goes to `set_size` (0: no longer stored). The values change through dict's own
    methods (they may be a session's, decode_parts' `into`)."""
    over = plain({k: e for k, e in part.items() if e is not None})
    for key in part:
        if key in over.values:  # set in place, so the keys keep the order of the dict
            dict.__setitem__(values, key, over.values[key])
            set_size(key, over.sizes[key])
            _put(expiry, key, over.expiry.get(key))
            _put(checks, key, over.checks.get(key))
        else:  # deleted, or past its TTL
            dict.pop(values, key, None)
            expiry.pop(key, None)
            checks.pop(key, None)
            set_size(key, 0)


def _kept(
    part: SharedEntries, now: float, plain: Callable[[Mapping[str, Entry]], PlainState]
) -> PlainState:
    kept: PlainState | None = part.decoded
    if kept is None or not kept.holds_at(now):
        kept = part.decoded = plain(part)
    return kept


def _put(mapping: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value
