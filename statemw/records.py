"""What a store keeps per session, and the pure merge of a save's delta into it.

A session is a small *header* (ids, timestamps, counters, the state keys) plus an append-only
*message log*. A save sends a Delta: the keys set or deleted and the messages appended since load.
Backends that merge in Python (memory, diskcache) call `apply_delta` under their lock or
transaction; the Redis backend does the same steps in one Lua script. Values and messages arrive
already encoded (and encrypted), so merging never needs a key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from statemw.errors import ConflictError, SessionNotFound

USER_PREFIX = "~u:"
"""Id prefix of a user's shared state record: never a valid session id, so no client names one."""

_NUMBER = (int, float)
_MAYBE_NUMBER = (int, float, type(None))
_MAYBE_INT = (int, type(None))
_MAYBE_TEXT = (str, type(None))
_STR_KEYS = frozenset((str,))
_HEADER_SHAPES = ((1, 12), (2, 14))

LEAD_SCAN = 8
"""How many of the first messages may count as the leading system prompt (kept in every window)."""


def user_record_id(user_id: str) -> str:
    return USER_PREFIX + user_id


def parent_ids(session_id: str) -> list[str]:
    """The ids of a sub-session's ancestors, nearest first ("a/b/c" -> ["a/b", "a"])."""
    parts = session_id.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def root_id(session_id: str) -> str:
    """The top-level session a (sub-)session belongs to: its records share the root's hash tag."""
    return session_id.split("/", 1)[0]


@dataclass(slots=True)
class Entry:
    """One state key as stored: its encoded value, when it was written (or confirmed), when it
    expires, and after how many seconds since `updated_at` it is due for a check (stale).

    On the wire an entry is `[value, updated_at, expires_at]`, plus `confirm_after` only when it
    has one: entries without it are byte for byte what statemw wrote before it was kept, and an
    older statemw reading a newer entry sees the first three fields it knows.
    """

    value: bytes
    updated_at: float
    expires_at: float | None = None
    confirm_after: float | None = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    @property
    def stale_at(self) -> float | None:
        """When the value is due for a check (None: never)."""
        return None if self.confirm_after is None else self.updated_at + self.confirm_after

    def to_wire(self) -> list[Any]:
        if self.confirm_after is None:
            return [self.value, self.updated_at, self.expires_at]
        return [self.value, self.updated_at, self.expires_at, self.confirm_after]

    @classmethod
    def from_wire(cls, wire: Any) -> Entry:
        """ValueError for what is not an entry as to_wire writes it (a record read back)."""
        # [value, updated_at, expires_at(, confirm_after)]; fields a later statemw may add after
        # these are left alone, as this one's confirm_after is by the statemw before it
        if (
            type(wire) is not list
            or len(wire) < 3
            or type(wire[0]) is not bytes
            or type(wire[1]) not in _NUMBER
            or type(wire[2]) not in _MAYBE_NUMBER
            or (len(wire) > 3 and type(wire[3]) not in _MAYBE_NUMBER)
        ):
            raise ValueError("not a state entry")
        return cls(*wire[:4])


def entries_of(wires: Iterable[tuple[str, Any]]) -> dict[str, Entry]:
    """`Entry.from_wire` of each stored entry, given as (key, wire) pairs, in the one loop a
    load makes: the common shape (three fields) is checked and built inline, any other by
    `from_wire`."""
    entries: dict[str, Entry] = {}
    for key, wire in wires:
        if (
            type(wire) is list
            and len(wire) == 3
            and type(wire[0]) is bytes
            and type(wire[1]) in _NUMBER
            and type(wire[2]) in _MAYBE_NUMBER
        ):
            entries[key] = Entry(wire[0], wire[1], wire[2])
        else:
            entries[key] = Entry.from_wire(wire)
    return entries


