"""Context windows: every strategy keeps the rules, for every budget (hypothesis)."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statemw import InvalidValue, Store
from statemw.messages import tool_call_ids, tool_result_ids
from tests.support import check_budget, check_rules, conversations, newest_group, stored_session


@settings(max_examples=150, deadline=None)
@given(conversations(), st.integers(1, 600))
def test_a_token_budget_keeps_the_rules_and_the_budget(
    original: list[dict[str, Any]], budget: int
) -> None:
    session = stored_session(original)
    sent = session.get_history(max_tokens=budget, format="raw")
    check_rules(original, sent)
    check_budget(session, sent, budget)


@st.composite
def with_system_messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A random chat with system messages inserted mid-conversation."""
    messages = draw(conversations())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(messages)))
        messages.insert(at, {"role": "system", "content": f"note {at} " + "y" * 60})
    return messages


@settings(max_examples=150, deadline=None)
@given(
    with_system_messages(),
    st.integers(1, 600),
    st.integers(0, 50),
    st.integers(0, 50),
)
def test_a_token_budget_sends_the_same_whatever_the_load_read(
    original: list[dict[str, Any]], budget: int, window: int, other: int
) -> None:
    sent = stored_session(original, window=window).get_history(max_tokens=budget)
    assert sent == stored_session(original, window=other).get_history(max_tokens=budget)


@settings(max_examples=150, deadline=None)
@given(conversations(), st.integers(0, 30))
def test_last_n_keeps_the_rules(original: list[dict[str, Any]], n: int) -> None:
    session = stored_session(original)
    sent = session.get_history(last=n, format="raw")
    check_rules(original, sent)
    non_system = [m for m in sent if m["role"] != "system"]
    newest = newest_group(session)
    assert len(non_system) <= max(n, len(newest) if n else 0)


@settings(max_examples=60, deadline=None)
@given(conversations(), st.integers(20, 600), st.integers(0, 4))
def test_semantic_selection_keeps_the_rules(
    original: list[dict[str, Any]], budget: int, k: int
) -> None:
    session = stored_session(original)
    sent = session.get_history(
        max_tokens=budget, relevant_to="x", embed=lambda t: [len(t), 1.0], k=k, format="raw"
    )
    check_rules(original, sent)
    check_budget(session, sent, budget)


def conversation(n: int) -> list[dict[str, Any]]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"} for i in range(n)
    ]


def contents(history: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in history]


def test_last_n_is_the_last_n_messages() -> None:
    session = stored_session(conversation(30))
    assert contents(session.get_history(last=3)) == ["message 27", "message 28", "message 29"]


def test_a_token_budget_takes_the_newest_that_fit() -> None:
    session = stored_session(conversation(100))
    per_message = session.messages.records(99, 100)[0].tokens
    assert len(session.get_history(max_tokens=per_message * 5)) == 5
    assert contents(session.get_history(max_tokens=per_message * 5))[-1] == "message 99"


def test_the_newest_message_goes_even_when_it_is_over_budget() -> None:
    session = stored_session([{"role": "user", "content": "y" * 1000}])
    assert len(session.get_history(max_tokens=5)) == 1


def test_a_tool_call_and_its_results_are_never_split() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "weather in Berlin and Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "a", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                {"id": "b", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "b", "content": "rain"},
    ]
    session = stored_session(messages)
    assert [m["role"] for m in session.get_history(last=1)] == ["assistant", "tool", "tool"]
    assert [m["role"] for m in session.get_history(last=3)] == ["assistant", "tool", "tool"]


def test_semantic_selection_adds_the_most_relevant_older_messages() -> None:
    messages = conversation(20)
    messages[3]["content"] = "my passport number is X123"
    session = stored_session(messages)
    calls: list[str] = []

    def embed(text: str) -> list[float]:
        calls.append(text)
        return [1.0, 0.0] if "passport" in text else [0.0, 1.0]

    sent = session.get_history(max_tokens=60, relevant_to="passport?", embed=embed, k=1)
    assert "my passport number is X123" in contents(sent)
    assert contents(sent)[-1] == "message 19"
    assert contents(sent) == sorted(contents(sent), key=lambda c: contents(messages).index(c))
    embedded = len(calls)
    session.get_history(max_tokens=60, relevant_to="passport?", embed=embed, k=1)
    assert len(calls) == embedded  # message vectors and the query's are kept


def test_message_vectors_are_stored_with_the_session(store: Store) -> None:
    session = store.create()
    for message in conversation(10):
        session.add_message(message)
    session.save()
    session.get_history(relevant_to="q", embed=lambda t: [1.0, float(len(t))], k=2)
    session.save()
    calls: list[str] = []

    def embed(text: str) -> list[float]:
        calls.append(text)
        return [1.0, 0.0]

    store.load(session.id).get_history(relevant_to="q", embed=embed, k=2)
    assert calls == ["q"]


@pytest.mark.parametrize(
    "options",
    [{"last": -1}, {"max_tokens": 0}, {"relevant_to": "q"}, {"k": -1}, {"format": "xml"}],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue):
        stored_session(conversation(3)).get_history(**options)


@pytest.mark.anyio
async def test_aget_history_matches_get_history(store: Store) -> None:
    session = store.create()
    for message in conversation(300):
        session.add_message(message)
    await session.asave()
    again = await store.aload(session.id)
    assert await again.aget_history(max_tokens=200) == (await store.aload(session.id)).get_history(
        max_tokens=200
    )


