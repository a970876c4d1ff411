"""Context windows: which part of a conversation goes to the model.

Strategies are small objects over pure data (messages with their stored token counts):

    LastN(10)                      the last 10 messages
    TokenBudget(4000)              the newest messages that fit in 4,000 tokens
    Relevant(query_vector, k=5)    plus the k older messages most similar to the query

Rules every strategy keeps:
- a tool call and its results are one group, kept or dropped together, and a tool result whose
  call is gone is never sent (history never starts with an orphaned tool result);
- the leading system prompt stays (even when it was summarized away), and so do system messages
  within the window;
- the summary of compacted messages stands first, marked as one;
- when even the newest group exceeds the budget, it is still returned.

Choosing what to read is a plan: a flow that reads ranges through the reader it is given, so
`get_history` and `aget_history` share it (statemw._drive). It reads only what the strategy
needs, newest first: `last=20` reads 21 messages, a 4,000-token budget reads back until the
budget is spent; messages already loaded cost no I/O. A system message inside the span a strategy
covers is kept with it (and costs nothing of the budget's share for other messages).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from statemw.errors import InvalidValue
from statemw.messages import Message, MessageRecord
from statemw.records import LEAD_SCAN

BUDGET_STEP = 16
"""Messages read per step when a token budget walks back through older history."""


@dataclass(frozen=True, slots=True)
class Item:
    """A message at its position in the log, with its stored token count."""

    position: int
    message: Message
    tokens: int


Group = tuple[Item, ...]


def tool_call_ids(message: Mapping[str, Any]) -> set[str]:
    """Ids of the tool calls a message makes (OpenAI tool_calls or Anthropic tool_use blocks)."""
    ids = {str(c.get("id")) for c in message.get("tool_calls") or () if isinstance(c, Mapping)}
    content = message.get("content")
    if isinstance(content, list):
        ids |= {
            str(b.get("id"))
            for b in content
            if isinstance(b, Mapping) and b.get("type") == "tool_use"
        }
    return ids


def tool_result_ids(message: Mapping[str, Any]) -> set[str]:
    """Ids of the tool calls a message answers (role "tool", or tool_result blocks)."""
    ids: set[str] = set()
    if message.get("role") == "tool":
        ids.add(str(message.get("tool_call_id")))
    content = message.get("content")
    if isinstance(content, list):
        ids |= {
            str(b.get("tool_use_id"))
            for b in content
            if isinstance(b, Mapping) and b.get("type") == "tool_result"
        }
    return ids


def group(items: Iterable[Item]) -> list[Group]:
    """Split messages into indivisible groups; orphaned tool results are left out."""
    groups: list[Group] = []
    current: list[Item] = []
    open_ids: set[str] = set()
    for item in items:
        answers = tool_result_ids(item.message)
        if answers and current and answers & open_ids:
            current.append(item)
            continue
        if current:
            groups.append(tuple(current))
            current, open_ids = [], set()
        if answers:
            continue  # a result whose call is not here: never sent
        calls = tool_call_ids(item.message)
        if calls:
            current, open_ids = [item], calls
        else:
            groups.append((item,))
    if current:
        groups.append(tuple(current))
    return groups


def size(groups: Iterable[Group]) -> int:
    return sum(i.tokens for g in groups for i in g)


def is_system(g: Group) -> bool:
    """A system message is never part of a tool group, so it stands alone."""
    return len(g) == 1 and g[0].message.get("role") == "system"


# -- strategies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastN:
    """The last `n` messages (whole groups; at least the newest group)."""

    n: int

    def select(self, groups: Sequence[Group]) -> list[Group]:
        chosen: list[Group] = []
        count = 0
        for g in reversed(groups):
            if chosen and count + len(g) > self.n:
                break
            chosen.append(g)
            count += len(g)
        return chosen[::-1]


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """The newest groups that fit in `max_tokens` (at least the newest group)."""

    max_tokens: int

    def select(self, groups: Sequence[Group], reserved: int = 0) -> list[Group]:
        chosen: list[Group] = []
        total = reserved
        for g in reversed(groups):
            tokens = size((g,))
            if chosen and total + tokens > self.max_tokens:
                break
            chosen.append(g)
            total += tokens
        return chosen[::-1]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


@dataclass(frozen=True, slots=True)
class Relevant:
    """The newest group, then the `k` older groups most similar to the query, then the newest
    groups that still fit; in original order and within `max_tokens` (None: no budget)."""

    query: Sequence[float]
    vectors: Mapping[int, Sequence[float]]  # position -> vector
    k: int = 5
    max_tokens: int | None = None

    def score(self, g: Group) -> float:
        return max(
            (cosine(self.query, self.vectors[i.position]) for i in g if i.position in self.vectors),
            default=-1.0,
        )

    def select(self, groups: Sequence[Group], reserved: int = 0) -> list[Group]:
        if not groups:
            return []
        budget = math.inf if self.max_tokens is None else self.max_tokens
        chosen = {len(groups) - 1}
        total = reserved + size((groups[-1],))
        older = sorted(range(len(groups) - 1), key=lambda i: self.score(groups[i]), reverse=True)
        for i in older[: self.k]:
            if total + size((groups[i],)) <= budget:
                chosen.add(i)
                total += size((groups[i],))
        for i in range(len(groups) - 2, -1, -1):  # then fill with the most recent
            if i in chosen:
                continue
            if total + size((groups[i],)) > budget or self.max_tokens is None:
                break
            chosen.add(i)
            total += size((groups[i],))
        return [groups[i] for i in sorted(chosen)]


# -- the plan: what to read, then what to send ---------------------------------------------------

S = TypeVar("S")
Reads = Generator[S, Any, list[MessageRecord]]
"""A reader's answer: records [start, stop), after whatever I/O steps (of type S) it needs."""