@dataclass(slots=True)
class Summary:
    """A compaction: an encoded summary standing in for messages [0, upto) when history is sent."""

    value: bytes
    upto: int
    covered_tokens: int
    tokens: int

    def to_wire(self) -> list[Any]:
        return [self.value, self.upto, self.covered_tokens, self.tokens]

    @classmethod
    def from_wire(cls, wire: Any) -> Summary:
        if (
            type(wire) is not list
            or len(wire) != 4
            or type(wire[0]) is not bytes
            or not all(type(n) is int for n in wire[1:])
        ):
            raise ValueError("not a summary")
        return cls(wire[0], wire[1], wire[2], wire[3])


@dataclass(slots=True)
class SessionHeader:
    """Everything about a session except its messages; small, rewritten on each save.

    `lead` counts the leading system messages (at most LEAD_SCAN), so a window knows whether it
    must read the conversation's first messages; None in records written before it was kept.
    `state_buckets`: 0 when `state` is stored inside the header, else how many bucket records a
    key-value backend spread a large state over (so a save rewrites only the buckets it touches).
    """

    session_id: str
    user_id: str | None
    created_at: float
    updated_at: float
    expires_at: float | None = None
    revision: int = 0
    message_count: int = 0
    token_total: int = 0
    summary: Summary | None = None
    children: list[str] = field(default_factory=list)
    state: Mapping[str, Entry] = field(default_factory=dict)  # read only: replaced, not changed
    lead: int | None = 0
    state_buckets: int = 0

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def window_start(self, window: int) -> int:
        """Where a load of the newest `window` messages starts: never before the summary's end."""
        return max(self.message_count - window, self.summary.upto if self.summary else 0, 0)

    def copy(self) -> SessionHeader:
        """A header to change without changing this one (entries and summaries are replaced,
        never changed in place, so they are shared)."""
        return SessionHeader(
            self.session_id,
            self.user_id,
            self.created_at,
            self.updated_at,
            self.expires_at,
            self.revision,
            self.message_count,
            self.token_total,
            self.summary,
            list(self.children),
            dict(self.state) if type(self.state) is dict else dict(self.state.items()),
            self.lead,
            self.state_buckets,
        )

    def live_state(self, now: float) -> dict[str, Entry]:
        return {k: e for k, e in self.state.items() if e.live(now)}

    def to_wire(self, *, state: bool = True) -> list[Any]:
        """A msgpack-ready list; positional so the header stays small. `state=False` leaves the
        state out (a backend that keeps it elsewhere)."""
        summary = self.summary
        return [
            2,
            self.session_id,
            self.user_id,
            self.created_at,
            self.updated_at,
            self.expires_at,
            self.revision,
            self.message_count,
            self.token_total,
            None if summary is None else summary.to_wire(),
            self.children,
            {k: e.to_wire() for k, e in self.state.items()} if state else {},
            self.lead,
            self.state_buckets,
        ]

    @classmethod
    def from_wire(cls, wire: list[Any]) -> SessionHeader:
        """Version 2, or version 1 (written before `lead` was kept)."""
        # every load and every commit reads a header: unpacked once, built positionally
        if type(wire) is not list or not wire or (wire[0], len(wire)) not in _HEADER_SHAPES:
            raise ValueError("not a version-1 or version-2 session header")
        (version, sid, user_id, created, updated, expires) = wire[:6]
        (rev, count, tokens, summary, kids, state) = wire[6:12]
        lead, buckets = wire[12:] if version == 2 else (None, 0)
        if (
            type(sid) is not str
            or type(user_id) not in _MAYBE_TEXT
            or type(created) not in _NUMBER
            or type(updated) not in _NUMBER
            or type(expires) not in _MAYBE_NUMBER
            or not type(rev) is type(count) is type(tokens) is int
            or type(kids) is not list
            or (kids and not all(type(c) is str for c in kids))
            or type(state) is not dict
            or (state and not _STR_KEYS.issuperset(map(type, state)))
            or type(lead) not in _MAYBE_INT
            or type(buckets) is not int
        ):
            raise ValueError("a session header field of the wrong type")
        return cls(
            sid,
            user_id,
            created,
            updated,
            expires,
            rev,
            count,
            tokens,
            None if summary is None else Summary.from_wire(summary),
            list(kids),
            entries_of(state.items()) if state else {},
            lead,
            buckets,
        )


