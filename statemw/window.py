"""Context windows: which part of a conversation goes to the model.

Strategies are small objects over pure data (message groups with their stored token counts):

    LastN(10)                      the last 10 messages
    TokenBudget(4000)              the newest messages that fit in 4,000 tokens
    Relevant(scores, k=5)          plus the k older messages most similar to a query, with their
                                   turns

Rules every strategy keeps:
- a tool call and its results are one group, kept or dropped together, and a tool result whose
  call is gone is never sent (history never starts with an orphaned tool result);
- the leading system prompt stays (even when it was summarized away), and so does a system
  message inside the span a strategy covers (it costs nothing of another message's share);
- the summary of compacted messages stands first, marked as one;
- when even the newest group exceeds the budget, it is still returned.

Choosing what to read is a plan: a flow that reads ranges through the reader it is given, so
`get_history` and `aget_history` share it (statemw._drive). It reads only what the strategy
needs, newest first: `last=20` reads 21 messages, a 4,000-token budget reads back until the
budget is spent; messages already loaded cost no I/O. What a message is (a tool call, a result,
a system message) is worked out once per loaded message and kept with it. When every message
read is plain text (the usual case), each is its own group and none is a system message, so
the plan picks the newest that fit without building groups (`_newest`; a property test pins
it to the general path).

Semantic selection over a span of SPARSE_FROM messages or more reads part of it (`_sparse`):
the newest messages a budget would read, the system messages, and WINDOW messages either side
of the best-scored candidates (statemw._semantic ranks them from sketches), as separate
segments. Each segment is grouped whole (it never starts or ends inside a tool group), a turn
ends at a segment's edge, and the strategy is the same `Relevant`, over the groups read; only
messages with an exact score compete for the k places.

One module, past 400 lines, because the rules above are one contract: every strategy and the
plan that reads for it must keep all of them, and the property tests check them together.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from statemw.errors import InvalidValue
from statemw.messages import PLAIN_TEXT, MessageRecord, classify_all
from statemw.records import LEAD_SCAN
from statemw.vectors import Batched, Embed

SPARSE_FROM = 512
"""Semantic selection over this many messages since the summary, or more, reads only part of
them (see the module docstring); below, it reads and scores them all."""

WINDOW = 8
"""Messages read on each side of a candidate in a sparse selection (a turn stops at the edge)."""

BUDGET_STEP = 16
"""Messages a token budget reads in its first step back through older history (then twice as
many each step, so a long walk costs few reads)."""

Group = tuple[int, int, int, bool]
"""(start, stop, tokens, system): messages [start, stop) of a span, kept or dropped together (one
message, or a tool call with the results that answer it), their tokens, and whether it is a
system message. A plain tuple: a window makes one per message, so it must be cheap."""


def _overflow_at(span: Sequence[MessageRecord], budget: int, lo: int = 0) -> int:
    """The message of span[lo:] at which its newest messages first cost more than `budget`
    tokens (lo - 1 when all of them fit): where a budget runs out, the same whether the load
    read 20 messages or 100."""
    spent = 0
    for i in range(len(span) - 1, lo - 1, -1):
        spent += span[i].tokens
        if spent > budget:
            return i
    return lo - 1


def group(entries: Sequence[MessageRecord]) -> list[Group]:
    """Split messages into indivisible groups; orphaned tool results are left out."""
    groups: list[Group] = []
    append = groups.append
    start = -1  # an open tool group's first index, or -1
    tokens = 0
    open_ids: frozenset[str] = frozenset()
    for i, entry in enumerate(entries):
        kind = entry.kind or entry.classify()
        if kind is PLAIN_TEXT:  # the usual message: a group of its own
            if start >= 0:
                append((start, i, tokens, False))
                start = -1
            append((i, i + 1, entry.tokens, False))
            continue
        if kind.answers:
            if start >= 0 and kind.answers & open_ids:
                tokens += entry.tokens
                continue
            if start >= 0:
                append((start, i, tokens, False))
                start = -1
            continue  # a result whose call is not here: never sent
        if start >= 0:
            append((start, i, tokens, False))
            start = -1
        if kind.calls:
            start, tokens, open_ids = i, entry.tokens, kind.calls
        else:
            append((i, i + 1, entry.tokens, kind.system))
    if start >= 0:
        append((start, len(entries), tokens, False))
    return groups


def size(groups: Sequence[Group]) -> int:
    return sum(tokens for _, _, tokens, _ in groups)


# -- strategies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastN:
    """The last `n` messages (whole groups; at least the newest group)."""

    n: int

    def select(self, groups: Sequence[Group]) -> list[Group]:
        chosen: list[Group] = []
        count = 0
        for g in reversed(groups):
            length = g[1] - g[0]
            if chosen and count + length > self.n:
                break
            chosen.append(g)
            count += length
        return chosen[::-1]


@dataclass(frozen=True, slots=True)
class TokenBudget:
    """The newest groups that fit in `max_tokens` (at least the newest group)."""

    max_tokens: int

    def select(self, groups: Sequence[Group], reserved: int = 0) -> list[Group]:
        chosen: list[Group] = []
        total = reserved
        for g in reversed(groups):
            tokens = g[2]
            if chosen and total + tokens > self.max_tokens:
                break
            chosen.append(g)
            total += tokens
        return chosen[::-1]


TURN_ROLES = frozenset({"user", "human"})
"""Roles whose message opens a turn (a tool result in a user message never starts a group)."""

TURN_REACH = 8
"""How many groups on each side of a selected group its turn may bring in."""


@dataclass(frozen=True, slots=True)
class Relevant:
    """The newest group, then the `k` older groups most similar to the query, then the rest of
    their turns, then the newest groups that still fit; in original order and within
    `max_tokens` (None: no budget).

    `scores` holds each message's similarity to the query by its index in the span the groups
    cover (-1.0: not scored); a group scores as its best message. `starts_turn(i)`: whether the
    message at span index i opens a turn (a user's message); given, a selected group brings in
    the rest of its turn, the answer and the tool calls and results it led to first, then back
    to the question (at most TURN_REACH groups each way, each while it fits)."""

    scores: Sequence[float]
    k: int = 5
    max_tokens: int | None = None
    starts_turn: Callable[[int], bool] | None = None

    def score(self, g: Group) -> float:
        start, stop = g[0], g[1]
        return self.scores[start] if stop - start == 1 else max(self.scores[start:stop])

    def select(self, groups: Sequence[Group], reserved: int = 0) -> list[Group]:
        if not groups:
            return []
        budget = math.inf if self.max_tokens is None else self.max_tokens
        last = len(groups) - 1
        chosen = {last}
        total = reserved + groups[last][2]
        picked = []
        for i in heapq.nlargest(self.k, range(last), key=lambda i: self.score(groups[i])):
            if self.score(groups[i]) == -math.inf:
                break  # not scored (a sparse selection's other messages)
            if total + groups[i][2] <= budget:
                chosen.add(i)
                picked.append(i)
                total += groups[i][2]
        starts_turn = self.starts_turn
        if starts_turn is not None:
            for i in picked:  # the rest of each selected group's turn, best-scored first
                for j in self._turn(groups, i, starts_turn):
                    if j in chosen:
                        continue
                    if total + groups[j][2] > budget:
                        break
                    chosen.add(j)
                    total += groups[j][2]
        for i in range(last - 1, -1, -1):  # then fill with the most recent
            if i in chosen:
                continue
            if total + groups[i][2] > budget or self.max_tokens is None:
                break
            chosen.add(i)
            total += groups[i][2]
        return [groups[i] for i in sorted(chosen)]

    @staticmethod
    def _turn(groups: Sequence[Group], i: int, starts_turn: Callable[[int], bool]) -> list[int]:
        """The other groups of group i's turn: forward to the next turn, then back to its
        start; nearest first, TURN_REACH at most each way."""
        out = []
        j = i + 1
        while j < len(groups) - 1 and j - i <= TURN_REACH and not starts_turn(groups[j][0]):
            out.append(j)
            j += 1
        j = i - 1
        while j >= 0 and i - j <= TURN_REACH and not starts_turn(groups[j + 1][0]):
            out.append(j)
            j -= 1
        return out


# -- the plan: what to read, then what to send ---------------------------------------------------

S = TypeVar("S")
Reads = Generator[S, Any, list[MessageRecord]]
"""A reader's answer: records [start, stop), after whatever I/O steps (of type S) it needs."""


@dataclass(slots=True)
class Options:
    """get_history's keyword arguments, checked. Not frozen: one is made per call, and a frozen
    dataclass's __init__ (object.__setattr__ per field) would triple its cost; nothing
    changes one after the check."""

    last: int | None = None
    max_tokens: int | None = None
    relevant_to: str | None = None
    embed: Embed | Batched | None = None
    k: int = 5
    neighbours: bool = True

    def __post_init__(self) -> None:
        if self.last is not None and self.last < 0:
            raise InvalidValue(f"last must be >= 0, got {self.last}")
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise InvalidValue(f"max_tokens must be positive, got {self.max_tokens}")
        if self.relevant_to is not None and self.embed is None:
            raise InvalidValue("relevant_to needs embed=fn (text -> list of floats)")
        if self.k < 0:
            raise InvalidValue(f"k must be >= 0, got {self.k}")


@dataclass
class Ranked:
    """What a sparse selection knows of a span (statemw._semantic): exact similarity where a
    vector was read or made, the system messages, and the text checks of vectors still to
    verify against their messages."""

    scores: dict[int, float] = field(default_factory=dict)
    system: list[int] = field(default_factory=list)
    checks: dict[int, int] = field(default_factory=dict)


Rank = Callable[[int, int, str], Generator[S, Any, "Ranked | None"]]
"""rank(start, stop, query): a sparse selection's scores (None: score the span whole)."""


def plan(
    total: int,
    floor: int,
    options: Options,
    read: Callable[[int, int], Reads[S]],
    score: Callable[[int, int, str], Generator[S, Any, Sequence[float]]],
    *,
    summary_tokens: int = 0,
    lead: int | None = None,
    loaded_from: int | None = None,
    rank: Rank[S] | None = None,
    verified: Callable[[int, MessageRecord], bool] | None = None,
) -> Generator[S, Any, list[MessageRecord]]:
    """Choose the messages to send from a log of `total` messages whose first `floor` are
    summarized, reading through `read(start, stop)`; semantic selection scores messages
    [start, stop) against a query through `score(start, stop, query)`. `lead`: how many
    leading messages are the system prompt (None: unknown, so the first LEAD_SCAN are read to
    find out). `loaded_from`: messages from there on are at hand (no I/O), so a budget's first
    step takes them all; what the budget covers is then cut to where it ran out, so it never
    depends on how much the load read."""
    if lead is None:
        head = yield from read(0, min(LEAD_SCAN, total))
        lead = next((i for i, r in enumerate(head) if r.message.get("role") != "system"), len(head))
    pinned = (yield from read(0, lead)) if lead else []
    floor = max(floor, lead)
    reserved = summary_tokens + (sum([r.tokens for r in pinned]) if pinned else 0)
    if options.last == 0:
        return pinned

    semantic = options.relevant_to is not None
    budget = None if semantic else options.max_tokens  # TokenBudget's, after grouping
    if semantic and rank is not None and options.last is None and total - floor >= SPARSE_FROM:
        assert verified is not None
        sent = yield from _sparse(total, floor, options, read, rank, verified, reserved)
        if sent is not None:
            return pinned + sent
    if options.last is not None and not semantic:
        start = max(floor, total - options.last - 1)
        span = yield from read(start, total)
    elif budget is not None:
        start, span, spent, step = total, [], reserved, BUDGET_STEP
        while start > floor and (not span or spent <= budget):
            lo = max(floor, min(start - step, total if loaded_from is None else loaded_from))
            more = yield from read(lo, start)
            spent += sum([r.tokens for r in more])
            span, start, step = more + span, lo, step * 2
        if spent <= budget:  # all since the summary fits (start is floor): none is left out
            budget = None
        else:  # it covers the newest messages up to where it ran out, however far reads went
            cut = _overflow_at(span, budget - reserved)  # found: all of them did not fit
            span, start = span[cut:], start + cut
    else:  # everything since the summary: semantic selection scores it all
        start = floor
        span = yield from read(start, total)
    while start > floor and span and (span[0].kind or span[0].classify()).answers:
        lo = max(floor, start - BUDGET_STEP)  # mid-group: read back to the tool call
        span = (yield from read(lo, start)) + span
        start = lo
    if classify_all(span) and not semantic:
        return pinned + _newest(span, options.last, budget, reserved)

    groups = group(span)
    system = [g for g in groups if g[3]]
    rest = [g for g in groups if not g[3]] if system else groups
    reserved += size(system)
    if semantic:
        assert options.relevant_to is not None
        scores = yield from score(start, total, options.relevant_to)
        starts_turn = None
        if options.neighbours:

            def starts_turn(i: int) -> bool:
                return span[i].message.get("role") in TURN_ROLES

        relevant = Relevant(scores, options.k, options.max_tokens, starts_turn)
        rest = relevant.select(rest, reserved)
    if options.last is not None:
        rest = LastN(options.last).select(rest)
    if budget is not None:
        rest = TokenBudget(budget).select(rest, reserved)
    chosen = sorted([*system, *rest]) if system else rest
    out = list(pinned)
    run_start = run_stop = 0  # adjacent groups are sent as one slice of the span
    for start_, stop, _, _ in chosen:
        if start_ != run_stop:
            out += span[run_start:run_stop]
            run_start = start_
        run_stop = stop
    out += span[run_start:run_stop]
    return out


def _newest(
    span: list[MessageRecord], last: int | None, max_tokens: int | None, reserved: int
) -> list[MessageRecord]:
    """What LastN(last), then TokenBudget(max_tokens, reserved), choose from a span of plain
    text messages, without building a group per message: each is its own group, none is a
    system message, so the choice is the newest `last` that fit (at least the newest one)."""
    stop = len(span)
    start = 0 if last is None else max(0, stop - last)
    if max_tokens is not None and start < stop:  # after the overflowing one; the newest always
        start = min(_overflow_at(span, max_tokens - reserved, start) + 1, stop - 1)
    return span[start:]


def _answers(record: MessageRecord) -> bool:
    return bool((record.kind or record.classify()).answers)


def _segment(
    read: Callable[[int, int], Reads[S]], lo: int, hi: int, floor: int, total: int
) -> Generator[S, Any, tuple[int, int, list[MessageRecord]]]:
    """Messages [lo, hi) widened to whole groups: back to a tool call its first result answers,
    on through the results that follow its end."""
    span = yield from read(lo, min(total, hi + 1))
    while lo > floor and span and _answers(span[0]):
        back = max(floor, lo - BUDGET_STEP)
        more = yield from read(back, lo)
        opens = next((i for i in range(len(more) - 1, -1, -1) if not _answers(more[i])), 0)
        span, lo = more[opens:] + span, back + opens
    if len(span) > hi - lo:  # the message after the segment: in it only if it is a result
        if not _answers(span[-1]):
            span.pop()
        else:
            hi += 1
            while hi < total:
                more = yield from read(hi, min(total, hi + BUDGET_STEP))
                n = next((i for i, r in enumerate(more) if not _answers(r)), len(more))
                span += more[:n]
                hi += n
                if n < len(more):
                    break
    return lo, hi, span


def _sparse(
    total: int,
    floor: int,
    options: Options,
    read: Callable[[int, int], Reads[S]],
    rank: Rank[S],
    verified: Callable[[int, MessageRecord], bool],
    reserved: int,
) -> Generator[S, Any, list[MessageRecord] | None]:
    """Semantic selection over segments of a long span (module docstring); None when the
    ranker cannot rank it (another model's vectors): the caller then scores the span whole."""
    assert options.relevant_to is not None
    # the newest messages, as far back as a budget would read (the newest group without one)
    lo, spent, step = total, reserved, BUDGET_STEP
    recent: list[MessageRecord] = []
    limit = options.max_tokens
    while lo > floor and (
        (limit is not None and spent <= limit) or not any(not g[3] for g in group(recent))
    ):
        back = max(floor, lo - (step if limit is not None else 1))
        more = yield from read(back, lo)
        spent += sum([r.tokens for r in more])
        recent, lo, step = more + recent, back, step * 2
    lo, _, recent = yield from _segment(read, lo, lo + len(recent), floor, total)
    for _ in range(3):  # again when a candidate's vector turns out to be another text's
        ranked = yield from rank(floor, total, options.relevant_to)
        if ranked is None:
            return None
        scores = ranked.scores
        order = sorted((p for p in scores if p < lo), key=lambda p: -scores[p])
        take = options.k + 2
        while True:
            windows = sorted(
                [(max(floor, p - WINDOW), min(lo, p + WINDOW + 1)) for p in order[:take]]
                + [(p, p + 1) for p in ranked.system if p < lo]
            )
            segments: list[tuple[int, int, list[MessageRecord]]] = []
            for w_lo, w_hi in windows:
                if segments and w_lo <= segments[-1][1]:
                    if w_hi <= segments[-1][1]:
                        continue
                    w_lo = segments[-1][1]
                segment = yield from _segment(read, w_lo, w_hi, floor, total)
                _join(segments, segment)
            _join(segments, (lo, total, recent))
            span: list[MessageRecord] = []
            positions: list[int] = []
            edges: set[int] = set()
            groups: list[Group] = []
            for s_lo, s_hi, records in segments:
                edges.add(len(span))
                groups += [(a + len(span), b + len(span), t, y) for a, b, t, y in group(records)]
                span += records
                positions += range(s_lo, s_hi)
            span_scores = [scores.get(p, -math.inf) for p in positions]
            rest = [g for g in groups if not g[3]]
            relevant = Relevant(span_scores, options.k, options.max_tokens)
            scored = sum(1 for g in rest[:-1] if relevant.score(g) > -math.inf)
            if scored >= options.k or take >= len(order):
                break
            take *= 2
        wrong = [
            i for i, p in enumerate(positions) if p in ranked.checks and not verified(p, span[i])
        ]
        if not wrong:
            break
    system = [g for g in groups if g[3]]
    starts_turn = None
    if options.neighbours:

        def starts_turn(i: int) -> bool:
            return i in edges or span[i].message.get("role") in TURN_ROLES

    relevant = Relevant(span_scores, options.k, options.max_tokens, starts_turn)
    chosen = sorted([*system, *relevant.select(rest, reserved + size(system))])
    return [r for start, stop, _, _ in chosen for r in span[start:stop]]


def _join(
    segments: list[tuple[int, int, list[MessageRecord]]],
    segment: tuple[int, int, list[MessageRecord]],
) -> None:
    """Append a segment, merged into the last one where they touch."""
    lo, hi, records = segment
    if segments and lo <= segments[-1][1]:
        p_lo, p_hi, p_records = segments[-1]
        if hi > p_hi:
            segments[-1] = (p_lo, hi, p_records + records[p_hi - lo :])
        return
    segments.append(segment)
