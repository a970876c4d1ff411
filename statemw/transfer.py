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

from statemw.codec import unpack
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

    def entries(
        self, sid: str, source: SessionHeader, target: SessionHeader | None, now: float
    ) -> dict[str, Entry]:
        """The source's live keys the target lacks or holds an older write of."""
        have = {} if target is None else target.live_state(now)
        return {
            key: Entry(self.reseal(sid, e.value), e.updated_at, e.expires_at, e.confirm_after)
            for key, e in source.live_state(now).items()
            if key not in have or have[key].updated_at < e.updated_at
        }

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
            else SessionHeader(sid, src.user_id, src.created_at, now),
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
            vectors = self.source.backend.read_vectors(sid, 0, src.message_count)
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
        rid = user_record_id(user_id)
        src = self.source.backend.read_header(rid, self.source.clock())
        if src is None:
            return
        now = self.target.clock()
        dst = self.target.backend.read_header(rid, now)
        sets = self.entries(rid, src, dst, now)
        if not sets:
            return
        create = SessionHeader(rid, user_id, src.created_at, now) if dst is None else None
        self.target.backend.commit(
            Delta(session_id=rid, now=now, create=create, set=sets, expires_at=src.expires_at)
        )
        self.report.users += 1

    def verify(self, src: SessionHeader) -> None:
        dst = self.target.backend.read_header(src.session_id, self.target.clock())
        if (
            dst is None
            or dst.message_count != src.message_count
            or dst.token_total != src.token_total
            or not set(src.live_state(self.source.clock())) <= set(dst.state)
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
        roots = source.backend.user_sessions(user_id, now)
    else:
        roots = list(source.backend.session_ids())
    trees = [list(_tree(source, root, now)) for root in roots]
    copier = _Copier(source, target, progress)
    copier.total = sum(1 + h.message_count for tree in trees for h in tree)
    users = {user_id} if user_id is not None else set()
    copied: list[SessionHeader] = []
    for tree in trees:
        if tree and tree[0].user_id is not None:
            users.add(tree[0].user_id)
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
