"""Session: one conversation's state mapping, message log and sub-sessions, with its bookkeeping.

A Session is data plus the rules for changing it: what a save must write (`save_plan`), what a
commit means for it (`committed`), how it starts over after a delete or moves after a rotate. It
does no I/O of its own: `save()`, `load()`, `child()`, `user` (first use) and reads of old
messages ask the Store it came from, which carries out the I/O.

One module, past 400 lines, because it is one object: the state, the log, the sub-sessions
and the user's state change together on every save and commit, and the context methods users
call on it (get_history, compact) read all of them; the pieces that stand alone live beside it
(state.py, messages.py, window.py, _semantic.py).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from statemw import telemetry
from statemw._default import default_store
from statemw._drive import adrive, ask, drive
from statemw._semantic import SessionVectors
from statemw.backends.base import ReadMessages, StoreFlow
from statemw.codec import META_KEY, DecodedState
from statemw.errors import (
    CorruptRecord,
    InvalidValue,
    LimitExceeded,
    StateError,
    StoreUnavailable,
)
from statemw.formats import shape_held, to_raw
from statemw.ids import check_child_name
from statemw.messages import Message, MessageLog, MessageRecord, make_message, tool_result_ids
from statemw.records import (
    LEAD_SCAN,
    Committed,
    Delta,
    SessionHeader,
    Snapshot,
    Summary,
    user_record_id,
)
from statemw.state import StaleKey, TrackedState
from statemw.vectors import Batched, Embed
from statemw.window import Options, plan

if TYPE_CHECKING:
    from statemw.store import Store


class Context(dict[str, Any]):
    """A merged mapping for a prompt: `session + profile + live_context` (later operands win)."""

    def __add__(self, other: Mapping[str, Any]) -> Context:
        return Context({**self, **other})


class _Saved(TrackedState):
    """State that is saved as one record: a session's own state, or a user's.

    Names are what the app sees; the store holds each under its stored key (the name itself,
    or its keyed hash with encryption on: codec.entry_key)."""

    __slots__ = ("_stored_keys", "_superseded", "_written", "record_id", "store", "user_id")
    store: Store
    record_id: str
    _stored_keys: dict[str, str]  # filled with encryption only (else names are stored keys)
    _superseded: Sequence[str]
    _written: tuple[dict[str, int], list[str], dict[str, str]]

    def _init_state(self, state: DecodedState | None) -> None:
        store = self.store
        if state is None:
            state = DecodedState()
        self._init_tracking(
            state.values,
            store.clock,
            expiry=state.expiry,
            sizes=state.sizes,
            max_value_bytes=store.max_value_bytes,
            checks=state.checks,
            entries=state.entries,
        )
        self._stored_keys = cast(dict[str, str], state.stored)
        self._superseded = state.stale  # stored keys of names found under a newer one
        self._written = _NOTHING_WRITTEN

    def _state_delta(self, now: float, create: SessionHeader | None) -> Delta:
        """The keys set and deleted since load, encoded, size-checked."""
        sets, deletes = self.changes()
        if not (sets or deletes or self._superseded):
            self._written = _NOTHING_WRITTEN
            return Delta(session_id=self.record_id, now=now, create=create)
        codec = self.store.codec
        if not codec.encrypted:  # names are the stored keys
            encode = codec.encode
            entries = {
                key: self._written_entry(
                    key, encode(value, what=functools.partial(self._name, key)), expires_at, now
                )
                for key, (value, expires_at) in sets.items()
            }
            sizes = {k: len(e.value) for k, e in entries.items()}
            self._check_size(sizes, deletes)
            self._written = (sizes, deletes, _AS_NAMED)
            return Delta(
                session_id=self.record_id, now=now, create=create, set=entries, delete=deletes
            )
        stored = self._stored_keys
        entries = {}
        written: dict[str, int] = {}
        keys: dict[str, str] = {}
        gone = list(self._superseded)
        for name, (value, expires_at) in sets.items():
            what = functools.partial(self._name, name)
            key, data = codec.encode_entry(name, value, what=what)
            entries[key] = self._written_entry(name, data, expires_at, now)
            written[name] = len(data)
            keys[name] = key
            if stored.get(name, key) != key:  # stored under another key before (rotation)
                gone.append(stored[name])
        for name in deletes:
            gone.append(codec.entry_key(name))
            if stored.get(name, gone[-1]) != gone[-1]:
                gone.append(stored[name])
        self._check_size(written, deletes)
        self._written = (written, deletes, keys)
        if len(gone) > len(deletes):
            gone = list(dict.fromkeys(k for k in gone if k not in entries))
        return Delta(session_id=self.record_id, now=now, create=create, set=entries, delete=gone)

    def _check_size(self, written: dict[str, int], deletes: list[str]) -> None:
        limit = self.store.max_state_bytes
        if limit is not None:
            size = self.size_after(written, deletes)
            if size > limit:
                raise LimitExceeded(
                    f"session {self.record_id!r}: state is {size} bytes, over "
                    f"max_state_bytes={limit}"
                )

    def _name(self, key: str) -> str:
        return f"state key {key!r} of session {self.record_id!r}"

    def _state_committed(self, delta: Delta) -> None:
        written, deletes, keys = self._written
        sets = delta.set
        if keys is _AS_NAMED:
            self.mark_committed(
                written, deletes, {k: e.updated_at for k, e in sets.items()} if sets else None
            )
            self._written = _NOTHING_WRITTEN
            return
        self.mark_committed(
            written,
            deletes,
            {name: sets[key].updated_at for name, key in keys.items()} if keys else None,
        )
        for name in deletes:
            self._stored_keys.pop(name, None)
        self._stored_keys.update(keys)
        self._superseded = []
        self._written = _NOTHING_WRITTEN


_NOTHING_WRITTEN: tuple[dict[str, int], list[str], dict[str, str]] = ({}, [], {})
_AS_NAMED: dict[str, str] = {}
"""In _written: the stored keys are the names (no encryption)."""


class UserState(_Saved):
    """State shared by all sessions of one user (`session.user`), saved with the session.

    `ref`: what the user is stored under (codec.user_refs; the user id itself without
    encryption)."""

    __slots__ = ("ref", "stored")

    def __init__(
        self, store: Store, user_id: str, header: SessionHeader | None, ref: str | None = None
    ) -> None:
        super().__init__()
        self.store = store
        self.user_id = user_id
        self.ref = store.codec.user_refs(user_id)[0] if ref is None else ref
        self.record_id = user_record_id(self.ref)
        self.stored = header is not None
        state = None
        if header is not None:
            state = store.codec.decode_state(self.record_id, header.state, store.clock(), into=self)
        self._init_state(state)

    _scope = "user"

    @property
    def _owner(self) -> str:
        return self.user_id

    def delta(self, now: float) -> Delta:
        create = SessionHeader(self.record_id, self.ref, now, now)
        delta = self._state_delta(now, create)
        if self.store.user_ttl is not None:
            delta.expires_at = now + self.store.user_ttl
        return delta

    def committed(self, result: Committed, delta: Delta) -> None:
        self.stored = True
        self._state_committed(delta)


SavePart: TypeAlias = "tuple[Session | UserState, Delta]"
"""One record a save commits, and the object that takes the result (`committed`)."""


class _LogReader:
    """How a session's message log reads what it has not loaded: through the store, under the
    session's current id. Its own object, not the session's bound methods, so a session and its
    log form no reference cycle: a request's session is freed when the request drops it, not
    left for the garbage collector."""

    __slots__ = ("session_id", "store")

    def __init__(self, store: Store, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    def fetch(self, start: int, stop: int) -> list[MessageRecord]:
        """The log's blocking read of messages it has not loaded."""
        stored = self.store.backend.read_messages(self.session_id, start, stop)
        return [self.decode(b) for b in stored]

    def decode(self, data: bytes) -> MessageRecord:
        return self.store.codec.decode_message(self.session_id, data)