@settings(max_examples=80, deadline=None)
@given(conversations(), st.integers(0, 12), st.integers(0, 12), st.integers(1, 600))
def test_after_compaction_the_summary_stands_first_and_the_rules_hold(
    original: list[dict[str, Any]], keep_first: int, keep_then: int, budget: int
) -> None:
    session = stored_session(original)
    summarized: list[dict[str, Any]] = []

    def summarize(messages: list[dict[str, Any]]) -> str:
        previous = [m for m in messages if m.get("summary") is True]
        assert previous == ([] if not summarized else [session.summary_message()])
        summarized.extend(m for m in messages if m.get("summary") is not True)
        return f"summary of {len(summarized)}"

    session.compact(summarize, keep_last=keep_first)
    session.compact(summarize, keep_last=keep_then)
    # each message is summarized once, in order, and never the system prompt
    lead = 1 if original and original[0]["role"] == "system" else 0
    assert summarized == original[lead : lead + len(summarized)]
    sent = session.get_history(max_tokens=budget, format="raw")
    rest = [m for m in sent if m.get("summary") is not True]
    if summarized:
        assert sent[lead] == session.summary_message()  # after the system prompt, marked
        assert sum(1 for m in sent if m.get("summary") is True) == 1
    check_rules(original, rest)
    covered = session.summary.upto if session.summary else 0
    if covered < len(original):  # the cut never falls between a tool call and its results
        assert not tool_result_ids(original[covered]) or not any(
            tool_result_ids(original[covered]) & tool_call_ids(m) for m in original[:covered]
        )
    assert all(original.index(m) >= covered or m["role"] == "system" for m in rest)


@st.composite
def mostly_plain(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Chats that are mostly plain text (where get_history's fast path applies), with now and
    then a tool-call group, an orphaned result, a system message, a role alias, a summary flag
    or an Anthropic block."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": "You are a travel agent."})
    kinds = ["user", "assistant"] * 6 + ["tools", "orphan", "system", "agent", "blocks", "flag"]
    for turn in range(draw(st.integers(0, 45))):
        kind = draw(st.sampled_from(kinds))
        text = f"{turn} " + "x" * draw(st.integers(0, 90))
        if kind == "tools":
            call = {"id": f"c{turn}", "type": "function", "function": {"name": "f"}}
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": f"c{turn}", "content": text})
        elif kind == "orphan":
            messages.append({"role": "tool", "tool_call_id": f"gone{turn}", "content": text})
        elif kind == "blocks":
            messages.append({"role": "user", "content": [{"type": "text", "text": text}]})
        elif kind == "flag":
            messages.append({"role": "user", "content": text, "summary": True})
        else:
            messages.append({"role": kind, "content": text, "tool_calls": []})
    return messages


@settings(max_examples=200, deadline=None)
@given(
    mostly_plain(),
    st.one_of(st.none(), st.integers(0, 30)),
    st.one_of(st.none(), st.integers(1, 900)),
    st.one_of(st.none(), st.integers(0, 20)),
    st.integers(0, 50),
    st.sampled_from(["raw", "openai", "anthropic"]),
    st.one_of(st.none(), st.integers(1, 12)),
)
def test_the_plain_text_fast_path_chooses_what_the_general_planner_does(
    original: list[dict[str, Any]],
    last: int | None,
    max_tokens: int | None,
    keep_last: int | None,
    window: int,
    format: str,
    exactly: int | None,
) -> None:
    """get_history takes a shortcut when every message it reads is plain text (window._newest):
    on fresh loads, it returns exactly what the groups and strategies return. `exactly`: the
    budget is just what the newest `exactly` messages, the system prompt and summary take."""
    session = stored_session(original, window=window)
    if keep_last is not None:
        session.compact(lambda messages: f"summary of {len(messages)}", keep_last=keep_last)
        session.save()
    if exactly is not None and original:
        records = session.messages.records(0, len(original))
        lead = records[0].tokens if original[0]["role"] == "system" else 0
        summary = session.summary.tokens if session.summary is not None else 0
        max_tokens = lead + summary + sum(r.tokens for r in records[-exactly:])
    store = session.store
    options: dict[str, Any] = {"last": last, "max_tokens": max_tokens, "format": format}
    fast = store.load(session.id).get_history(**options)
    with patch("statemw.window.classify_all", return_value=False) as general:
        assert store.load(session.id).get_history(**options) == fast
    assert general.called or last == 0
    again = store.load(session.id)
    again.add_message("user", "and one more")  # an unsaved message: the fast path too
    with patch("statemw.window.classify_all", return_value=False):
        expected = again.get_history(**options)
    assert again.get_history(**options) == expected


@settings(max_examples=100, deadline=None)
@given(conversations(), st.integers(-3, 3))
def test_a_budget_that_covers_everything_leaves_nothing_out(
    original: list[dict[str, Any]], spare: int
) -> None:
    """The planner skips the budget when all it read fits (the boundary included): the window
    is then what no budget gives; a token short, the budget holds."""
    session = stored_session(original)
    budget = max(1, spare + sum(r.tokens for r in session.messages.records(0, len(original))))
    sent = session.store.load(session.id).get_history(max_tokens=budget, format="raw")
    if spare >= 0:
        assert sent == session.get_history(format="raw")
    check_rules(original, sent)
    check_budget(session, sent, budget)
