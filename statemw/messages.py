"""Messages as stored and the `session.messages` view over an append-only log.

A message is a plain dict ({"role", "content", ...any provider fields}) kept exactly as given;
its token count and time live beside it in the record, never inside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

from statemw.errors import InvalidValue

Message = dict[str, Any]


_NONE: frozenset[str] = frozenset()


def tool_call_ids(message: Mapping[str, Any]) -> frozenset[str]:
    """Ids of the tool calls a message makes (OpenAI tool_calls or Anthropic tool_use blocks)."""
    calls = message.get("tool_calls")
    content = message.get("content")
    if not calls and type(content) is not list:
        return _NONE
    ids = {str(c.get("id")) for c in calls or () if type(c) is dict or isinstance(c, Mapping)}
    if isinstance(content, list):
        ids |= {
            str(b.get("id"))
            for b in content
            if (type(b) is dict or isinstance(b, Mapping)) and b.get("type") == "tool_use"
        }
    return frozenset(ids)


def tool_result_ids(message: Mapping[str, Any]) -> frozenset[str]:
    """Ids of the tool calls a message answers (role "tool", or tool_result blocks)."""
    content = message.get("content")
    is_tool = message.get("role") == "tool"
    if not is_tool and type(content) is not list:
        return _NONE
    ids: set[str] = {str(message.get("tool_call_id"))} if is_tool else set()
    if isinstance(content, list):
        ids |= {
            str(b.get("tool_use_id"))
            for b in content
            if (type(b) is dict or isinstance(b, Mapping)) and b.get("type") == "tool_result"
        }
    return frozenset(ids)


class Kind(NamedTuple):
    """What a message is to the window: the calls it makes, the calls it answers, system or not.
    A named tuple: a frozen dataclass costs three object.__setattr__ calls to make, and every
    tool call and result of a loaded log makes one."""

    calls: frozenset[str]
    answers: frozenset[str]
    system: bool


_PLAIN = Kind(_NONE, _NONE, False)
_SYSTEM = Kind(_NONE, _NONE, True)
PLAIN_TEXT = _PLAIN
"""The kind of a plain text message: no tool call or result, not a system message."""


def kind_of(message: Mapping[str, Any]) -> Kind:
    """What a message is to a context window (statemw.window). classify_all repeats its first
    test inline, for speed (3-4% of a first get_history): change both together."""
    role = message.get("role")
    if (
        role != "tool"
        and type(message.get("content")) is not list
        and not message.get("tool_calls")
    ):
        return _SYSTEM if role == "system" else _PLAIN  # the usual message: plain text
    calls, answers = tool_call_ids(message), tool_result_ids(message)
    if calls or answers:
        return Kind(calls, answers, False)
    return _SYSTEM if message.get("role") == "system" else _PLAIN


@dataclass(slots=True)
class MessageRecord:
    """One logged message with what statemw knows about it. `kind`: what the message is to a
    context window (statemw.window), worked out on first use and kept. `shared`: one record
    that every session reading the same stored bytes is given (statemw._decoded); nothing
    changes its message, and a session hands out its own copy (MessageLog.messages)."""

    message: Message
    tokens: int
    created_at: float
    kind: Kind | None = field(default=None, compare=False, repr=False)
    shared: bool = field(default=False, compare=False, repr=False)

    def classify(self) -> Kind:
        """This message's kind, worked out once and kept."""
        self.kind = kind_of(self.message)
        return self.kind

    def own_copy(self) -> MessageRecord:
        """The same record over a copy of its message's dict (a shared record's copy, not
        shared itself)."""
        return MessageRecord(self.message.copy(), self.tokens, self.created_at, self.kind)

    def to_wire(self) -> list[Any]:
        return [self.message, self.tokens, self.created_at]

    @classmethod
    def from_wire(cls, wire: Any) -> MessageRecord:
        if not isinstance(wire, list) or len(wire) != 3 or not isinstance(wire[0], dict):
            raise ValueError("not a message record")
        return cls(wire[0], int(wire[1]), float(wire[2]))


def classify_all(records: Sequence[MessageRecord]) -> bool:
    """Give each record its kind (worked out once and kept, as classify() does; a plain text
    message without a call), and say whether all are plain text to a window: no tool call or
    result, no system message (a window's common case, statemw.window)."""
    plain = True
    for record in records:
        kind = record.kind
        if kind is None:
            message = record.message
            role = message.get("role")
            if (
                role == "tool"
                or role == "system"
                or type(message.get("content")) is list
                or message.get("tool_calls")
            ):
                kind = record.classify()
            else:  # what kind_of says of it
                kind = record.kind = _PLAIN
        if kind is not _PLAIN:
            plain = False
    return plain


def make_message(role: str | Mapping[str, Any], content: Any, fields: Mapping[str, Any]) -> Message:
    """Build the message dict add_message stores; a whole message dict is accepted as `role`."""
    if isinstance(role, Mapping):
        if content is not None or fields:
            raise InvalidValue("pass either a message dict or role and content, not both")
        message = dict(role)
    else:
        message = {"role": role, "content": content, **fields}
    if not isinstance(message.get("role"), str) or not message["role"]:
        raise InvalidValue(f"a message needs a non-empty string role, got {message.get('role')!r}")
    return message


Fetch = Callable[[int, int], list[MessageRecord]]


