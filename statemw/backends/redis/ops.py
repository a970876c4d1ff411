"""The Redis backend's logic, free of I/O: key names, script arguments, result parsing.

Each operation is a flow (statemw._drive) that yields the calls it needs (a script, a command, a
pipeline) and receives their replies; client.py drives it with the sync client or the async one.
So the sync and async backends differ only by `await`, and every decision lives here once.
One module, past 400 lines, for that reason: a decision split across files would drift from its
twin in lua.py, which runs the same layout on the server.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeVar

import msgpack
from redis.exceptions import NoScriptError

from statemw._decoded import KeptByBytes
from statemw._drive import Flow, Step
from statemw.backends.base import Progress
from statemw.backends.redis.faults import DOWN
from statemw.backends.redis.kept import KEEP_FROM, KeptState, KeptStates
from statemw.backends.redis.lua import HEADER_FIELDS, SCRIPTS
from statemw.changes import Change
from statemw.codec import pack, unpack
from statemw.errors import ConflictError, CorruptRecord, SessionNotFound
from statemw.records import (
    LEAD_SCAN,
    USER_PREFIX,
    Committed,
    Delta,
    Entry,
    SessionHeader,
    Snapshot,
    Summary,
    parent_ids,
    root_id,
    user_record_id,
)

EXPIRY_SLACK_MS = 1000
"""Redis drops a session's keys this long after its logical expiry (the clock decides first)."""


INDEX_GRACE_SECONDS = 60.0
"""Cluster mode: a user index entry whose session does not exist yet may be a create in flight
(the index is written first); user_sessions drops such entries only once they are this old."""

PURGE_BATCH = 500
"""Cluster purge reads the owners of live sessions this many at a time (one pipeline)."""

VECTOR_RANGE_READ = 1024
"""read_vectors names up to this many positions (HMGET); a wider range reads the whole hash
(a range below 0, the client's index records, is always named)."""


T = TypeVar("T")


class Caller(Protocol):
    """What carries out a call: the sync shell in client.py."""

    def call(self, call: RedisStep) -> Any: ...


class AsyncCaller(Protocol):
    """The async shell in client.py."""

    async def call(self, call: RedisStep) -> Any: ...


class RedisStep(Step[Caller, AsyncCaller, Any]):
    """A call an operation yields; the shell given to the driver sends it to Redis."""

    __slots__ = ()

    def run(self, io: Caller) -> Any:
        return io.call(self)

    async def arun(self, aio: AsyncCaller) -> Any:
        return await aio.call(self)


@dataclass(slots=True)
class Script(RedisStep):
    """Run one of lua.SCRIPTS by name."""

    name: str
    keys: Sequence[str]
    args: Sequence[str | bytes | int]

    def evalsha(self) -> bytes:
        """This call as an EVALSHA command in Redis's wire format, ready to send as it is."""
        return evalsha(self.name, self.keys, self.args)


@dataclass(slots=True)
class Command(RedisStep):
    """One plain Redis command."""

    args: tuple[str | bytes | int | float, ...]


@dataclass(slots=True)
class Pipeline(RedisStep):
    """Several commands in one round trip (not a transaction; reads only)."""

    commands: list[Command]


@dataclass(slots=True)
class Transaction(RedisStep):
    """Several reads run as one (MULTI ... EXEC): they see one moment, in one round trip."""

    commands: list[Command]

    def packed(self) -> bytes:
        """MULTI, the commands and EXEC in Redis's wire format, ready to send as they are."""
        return b"".join([_MULTI, *(resp(c.args) for c in self.commands), _EXEC])


Call: TypeAlias = Script | Command | Pipeline | Transaction
Op: TypeAlias = Flow[Caller, AsyncCaller, T]
"""An operation: yields calls, returns a T."""

SHAS = {name: hashlib.sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()}
"""What EVALSHA names each script by (standalone Redis; redis-py's Script objects in a cluster)."""


_EVALSHA = {name: b"$7\r\nEVALSHA\r\n$40\r\n%s\r\n" % sha.encode() for name, sha in SHAS.items()}
_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


