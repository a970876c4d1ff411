"""Summarization: non-destructive, computed once, extended rather than redone."""

from __future__ import annotations

from typing import Any

import pytest

from statemw import InvalidValue, Session, Store


def tool_call(call_id: str, name: str) -> dict[str, Any]:
    """An assistant message calling one tool (its result must follow it)."""
    function = {"name": name, "arguments": "{}"}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": call_id, "type": "function", "function": function}],
    }


class Summarizer:
    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.calls.append(messages)
        return f"summary of {len(messages)} items"


def chat(store: Store, n: int) -> Session:
    session = store.create()
    session.add_message("system", "You are a travel agent.")
    for i in range(n):
        session.add_message("user" if i % 2 == 0 else "assistant", f"message {i}")
    session.save()
    return session


def test_compact_summarizes_once_and_keeps_the_originals(store: Store) -> None:
    session = chat(store, 30)
    summarize = Summarizer()
    assert session.compact(summarize, keep_last=10)
    assert len(summarize.calls) == 1
    session.save()

    again = store.load(session.id)
    history = again.get_history()
    assert history[0] == {"role": "system", "content": "You are a travel agent."}
    assert history[1] == {"role": "system", "content": "summary of 20 items", "name": "summary"}
    assert [m["content"] for m in history[2:]] == [f"message {i}" for i in range(20, 30)]
    assert len(again.messages) == 31  # originals are still readable
    assert again.messages[5]["content"] == "message 4"


def test_a_later_compaction_extends_the_summary(store: Store) -> None:
    session = chat(store, 30)
    summarize = Summarizer()
    session.compact(summarize, keep_last=10)
    for i in range(30, 40):
        session.add_message("user", f"message {i}")
    session.compact(summarize, keep_last=10)
    second = summarize.calls[1]
    assert second[0] == {"role": "system", "content": "summary of 20 items", "summary": True}
    assert [m["content"] for m in second[1:]] == [f"message {i}" for i in range(20, 30)]


def test_token_count_drops_after_compaction(store: Store) -> None:
    session = chat(store, 100)
    before = session.token_count()
    session.compact(Summarizer(), keep_last=10)
    assert session.token_count() < before / 5
    assert session.total_tokens > before - 1


def test_nothing_to_compact_calls_nothing(store: Store) -> None:
    summarize = Summarizer()
    assert not chat(store, 5).compact(summarize, keep_last=10)
    assert summarize.calls == []


def test_compaction_never_splits_a_tool_call_from_its_results(store: Store) -> None:
    session = store.create()
    session.add_message("user", "weather?")
    session.add_message(tool_call("a", "w"))
    session.add_message({"role": "tool", "tool_call_id": "a", "content": "sunny"})
    session.add_message("assistant", "Sunny.")
    session.compact(Summarizer(), keep_last=2)  # the cut would fall between call and result
    assert [m["role"] for m in session.get_history()] == [
        "system",
        "assistant",
        "tool",
        "assistant",
    ]


def test_summarize_must_return_text(store: Store) -> None:
    with pytest.raises(InvalidValue):
        chat(store, 20).compact(lambda messages: None, keep_last=2)  # type: ignore[arg-type,return-value]


@pytest.mark.anyio
async def test_acompact_awaits_an_async_summarizer(store: Store) -> None:
    session = chat(store, 30)

    async def summarize(messages: list[dict[str, Any]]) -> str:
        return f"async summary of {len(messages)}"

    assert await session.acompact(summarize, keep_last=4)
    assert session.get_history()[1]["content"] == "async summary of 26"


def test_the_store_compacts_automatically_past_a_token_threshold(
    backend_kind: str, tmp_path: Any
) -> None:
    from tests.support import store_url

    summarize = Summarizer()
    store = Store(
        store_url(backend_kind, tmp_path), compact_at=200, summarize=summarize, keep_last=4
    )
    session = store.create()
    for i in range(10):
        session.add_message("user", f"message {i} " + "x" * 100)  # about 30 tokens each
        session.save()
    assert summarize.calls  # compacted once the session passed 200 tokens
    assert store.load(session.id).token_count() <= 200 + 60


def test_compact_at_needs_a_summarizer() -> None:
    from statemw import ConfigurationError

    with pytest.raises(ConfigurationError):
        Store("memory://", compact_at=100)


@pytest.mark.anyio
async def test_asave_compacts_automatically_with_an_async_summarizer(
    backend_kind: str, tmp_path: Any
) -> None:
    from tests.support import store_url

    calls: list[int] = []

    async def summarize(messages: list[dict[str, Any]]) -> str:
        calls.append(len(messages))
        return f"async summary of {len(messages)}"

    store = Store(
        store_url(backend_kind, tmp_path), compact_at=200, summarize=summarize, keep_last=4
    )
    session = await store.acreate()
    for i in range(10):
        session.add_message("user", f"message {i} " + "x" * 100)
        await session.asave()
    again = await store.aload(session.id)
    assert calls
    assert again.get_history()[0]["name"] == "summary"
    assert len(again.messages) == 10  # the originals are kept


def test_the_seeds_assignment_never_leaves_an_orphaned_tool_result(store: Store) -> None:
    session = chat(store, 6)
    session.add_message(tool_call("c1", "f"))
    session.add_message({"role": "tool", "tool_call_id": "c1", "content": "done"})
    session.add_message("assistant", "All done.")
    # the seed's pattern, cutting between the call and its result
    summary = {"role": "system", "content": "earlier: six messages"}
    session.messages = [summary] + session.messages[-2:]  # noqa: RUF005 - the seed, as written
    session.save()
    sent = store.load(session.id).get_history()
    assert [m["role"] for m in sent] == ["system", "system", "assistant"]
    assert sent[1]["name"] == "summary"
    assert len(store.load(session.id).messages) == 10
