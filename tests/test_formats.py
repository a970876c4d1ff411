"""Provider formats: OpenAI and Anthropic shapes of the same history."""

from __future__ import annotations

from typing import Any

from statemw import Store
from statemw.formats import to_anthropic, to_openai

CALL = {
    "role": "assistant",
    "content": "Checking.",
    "tool_calls": [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "search", "arguments": '{"city": "Berlin"}'},
        }
    ],
}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "3 flights"}


def test_openai_maps_the_seeds_agent_role_to_assistant() -> None:
    assert to_openai([{"role": "agent", "content": "When?"}]) == [
        {"role": "assistant", "content": "When?"}
    ]


def test_openai_marks_the_summary_by_name() -> None:
    summary = {"role": "system", "content": "They want Berlin.", "summary": True}
    assert to_openai([summary]) == [
        {"role": "system", "content": "They want Berlin.", "name": "summary"}
    ]


def test_anthropic_puts_system_and_summary_in_system() -> None:
    shaped = to_anthropic(
        [
            {"role": "system", "content": "You are a travel agent."},
            {"role": "system", "content": "They want Berlin.", "summary": True},
            {"role": "user", "content": "Next Tuesday"},
        ]
    )
    assert shaped == {
        "system": (
            "You are a travel agent.\n\nSummary of the earlier conversation: They want Berlin."
        ),
        "messages": [{"role": "user", "content": "Next Tuesday"}],
    }


def test_anthropic_turns_tool_calls_into_tool_use_and_tool_result_blocks() -> None:
    shaped = to_anthropic([{"role": "user", "content": "flights?"}, CALL, RESULT])
    assert shaped["messages"] == [
        {"role": "user", "content": "flights?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "c1", "name": "search", "input": {"city": "Berlin"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1", "content": "3 flights"},
            ],
        },
    ]


def test_anthropic_merges_consecutive_turns_of_one_role() -> None:
    shaped = to_anthropic([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert shaped["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_anthropic_blocks_pass_through_untouched() -> None:
    thinking = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "abc"},
            {"type": "text", "text": "Berlin it is."},
        ],
    }
    assert to_anthropic([{"role": "user", "content": "go"}, thinking])["messages"][1] == thinking


def test_get_history_speaks_both_formats(store: Store) -> None:
    session = store.create()
    session.add_message("system", "You are a travel agent.")
    session.add_message("user", "flights?")
    session.add_message(CALL)
    session.add_message(RESULT)
    session.save()
    again = store.load(session.id)
    assert again.get_history()[2]["tool_calls"] == CALL["tool_calls"]
    assert again.get_history(format="anthropic")["system"] == "You are a travel agent."
    assert again.get_history(format="raw") == [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "flights?"},
        CALL,
        RESULT,
    ]


EVERY_FIELD: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a travel agent.", "name": "policy"},
    {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x.png"}}]},
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "…", "signature": "EqQBCkYIAhgC"},
            {"type": "redacted_thinking", "data": b"\x00\xffopaque"},
            {"type": "tool_use", "id": "tu1", "name": "search", "input": {"q": ["Berlin", 1.5]}},
        ],
        "provider_extra": {"cache_control": {"type": "ephemeral"}, "n": None},
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "", "is_error": True}],
    },
    {**CALL, "refusal": None, "annotations": []},
    {**RESULT, "name": "search"},
    {"role": "agent", "content": "Booked. ✈"},
]


def test_every_field_round_trips_through_the_store_and_get_history(store: Store) -> None:
    session = store.create()
    for message in EVERY_FIELD:
        session.add_message(message)
    session.save()
    again = store.load(session.id)
    assert list(again.messages) == EVERY_FIELD
    assert again.get_history(format="raw") == EVERY_FIELD
    assert again.get_history(max_tokens=10_000, format="raw") == EVERY_FIELD


def test_anthropic_history_always_starts_with_a_user_turn() -> None:
    from statemw.formats import LEADING_USER_TURN

    shaped = to_anthropic([{"role": "system", "content": "s"}, CALL, RESULT])
    assert [t["role"] for t in shaped["messages"]] == ["user", "assistant", "user"]
    assert shaped["messages"][0]["content"] == LEADING_USER_TURN
    assert to_anthropic([{"role": "user", "content": "hi"}])["messages"] == [
        {"role": "user", "content": "hi"}
    ]


def test_get_history_hands_out_copies_in_every_format() -> None:
    """A caller may change what get_history returns (add a field, map a role): the session's
    messages, its summary and the next window stay as stored."""
    store = Store("memory://")
    session = store.create()
    session.add_message("system", "You are a travel agent.")
    for i in range(6):
        session.add_message("agent" if i % 2 else "user", f"message {i}", summary=i == 3)
    session.save()
    session.compact(lambda messages: "They want Berlin.", keep_last=3)
    session.save()
    loaded = store.load(session.id)
    stored = [dict(m) for m in loaded.messages]
    expected = {f: loaded.get_history(format=f) for f in ("openai", "raw", "anthropic")}
    for _ in range(2):
        for shaped in (loaded.get_history(format="openai"), loaded.get_history(format="raw")):
            for message in shaped:
                message["role"] = "changed"
                message["summary"] = "changed"
        loaded.get_history(format="anthropic")["messages"][0]["role"] = "changed"
    assert [dict(m) for m in loaded.messages] == stored
    assert {f: loaded.get_history(format=f) for f in expected} == expected
    assert expected["openai"][1] == {
        "role": "system",
        "content": "They want Berlin.",
        "name": "summary",
    }


def test_changing_nested_content_of_get_history_leaves_the_session_as_stored() -> None:
    """Content blocks and tool calls are copied too: marking the last block for a provider's
    cache (as Anthropic's prompt caching asks) changes neither the session's messages, nor the
    next window, nor what the next save stores of an unsaved message."""
    store = Store("memory://")
    session = store.create()
    blocks = {"role": "user", "content": [{"type": "text", "text": "Flights to Berlin?"}]}
    session.add_message(blocks)
    session.add_message(CALL)
    session.save()
    loaded = store.load(session.id)
    loaded.add_message(RESULT)
    loaded.add_message({"role": "user", "content": [{"type": "text", "text": "The first."}]})
    stored = [dict(m) for m in loaded.messages]
    first = loaded.get_history(format="raw")
    for message in loaded.get_history(format="openai") + first:
        if isinstance(message["content"], list):
            message["content"][-1]["cache_control"] = {"type": "ephemeral"}
            message["content"].append({"type": "text", "text": "added"})
        for call in message.get("tool_calls", []):
            call["function"]["name"] = "changed"
    for turn in loaded.get_history(format="anthropic")["messages"]:
        if isinstance(turn["content"], list):
            turn["content"][0]["changed"] = True
    assert [dict(m) for m in loaded.messages] == stored
    assert loaded.get_history(format="raw") == stored
    loaded.save()
    assert list(store.load(session.id).messages) == stored