def evalsha(name: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> bytes:
    """EVALSHA of a script in RESP, the bytes redis-py would send for it: the shells send it as
    it is, skipping redis-py's per-argument packing and command machinery."""
    n = len(keys)
    head = b"*%d\r\n%b$%d\r\n%d\r\n" % (n + len(args) + 3, _EVALSHA[name], len(str(n)), n)
    return head + _resp_args((*keys, *args))


def resp(args: Sequence[str | bytes | int | float]) -> bytes:
    """One command in RESP (see evalsha)."""
    return b"*%d\r\n%b" % (len(args), _resp_args(args))


def _resp_args(args: Sequence[str | bytes | int | float]) -> bytes:
    parts: list[bytes] = []
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        elif not isinstance(arg, bytes):
            arg = repr(arg).encode()
        parts += (b"$%d" % len(arg), arg)
    parts.append(b"")
    return b"\r\n".join(parts)


def script(name: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Op[Any]:
    """Run one of lua.SCRIPTS: EVALSHA, and when the server does not have the script yet (a new
    or restarted server, SCRIPT FLUSH) SCRIPT LOAD it and run it again. A script that fails to
    run has not run: EVALSHA is never half done."""
    step = Script(name, keys, args)
    try:
        return (yield step)
    except NoScriptError:  # in a cluster, redis-py's Script objects reload scripts themselves
        yield Command(("SCRIPT", "LOAD", SCRIPTS[name]))
        return (yield step)


def tag(session_id: str) -> str:
    """The hash tag of a record: its root session (a user record is its own root)."""
    return session_id if session_id.startswith(USER_PREFIX) else root_id(session_id)


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names under a prefix; every key of a session tree shares the root's `{tag}`."""

    prefix: str
    cluster: bool = False

    def base(self, session_id: str) -> str:
        return f"{self.prefix}{{{tag(session_id)}}}:"

    def keys(self, sid: str, kinds: str) -> tuple[str, ...]:
        """Several keys of one record: kinds "hmvxc" for header, messages, vectors, expiries,
        channel. Every load and commit names them, so they are remembered."""
        return _keys(self.prefix, sid, kinds)

    def header(self, sid: str) -> str:
        return f"{self.base(sid)}h:{sid}"

    def messages(self, sid: str) -> str:
        return f"{self.base(sid)}m:{sid}"

    def vectors(self, sid: str) -> str:
        return f"{self.base(sid)}v:{sid}"

    def expiries(self, sid: str) -> str:
        return f"{self.base(sid)}x:{sid}"

    def user_index(self, user_id: str) -> str:
        return f"{self.base(user_record_id(user_id))}i"

    def forgotten(self, user_id: str) -> str:
        """Cluster mode: when forget_user last ran for the user (Redis server time)."""
        return f"{self.base(user_record_id(user_id))}f"

    def channel(self, sid: str) -> str:
        return f"{self.base(sid)}c:{sid}"

    def header_pattern(self) -> str:
        return f"{_glob_escape(self.prefix)}{{*}}:h:*"

    def index_pattern(self) -> str:
        return f"{_glob_escape(self.prefix)}{{{USER_PREFIX}*}}:i"

    def ref_of_index_key(self, key: str) -> str | None:
        """The user a SCANned index key belongs to, None for a key that is not one of ours."""
        head = f"{self.prefix}{{{USER_PREFIX}"
        if not key.startswith(head) or not key.endswith("}:i"):
            return None
        return key[len(head) : -3]

    def sid_of_header_key(self, key: str) -> str | None:
        """The record id in a header key, None for a key that is not one of ours."""
        rest = key[len(self.prefix) :] if key.startswith(self.prefix) else None
        if rest is None or not rest.startswith("{"):
            return None
        close = rest.find("}:h:")
        return None if close < 0 else rest[close + 4 :]


@functools.lru_cache(maxsize=4096)
def _keys(prefix: str, sid: str, kinds: str) -> tuple[str, ...]:
    base = f"{prefix}{{{tag(sid)}}}:"
    return tuple([f"{base}{kind}:{sid}" for kind in kinds])


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# -- parsing -----------------------------------------------------------------------------------


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _hash(reply: Sequence[bytes] | dict[bytes, bytes]) -> dict[Any, bytes]:
    """HGETALL's reply as a map, its field names as they arrived (bytes; text from a client
    that decodes replies): a map already from redis-py, a flat [field, value, ...] list from a
    script."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


_META_NAMES = tuple(name.encode() for name in HEADER_FIELDS)

ENTRY_BYTES = 4 << 20
"""Bytes of a hash's state fields kept decoded in this process, in each of two generations."""
_ENTRIES: KeptByBytes[Entry] = KeptByBytes(ENTRY_BYTES)
"""A state field's bytes -> its entry: a load reads every field of a large state, and all but
the ones a save changed are the bytes the load before read. Entries hold the value as stored
(sealed, with encryption on), and nobody changes them, so every store shares them."""


def parse_header(
    session_id: str, flat: Sequence[bytes] | dict[bytes, bytes] | None
) -> SessionHeader | None:
    """A header from an HGETALL reply (a map, or a script's flat [field, value, ...] list); None
    when the hash is absent. Field names are looked up as the bytes they arrive as."""
    if not flat:
        return None
    return _header_of_fields(session_id, _hash(flat))


def _header_of_fields(session_id: str, fields: dict[Any, bytes]) -> SessionHeader | None:
    if b"_v" not in fields and "_v" in fields:  # names as text (a client that decodes replies)
        fields = {name.encode(): data for name, data in fields.items()}
    state = ((name, data) for name, data in fields.items() if name[:2] == b"s:")
    return build_header(session_id, [fields.get(f) for f in _META_NAMES], state)


def build_header(
    session_id: str, meta: Sequence[bytes | None], state: Iterable[tuple[bytes, bytes]]
) -> SessionHeader | None:
    """A header from its meta fields (HEADER_FIELDS order) and its state's (field, value)
    pairs, fields named "s:<key>"."""
    v, ca, ua, ea, rev, mc, tt, summed, uid, ch, lead = meta
    if v is None:
        return None
    try:
        if v != b"1":
            raise ValueError(f"unknown header version {v!r}")
        if ca is None:
            raise KeyError("_ca")
        summary = None
        if summed is not None:
            s = unpack(summed)
            summary = Summary(s[0], s[1], s[2], s[3])
        known = _ENTRIES
        entries: dict[str, Entry] = {}
        for name, data in state:
            entry = known.get(data) or known.recall(data)
            if entry is None:
                entry = known.keep(data, Entry.from_wire(unpack(data)))
            entries[name[2:].decode()] = entry
        return SessionHeader(
            session_id=session_id,
            user_id=None if uid is None else text_of(uid),
            created_at=float(ca),
            updated_at=float(ca if ua is None else ua),
            expires_at=None if ea is None else float(ea),
            revision=int(rev),  # type: ignore[arg-type]
            message_count=int(mc),  # type: ignore[arg-type]
            token_total=int(tt),  # type: ignore[arg-type]
            summary=summary,
            children=[] if ch is None else text_of(ch).split("/"),
            state=entries,
            lead=None if lead is None else int(lead),
        )
    except (ValueError, TypeError, KeyError, IndexError, UnicodeDecodeError) as exc:
        raise CorruptRecord(session_id, f"bad header ({exc})") from exc
    except Exception as exc:  # msgpack's own errors
        raise CorruptRecord(session_id, f"bad header ({exc})") from exc


def live_header(session_id: str, flat: Sequence[bytes] | None, now: float) -> SessionHeader | None:
    header = parse_header(session_id, flat)
    return header if header is not None and header.live(now) else None


# -- operations ----------------------------------------------------------------------------------


SPREAD_ARGS = 1000
"""Up to this many commit arguments travel as msgpack values one after another, which the
script unpacks straight into a table of the right size; more (Lua's stack takes about 8000
values) as one msgpack array, which is built up entry by entry."""


def pack_args(args: Sequence[str | bytes | int]) -> bytes:
    """The commit script's arguments as its one ARGV (lua.COMMIT unpacks both forms)."""
    packed: bytes = msgpack.packb(args, use_bin_type=False)
    n = len(args)
    if n > SPREAD_ARGS:
        return packed
    return packed[1:] if n <= 15 else packed[3:]  # the array's header (1 or 3 bytes) cut off


def commit_op(layout: KeyLayout, delta: Delta, path: LoadPath | None = None) -> Op[Committed]:
    """A save in one script: the same merge as records.apply_delta, done where the data is.
    `path`: this process's LoadPath, told of a session created with a user."""
    if path is not None:
        path.committing(delta)
    sid = delta.session_id
    now = delta.now
    create = delta.create
    is_user = sid.startswith(USER_PREFIX)
    child_name = sid.rsplit("/", 1)[1] if "/" in sid and not is_user else ""
    parent = sid.rsplit("/", 1)[0] if child_name else sid
    expires_at = delta.expires_at
    pexpire = (
        ""
        if expires_at is None
        else str(max(math.ceil((expires_at - now) * 1000), 0) + EXPIRY_SLACK_MS)
    )
    uid = create.user_id if create is not None and create.user_id is not None else ""
    summary = delta.summary
    changed = sorted(set(delta.set) | set(delta.delete))
    *key_list, channel = layout.keys(sid, "hmvxc")
    args: list[str | bytes | int] = [
        _num(now),
        "" if create is None else _num(create.created_at),
        uid,
        "" if delta.expected_revision is None else str(delta.expected_revision),
        _num(expires_at),
        "1" if delta.replace_log else "",
        str(delta.append_tokens),
        b""
        if summary is None
        else pack([summary.value, summary.upto, summary.covered_tokens, summary.tokens]),
        "" if summary is None else str(summary.upto),
        child_name,
        channel,
        pexpire,
        pack(changed),
        len(delta.set),
        len(delta.delete),
        len(delta.append),
        len(delta.vectors),
        sid,
        delta.lead_appended,
    ]
    for key, entry in delta.set.items():
        args += [
            key,
            pack(entry.to_wire()),
            _num(entry.expires_at),
        ]
    args += delta.delete
    args += delta.append
    for position, vector in delta.vectors.items():
        args += [str(position), vector]
    key_list.append(key_list[0] if parent == sid else layout.header(parent))
    # A user's record without an expiry of its own (Store.user_ttl) lives as long as the user's
    # index, which each commit of one of the user's sessions keeps as long as that session.
    follow = is_user and expires_at is None
    if follow:
        args[11] = str(EXPIRY_SLACK_MS)  # if the user has no index (no session) at all
    # the incarnation a header gets when this commit creates it (lua.COMMIT; see kept.py)
    incarnation = b"" if create is None else os.urandom(8)
    args[19:19] = ["" if layout.cluster else layout.prefix, "1" if follow else "", incarnation]
    index = uid and not child_name and not is_user
    if index and not layout.cluster:
        key_list.append(layout.user_index(uid))
    elif follow:
        key_list.append(layout.user_index(sid[len(USER_PREFIX) :]))
    elif index and create is not None:
        # Cluster: the index is in the user's slot, so it cannot be written by the commit script.
        # Write it first: if the commit then fails, the entry names no session and listings skip
        # it; the other order could store a session that no listing or forget_user ever finds.
        # A user without a live session starts afresh (the script does this in standalone mode).
        yield from _drop_orphan_user(layout, uid, now)
        urid = user_record_id(uid)
        yield from script(
            "index_add",
            [layout.user_index(uid), layout.header(urid), layout.expiries(urid)],
            [sid, _num(create.created_at), pexpire],
        )
    # One argument, the rest packed in it: redis-py and Redis each handle one value, not dozens
    reply = yield from script("commit", key_list, [pack_args(args)])
    status = text_of(reply[0])
    if status == "NOTFOUND":
        raise SessionNotFound(sid)
    if status == "CONFLICT":
        raise ConflictError(sid, delta.expected_revision or 0, int(reply[1]))
    created_at = float(reply[5])
    ref = text_of(reply[7]) if len(reply) > 7 else ""
    if layout.cluster and ref and not child_name and not is_user and create is None:
        # Cluster: the user's keys are in another slot; their TTL follows best-effort (the
        # session's own save needs only its own shard; the next save tries again)
        rid = user_record_id(ref)
        with suppress(Exception):  # what the user's shard says is not this save's concern
            yield from script(
                "touch_user",
                [layout.user_index(ref), layout.header(rid), layout.expiries(rid)],
                [pexpire],
            )
    lead = reply[6]
    committed = Committed(
        int(reply[2]), int(reply[3]), int(reply[4]), created_at, int(lead) if lead else None
    )
    if path is not None and sid in path.states:  # (tested here: most sessions have none kept)
        path.states.committed(delta, committed.revision)
    return committed


def _dead_index_entries(layout: KeyLayout, ref: str, now: float) -> Op[tuple[list[str], int]]:
    """The user's index entries whose session is gone or expired, and how many entries."""
    ids = [text_of(s) for s in (yield Command(("ZRANGE", layout.user_index(ref), 0, -1)))]
    if not ids:
        return [], 0
    metas = yield Pipeline([Command(("HMGET", layout.header(sid), "_v", "_ea")) for sid in ids])
    dead = [
        sid
        for sid, (version, ea) in zip(ids, metas, strict=True)
        if version is None or (ea is not None and float(ea) <= now)
    ]
    return dead, len(ids)


def _drop_orphan_user(layout: KeyLayout, ref: str, now: float, *, purge: bool = False) -> Op[bool]:
    """What a user without a live session left (index entries; state without an expiry of its
    own, or past it): dropped, so a new session of the user starts afresh. True when the user's
    record went. (In standalone mode the commit script does this itself.) `purge`: drop the
    index entries of sessions that are gone even when others are live."""
    dead, count = yield from _dead_index_entries(layout, ref, now)
    if purge:
        if count and len(dead) < count and not dead:
            return False
    elif not count or len(dead) < count:  # a new user, or one with a live session
        return False
    rid = user_record_id(ref)
    reply = yield from script(
        "purge_user",
        [layout.user_index(ref), layout.header(rid)],
        [_num(now), layout.base(rid), ref, *dead],
    )
    return bool(int(reply))


class LoadPath:
    """How this process's loads read (standalone Redis): as plain reads, or through the load
    script.

    Plain reads (MULTI: the header, the newest messages, the parents' headers) cost Redis a
    quarter of what the script does, since nothing passes through Lua. But what depends on the
    header (a user's state, and the leading system prompt when the window does not reach it)
    can join them only when the client knows it beforehand. So this process remembers, for the
    sessions it met, the user and how many leading system messages lie before the window
    (neither changes once a conversation has begun, and the header read beside them says
    whether they still hold). The next load of such a session reads them in the same
    transaction.

    A session met for the first time loads plainly, unless this process met one that needs
    either in its last EPOCH loads: then through the script, which reads whatever the header
    names. A plain load that meets one reads the user's state in a second round trip (the
    prompt is read when a window asks for it). Per process and lock-free, like
    statemw._readahead: a lost update costs one load a round trip.
    """

    EPOCH = 256
    REMEMBERED = 10_000
    """Sessions remembered; past that the memory starts afresh."""

    __slots__ = ("_needs", "_scripted", "states")

    def __init__(self) -> None:
        self._scripted = 0  # loads of unknown sessions left that go through the script
        self._needs: dict[str, tuple[str | None, int]] = {}  # session -> (user, lead)
        self.states = KeptStates()  # large states, which a plain load reads only when changed

    def needs(self, session_id: str) -> tuple[str | None, int] | None:
        """What a plain load of the session also reads: (its user, its leading system
        messages); None to load it through the script."""
        known = self._needs.get(session_id)
        if known is not None:
            return known
        if self._scripted:
            self._scripted -= 1
            return None
        return (None, 0)

    def saw(self, session_id: str, snapshot: Snapshot | None) -> None:
        """A load read this session: remember what its next load needs."""
        if snapshot is None:
            self._needs.pop(session_id, None)
            return
        header = snapshot.header
        lead = header.lead or 0
        if min(lead, snapshot.window_start) == 0:
            lead = 0  # no prompt, or the window reaches it
        self._remember(session_id, header.user_id, lead)
        if header.user_id is not None or lead:
            self._scripted = self.EPOCH

    def committing(self, delta: Delta) -> None:
        """A save creates a session: this process will likely load it."""
        create = delta.create
        if create is not None:
            self._remember(delta.session_id, create.user_id, 0)
            if create.user_id is not None:
                self._scripted = self.EPOCH

    def _remember(self, session_id: str, user_id: str | None, lead: int) -> None:
        if len(self._needs) >= self.REMEMBERED and session_id not in self._needs:
            self._needs.clear()
        self._needs[session_id] = (user_id, min(lead, LEAD_SCAN))


def load_op(
    layout: KeyLayout, session_id: str, window: int, now: float, path: LoadPath | None = None
) -> Op[Snapshot | None]:
    """The session's snapshot: through the load script, or, when `path` says so (standalone
    only), as plain reads in one transaction (see LoadPath)."""
    parents = parent_ids(session_id) if not session_id.startswith(USER_PREFIX) else []
    if path is None or layout.cluster:
        return (yield from _scripted_load(layout, session_id, parents, window, now))
    needs = path.needs(session_id)
    if needs is None:
        snapshot = yield from _scripted_load(layout, session_id, parents, window, now, path.states)
    else:
        snapshot = yield from _plain_load(
            layout, session_id, parents, window, now, *needs, states=path.states
        )
    path.saw(session_id, snapshot)
    return snapshot


def _scripted_load(
    layout: KeyLayout,
    session_id: str,
    parents: list[str],
    window: int,
    now: float,
    states: KeptStates | None = None,
) -> Op[Snapshot | None]:
    reply = yield from script(
        "load",
        [*layout.keys(session_id, "hm"), *(layout.header(p) for p in parents)],
        [_num(now), str(window), "" if layout.cluster else layout.prefix],
    )
    if not reply:
        return None
    header = _read_whole(states, session_id, reply[0])
    if header is None:
        return None
    snapshot = Snapshot(
        header,
        int(reply[1]),
        list(reply[2]),
        _parents(parents, reply[3], states),
        None,
        list(reply[5]),
    )
    if header.user_id is None:
        return snapshot
    uid = user_record_id(header.user_id)
    if not layout.cluster:
        snapshot.user = _read_whole(states, uid, reply[4])
        return snapshot
    # Cluster: the user's header is in another slot, maybe on another shard. The same call
    # checks that the user index lists this session (repairing it) and that forget_user did not
    # miss it. When that shard is down the session loads without its user state, flagged.
    top_level = "/" not in session_id and not session_id.startswith(USER_PREFIX)
    try:
        flat, forgotten = yield from user_check(
            layout, header.user_id, [(session_id, header.created_at)] if top_level else []
        )
    except DOWN:
        snapshot.user_unavailable = True
        return snapshot
    if forgotten:
        yield from delete_op(layout, session_id)
        return None
    snapshot.user = parse_header(uid, flat)
    return snapshot


def _header_read(h: str, kept: KeptState | None) -> Command:
    """The read of a session's header `h`: the whole hash, or, when this process keeps its
    state, the hash only if it is at another version than the one kept (lua.HEADER_IF_CHANGED)."""
    if kept is None:
        return Command(("HGETALL", h))
    sha = SHAS["header_if_changed"]
    return Command(("EVALSHA", sha, 1, h, kept.incarnation, kept.revision))


def _header_of(
    states: KeptStates | None, session_id: str, kept: KeptState | None, reply: Any
) -> SessionHeader | None:
    """The header from what _header_read's command answered (`kept`: what it asked with)."""
    if kept is None:
        return _read_whole(states, session_id, reply)
    assert states is not None
    unchanged, answer = reply
    if not unchanged:
        return _read_whole(states, session_id, answer)
    header = build_header(session_id, answer[1:], ())
    if header is not None:
        header.state = kept.entries()
    return header


def _read_whole(
    states: KeptStates | None, session_id: str, flat: Sequence[bytes] | None
) -> SessionHeader | None:
    """A header from a whole hash (HGETALL), its state kept in `states` if it is large."""
    if not flat:
        if states is not None:
            states.drop(session_id)
        return None
    fields = _hash(flat)
    header = _header_of_fields(session_id, fields)
    if (  # KeptStates.read would drop a small state: checked here to skip the call
        states is not None
        and header is not None
        and (len(header.state) >= KEEP_FROM or session_id in states)
    ):
        states.read(session_id, fields.get(b"_in"), header.revision, header.state)
    return header


def _parents(
    parents: list[str],
    replies: Sequence[Any],
    states: KeptStates | None = None,
    kept: Sequence[KeptState | None] | None = None,
) -> list[SessionHeader]:
    """The headers of the parents that exist, from what their reads answered (nearest first;
    `kept`: what each read asked with, as in _header_of)."""
    asked = kept if kept is not None else [None] * len(parents)
    found = (
        _header_of(states, p, k, reply) for p, k, reply in zip(parents, asked, replies, strict=True)
    )
    return [header for header in found if header]


def _plain_load(
    layout: KeyLayout,
    session_id: str,
    parents: list[str],
    window: int,
    now: float,
    user_id: str | None = None,
    lead: int = 0,
    *,
    states: KeptStates | None = None,
) -> Op[Snapshot | None]:
    """The load as plain reads in one transaction; `user_id` and `lead` (LoadPath.needs) are
    read beside them, and used when the header says they still hold. A state kept in `states`
    is read only if it changed (kept.py)."""
    h, m = layout.keys(session_id, "hm")
    kept = states.get(session_id) if states is not None else None
    # _header_read and _header_of each handle `kept is None` too; a short session's load (the
    # common one) skips the calls: together about 0.4% of a turn (bench/instructions.py)
    reads = [Command(("HGETALL", h)) if kept is None else _header_read(h, kept)]
    if window > 0:  # the newest `window` messages (LRANGE -0 -1 would be all of them)
        reads.append(Command(("LRANGE", m, -window, -1)))
    kept_parents = [states.get(p) if states is not None else None for p in parents]
    reads += [_header_read(layout.header(p), k) for p, k in zip(parents, kept_parents, strict=True)]
    kept_user = None
    if user_id is not None:
        uid = user_record_id(user_id)
        kept_user = states.get(uid) if states is not None else None
        reads.append(_header_read(layout.header(uid), kept_user))
    if lead:
        reads.append(Command(("LRANGE", m, 0, lead - 1)))
    try:
        replies = yield Transaction(reads)
    except NoScriptError:  # a new or restarted server: load the script, read again
        yield Command(("SCRIPT", "LOAD", SCRIPTS["header_if_changed"]))
        replies = yield Transaction(reads)
    header = (
        _read_whole(states, session_id, replies[0])
        if kept is None
        else _header_of(states, session_id, kept, replies[0])
    )
    if header is None or not header.live(now):
        return None
    count = header.message_count
    start = header.window_start(window)
    newest: list[bytes] = replies[1] if window > 0 else []
    messages = newest[max(len(newest) - (count - start), 0) :] if count > start else []
    parents_at = 2 if window > 0 else 1  # the parents' headers follow the header and window
    flats = replies[parents_at : parents_at + len(parents)]
    snapshot = Snapshot(header, start, messages, _parents(parents, flats, states, kept_parents))
    wanted = min(header.lead or 0, start)
    if wanted and wanted <= lead:
        snapshot.lead = replies[-1][:wanted]
    if header.user_id is not None:
        uid = user_record_id(header.user_id)
        if header.user_id == user_id:
            user = _header_of(states, uid, kept_user, replies[parents_at + len(parents)])
        else:
            user = _read_whole(states, uid, (yield Command(("HGETALL", layout.header(uid)))))
        snapshot.user = user
    return snapshot


def user_check(layout: KeyLayout, user_id: str, sessions: Sequence[tuple[str, float]]) -> Op[Any]:
    """Cluster: the user's header, and which of these top-level sessions of the user forget_user
    missed (the rest are put back in the index if a failure left them out)."""
    args: list[str | bytes | int] = [len(sessions)]
    for sid, created_at in sessions:
        args += [sid, _num(created_at)]
    keys = [
        layout.header(user_record_id(user_id)),
        layout.user_index(user_id),
        layout.forgotten(user_id),
    ]
    return script("user_check", keys, args)


def read_header_op(layout: KeyLayout, session_id: str, now: float) -> Op[SessionHeader | None]:
    flat = yield Command(("HGETALL", layout.header(session_id)))
    header = live_header(session_id, flat, now)
    if header is not None and header.expires_at is None and session_id.startswith(USER_PREFIX):
        # a user's state without an expiry of its own: live while one of the user's sessions is
        dead, count = yield from _dead_index_entries(layout, session_id[len(USER_PREFIX) :], now)
        if len(dead) == count:
            return None
    return header


def read_messages_op(layout: KeyLayout, session_id: str, start: int, stop: int) -> Op[list[bytes]]:
    start = max(start, 0)
    if stop <= start:
        return []
    reply = yield Command(("LRANGE", layout.messages(session_id), start, stop - 1))
    return list(reply)


def read_vectors_op(
    layout: KeyLayout, session_id: str, start: int, stop: int
) -> Op[dict[int, bytes]]:
    if stop <= start:
        return {}
    if stop - start <= VECTOR_RANGE_READ or stop <= 0:  # the usual case: name the positions
        return (yield from read_vectors_at_op(layout, session_id, range(start, stop)))
    reply = yield Command(("HGETALL", layout.vectors(session_id)))
    pairs = ((int(k), v) for k, v in _hash(reply).items())  # (int() reads bytes and text)
    return {position: v for position, v in pairs if start <= position < stop}


def read_vectors_at_op(
    layout: KeyLayout, session_id: str, positions: Sequence[int]
) -> Op[dict[int, bytes]]:
    if not positions:
        return {}
    values = yield Command(("HMGET", layout.vectors(session_id), *positions))
    return {p: v for p, v in zip(positions, values, strict=True) if v is not None}


def delete_op(layout: KeyLayout, session_id: str, states: KeptStates | None = None) -> Op[bool]:
    if states is not None:  # a deleted session's data does not stay in this process
        states.drop_tree(session_id)
    is_user = session_id.startswith(USER_PREFIX)
    child_name = session_id.rsplit("/", 1)[1] if "/" in session_id and not is_user else ""
    parent = session_id.rsplit("/", 1)[0] if child_name else session_id
    key_list = [layout.header(session_id), layout.header(parent)]
    if not layout.cluster and not child_name and not is_user:
        uid = yield Command(("HGET", layout.header(session_id), "_uid"))
        if uid is not None:
            key_list.append(layout.user_index(text_of(uid)))
    reply = yield from script("delete", key_list, [session_id, layout.base(session_id), child_name])
    if not int(reply[0]):
        return False
    if layout.cluster and not child_name and not is_user and reply[1]:
        yield Command(("ZREM", layout.user_index(text_of(reply[1])), session_id))
    return True


def rename_op(
    layout: KeyLayout, old_id: str, new_id: str, now: float, states: KeptStates | None = None
) -> Op[None]:
    if states is not None:
        states.drop_tree(old_id)
    if not layout.cluster:
        key_list = [layout.header(old_id), layout.header(new_id)]
        uid = yield Command(("HGET", layout.header(old_id), "_uid"))
        if uid is not None and "/" not in new_id:
            key_list.append(layout.user_index(text_of(uid)))
        reply = yield from script(
            "rename",
            key_list,
            [_num(now), old_id, new_id, layout.base(old_id), layout.base(new_id)],
        )
        if text_of(reply[0]) == "NOTFOUND":
            raise SessionNotFound(old_id)
        return None
    # Cluster: the new id hashes to another slot, so copy every key, then delete the old tree.
    header = yield from read_header_op(layout, old_id, now)
    if header is None:
        raise SessionNotFound(old_id)
    if header.user_id is not None and "/" not in new_id:
        # The new id enters the user index before its first key exists (see commit_op).
        index = layout.user_index(header.user_id)
        score = yield Command(("ZSCORE", index, old_id))
        score = header.created_at if score is None else float(score)
        yield Command(("ZADD", index, "NX", _num(score), new_id))
    pending = [(old_id, new_id)]
    while pending:
        old, new = pending.pop()
        flat = yield Command(("HGETALL", layout.header(old)))
        child = parse_header(old, flat)
        if child is None:
            continue
        pending.extend((f"{old}/{n}", f"{new}/{n}") for n in child.children)
        for kind in ("header", "messages", "vectors", "expiries"):
            src, dst = getattr(layout, kind)(old), getattr(layout, kind)(new)
            dumped, ttl = yield Pipeline([Command(("DUMP", src)), Command(("PTTL", src))])
            if dumped is not None:
                yield Command(("RESTORE", dst, max(int(ttl), 0), dumped, "REPLACE"))
    yield from delete_op(layout, old_id)
    return None


def user_sessions_op(layout: KeyLayout, user_id: str, now: float) -> Op[list[str]]:
    ids = [text_of(s) for s in (yield Command(("ZRANGE", layout.user_index(user_id), 0, -1)))]
    if not ids:
        return []
    metas = yield Pipeline([Command(("HMGET", layout.header(sid), "_v", "_ea")) for sid in ids])
    gone = [sid for sid, (version, _) in zip(ids, metas, strict=True) if version is None]
    if gone and layout.cluster:  # a young entry may be a create whose commit is in flight
        scores = yield Command(("ZMSCORE", layout.user_index(user_id), *gone))
        settled = now - INDEX_GRACE_SECONDS
        gone = [
            s for s, score in zip(gone, scores, strict=True) if score and float(score) < settled
        ]
    if gone:  # Redis expired them by itself: drop them from the index too
        yield Command(("ZREM", layout.user_index(user_id), *gone))
    return [
        sid
        for sid, (version, ea) in zip(ids, metas, strict=True)
        if version is not None and (ea is None or float(ea) > now)
    ]


def forget_user_op(layout: KeyLayout, user_id: str, states: KeptStates | None = None) -> Op[int]:
    if states is not None:  # which kept states are the user's is not known here: all go
        states.clear()
    index = layout.user_index(user_id)
    if layout.cluster:
        # Mark the user forgotten first: a session the index does not list (a create racing
        # this call, an index write lost in a failover) is then deleted by the next load or
        # purge that meets it, instead of being put back in the index.
        yield from script("forget_mark", [layout.forgotten(user_id)], [])
    ids = [text_of(s) for s in (yield Command(("ZRANGE", index, 0, -1)))]
    removed = 0
    for sid in ids:
        removed += bool((yield from delete_op(layout, sid)))
    yield Command(("DEL", index))
    yield from delete_op(layout, user_record_id(user_id))
    return removed


def purge_op(
    layout: KeyLayout,
    header_keys: Sequence[str],
    now: float,
    progress: Progress | None = None,
    index_keys: Sequence[str] = (),
) -> Op[int]:
    """Expired sessions and keys, then what users left: index entries that point at nothing,
    and a user's record once no session of the user is live (unless it has its own expiry)."""
    removed = 0
    refs: dict[str, None] = {}
    total = len(header_keys) + len(index_keys)
    live_roots: list[str] = []
    for done, key in enumerate(header_keys, 1):
        if progress is not None:
            progress(done, total)
        sid = layout.sid_of_header_key(key)
        if sid is None:
            continue
        is_user = sid.startswith(USER_PREFIX)
        root = is_user or "/" not in sid
        key_list = [layout.header(sid)]
        if root and not is_user and not layout.cluster:
            uid = yield Command(("HGET", layout.header(sid), "_uid"))
            if uid is not None:
                key_list.append(layout.user_index(text_of(uid)))
        reply = yield from script(
            "purge", key_list, [_num(now), sid, layout.base(sid), "1" if root else ""]
        )
        if int(reply[0]):
            removed += not is_user
            if layout.cluster and not is_user and reply[1]:
                yield Command(("ZREM", layout.user_index(text_of(reply[1])), sid))
        elif is_user:
            refs[sid[len(USER_PREFIX) :]] = None
        elif root:
            live_roots.append(sid)
    if layout.cluster:
        removed += yield from reconcile_op(layout, live_roots)
    for done, key in enumerate(index_keys, len(header_keys) + 1):
        if progress is not None:
            progress(done, total)
        ref = layout.ref_of_index_key(key)
        if ref is not None:
            refs[ref] = None
    for ref in refs:
        yield from _drop_orphan_user(layout, ref, now, purge=True)
    return removed


def reconcile_op(layout: KeyLayout, session_ids: Sequence[str]) -> Op[int]:
    """Cluster: put live top-level sessions that their user's index misses back into it, and
    delete those of a user forgotten since they were created. The number deleted."""
    removed = 0
    for start in range(0, len(session_ids), PURGE_BATCH):
        batch = session_ids[start : start + PURGE_BATCH]
        metas = yield Pipeline([Command(("HMGET", layout.header(s), "_uid", "_ca")) for s in batch])
        by_user: dict[str, list[tuple[str, float]]] = {}
        for sid, (uid, created_at) in zip(batch, metas, strict=True):
            if uid is not None and created_at is not None:
                by_user.setdefault(text_of(uid), []).append((sid, float(created_at)))
        for uid, sessions in by_user.items():
            _, forgotten = yield from user_check(layout, uid, sessions)
            for sid in forgotten:
                removed += bool((yield from delete_op(layout, text_of(sid))))
    return removed


def parse_change(session_id: str, data: bytes) -> Change:
    """A message the commit script PUBLISHed: b"<revision>\\n<message count>\\n<msgpack keys>"."""
    if data == b"deleted":
        return Change(session_id, 0, 0, deleted=True)
    revision, count, keys = data.split(b"\n", 2)
    return Change(session_id, int(revision), int(count), tuple(unpack(keys)))


def top_level_session_id(layout: KeyLayout, key: str) -> str | None:
    """The top-level session id a SCANned header key names (None for sub-sessions, users)."""
    sid = layout.sid_of_header_key(key)
    if sid is None or "/" in sid or sid.startswith(USER_PREFIX):
        return None
    return sid
