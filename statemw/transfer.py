"""Copy sessions between any two stores (`statemw copy`): resumable, verified, re-encrypting.

What moves, per session tree: the messages (each record's bytes, with its token count and time),
the state keys (with their own update times and expiries), the summary, cached vectors, the
session's expiry and creation time, the sub-sessions, and the users' shared state. Each record
is opened with the source's keys and sealed with the target's, so a copy can add, drop or rotate
encryption; the msgpack inside is carried unchanged, byte for byte.

Resuming: a session already in the target with the same creation time is continued where its
message log stops (a copy interrupted mid-way), and one complete already is skipped. A target
session with another history (another creation time, or more messages) is left alone and
reported, never overwritten. Messages go in batches, each a commit of the target backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from statemw._drive import drive
from statemw.codec import META_KEY, pack, unpack
from statemw.errors import SessionNotFound
from statemw.records import Delta, Entry, SessionHeader, Summary, user_record_id
from statemw.store import Store

BATCH = 500
"""Messages per target commit: bounded requests, and a resume point every BATCH messages."""

Progress = Callable[[int, int], None]
"""progress(done, total), counted in messages plus one per session."""


@dataclass
class CopyReport:
    """What a copy did; `ok` when every copied session verified."""

    sessions: int = 0
    """Sessions and sub-sessions written to (new or continued)."""
    skipped: int = 0
    """Sessions already complete in the target."""
    messages: int = 0
    """Messages written."""
    users: int = 0
    """Users whose shared state was written."""
    conflicts: list[str] = field(default_factory=list)
    """Target sessions with another history, left alone."""
    mismatches: list[str] = field(default_factory=list)
    """Sessions whose counts differ after the copy (what verification found)."""

    @property
    def ok(self) -> bool:
        return not self.conflicts and not self.mismatches


def _tree(source: Store, session_id: str, now: float) -> Iterator[SessionHeader]:
    """A session's live header, then its sub-sessions', parents first."""
    header = source.backend.read_header(session_id, now)
    if header is None:
        return
    yield header
    for name in header.children:
        yield from _tree(source, f"{session_id}/{name}", now)


class _Copier:
    def __init__(self, source: Store, target: Store, progress: Progress | None) -> None:
        self.source = source
        self.target = target
        self.progress = progress
        self.report = CopyReport()
        self.done = 0
        self.total = 0

    def reseal(self, session_id: str, data: bytes) -> bytes:
        """A record opened with the source's keys, sealed with the target's."""
        return self.target.codec.seal(self.source.codec.open(data, session_id=session_id))

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)

    def entry(self, sid: str, stored_key: str, entry: Entry) -> tuple[str, Entry] | None:
        """A state entry as the target stores it: under the target's key for its name, sealed
        with the target's keys (the value's msgpack unchanged). A record's sealed facts (its
        user id) are kept only where the target seals too (else the header carries the id)."""
        name, body = self.source.codec.open_entry(sid, stored_key, entry.value)
        codec = self.target.codec
        if name is None:
            if not codec.encrypted:
                return None
            return META_KEY, Entry(codec.seal_named(pack(None), body), entry.updated_at)
        data = codec.seal_named(pack(name), body) if codec.encrypted else codec.seal(body)
        return codec.entry_key(name), Entry(
            data, entry.updated_at, entry.expires_at, entry.confirm_after
        )

    def entries(
        self, sid: str, source: SessionHeader, target: SessionHeader | None, now: float
    ) -> dict[str, Entry]:
        """The source's live keys the target lacks or holds an older write of."""
        have = {} if target is None else target.live_state(now)
        out: dict[str, Entry] = {}
        for stored, e in source.live_state(now).items():
            moved = self.entry(sid, stored, e)
            if moved is not None and (
                moved[0] not in have or have[moved[0]].updated_at < e.updated_at
            ):
                out[moved[0]] = moved[1]
        return out

    def user_id(self, header: SessionHeader) -> str | None:
        """The user id a source record belongs to (sealed in it, or its header's)."""
        state = self.source.codec.decode_state(header.session_id, header.state, self.source.clock())
        return state.user_id if META_KEY in state.stored else header.user_id

    def target_ref(self, user_id: str | None) -> str | None:
        """What the target stores that user under."""
        if user_id is None:
            return None
        return drive(self.target._find_user(user_id), self.target.backend)[0]

    def session(self, src: SessionHeader) -> bool:
        """Copy one (sub-)session; False when the target holds another history of it."""
        sid = src.session_id
        now = self.target.clock()
        dst = self.target.backend.read_header(sid, now)
        if dst is not None and (
            dst.created_at != src.created_at or dst.message_count > src.message_count
        ):
            self.report.conflicts.append(sid)
            self.advance(1 + src.message_count)
            return False
        start = 0 if dst is None else dst.message_count
        sets = self.entries(sid, src, dst, now)
        if (
            self.target.codec.encrypted
            and META_KEY not in sets
            and META_KEY not in ({} if dst is None else dst.state)
        ):  # a target that seals keeps the user id sealed in the record
            sets[META_KEY] = self.target.codec.meta_entry(self.user_id(src), src.created_at)
        summary = src.summary
        new_summary = summary is not None and (
            dst is None or dst.summary is None or dst.summary.upto < summary.upto
        )
        if dst is not None and start == src.message_count and not sets and not new_summary:
            self.report.skipped += 1
            self.advance(1 + src.message_count)
            return True
        delta = Delta(
            session_id=sid,
            now=now,
            create=None
            if dst is not None
            else SessionHeader(sid, self.target_ref(self.user_id(src)), src.created_at, now),
            set=sets,
            expires_at=src.expires_at,
        )
        if summary is not None and new_summary:
            delta.summary = Summary(
                self.reseal(sid, summary.value),
                summary.upto,
                summary.covered_tokens,
                summary.tokens,
            )
        if start == 0:
            count = src.message_count  # vectors, and the semantic index records below 0
            vectors = self.source.backend.read_vectors(sid, -count, count)
            delta.vectors = {p: self.reseal(sid, v) for p, v in vectors.items()}
        self.advance(1 + start)
        position = start
        while True:
            stop = min(position + BATCH, src.message_count)
            leading = position == len(delta.append) == delta.lead_appended  # all system so far
            for data in self.source.backend.read_messages(sid, position, stop):
                body = self.source.codec.open(data, session_id=sid)
                message, tokens, _ = unpack(body)
                delta.append.append(self.target.codec.seal(body))
                delta.append_tokens += tokens
                leading = leading and message.get("role") == "system"
                delta.lead_appended += leading
            self.target.backend.commit(delta)
            self.report.messages += len(delta.append)
            self.advance(len(delta.append))
            position = stop
            if position >= src.message_count:
                break
            delta = Delta(session_id=sid, now=now, expires_at=src.expires_at)
        self.report.sessions += 1
        return True

    def user(self, user_id: str) -> None:
        _, src = drive(self.source._find_user(user_id), self.source.backend)
        if src is None:
            return
        now = self.target.clock()
        ref, dst = drive(self.target._find_user(user_id), self.target.backend)
        rid = user_record_id(ref)
        sets = self.entries(src.session_id, src, dst, now)
        if not sets:
            return
        create = SessionHeader(rid, ref, src.created_at, now) if dst is None else None
        self.target.backend.commit(
            Delta(session_id=rid, now=now, create=create, set=sets, expires_at=src.expires_at)
        )
        self.report.users += 1

    def names(self, store: Store, header: SessionHeader) -> set[str]:
        state = store.codec.decode_state(header.session_id, header.state, store.clock())
        return set(state.values)

    def verify(self, src: SessionHeader) -> None:
        dst = self.target.backend.read_header(src.session_id, self.target.clock())
        if (
            dst is None
            or dst.message_count != src.message_count
            or dst.token_total != src.token_total
            or not self.names(self.source, src) <= self.names(self.target, dst)
        ):
            self.report.mismatches.append(src.session_id)