class Session(_Saved):
    """A conversation: a dict of state plus a message log, loaded from and saved to a Store.

    Make one with `Session.create(...)` or `Session.load(id)` (or the Store's methods).
    """

    __slots__ = (
        "_ancestors",
        "_ancestors_next_stale",
        "_child_names",
        "_children",
        "_created_at",
        "_inherited",
        "_lead",
        "_log",
        "_pending_summary",
        "_reader",
        "_revision",
        "_stored",
        "_stored_summary",
        "_summary_message",
        "_token_total",
        "_user",
        "_user_header",
        "_user_ref",
        "_user_unavailable",
        "_vectors",
        "deleted",
        "id",
        "parent",
        "permanent_default",
    )

    def __init__(
        self,
        store: Store,
        session_id: str,
        user_id: str | None,
        *,
        header: SessionHeader | None = None,
        window_start: int = 0,
        window: Sequence[bytes] = (),
        lead: Sequence[bytes] = (),
        parent: Session | None = None,
        inherited: Mapping[str, Any] | None = None,
        user_header: SessionHeader | None = None,
        user_unavailable: bool = False,
        ancestors: Sequence[tuple[str, DecodedState]] = (),
    ) -> None:
        """The Store's constructor: a new session (`header=None`) or one as loaded."""
        super().__init__()
        self.store = store
        self.id = session_id
        self.record_id = session_id
        self.user_id = user_id
        self._user_ref: str | None = None  # what the user is stored under, once known
        state = None
        if header is not None:
            codec = store.codec
            state = codec.decode_state(session_id, header.state, store.clock(), into=self)
            self._user_ref = header.user_id
            if META_KEY in state.stored:
                self.user_id = state.user_id
            elif not state.sealed and (
                header.summary is not None
                or (window and (type(window[-1]) is not bytes or window[-1][:1] != b"\x01"))
            ):
                self._check_key(header, window)
        self._init_state(state)
        self.parent = parent
        self.accessed = False
        self.deleted = False
        self._stored = header is not None
        self._created_at = None if header is None else header.created_at
        self._revision = 0 if header is None else header.revision
        self._token_total = 0 if header is None else header.token_total
        self._stored_summary = None if header is None else header.summary
        self._lead: int | None = 0 if header is None else header.lead
        self._reader = _LogReader(store, session_id)
        self._log = MessageLog(
            0 if header is None else header.message_count,
            window_start,
            list(window),
            self._reader.fetch,
            self._reader.decode,
            lead=list(lead),
            leading=0 if header is None else header.lead or 0,
            reached=store.readahead.saw,
            known=store.codec.decoded,
        )
        self._inherited = inherited or {}
        self._ancestors: list[tuple[str, DecodedState]] = list(ancestors) if ancestors else []
        self._ancestors_next_stale = (
            min((c[1] for _, d in self._ancestors for c in d.checks.values()), default=math.inf)
            if ancestors
            else math.inf
        )
        self._child_names = [] if header is None else list(header.children)
        self.permanent_default = False
        self._user: UserState | None = None
        self._user_header = user_header
        self._user_unavailable = user_unavailable
        self._children: dict[str, Session] = {}
        self._pending_summary: Summary | None = None
        self._summary_message: Message | None = None
        self._vectors: SessionVectors | None = None  # made by the first semantic query

    def _check_key(self, header: SessionHeader, window: Sequence[bytes]) -> None:
        """A session written before records carried their sealed facts: open its newest sealed
        record, so a wrong key fails the load, not a later read (or a save that would mix keys)."""
        codec = self.store.codec
        for record in (header.summary.value if header.summary else b"", *window[-1:]):
            if type(record) is not bytes:
                raise CorruptRecord(self.id, "a message record is not bytes")
            if record[:1] not in (b"", b"\x01"):
                codec.open(record, session_id=self.id)

    def user_to_look_up(self) -> str | None:
        """The user of a new session whose stored ref is not known yet, else None (with
        encryption the store looks it up before the first save: the user may be under an older
        key's hash)."""
        return self.user_id if self.is_new and self._user_ref is None else None

    def attach_user_ref(self, ref: str) -> None:
        """What this session's user is stored under, as the store found it."""
        self._user_ref = ref

    def user_ref(self) -> str | None:
        """What this session's user is stored under (None: no user)."""
        if self.user_id is None:
            return None
        if self._user_ref is None:
            if self.parent is not None:
                self._user_ref = self.parent.user_ref()
            else:
                self._user_ref = self.store.codec.user_refs(self.user_id)[0]
        return self._user_ref

    @classmethod
    def loaded(cls, store: Store, snap: Snapshot, parent: Session | None = None) -> Session:
        """A session as a load read it (parents' state is inherited by a top-level sub-session
        that was loaded by its own id)."""
        header = snap.header
        inherited: dict[str, Any] = {}
        ancestors: list[tuple[str, DecodedState]] = []  # nearest first, as snap.parents
        if parent is None:
            for ancestor in snap.parents:
                decoded = store.codec.decode_state(
                    ancestor.session_id, ancestor.state, store.clock()
                )
                ancestors.append((ancestor.session_id, decoded))
            for _, decoded in reversed(ancestors):  # nearest ancestor wins
                inherited.update(decoded.values)
        return cls(
            store,
            header.session_id,
            header.user_id,
            header=header,
            window_start=snap.window_start,
            window=snap.window,
            lead=snap.lead,
            parent=parent,
            inherited=inherited,
            user_header=snap.user,
            user_unavailable=snap.user_unavailable,
            ancestors=ancestors,
        )

    # -- lifecycle (I/O through the store) -------------------------------------------------------

    @classmethod
    def create(
        cls,
        user_id: str | None = None,
        *,
        store: Store | None = None,
        session_id: str | None = None,
    ) -> Session:
        """A new session (stored on its first save)."""
        return (store or default_store()).create(user_id=user_id, session_id=session_id)

    @classmethod
    def load(cls, session_id: str, *, store: Store | None = None) -> Session:
        """The stored session; SessionNotFound when there is none (or it expired)."""
        return (store or default_store()).load(session_id)

    @classmethod
    async def aload(cls, session_id: str, *, store: Store | None = None) -> Session:
        return await (store or default_store()).aload(session_id)

    def save(self, *, strict: bool = False) -> None:
        """Write what changed since load (a new session is always written).

        strict=True raises ConflictError if the session was saved elsewhere since it was loaded,
        instead of merging.
        """
        self.store.save(self, strict=strict)

    async def asave(self, *, strict: bool = False) -> None:
        await self.store.asave(self, strict=strict)

    def delete(self) -> None:
        """Remove the conversation from the store; this object starts over, empty, with a new id."""
        self.store.delete(self)

    async def adelete(self) -> None:
        await self.store.adelete(self)

    def rotate(self) -> str:
        """Move the session to a fresh id (after login, against fixation); returns the new id."""
        return self.store.rotate(self)

    async def arotate(self) -> str:
        return await self.store.arotate(self)

    def child(self, name: str) -> Session:
        """The sub-session `name`: its own state and messages; reads fall back to this session."""
        name = check_child_name(name)
        if name not in self._children:
            self._children[name] = self.store.load_child(self, name)
        return self._children[name]

    async def achild(self, name: str) -> Session:
        name = check_child_name(name)
        if name not in self._children:
            self._children[name] = await self.store.aload_child(self, name)
        return self._children[name]

    @property
    def root(self) -> Session:
        """The top-level session of a sub-session (itself for a top-level one)."""
        return self if self.parent is None else self.parent.root

    @property
    def is_new(self) -> bool:
        """True until the session is first stored."""
        return not self._stored

    @property
    def created_at(self) -> float | None:
        return self._created_at

    @property
    def revision(self) -> int:
        """How many saves the store has committed for this session (0 before the first)."""
        return self._revision

    @property
    def unsaved(self) -> bool:
        """True when a save would write something: state, messages, summary, user state."""
        return (
            bool(self._log.appended)
            or TrackedState.unsaved.fget(self)  # type: ignore[attr-defined]
            or self._log.replaced
            or self._pending_summary is not None
            or (self.parent is None and self._user is not None and self._user.unsaved)
            or (bool(self._children) and any(c.unsaved for c in self._children.values()))
        )

    @property
    def modified(self) -> bool:
        """True once anything was written since load, saved or not (as Flask and Starlette
        mean it); set it to True to force a save."""
        return self._saved_changes or self.unsaved

    @modified.setter
    def modified(self, value: bool) -> None:
        TrackedState.modified.fset(self, value)  # type: ignore[attr-defined]

    def is_empty(self) -> bool:
        """No state, no messages, no sub-sessions and no unsaved user state: no session at all."""
        return (
            not dict.__len__(self)
            and not len(self._log)
            and not self._child_names
            and not self._children
            and not (self._user is not None and self._user.unsaved)
        )

    @property
    def permanent(self) -> bool:
        """Flask's session.permanent: the cookie outlives the browser (kept under "_permanent",
        as Flask keeps it)."""
        return bool(dict.get(self, "_permanent", self.permanent_default))

    @permanent.setter
    def permanent(self, value: bool) -> None:
        self["_permanent"] = bool(value)

    @property
    def new(self) -> bool:
        """Flask's session.new: the session was not stored before this request."""
        return self.is_new

    def mark_accessed(self) -> None:
        """Starlette's `request.session` calls this: the response depends on the session."""
        self.accessed = True

    # -- the store's side: what a save writes, and what a commit, delete or rotate means ---------

    def save_plan(self, now: float, *, strict: bool = False) -> list[SavePart]:
        """The records a save commits, in order: new ancestors, this session, its user's state,
        its modified sub-sessions. Pure: encodes, checks limits, writes nothing."""
        chain = []
        ancestor = self.parent
        while ancestor is not None and ancestor.is_new:
            chain.append(ancestor)
            ancestor = ancestor.parent
        parts: list[SavePart] = [(a, a._delta(now, strict=False)) for a in reversed(chain)]
        self._plan_tree(now, strict, parts)
        user = self.root._user
        if user is not None and user.unsaved:
            parts.append((user, user.delta(now)))
        return parts

    def _plan_tree(self, now: float, strict: bool, parts: list[SavePart]) -> None:
        delta = self._delta(now, strict=strict)
        if self.is_new or not delta.empty or self.forced:
            parts.append((self, delta))
        for child in self._children.values():
            if child.unsaved:
                child._plan_tree(now, False, parts)

    def _delta(self, now: float, *, strict: bool) -> Delta:
        create = None
        if not self._stored:
            create = SessionHeader(self.id, self.user_ref(), created_at=now, updated_at=now)
        delta = self._state_delta(now, create)
        if self.store.codec.encrypted and META_KEY not in self._stored_keys:
            delta.set[META_KEY] = self.store.codec.meta_entry(self.user_id, now)
        appended = self._log.appended
        if appended:
            encode = self.store.codec.encode
            what = self._message_name
            delta.append = [encode(r.to_wire(), what=what) for r in appended]
            self.store.codec.keep_encoded(delta.append, appended)
            delta.append_tokens = sum([r.tokens for r in appended])
            delta.lead_appended = next(
                (i for i, r in enumerate(appended) if r.message.get("role") != "system"),
                len(appended),
            )
        delta.replace_log = self._log.replaced
        delta.summary = self._pending_summary
        if self._vectors is not None and self._vectors.pending:
            delta.vectors = dict(self._vectors.pending)
        delta.expires_at = self.store.expires_at(
            now if self._created_at is None else self._created_at, now
        )
        if strict:
            delta.expected_revision = self._revision
        return delta

    def _message_name(self) -> str:
        return f"message of session {self.id!r}"

    def committed(self, result: Committed, delta: Delta) -> None:
        """The store committed `delta`: this session is in step with it now."""
        self._stored = True
        self._created_at = result.created_at
        self._revision = result.revision
        self._token_total = result.token_total
        self._lead = result.lead
        if delta.replace_log:
            self._stored_summary = None
        if self._pending_summary is not None:
            self._stored_summary = self._pending_summary
            self._pending_summary = None
        if self._vectors is not None:
            self._vectors.committed(
                0 if delta.replace_log else self._log.stored,
                len(delta.append),
                result.message_count,
                delta.vectors,
            )
        self._log.committed(result.message_count)
        self._state_committed(delta)
        if META_KEY in delta.set:
            self._stored_keys[META_KEY] = META_KEY

    def reset(self, new_id: str) -> None:
        """After a delete: empty, under a new id, flagged so adapters expire the cookie."""
        dict.clear(self)
        self._init_state(None)
        self.id = self.record_id = new_id
        self._reader = _LogReader(self.store, new_id)
        self._stored = False
        self._created_at = None
        self._revision = self._token_total = 0
        self._stored_summary = self._pending_summary = self._summary_message = None
        self._lead = 0
        self._log = MessageLog(0, 0, [], self._reader.fetch, self._reader.decode)
        self._children.clear()
        self._child_names = []
        self._user = None  # re-read on use: forget_user may have removed it too
        self._user_header = None
        self._user_unavailable = False
        self._vectors = None
        self.deleted = True

    def renamed(self, new_id: str) -> None:
        """After a rotate: the same data under a new id (sub-sessions follow)."""
        self.id = self.record_id = self._reader.session_id = new_id
        for name, child in self._children.items():
            child.renamed(f"{new_id}/{name}")

    def attach_user(self, user: UserState) -> None:
        """The user's shared state, read ahead (async code cannot read it on first use)."""
        self._user = user
        if self._user_ref is None:
            self._user_ref = user.ref

    # -- state with parent fallback ------------------------------------------------------------

    def __missing__(self, key: str) -> Any:
        if self.parent is not None:
            return self.parent[key]
        if key in self._inherited:
            return self._inherited[key]
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            return True
        if self.parent is not None:
            return key in self.parent
        return key in self._inherited

    # -- age and checks, with parent fallback ---------------------------------------------------

    @property
    def _owner(self) -> str:
        return self.id

    def _holder(self, key: str) -> Session | tuple[str, DecodedState] | None:
        """Where a read of `key` finds it: this session or an ancestor Session, else an ancestor
        read along with a sub-session loaded by its own id (its id and state), else None."""
        level: Session | None = self
        while level is not None:
            if TrackedState.__contains__(level, key):
                return level
            if level.parent is None:
                break
            level = level.parent
        assert level is not None
        for owner, decoded in level._ancestors:
            if key in decoded.values:
                return owner, decoded
        return None

    def updated_at(self, key: str) -> float | None:
        """When the value `session[key]` reads was last set or confirmed: this session's own,
        else the nearest ancestor's (reads fall back the same way); None when there is none.
        User-scoped keys: `session.user.updated_at(key)`."""
        holder = self._holder(key)
        if isinstance(holder, Session):
            return TrackedState.updated_at(holder, key)
        return None if holder is None else holder[1].entries[key].updated_at

    def stale_at(self, key: str) -> float | None:
        """When the value `session[key]` reads is due for a check (None: never)."""
        holder = self._holder(key)
        if isinstance(holder, Session):
            return TrackedState.stale_at(holder, key)
        check = None if holder is None else holder[1].checks.get(key)
        return None if check is None else check[1]

    def confirm(self, key: str) -> None:
        """The value `session[key]` reads is still true: its age starts over where it lives (this
        session, or the ancestor a sub-session reads it from); value, ttl and confirm_after
        stay. A StaleKey from stale_keys() is confirmed where it says (scope "user":
        `session.user`). Saved like a write; KeyError when there is no such key."""
        if isinstance(key, StaleKey) and key.scope == "user":
            self.user.confirm(key)
            return
        holder = self._holder(key)
        if isinstance(key, StaleKey) and key.scope == "parent":
            level = self.parent
            while level is not None and level.id != key.owner:
                level = level.parent
            holder = level if level is not None else holder
        if holder is None:
            raise KeyError(key)
        if not isinstance(holder, Session):
            raise StateError(
                f"{str(key)!r} belongs to session {holder[0]!r}, read along with this "
                f"sub-session: confirm it on that session (store.load({holder[0]!r}))"
            )
        TrackedState.confirm(holder, key)

    def stale_keys(self) -> list[StaleKey]:
        """The keys due for a check now: this session's own (scope "session"), its ancestors'
        that it reads through (scope "parent"; `owner` names the ancestor; a key this session
        or a nearer ancestor holds hides theirs) and its user's (scope "user"). Each is a str
        with `.scope`, `.owner`, `.updated_at`, `.stale_at`; `confirm(stale_key)` confirms it
        where it lives. O(1) while nothing is due."""
        now = self.store.clock()
        out = [StaleKey(k, "session", self.id, s - a, a) for k, a, s in self._stale(now)]
        nearer: list[Mapping[str, Any]] = [self]
        level = self
        while level.parent is not None:
            level = level.parent
            for k, a, s in level._stale(now):
                if not any(dict.__contains__(m, k) for m in nearer):
                    out.append(StaleKey(k, "parent", level.id, s - a, a))
            nearer.append(level)
        if level._ancestors_next_stale <= now:
            for owner, decoded in level._ancestors:
                for k, (a, s) in decoded.checks.items():
                    live = decoded.expiry.get(k, math.inf) > now
                    if s <= now and live and not any(dict.__contains__(m, k) for m in nearer):
                        out.append(StaleKey(k, "parent", owner, s - a, a))
                nearer.append(decoded.values)
        if level.user_id is not None and level._user_may_be_stale(now):
            out.extend(level.user.stale_keys())
        return out

    def _user_may_be_stale(self, now: float) -> bool:
        """Whether the user's state may hold a stale key, without decoding it when it does not."""
        if self._user is not None:
            return self._user._next_stale <= now
        if not self._stored:
            return True  # read on first use
        header = self._user_header
        return header is not None and any(
            e.confirm_after is not None and e.updated_at + e.confirm_after <= now and e.live(now)
            for e in header.state.values()
        )

    @property
    def user_unavailable(self) -> bool:
        """True when the load could not read the user's shared state (on Redis Cluster, the
        user's shard was down): `session.user` then raises StoreUnavailable. The session's own
        state and messages are loaded and saved as usual."""
        if self.parent is not None:
            return self.parent.user_unavailable
        return self._user_unavailable

    @property
    def user(self) -> UserState:
        """State shared by every session of this session's user (saved along with it)."""
        if self.parent is not None:
            return self.parent.user
        if self._user is None:
            if self.user_id is None:
                raise StateError("this session has no user_id, so it has no user state")
            if self._user_unavailable:
                raise StoreUnavailable(
                    f"the state of user {self.user_id!r} could not be read with session"
                    f" {self.id!r} (its Redis Cluster shard was down); the rest of the session"
                    " is usable"
                )
            if self._stored:  # read with the session
                self._user = UserState(self.store, self.user_id, self._user_header, self.user_ref())
            else:  # a new session: read on first use
                self.attach_user(self.store.user_state(self.user_id))
        assert self._user is not None
        return self._user

    # -- messages ------------------------------------------------------------------------------

    def add_message(
        self, role: str | Mapping[str, Any], content: Any = None, /, **fields: Any
    ) -> Message:
        """Append a message ({"role", "content", ...fields}, or a whole message dict) to the log."""
        message = make_message(role, content, fields)
        self._log.appended.append(self.store.new_record(message, len(self._log)))
        return message

    @property
    def messages(self) -> MessageLog:
        """The whole log as a sequence (len O(1); old items read on demand)."""
        return self._log

    @messages.setter
    def messages(self, new: Sequence[Any]) -> None:
        """Replace the log; `[summary] + session.messages[-k:]` is recorded as a compaction."""
        new = list(new)
        kept = _common_suffix(new, self._log)
        head = new[: len(new) - kept]
        if kept and len(head) == 1 and _summary_text(head[0]) is not None:
            text = _summary_text(head[0])
            assert text is not None
            self.set_summary(text, upto=len(self._log) - kept)
            return
        records = []
        for i, item in enumerate(new):
            if isinstance(item, str):
                item = {"role": "system", "content": item}
            if not isinstance(item, Mapping):
                raise InvalidValue(f"messages[{i}] is {type(item).__name__}, not a message dict")
            records.append(self.store.new_record(make_message(item, None, {}), i))
        self._log.replace(records)
        self._vectors = None
        self._pending_summary = self._summary_message = None

    async def fetch_messages(self, start: int = 0, stop: int | None = None) -> list[Message]:
        """Messages [start, stop) read without blocking the event loop."""
        start, stop, _ = slice(start, stop).indices(len(self._log))
        records = await adrive(self._records(start, stop), self.store.abackend)
        return self._log.handed_out(start, records)

    def _records(self, start: int, stop: int) -> StoreFlow[list[MessageRecord]]:
        """Records [start, stop): what is loaded at no cost, the rest in one read."""
        need = self._log.missing(start, stop)
        if need is not None:
            raw = yield from ask(ReadMessages(self.id, *need))
            self._log.cache(need[0], [self._reader.decode(b) for b in raw])
        return self._log.records(start, stop)

    def set_summary(self, text: str, *, upto: int) -> None:
        """Record that `text` summarizes messages [0, upto): sent instead of them from now on."""
        if not 0 < upto <= len(self._log):
            raise InvalidValue(f"summary must cover 1..{len(self._log)} messages, not {upto}")
        tail_tokens = sum(r.tokens for r in self._log.records(upto, len(self._log)))
        self._pending_summary = self.store.new_summary(text, upto, self.total_tokens - tail_tokens)
        self._summary_message = None

    @property
    def summary(self) -> Summary | None:
        if self._pending_summary is not None:
            return self._pending_summary
        if self._log.replaced:
            return None
        return self._stored_summary

    def summary_message(self) -> Message | None:
        """The stored summary as a system message marked `"summary": True`, or None."""
        summary = self._summary_held()
        return None if summary is None else to_raw([summary])[0]

    def _summary_held(self) -> Message | None:
        """summary_message() as this session keeps it (for callers that copy it themselves)."""
        summary = self.summary
        if summary is None:
            return None
        if self._summary_message is None:
            self._summary_message = self.store.codec.decode_summary(self.id, summary)
        return self._summary_message

    @property
    def total_tokens(self) -> int:
        """Tokens of every message in the log, summarized ones included (O(1))."""
        stored = 0 if self._log.replaced else self._token_total
        return stored + sum(r.tokens for r in self._log.appended)

    def token_count(self) -> int:
        """Tokens of what get_history() sends by default: the summary plus what follows it. O(1)."""
        summary = self.summary
        if summary is None:
            return self.total_tokens
        return self.total_tokens - summary.covered_tokens + summary.tokens

    # -- what goes to the model (statemw.window) ------------------------------------------------

    def get_history(
        self,
        *,
        last: int | None = None,
        max_tokens: int | None = None,
        relevant_to: str | None = None,
        embed: Embed | Batched | None = None,
        k: int = 5,
        neighbours: bool = True,
        format: str = "openai",
    ) -> Any:
        """The context window for a model, summary first (see statemw.window for the rules).

        last: the last N messages. max_tokens: the newest that fit. relevant_to + embed: plus
        the k older messages most similar to the query, and (neighbours=True) the rest of their
        turns. embed: text -> vector, or statemw.batched(texts -> vectors) to embed a backlog in
        one call; each message is embedded once, and its vector saved with the session.
        format: "openai" (a list of dicts), "anthropic" ({"system", "messages"}) or "raw" (the
        stored dicts).
        """
        options = Options(last, max_tokens, relevant_to, embed, k, neighbours)
        if (obs := telemetry.observer()) is not None:
            return obs.run("get_history", self.store, self._history(options, format), self.id)
        return drive(self._history(options, format), self.store.backend)

    async def aget_history(
        self,
        *,
        last: int | None = None,
        max_tokens: int | None = None,
        relevant_to: str | None = None,
        embed: Embed | Batched | None = None,
        k: int = 5,
        neighbours: bool = True,
        format: str = "openai",
    ) -> Any:
        """get_history, reading older messages without blocking the event loop."""
        options = Options(last, max_tokens, relevant_to, embed, k, neighbours)
        if (obs := telemetry.observer()) is not None:
            flow = self._history(options, format)
            return await obs.arun("get_history", self.store, flow, self.id)
        return await adrive(self._history(options, format), self.store.abackend)

    def _history(self, options: Options, format: str) -> StoreFlow[Any]:
        summary = self.summary
        items = yield from plan(
            len(self._log),
            0 if summary is None else summary.upto,
            options,
            self._records,
            lambda start, stop, query: self._scores(start, stop, query, options.embed),
            summary_tokens=0 if summary is None else summary.tokens,
            lead=None if self._log.replaced else self._lead,
            loaded_from=self._log.loaded_from,
            rank=lambda start, stop, query: self._ranked(start, stop, query, options),
            verified=lambda position, record: self._semantic().verified(position, record),
        )
        return self._shape(items, format)

    def _semantic(self) -> SessionVectors:
        if self._vectors is None:
            self._vectors = SessionVectors()
        return self._vectors

    def _ranked(self, start: int, stop: int, query: str, options: Options) -> StoreFlow[Any]:
        """A long span's best candidates, scored from sketches (statemw._semantic)."""
        assert options.embed is not None
        stored = 0 if self._log.replaced or not self._stored else self._log.stored
        return (
            yield from self._semantic().ranked(
                self.id,
                self.store.codec,
                self._records,
                stored,
                start,
                stop,
                query,
                options.embed,
                8 * options.k,
            )
        )

    def _scores(
        self, start: int, stop: int, query: str, embed: Embed | Batched | None
    ) -> StoreFlow[list[float]]:
        """Similarity of messages [start, stop) to the query (statemw._semantic)."""
        assert embed is not None
        stored = 0 if self._log.replaced or not self._stored else self._log.stored
        if self._vectors is None:
            self._vectors = SessionVectors()
        return (
            yield from self._vectors.scores(
                self.id, self.store.codec, self._records, stored, start, stop, query, embed
            )
        )

    def _shape(self, items: list[MessageRecord], format: str) -> Any:
        """The system prompt, then the summary (marked as one), then the chosen messages, as
        copies in the asked format (the stored dicts are never handed out)."""
        messages = [i.message for i in items]
        summary = self._summary_held()
        if summary is not None:
            at = next(
                (n for n, m in enumerate(messages) if m.get("role") != "system"), len(messages)
            )
            messages.insert(at, summary)
        return shape_held(messages, format)

    def compact(self, summarize: Callable[[list[Message]], str], *, keep_last: int = 10) -> bool:
        """Summarize all but the last `keep_last` messages: summarize(messages) -> str is
        called once, with the previous summary (if any) first and then only the messages it
        did not cover. The originals stay in `messages`; from now on the summary is sent
        instead. Returns False when there was nothing new to summarize."""
        span = self._compaction_span(keep_last)
        if span is None:
            return False
        return self._compacted(summarize(self._to_summarize(span)), span)

    async def acompact(
        self, summarize: Callable[[list[Message]], Any], *, keep_last: int = 10
    ) -> bool:
        """compact() for async code; `summarize` may be a coroutine function."""
        span = self._compaction_span(keep_last)
        if span is None:
            return False
        await self.fetch_messages(*span)
        text = summarize(self._to_summarize(span))
        if inspect.isawaitable(text):
            text = await text
        return self._compacted(text, span)

    def _compaction_span(self, keep_last: int) -> tuple[int, int] | None:
        if keep_last < 0:
            raise InvalidValue(f"keep_last must be >= 0, got {keep_last}")
        summary = self.summary
        floor = 0 if summary is None else summary.upto
        for message in self._log[floor:LEAD_SCAN]:  # the system prompt is not summarized
            if message.get("role") != "system":
                break
            floor += 1
        boundary = len(self._log) - keep_last
        # never split a tool call from its results: move the cut before the call
        while boundary > floor and tool_result_ids(
            self._log[boundary] if boundary < len(self._log) else {}
        ):
            boundary -= 1
        return (floor, boundary) if boundary > floor else None

    def _to_summarize(self, span: tuple[int, int]) -> list[Message]:
        previous = self.summary_message()
        return ([previous] if previous else []) + [dict(m) for m in self._log[span[0] : span[1]]]

    def _compacted(self, text: Any, span: tuple[int, int]) -> bool:
        if not isinstance(text, str) or not text:
            raise InvalidValue("summarize() must return the summary text (a non-empty str)")
        self.set_summary(text, upto=span[1])
        return True

    def __add__(self, other: Mapping[str, Any]) -> Context:
        """The hybrid state of the seed article (docs/architecture.md): `session + user_profile +
        current_context` as one mapping."""
        inherited = dict(self.parent) if self.parent is not None else dict(self._inherited)
        return Context({**inherited, **self, **other})

    def __repr__(self) -> str:
        return (
            f"<Session {self.id!r} user={self.user_id!r} keys={len(self)} "
            f"messages={len(self._log)}{' new' if self.is_new else ''}>"
        )

    def __eq__(self, other: object) -> bool:
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]


def _common_suffix(new: list[Any], log: MessageLog) -> int:
    """How many trailing items of `new` are the log's last items, in order."""
    k = 0
    n = len(log)
    while k < len(new) and k < n:
        if new[len(new) - 1 - k] != log.records(n - 1 - k, n - k)[0].message:
            break
        k += 1
    return k


def _summary_text(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if (
        isinstance(item, Mapping)
        and (item.get("role") == "system" or item.get("summary") is True)
        and isinstance(item.get("content"), str)
    ):
        return str(item["content"])
    return None
