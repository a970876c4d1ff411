"""Windows over a framework's own items: whole call/result groups, the newest that fit.

The core windows (statemw.window) link OpenAI/Anthropic chat tool calls to their results. Agent
frameworks store their own shapes: the Responses API's function_call / function_call_output items
(linked by call_id, possibly with other items between them), reasoning items that must travel with
the item after them, ADK events whose parts carry function calls and responses. Each adapter names
its links (`Rules`); this module groups and chooses, reading the log backwards a page at a time so
a window of a 10,000-item session reads only the pages it needs.

A group is the smallest contiguous run of items that holds every call with all of its results,
plus the leading items (reasoning) that belong with the item after them. A result whose call is
not in the window is an orphan and is never returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from statemw.messages import Message
from statemw.session import Session
from statemw.tokens import count_message

PAGE = 64
"""Items read per step when walking back through older history."""

Links = Callable[[Message], tuple[frozenset[str], frozenset[str]]]
"""A stored message -> (ids of the calls it makes, ids of the calls it answers)."""

NO_LINKS: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


def _never(message: Message) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Rules:
    """How one framework's items link: calls to results, and items that lead the next one."""

    links: Links
    leads: Callable[[Message], bool] = _never


@dataclass(frozen=True, slots=True)
class Group:
    """Items [start, stop) of a read window, less `drop`: results whose call is not there."""

    start: int
    stop: int
    drop: frozenset[int] = frozenset()

    @property
    def sent(self) -> list[int]:
        return [k for k in range(self.start, self.stop) if k not in self.drop]


def split(messages: Sequence[Message], rules: Rules) -> list[Group]:
    """Cut messages into indivisible groups, oldest first (orphaned results marked dropped)."""
    n = len(messages)
    reach = list(range(n))  # reach[i]: the last index item i must travel with
    orphans: set[int] = set()
    called: dict[str, int] = {}
    for i, message in enumerate(messages):
        calls, answers = rules.links(message)
        for call_id in calls:
            called.setdefault(call_id, i)
        matched = [called[a] for a in answers if a in called]
        if answers and not matched:
            orphans.add(i)
        for at in matched:
            reach[at] = max(reach[at], i)
    groups: list[Group] = []
    i = 0
    while i < n:
        stop, j = reach[i] + 1, i
        while j < stop:  # a call inside the run may reach further
            stop = max(stop, reach[j] + 1)
            j += 1
        groups.append(Group(i, stop, frozenset(k for k in orphans if i <= k < stop)))
        i = stop
    return _attach_leads(groups, messages, rules)


def _attach_leads(groups: list[Group], messages: Sequence[Message], rules: Rules) -> list[Group]:
    """Merge each run of leading items (reasoning) into the group that follows it."""
    out: list[Group] = []
    pending: int | None = None  # start of a run of leading groups
    for g in groups:
        sent = g.sent
        if sent and all(rules.leads(messages[k]) for k in sent):
            pending = g.start if pending is None else pending
            continue
        if pending is not None and sent:
            out.append(Group(pending, g.stop, g.drop))
        else:
            if pending is not None:  # a lead followed only by an orphan: it stands alone
                out.append(Group(pending, g.start))
            out.append(g)
        pending = None
    if pending is not None:
        out.append(Group(pending, len(messages)))
    return out


def choose(
    groups: Sequence[Group],
    tokens: Sequence[int],
    *,
    limit: int | None,
    max_tokens: int | None,
    reserved: int = 0,
) -> list[int]:
    """Indices of the newest whole groups within `limit` items (strictly) and `max_tokens` (at
    least the newest group, as statemw's own windows do), oldest first."""
    chosen: list[list[int]] = []
    count, total = 0, reserved
    for g in reversed(groups):
        sent = g.sent
        if not sent:
            continue
        cost = sum(tokens[k] for k in sent)
        if limit is not None and count + len(sent) > limit:
            break
        if max_tokens is not None and chosen and total + cost > max_tokens:
            break
        chosen.append(sent)
        count += len(sent)
        total += cost
    return [k for sent in reversed(chosen) for k in sent]


@dataclass(frozen=True, slots=True)
class Window:
    """What a window read chose: the messages, and whether it reaches back to `floor`."""

    messages: list[Message]
    complete: bool
    tokens: int


async def read_window(
    session: Session,
    rules: Rules,
    *,
    floor: int = 0,
    limit: int | None = None,
    max_tokens: int | None = None,
    reserved: int = 0,
) -> Window:
    """The newest whole groups of messages [floor, len) within the limits, read a page at a time.

    `complete` is True when nothing after `floor` was left out for lack of room, so a summary of
    what is before `floor` may stand first.
    """
    count = session.store.count_tokens
    start = len(session.messages)
    items: list[Message] = []
    tokens: list[int] = []
    while start > floor:
        if limit is None and max_tokens is None:
            lo = floor  # everything: one read
        else:
            lo = max(floor, start - max(PAGE, (limit or 0) + 1))
        page = await session.fetch_messages(lo, start)
        items[:0] = page
        tokens[:0] = [count_message(m, count) for m in page]
        start = lo
        if start > floor and _enough(split(items, rules), tokens, limit, max_tokens):
            break
    groups = split(items, rules)
    if start > floor and groups:
        groups = groups[1:]  # the oldest group read may be cut short: leave it out
    chosen = choose(groups, tokens, limit=limit, max_tokens=max_tokens, reserved=reserved)
    sendable = sum(len(g.sent) for g in groups)
    return Window(
        [items[k] for k in chosen],
        complete=start <= floor and len(chosen) == sendable,
        tokens=reserved + sum(tokens[k] for k in chosen),
    )


def _enough(
    groups: Sequence[Group], tokens: Sequence[int], limit: int | None, max_tokens: int | None
) -> bool:
    """Whether the groups read so far (less the oldest, which may be partial) fill the window."""
    sent = [k for g in groups[1:] for k in g.sent]
    if limit is not None and len(sent) > limit:
        return True
    return max_tokens is not None and sum(tokens[k] for k in sent) > max_tokens