def copy_sessions(
    source: Store,
    target: Store,
    *,
    user_id: str | None = None,
    session_id: str | None = None,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every live session (or one user's, or one session's tree) from source to target.

    Run it again after an interruption: what is there already is skipped or continued.
    """
    now = source.clock()
    if session_id is not None:
        roots = [session_id]
        if source.backend.read_header(session_id, now) is None:
            raise SessionNotFound(session_id)
    elif user_id is not None:
        roots = source.user_sessions(user_id, limit=1 << 62)
    else:
        roots = list(source.backend.session_ids())
    trees = [list(_tree(source, root, now)) for root in roots]
    copier = _Copier(source, target, progress)
    copier.total = sum(1 + h.message_count for tree in trees for h in tree)
    users = {user_id} if user_id is not None else set()
    copied: list[SessionHeader] = []
    for tree in trees:
        owner = copier.user_id(tree[0]) if tree else None
        if owner is not None:
            users.add(owner)
        followed: set[str] = set()  # copied (or complete) sessions: their children follow
        for n, header in enumerate(tree):
            if n == 0 or header.session_id.rsplit("/", 1)[0] in followed:
                if copier.session(header):
                    followed.add(header.session_id)
                    copied.append(header)
            else:  # under a session left alone: left alone too
                copier.advance(1 + header.message_count)
    for uid in sorted(users):
        copier.user(uid)
    for header in copied:
        copier.verify(header)
    return copier.report
