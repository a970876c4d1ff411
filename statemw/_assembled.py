"""A state spread over buckets (memory, diskcache), read as one union of them with the buckets
rewritten since laid over it, and kept with the header it was read under (no I/O).

Gathering a state bucket by bucket costs an insert per key, so a backend keeps the union of the
buckets a load found, decoded once (statemw._state_parts), and each later load overlays only
the buckets that changed. A commit rewrites the header whenever it changes a bucket, so while a
session's header bytes stay the same the state does too: a load under the same header reads no
bucket at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from statemw._decoded import WeighedKeeping
from statemw._state_parts import PartedState, SharedEntries
from statemw.records import Entry

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
        if not _overlay_fits(kept.before, kept.union, len(changed), buckets):
            self.drop(key)
            return
        parts = kept.answer.parts
        overlay = dict(parts[1]) if len(parts) > 1 else {}
        _lay_buckets(overlay, kept.before, kept.changed, buckets)
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
        if not _overlay_fits(before, union, len(changed), changed):
            return None
        overlay: dict[str, Entry | None] = {}
        _lay_buckets(overlay, before, {}, changed)
        return PartedState((union, overlay) if overlay else (union,))


def _overlay_fits(
    before: tuple[SharedEntries, ...],
    union: SharedEntries,
    changed: int,
    buckets: Mapping[int, SharedEntries],
) -> bool:
    """May `buckets` (by number) be laid over the union of `before` as an overlay, with
    `changed` buckets changed since it was built in all? Not past an eighth of them, nor when a
    key moved between buckets (no backend writes one: a new union is built)."""
    return changed <= len(before) // 8 and not any(
        n >= len(before) or any(k in union and k not in before[n] for k in bucket)
        for n, bucket in buckets.items()
    )


def _lay_buckets(
    overlay: dict[str, Entry | None],
    before: tuple[SharedEntries, ...],
    previous: Mapping[int, SharedEntries],
    buckets: Mapping[int, SharedEntries],
) -> None:
    """Lay rewritten buckets (by number) into an overlay, in order: the keys each held before
    (`previous`, else as in `before`) deleted, then what it holds now set."""
    for n in sorted(buckets):
        overlay.update(dict.fromkeys(previous.get(n, before[n])))
        overlay.update(buckets[n])
