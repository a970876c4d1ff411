"""What the tests share: a fake clock, the backends and their URLs, generated conversations, and
the rules every context window keeps (check_rules, check_budget)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from statemw import Session, Store
from statemw.messages import MessageRecord, tool_call_ids, tool_result_ids
from statemw.window import group
from tests import postgres_server, redis_server


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BACKENDS = ["memory", "diskcache", "redis", "postgres"]


def store_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "diskcache":
        return f"diskcache://{tmp_path / 'store'}"
    if kind == "redis":
        return redis_server.isolated_url(tmp_path.name)
    if kind == "postgres":
        return postgres_server.isolated_url()
    raise AssertionError(kind)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Random chats: an optional system prompt, then user/assistant turns, tool-call groups (OpenAI
    tool_calls + tool messages, or Anthropic tool_use + tool_result blocks) and orphaned results."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": "You are a travel agent."})
    for turn in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["user", "assistant", "tools", "blocks", "orphan"]))
        text = "x" * draw(st.integers(0, 120))
        if kind == "tools":
            calls = [f"c{turn}-{i}" for i in range(draw(st.integers(1, 3)))]
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": c, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        for c in calls
                    ],
                }
            )
            messages.extend({"role": "tool", "tool_call_id": c, "content": text} for c in calls)
        elif kind == "blocks":  # Anthropic style: tool_use blocks, answered in one user turn
            calls = [f"u{turn}-{i}" for i in range(draw(st.integers(1, 3)))]
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": text}]
                    + [{"type": "tool_use", "id": c, "name": "f", "input": {}} for c in calls],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": c, "content": text} for c in calls
                    ],
                }
            )
        elif kind == "orphan":
            messages.append({"role": "tool", "tool_call_id": f"gone-{turn}", "content": text})
        else:
            messages.append({"role": kind, "content": f"{turn} {text}"})
    return messages


def stored_session(messages: list[dict[str, Any]], window: int = 7) -> Session:
    store = Store("memory://", window=window)
    session = store.create()
    for message in messages:
        session.add_message(message)
    session.save()
    return store.load(session.id)


def check_rules(original: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    # a subsequence of the conversation, in order
    it = iter(original)
    assert all(any(m == o for o in it) for m in sent)
    # the leading system prompt stays
    if original and original[0]["role"] == "system":
        assert sent[0] == original[0]
    # no orphaned tool result, and a call's results travel with it
    calls_sent: set[str] = set()
    for message in sent:
        assert tool_result_ids(message) <= calls_sent
        calls_sent |= tool_call_ids(message)
    for message in sent:
        for call in tool_call_ids(message):
            expected = [o for o in original if call in tool_result_ids(o)]
            assert [m for m in sent if call in tool_result_ids(m)] == expected


def check_budget(session: Session, sent: list[dict[str, Any]], budget: int) -> None:
    """The newest group always goes; beyond it (and system messages) everything fits."""
    newest = newest_group(session)
    if newest:
        assert sent[-len(newest) :] == newest
    records = session.messages.records(0, len(session.messages))
    tokens = [next(r.tokens for r in records if r.message == m) for m in sent]
    if len(sent) > len(newest) + sum(1 for m in sent if m["role"] == "system"):
        assert sum(tokens) <= budget


def newest_group(session: Session) -> list[dict[str, Any]]:
    """The last tool-call group or message that is not a system message."""
    records = [MessageRecord(m, 0, 0.0) for m in session.messages]
    groups = [(start, stop) for start, stop, _, system in group(records) if not system]
    return [dict(r.message) for r in records[slice(*groups[-1])]] if groups else []