class MessageLog(Sequence[Message]):
    """The whole log as a sequence: len() is O(1), items outside the loaded window are fetched.

    Loaded records stay encoded until first read, and are decoded once."""

    def __init__(
        self,
        stored: int,
        start: int,
        window: list[MessageRecord | bytes],
        fetch: Fetch,
        decode: Callable[[bytes], MessageRecord],
        *,
        lead: Sequence[MessageRecord | bytes] = (),
        leading: int = 0,
        reached: Callable[[int], None] | None = None,
        known: Mapping[bytes, MessageRecord] | None = None,
    ) -> None:
        self.stored = stored  # messages committed as of the last load or save
        self.start = start  # window covers [start, stored); encoded until first read
        self.window = window
        self._decode = decode
        self._known = known if known is not None else {}  # records decoded before, by bytes
        self._reached = reached  # told how many of the newest stored messages a read reaches
        # the leading system prompt (`leading` messages: loaded with the window, or read when
        # asked for), sent with every window: reading it is no reach back into the log
        self._lead = min(leading, max(start, 0))
        self.appended: list[MessageRecord] = []  # added since, not yet saved
        self.replaced = False  # the log was replaced wholesale: save rewrites it
        self._older: dict[int, MessageRecord] = {}
        self._fetch = fetch
        for i, item in enumerate(lead[: max(start, 0)]):  # the leading system prompt, if loaded
            self._older[i] = item if type(item) is MessageRecord else decode(item)  # type: ignore[arg-type]

    def replace(self, records: list[MessageRecord]) -> None:
        """The log becomes `records`, all unsaved; a save rewrites it."""
        self.appended = records
        self.replaced = True
        self.stored = self.start = 0
        self.window = []
        self._older = {}

    def __len__(self) -> int:
        return self.stored + len(self.appended)

    @property
    def loaded_from(self) -> int:
        """Messages from this position on are at hand: reading them needs no I/O."""
        return self.start

    def records(self, start: int, stop: int) -> list[MessageRecord]:
        """Records [start, stop), fetching what is not loaded in one read."""
        stored = self.stored
        start, stop = max(start, 0), min(stop, stored + len(self.appended))
        if start >= stop:
            return []
        if start < stored and stop > self._lead and self._reached is not None:
            self._reached(stored - start)
        if start >= self.start:  # all at hand: in the loaded window, or added since
            if stop <= stored:
                return self._window(start - self.start, stop - self.start)
            if start >= stored:
                return self.appended[start - stored : stop - stored]
            return (
                self._window(start - self.start, stored - self.start)
                + self.appended[: stop - stored]
            )
        need = self.missing(start, stop)
        if need is not None:
            self.cache(need[0], self._fetch(*need))
        return [self._at(i) for i in range(start, stop)]

    def _window(self, lo: int, hi: int) -> list[MessageRecord]:
        """Window items [lo, hi), each decoded on its first read (a record this process
        decoded before is one lookup)."""
        window, decode, known = self.window, self._decode, self._known
        for j in range(lo, hi):
            item = window[j]
            if type(item) is bytes:
                window[j] = known.get(item) or decode(item)
            elif type(item) is not MessageRecord:  # what a bad record holds: decode says so
                window[j] = decode(item)  # type: ignore[arg-type]
        return window[lo:hi]  # type: ignore[return-value]

    def cache(self, start: int, records: list[MessageRecord]) -> None:
        for i, record in enumerate(records, start):
            if i < self.start:
                self._older[i] = record

    def missing(self, start: int, stop: int) -> tuple[int, int] | None:
        """The range of [start, stop) that would need a read, or None (for async prefetch)."""
        if start >= self.start:
            return None
        need = [i for i in range(max(start, 0), min(stop, self.start)) if i not in self._older]
        return (need[0], need[-1] + 1) if need else None

    def _at(self, i: int) -> MessageRecord:
        if i >= self.stored:
            return self.appended[i - self.stored]
        if i >= self.start:
            item = self.window[i - self.start]
            if type(item) is not MessageRecord:
                item = self.window[i - self.start] = self._decode(item)  # type: ignore[arg-type]
            return item
        return self._older[i]

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return [self[i] for i in range(start, stop, step)]
            return self.messages(start, stop)
        i = index + len(self) if index < 0 else index
        if not 0 <= i < len(self):
            raise IndexError("message index out of range")
        return self.messages(i, i + 1)[0]

    def __iter__(self) -> Iterator[Message]:
        for start in range(0, len(self), 256):
            yield from self.messages(start, start + 256)

    def messages(self, start: int, stop: int) -> list[Message]:
        """Messages [start, stop) for code outside statemw, which may change them."""
        return self.handed_out(start, self.records(start, stop))

    def handed_out(self, start: int, records: list[MessageRecord]) -> list[Message]:
        """The messages of records [start, ...) for code outside statemw: a shared record is
        first replaced by one of this log's own, so a change made to it stays here."""
        start = max(start, 0)
        return [(self._own(start + i, r) if r.shared else r).message for i, r in enumerate(records)]

    def _own(self, i: int, record: MessageRecord) -> MessageRecord:
        own = record.own_copy()
        if i >= self.start:  # loaded with the window (what is appended is never shared)
            self.window[i - self.start] = own
        else:
            self._older[i] = own
        return own

    def __repr__(self) -> str:
        return f"<messages: {len(self)}>"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def committed(self, count: int) -> None:
        """After a save: the store now holds `count` messages, ours among the last."""
        ours = self.appended
        self.appended = []
        if not self.replaced and count == self.stored + len(ours):
            self.window.extend(ours)
        elif self.replaced and count == len(ours):
            self.start, self.window, self._older = 0, list(ours), {}
        else:  # others appended in between: our window no longer lines up; re-read on demand
            self.start, self.window, self._older = count, [], {}
        self.replaced = False
        self.stored = count
