"""A state decoded part by part, so a load reuses what the load before it decoded (no I/O).

Loading a state of many keys decoded every entry: a Python loop of about 0.2 µs a key, most of
a load of 10,000 keys, though nearly always the entries were the ones the last load decoded. A
backend that keeps a large state hands each load the same SharedEntries until they change
(PartedState, below). What a codec decodes of such a part is kept on it as a PlainState, true
until the first of its keys' TTLs runs out; a load copies maps from it instead of decoding each
entry, and decodes only the other parts (what changed since, at most a share of the state).

A state spread over many buckets (memory, diskcache) would still cost an insert per key to
gather bucket by bucket, so AssembledStates keeps their union as one such part, with the
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
from typing import Any, NamedTuple

from statemw._decoded import WeighedKeeping
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

    def __init__(
        self,
        base: Mapping[str, int] | None = None,
        changed: dict[str, int] | None = None,
        total: int | None = None,
    ) -> None:
        self.base: Mapping[str, int] = {} if base is None else base
        self.changed: dict[str, int] = {} if changed is None else changed
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
        sizes = StoredSizes(kept.sizes, {}, kept.size)
        renew = kept.fresh and kept is before  # its mutable values were handed out before
        if len(parts) == 1 and not renew:  # the maps as they are (read only)
            values = kept.values if into is None else _filled(into, kept.values)
            return values, kept.expiry, sizes, kept.checks
        values = dict(kept.values) if into is None else _filled(into, kept.values)
        expiry, checks = dict(kept.expiry), dict(kept.checks)
        if renew:  # new copies
            for key, data in kept.fresh:
                dict.__setitem__(values, key, value(data))
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
        if kept is before:  # its mutable values were handed out before: new copies
            for key, data in kept.fresh:
                values[key] = value(data)
    return values, expiry, StoredSizes(by_key), checks


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


ASSEMBLED_KEYS = 250_000
"""Keys of the unions an AssembledStates keeps across all records; past that it starts afresh."""

UNION_FROM = 8
"""Buckets from which a union is kept: with fewer, one rewritten bucket is more than the eighth
an overlay may be, and a new union would be decoded whole at every load that follows a save,
where the buckets one by one decode only the rewritten one."""


class Assembled(NamedTuple):
    """What AssembledStates keeps of a record: the buckets a union was built from and the
    union; the header (its bytes) of the last state handed out, the buckets it found changed
    since the union (by number), and that state."""

    before: tuple[SharedEntries, ...]
    union: SharedEntries
    header: bytes | None
    changed: dict[int, SharedEntries]
    answer: PartedState


class AssembledStates(WeighedKeeping[Assembled]):
    """A state spread over buckets, each a SharedEntries, as one shared union and the buckets
    changed since (free of I/O). Decoding a union costs a few copies of maps, where the buckets
    one by one cost an insert per key; so a record keeps the union of the buckets a load last
    built it from, and the next load overlays the buckets that are new objects since (a
    bucket's bytes changed) until more than an eighth of them are, then builds a new union.

    Every write that changes what a record's buckets hold rewrites its header (a commit), so
    while the header's bytes stay the same, so does the state: a load that finds the header it
    last answered for gets that answer again (`known`) without reading a bucket, and a commit
    from this process hands on the buckets it rewrote (`rewritten`), at a cost of what they
    hold. Record key -> Assembled, weighed by the union's keys. Lock-free: an Assembled is
    replaced whole."""

    __slots__ = ()

    def __init__(self, budget: int = ASSEMBLED_KEYS) -> None:
        super().__init__(budget)

    def weigh(self, value: Assembled) -> int:
        return len(value.union)

    def known(self, key: str, header: bytes) -> PartedState | None:
        """The state last handed out for a header of these bytes, if that is the one kept."""
        kept = self.get(key)
        return kept.answer if kept is not None and kept.header == header else None

    def rewritten(
        self, key: str, before: bytes, after: bytes, buckets: Mapping[int, SharedEntries]
    ) -> None:
        """A commit replaced the header `before` with `after` and rewrote these buckets (by
        number): when the state kept is the one `before` held, the state `after` holds is the
        union with the overlay of the buckets changed since, these now among them (a copy of
        the last overlay, then these buckets: what they held before gone, what they hold now
        set). Once more than an eighth of the buckets changed, it is left to the next load."""
        kept = self.get(key)
        if kept is None or kept.header != before:
            return
        changed = {**kept.changed, **buckets}
        if (
            len(changed) > len(kept.before) // 8
            or any(n >= len(kept.before) for n in buckets)
            or any(
                k in kept.union and k not in kept.before[n]
                for n, bucket in buckets.items()
                for k in bucket
            )  # (a key that moved between buckets: no backend writes one, built anew)
        ):
            self.drop(key)
            return
        parts = kept.answer.parts
        overlay: dict[str, Entry | None] = dict(parts[1]) if len(parts) > 1 else {}
        for n in sorted(buckets):
            overlay.update(dict.fromkeys(kept.changed.get(n, kept.before[n])))
            overlay.update(buckets[n])
        answer = PartedState((kept.union, overlay))
        self.keep(key, kept._replace(header=after, changed=changed, answer=answer))

    def state(
        self, key: str, buckets: Sequence[SharedEntries], header: bytes | None = None
    ) -> PartedState:
        """The state the buckets hold, in order (what PartedState(buckets) holds); `header`:
        the bytes of the header they were read under (None: unknown), kept with the answer."""
        buckets = tuple(buckets)
        if len(buckets) < UNION_FROM:
            return PartedState(buckets)
        kept = self.get(key)
        if kept is not None and len(kept.before) == len(buckets):
            changed = {
                n: new
                for n, (old, new) in enumerate(zip(kept.before, buckets, strict=True))
                if old is not new
            }
            answer = self._overlaid(kept.before, kept.union, changed)
            if answer is not None:
                self.keep(key, kept._replace(header=header, changed=changed, answer=answer))
                return answer
        union = SharedEntries(PartedState(buckets).flat())
        answer = PartedState((union,))
        # kept only when no key is in two buckets, so overlaying one bucket is exact
        if len(union) == sum(map(len, buckets)):
            self.keep(key, Assembled(buckets, union, header, {}, answer))
        else:
            self.drop(key)
        return answer

    @staticmethod
    def _overlaid(
        before: tuple[SharedEntries, ...], union: SharedEntries, changed: dict[int, SharedEntries]
    ) -> PartedState | None:
        """The union with the buckets changed since it was built (by number) laid over it, or
        None when more than an eighth changed (or a key moved between buckets): a new union
        then."""
        if len(changed) > len(before) // 8 or any(
            n >= len(before) or any(k in union and k not in before[n] for k in bucket)
            for n, bucket in changed.items()
        ):  # (a key that moved between buckets: no backend writes one, built anew)
            return None
        overlay: dict[str, Entry | None] = {}
        for n in sorted(changed):
            overlay.update(dict.fromkeys(before[n]))
            overlay.update(changed[n])
        return PartedState((union, overlay) if overlay else (union,))