@dataclass(slots=True)
class Delta:
    """The changes one save commits: applied atomically, merged with concurrent saves.

    Appends from concurrent saves are all kept, in commit order; distinct keys all survive; the
    same key is last-write-wins. `expected_revision` asks for strict compare-and-set instead.
    `lead_appended`: how many of the appended messages, from the first, are system messages.
    """

    session_id: str
    now: float
    create: SessionHeader | None = None
    set: dict[str, Entry] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    append: list[bytes] = field(default_factory=list)
    append_tokens: int = 0
    lead_appended: int = 0
    replace_log: bool = False
    summary: Summary | None = None
    vectors: dict[int, bytes] = field(default_factory=dict)
    expires_at: float | None = None
    expected_revision: int | None = None

    @property
    def empty(self) -> bool:
        return not (
            self.create
            or self.set
            or self.delete
            or self.append
            or self.replace_log
            or self.summary
            or self.vectors
        )


@dataclass(slots=True)
class Committed:
    """What a commit reports back: enough for the saved session to stay in step with the store."""

    revision: int
    message_count: int
    token_total: int
    created_at: float
    lead: int | None

    @classmethod
    def of(cls, header: SessionHeader) -> Committed:
        return cls(
            header.revision,
            header.message_count,
            header.token_total,
            header.created_at,
            header.lead,
        )


@dataclass(slots=True)
class Snapshot:
    """What a load reads in one go: the header, the recent window, and what reads fall back to.

    `lead` holds the leading system messages when the window does not start at 0.
    `user_unavailable`: the user's state could not be read (on Redis Cluster, its shard was
    down), so `user` is None although the session has a user."""

    header: SessionHeader
    window_start: int
    window: list[bytes]
    parents: list[SessionHeader] = field(default_factory=list)
    user: SessionHeader | None = None
    lead: list[bytes] = field(default_factory=list)
    user_unavailable: bool = False


def next_lead(lead: int | None, count: int, appended: int, lead_appended: int) -> int | None:
    """The leading-system count after `appended` messages join a log of `count` (pure)."""
    if lead is None or lead < count or count >= LEAD_SCAN:
        return lead
    return min(count + min(lead_appended, appended), LEAD_SCAN)


def apply_delta(current: SessionHeader | None, delta: Delta) -> SessionHeader:
    """Merge a delta into the stored header (pure). Messages are the caller's to append.

    Raises SessionNotFound when the session is gone (deleted or expired) and the delta does not
    create it, and ConflictError when a strict save's expected revision is stale.
    """
    now = delta.now
    if current is not None and not current.live(now):
        current = None
    if current is None:
        if delta.create is None:
            raise SessionNotFound(delta.session_id)
        header = SessionHeader(
            session_id=delta.session_id,
            user_id=delta.create.user_id,
            created_at=delta.create.created_at,
            updated_at=now,
        )
        if delta.expected_revision not in (None, 0):
            raise ConflictError(delta.session_id, delta.expected_revision, 0)
    else:
        header = current
        if delta.expected_revision is not None and delta.expected_revision != header.revision:
            raise ConflictError(delta.session_id, delta.expected_revision, header.revision)
    if not header.state_buckets:  # a backend that spreads state over buckets merges them itself
        header.state = merge_state(header.state, delta, now)
    if delta.replace_log:
        header.message_count = 0
        header.token_total = 0
        header.summary = None
        header.lead = 0
    header.lead = next_lead(
        header.lead, header.message_count, len(delta.append), delta.lead_appended
    )
    header.message_count += len(delta.append)
    header.token_total += delta.append_tokens
    if delta.summary is not None and (
        header.summary is None or delta.summary.upto >= header.summary.upto
    ):
        header.summary = delta.summary
    header.updated_at = now
    header.expires_at = delta.expires_at
    header.revision += 1
    return header


def merge_state(state: Mapping[str, Entry], delta: Delta, now: float) -> dict[str, Entry]:
    """Stored state after a delta: expired keys dropped, then deletes, then sets (pure)."""
    merged = {k: e for k, e in state.items() if e.live(now)}
    for key in delta.delete:
        merged.pop(key, None)
    merged.update(delta.set)
    return merged
