"""The large states this process last read or wrote on Redis, by session (free of I/O).

A session's state is one hash field per key, so loading a state of 10,000 keys moves 10,000
fields over the network and through the client, though most loads find what the last one read.
This process keeps such a state with the version of the header it belongs to: the header's
incarnation (`_in`, new each time the session is created) and its revision (every commit adds
one). A load names that version, and Redis sends the state only when the header is at another
one (lua.HEADER_IF_CHANGED). The process's own commits are applied to what it keeps, so a
conversation's next turn still finds its state kept.

Nothing kept can be read stale: a load uses a kept state only when Redis says the header is
still at its version, and an incarnation is never reused. Lock-free, like LoadPath: a kept state
is never changed once kept (a commit keeps a new one), and a lost update costs one full read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from statemw._decoded import WeighedKeeping
from statemw._state_parts import PartedState, SharedEntries
from statemw.records import Delta, Entry

KEEP_FROM = 64
"""A state of fewer keys is read whole at every load (a hash of a few fields costs less than
asking whether it changed)."""

KEPT_BYTES = 32 << 20
"""Bytes of kept states across all sessions, each key counted by entry_size; past that the
process starts afresh (a state larger than this is not kept)."""

KEY_BYTES = 320
"""Bytes a kept key takes beyond its value's, measured with tracemalloc on 10,000 keys of short
text: its Entry, name and slot (about 210), and what a load decoded of it, kept beside it
(statemw._state_parts; about 130)."""


def entry_size(entry: Entry) -> int:
    """What a kept key is counted as: its stored value, the value decoded, and KEY_BYTES."""
    return 2 * len(entry.value) + KEY_BYTES


@dataclass(frozen=True, slots=True)
class KeptState:
    """A session's state as stored at one version of its header: `base`, with `changes` (key ->
    entry, None for deleted) over it. A commit adds to a copy of `changes`, so it costs what it
    changed, not the state's size, until the changes outgrow a share of the base and are folded
    into a new one. Both are shared: nobody changes them.

    The commit script also drops the keys whose TTL has passed; this copy keeps them, as Redis
    does until a commit or `purge` comes, and every reader skips them by their expiry."""

    incarnation: bytes
    revision: int
    base: SharedEntries
    changes: dict[str, Entry | None]
    size: int  # as counted against KeptStates.budget

    def entries(self) -> PartedState:
        """The state, read only; its parts are the base and the changes, so a load decodes the
        changes alone once the base was decoded (statemw._state_parts)."""
        return PartedState((self.base, self.changes) if self.changes else (self.base,))


def _counted(entries: Mapping[str, Entry]) -> int:
    return sum(map(entry_size, entries.values()))


class KeptStates(WeighedKeeping[KeptState]):
    """Session id -> its KeptState, for the sessions of at least KEEP_FROM keys (a dict, so a
    load's lookup costs what a dict's does), each weighed by its size. Changed through its
    methods only."""

    __slots__ = ()

    def __init__(self, budget: int = KEPT_BYTES) -> None:
        super().__init__(budget)

    def weigh(self, value: KeptState) -> int:
        return value.size

    def read(
        self,
        session_id: str,
        incarnation: bytes | None,
        revision: int,
        entries: Mapping[str, Entry],
    ) -> None:
        """A load read the whole state at this version: keep it if it is large (a header from
        before incarnations, without one, is never kept)."""
        if incarnation is None or len(entries) < KEEP_FROM:
            self.drop(session_id)
            return
        kept = KeptState(incarnation, revision, SharedEntries(entries), {}, _counted(entries))
        self.keep(session_id, kept)

    def committed(self, delta: Delta, revision: int) -> None:
        """This process's commit took the session to `revision`: the kept state follows it when
        it was the revision before, else it is dropped (another commit came between)."""
        session_id = delta.session_id
        kept = self.get(session_id)
        if kept is None:
            return
        if kept.revision != revision - 1:
            self.drop(session_id)
            return
        base, changes, size = kept.base, dict(kept.changes), kept.size
        for key in (*delta.delete, *delta.set):
            gone = changes[key] if key in changes else base.get(key)
            if gone is not None:
                size -= entry_size(gone)
            changes[key] = None
        changes.update(delta.set)
        size += _counted(delta.set)
        if len(changes) > KEEP_FROM + len(base) // 32:  # fold them in: amortized, O(changed)
            base, changes = SharedEntries(PartedState((base, changes)).flat()), {}
        self.keep(session_id, KeptState(kept.incarnation, revision, base, changes, size))

    def drop_tree(self, session_id: str) -> None:
        """Forget a session's kept state and its sub-sessions'."""
        below = session_id + "/"
        for sid in [s for s in list(self) if s == session_id or s.startswith(below)]:
            self.drop(sid)