@dataclass(frozen=True, slots=True)
class Options:
    """get_history's keyword arguments, checked."""

    last: int | None = None
    max_tokens: int | None = None
    relevant_to: str | None = None
    embed: Callable[[str], Sequence[float]] | None = None
    k: int = 5

    def __post_init__(self) -> None:
        if self.last is not None and self.last < 0:
            raise InvalidValue(f"last must be >= 0, got {self.last}")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise InvalidValue(f"max_tokens must be positive, got {self.max_tokens}")
        if self.relevant_to is not None and self.embed is None:
            raise InvalidValue("relevant_to needs embed=fn (text -> list of floats)")
        if self.k < 0:
            raise InvalidValue(f"k must be >= 0, got {self.k}")


def _items(start: int, records: Sequence[MessageRecord]) -> list[Item]:
    return [Item(start + i, r.message, r.tokens) for i, r in enumerate(records)]


def plan(
    total: int,
    floor: int,
    options: Options,
    read: Callable[[int, int], Reads[S]],
    read_vectors: Callable[[int, int], Generator[S, Any, Mapping[int, Sequence[float]]]],
    *,
    summary_tokens: int = 0,
    lead: int | None = None,
) -> Generator[S, Any, list[Item]]:
    """Choose the messages to send from a log of `total` messages whose first `floor` are
    summarized, reading through `read(start, stop)`. `lead`: how many leading messages are the
    system prompt (None: unknown, so the first LEAD_SCAN are read to find out)."""
    if lead is None:
        head = yield from read(0, min(LEAD_SCAN, total))
        lead = next((i for i, r in enumerate(head) if r.message.get("role") != "system"), len(head))
    pinned = _items(0, (yield from read(0, lead))) if lead else []
    floor = max(floor, lead)
    reserved = summary_tokens + sum(i.tokens for i in pinned)
    if options.last == 0:
        return pinned

    semantic = options.relevant_to is not None
    if options.last is not None and not semantic:
        start = max(floor, total - options.last - 1)
        items = _items(start, (yield from read(start, total)))
    elif options.max_tokens is not None and not semantic:
        start, items, spent = total, [], reserved
        while start > floor and (not items or spent <= options.max_tokens):
            lo = max(floor, start - BUDGET_STEP)
            items[:0] = _items(lo, (yield from read(lo, start)))
            spent += sum(i.tokens for i in items[: start - lo])
            start = lo
    else:  # everything since the summary: semantic selection scores it all
        start = floor
        items = _items(start, (yield from read(start, total)))
    while start > floor and items and tool_result_ids(items[0].message):
        lo = max(floor, start - BUDGET_STEP)  # mid-group: read back to the tool call
        items[:0] = _items(lo, (yield from read(lo, start)))
        start = lo

    groups = group(items)
    system = [g for g in groups if is_system(g)]
    rest = [g for g in groups if not is_system(g)]
    reserved += size(system)
    if semantic:
        assert options.embed is not None
        assert options.relevant_to is not None
        vectors = yield from read_vectors(floor, total)
        relevant = Relevant(
            options.embed(options.relevant_to), vectors, options.k, options.max_tokens
        )
        rest = relevant.select(rest, reserved)
    if options.last is not None:
        rest = LastN(options.last).select(rest)
    if options.max_tokens is not None and not semantic:
        rest = TokenBudget(options.max_tokens).select(rest, reserved)
    chosen = sorted([*system, *rest], key=lambda g: g[0].position)
    return pinned + [i for g in chosen for i in g]
