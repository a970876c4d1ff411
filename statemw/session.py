"""Session: one conversation's state mapping, message log and sub-sessions. Pure data.

A Session never does I/O of its own: `save()`, `load()`, `child()` and reads of old messages ask
the Store it came from. That keeps it trivially testable and lets sync and async code share it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from statemw.errors import InvalidValue, StateError
from statemw.formats import shape
from statemw.ids import check_child_name
from statemw.messages import Message, MessageLog, make_message
from statemw.records import SessionHeader, Summary
from statemw.state import Clock, TrackedState
from statemw.tokens import message_text
from statemw.window import (
    LEADING_SYSTEM_SCAN,
    Item,
    Options,
    Plan,
    Read,
    Step,
    plan,
    tool_result_ids,
)

if TYPE_CHECKING:
    from statemw.store import Store


class Context(dict[str, Any]):
    """A merged mapping for a prompt: `session + profile + live_context` (later operands win)."""

    def __add__(self, other: Mapping[str, Any]) -> Context:
        return Context({**self, **other})


class UserState(TrackedState):
    """State shared by all sessions of one user (`session.user`), saved with the session."""

    def __init__(self, user_id: str, stored: bool) -> None:
        super().__init__()
        self.user_id = user_id
        self.stored = stored


class Session(TrackedState):
    """A conversation: a dict of state plus a message log, loaded from and saved to a Store.

    Make one with `Session.create(...)` or `Session.load(id)` (or the Store's methods);
    the constructor is the Store's.
    """

    def __init__(
        self,
        *,
        store: Store,
        session_id: str,
        user_id: str | None,
        header: SessionHeader | None,
        state: Mapping[str, tuple[Any, bytes, float | None]],
        log: MessageLog,
        clock: Clock,
        parent: Session | None = None,
        inherited: Mapping[str, Any] | None = None,
        user: UserState | None = None,
    ) -> None:
        super().__init__()
        self._init_tracking(state, clock, max_value_bytes=store.max_value_bytes)
        self.id = session_id
        self.user_id = user_id
        self.store = store
        self.parent = parent
        self.accessed = False
        self.deleted = False
        self._header = header
        self._log = log
        self._inherited = inherited or {}
        self._user = user
        self._children: dict[str, Session] = {}
        self._pending_summary: Summary | None = None
        self._pending_vectors: dict[int, bytes] = {}
        self._vector_cache: dict[int, list[float]] = {}

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
        from statemw.store import default_store

        return (store or default_store()).create(user_id=user_id, session_id=session_id)

    @classmethod
    def load(cls, session_id: str, *, store: Store | None = None) -> Session:
        """The stored session; SessionNotFound when there is none (or it expired)."""
        from statemw.store import default_store

        return (store or default_store()).load(session_id)

    @classmethod
    async def aload(cls, session_id: str, *, store: Store | None = None) -> Session:
        from statemw.store import default_store

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
        return self._header is None

    @property
    def created_at(self) -> float | None:
        return None if self._header is None else self._header.created_at

    @property
    def revision(self) -> int:
        """How many saves the store has committed for this session (0 before the first)."""
        return 0 if self._header is None else self._header.revision

    @property
    def modified(self) -> bool:
        """True when a save would write something: state, messages, summary, user state."""
        return (
            TrackedState.modified.fget(self)  # type: ignore[attr-defined]
            or bool(self._log.appended)
            or self._log.replaced
            or self._pending_summary is not None
            or (self.parent is None and self._user is not None and self._user.modified)
            or any(c.modified for c in self._children.values())
        )

    @modified.setter
    def modified(self, value: bool) -> None:
        TrackedState.modified.fset(self, value)  # type: ignore[attr-defined]

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

    @property
    def user(self) -> UserState:
        """State shared by every session of this session's user (saved along with it)."""
        if self.parent is not None:
            return self.parent.user
        if self._user is None:
            if self.user_id is None:
                raise StateError("this session has no user_id, so it has no user state")
            self._user = self.store.user_state(self.user_id)  # a new session: read on first use
        return self._user

    # -- messages ------------------------------------------------------------------------------

    def add_message(
        self, role: str | Mapping[str, Any], content: Any = None, /, **fields: Any
    ) -> Message:
        """Append a message ({"role", "content", ...fields}, or a whole message dict) to the log."""
        message = make_message(role, content, fields)
        record = self.store.new_record(message, len(self._log))
        self._log.appended.append(record)
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
        self._log.appended = records
        self._log.replaced = True
        self._log.stored = self._log.start = 0
        self._log.window = []
        self._pending_summary = None

    async def fetch_messages(self, start: int = 0, stop: int | None = None) -> list[Message]:
        """Messages [start, stop) read without blocking the event loop."""
        n = len(self._log)
        start, stop, _ = slice(start, stop).indices(n)
        need = self._log.missing(start, stop)
        if need is not None:
            self._log.cache(need[0], await self.store.aread_records(self.id, *need))
        return [r.message for r in self._log.records(start, stop)]

    def set_summary(self, text: str, *, upto: int) -> None:
        """Record that `text` summarizes messages [0, upto): sent instead of them from now on."""
        if not 0 < upto <= len(self._log):
            raise InvalidValue(f"summary must cover 1..{len(self._log)} messages, not {upto}")
        tail_tokens = sum(r.tokens for r in self._log.records(upto, len(self._log)))
        self._pending_summary = self.store.new_summary(text, upto, self.total_tokens - tail_tokens)

    @property
    def summary(self) -> Summary | None:
        if self._pending_summary is not None:
            return self._pending_summary
        if self._header is None or self._log.replaced:
            return None
        return self._header.summary

    def summary_message(self) -> Message | None:
        """The stored summary as a system message marked `"summary": True`, or None."""
        summary = self.summary
        return None if summary is None else self.store.decode_summary(self.id, summary)

    @property
    def total_tokens(self) -> int:
        """Tokens of every message in the log, summarized ones included (O(1))."""
        stored = 0 if self._header is None or self._log.replaced else self._header.token_total
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
        embed: Callable[[str], Sequence[float]] | None = None,
        k: int = 5,
        format: str = "openai",
    ) -> Any:
        """The context window for a model, summary first (see statemw.window for the rules).

        last: the last N messages. max_tokens: the newest that fit. relevant_to + embed: plus
        the k older messages most similar to the query. format: "openai" (a list of dicts),
        "anthropic" ({"system", "messages"}) or "raw" (the stored dicts).
        """
        options = Options(last, max_tokens, relevant_to, embed, k)
        flow = self._history_plan(options)
        try:
            step = next(flow)
            while True:
                step = flow.send(self._answer(step, options))
        except StopIteration as done:
            return self._shape(done.value, format)

    async def aget_history(
        self,
        *,
        last: int | None = None,
        max_tokens: int | None = None,
        relevant_to: str | None = None,
        embed: Callable[[str], Sequence[float]] | None = None,
        k: int = 5,
        format: str = "openai",
    ) -> Any:
        """get_history, reading older messages without blocking the event loop."""
        options = Options(last, max_tokens, relevant_to, embed, k)
        flow = self._history_plan(options)
        try:
            step = next(flow)
            while True:
                if isinstance(step, Read):
                    await self.fetch_messages(step.start, step.stop)
                elif not self.is_new:
                    stored = await self.store.aread_vectors(self, step.start, step.stop)
                    self._vector_cache = {**stored, **self._vector_cache}
                step = flow.send(self._answer(step, options, read_store=False))
        except StopIteration as done:
            return self._shape(done.value, format)

    def _history_plan(self, options: Options) -> Plan:
        summary = self.summary
        floor = 0 if summary is None else summary.upto
        tokens = 0 if summary is None else summary.tokens
        return plan(len(self._log), floor, options, tokens)

    def _answer(self, step: Step, options: Options, read_store: bool = True) -> Any:
        """Carry out one plan step from what is loaded (and, for sync callers, the store)."""
        if isinstance(step, Read):
            return self._log.records(step.start, step.stop)
        known = {p: v for p, v in self._vector_cache.items() if step.start <= p < step.stop}
        missing = range(max(step.start, 0), step.stop)
        if read_store and any(p not in known for p in missing) and not self.is_new:
            known |= self.store.read_vectors(self, step.start, step.stop)
        assert options.embed is not None
        for position in missing:  # embed each text once; cache it with the message
            if position not in known:
                text = message_text(self._log.records(position, position + 1)[0].message)
                known[position] = list(options.embed(text))
                self._cache_vector(position, known[position])
        return known

    def _cache_vector(self, position: int, vector: list[float]) -> None:
        self._vector_cache[position] = vector
        if position < self._log.stored and not self._log.replaced:  # only stored positions hold
            self._pending_vectors[position] = self.store.encode_vector(self.id, vector)

    def _shape(self, items: list[Item], format: str) -> Any:
        """The system prompt, then the summary (marked as one), then the chosen messages."""
        messages = [dict(i.message) for i in items]
        summary = self.summary_message()
        if summary is not None:
            at = next(
                (n for n, m in enumerate(messages) if m.get("role") != "system"), len(messages)
            )
            messages.insert(at, summary)
        return shape(messages, format)

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
        for message in self._log[floor:LEADING_SYSTEM_SCAN]:  # the system prompt is not summarized
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
        """The seed's hybrid state: `session + user_profile + current_context` as one mapping."""
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
