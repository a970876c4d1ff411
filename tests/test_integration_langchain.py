"""statemw as a LangChain chat message history: RunnableWithMessageHistory on a scripted model."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from examples.agents_langchain import FORECASTS, ScriptedChatModel, make_chain, tool_loop
from statemw import Store
from statemw.integrations.langchain import StatemwChatMessageHistory, from_message, to_message
from statemw.messages import tool_call_ids, tool_result_ids
from tests.framework_turns import in_child, langchain_turn
from tests.support import at_once, server_stores, store_url

CONFIG: Any = {"configurable": {"session_id": "chat"}}


def histories(store: Store) -> Callable[[str], StatemwChatMessageHistory]:
    return lambda session_id: StatemwChatMessageHistory(session_id, store=store)


def turn(n: int) -> list[BaseMessage]:
    """A user turn that calls a tool: human, AI with a tool call, tool result, AI answer."""
    return [
        HumanMessage(f"q{n}", id=f"h{n}"),
        AIMessage("", id=f"a{n}", tool_calls=[{"name": "t", "args": {"n": n}, "id": f"c{n}"}]),
        ToolMessage(f"r{n}", tool_call_id=f"c{n}", id=f"t{n}"),
        AIMessage(f"answer {n}", id=f"b{n}"),
    ]


def test_the_history_is_a_langchain_chat_message_history() -> None:
    assert isinstance(
        StatemwChatMessageHistory("s", store=Store("memory://")), BaseChatMessageHistory
    )


@pytest.mark.anyio
async def test_a_runnable_with_history_keeps_a_tool_calling_conversation(store: Store) -> None:
    chain = make_chain(ScriptedChatModel(), histories(store))
    first = await chain.ainvoke([HumanMessage("Weather in Berlin?")], CONFIG)
    second = await chain.ainvoke([HumanMessage("And Oslo?")], CONFIG)
    assert (first[-1].text, second[-1].text) == (
        "The weather: rain, 12 C.",
        "The weather: snow, -3 C.",
    )
    history = await StatemwChatMessageHistory("chat", store=store).aget_messages()
    assert [type(m).__name__ for m in history] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ] * 2


def test_the_sync_chain_continues_after_a_restart(tmp_path: Path) -> None:
    url = f"diskcache://{tmp_path / 'store'}"
    store = Store(url)
    make_chain(ScriptedChatModel(), histories(store)).invoke(
        [HumanMessage("Weather in Lisbon?")], CONFIG
    )
    store.close()
    store = Store(url)
    reply = make_chain(ScriptedChatModel(), histories(store)).invoke(
        [HumanMessage("Again?")], CONFIG
    )
    assert reply[-1].text == "The weather: sun, 24 C."  # the city came from the stored history
    assert len(StatemwChatMessageHistory("chat", store=store).messages) == 8


def test_every_message_class_round_trips_with_ids_and_extra_fields(store: Store) -> None:
    messages = [
        SystemMessage("be brief", id="s"),
        HumanMessage([{"type": "text", "text": "hi"}], id="h", additional_kwargs={"k": [1]}),
        *turn(1),
        AIMessage("x", usage_metadata={"input_tokens": 1, "output_tokens": 2, "total_tokens": 3}),
        ToolMessage("r", tool_call_id="z", artifact={"rows": 3}, status="error"),
        ChatMessage(content="hm", role="critic", name="bob"),
    ]
    history = StatemwChatMessageHistory("s", store=store)
    history.add_messages(messages)
    assert StatemwChatMessageHistory("s", store=store).messages == messages


@pytest.mark.anyio
async def test_the_async_methods_round_trip_and_clear(store: Store) -> None:
    history = StatemwChatMessageHistory("s", store=store)
    await history.aadd_messages(turn(1))
    assert await history.aget_messages() == turn(1)
    await history.aclear()
    assert await history.aget_messages() == []
    assert history.messages == []


def test_a_window_keeps_a_tool_call_with_its_result(store: Store) -> None:
    history = StatemwChatMessageHistory("s", store=store)
    history.add_messages([SystemMessage("sys"), *turn(1), *turn(2)])
    windowed = StatemwChatMessageHistory("s", store=store, last=2).messages
    assert windowed == [SystemMessage("sys"), *turn(2)[3:]]  # the call/result pair does not fit
    assert StatemwChatMessageHistory("s", store=store, last=3).messages[1:] == turn(2)[1:]


@pytest.mark.anyio
async def test_two_chains_appending_at_once_lose_and_duplicate_nothing(store: Store) -> None:
    async def write(tag: str) -> None:
        history = StatemwChatMessageHistory("s", store=store)
        for n in range(10):
            await history.aadd_messages([HumanMessage(f"{tag}{n}"), AIMessage("ok")])

    await asyncio.gather(write("a"), write("b"))
    history = await StatemwChatMessageHistory("s", store=store).aget_messages()
    said = [m.text for m in history if isinstance(m, HumanMessage)]
    assert sorted(said) == sorted([f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)])


def test_messages_the_app_added_itself_read_as_langchain_messages(store: Store) -> None:
    session = store.create(session_id="s")
    session.add_message("user", "hi")
    session.add_message(
        "assistant",
        None,
        tool_calls=[
            {"id": "c", "type": "function", "function": {"name": "t", "arguments": '{"a": 1}'}}
        ],
    )
    session.add_message("tool", "r", tool_call_id="c")
    session.save()
    assert StatemwChatMessageHistory("s", store=store).messages == [
        HumanMessage("hi"),
        AIMessage("", tool_calls=[{"name": "t", "args": {"a": 1}, "id": "c"}]),
        ToolMessage("r", tool_call_id="c"),
    ]


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
kwargs = st.dictionaries(st.text(min_size=1, max_size=5), json_values, max_size=3)
ids = st.none() | st.text(min_size=1, max_size=6)
content = st.text(max_size=20) | st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=8)}), max_size=2
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=5),
            "args": st.dictionaries(st.text(max_size=4), json_values, max_size=3),
            "id": st.text(min_size=1, max_size=5),
        }
    ),
    max_size=3,
)
messages = st.one_of(
    st.builds(HumanMessage, content=content, id=ids, additional_kwargs=kwargs),
    st.builds(SystemMessage, content=content, id=ids, name=st.none() | st.text(max_size=4)),
    st.builds(AIMessage, content=content, id=ids, tool_calls=tool_calls, response_metadata=kwargs),
    st.builds(
        ToolMessage, content=content, tool_call_id=st.text(max_size=5), id=ids, artifact=json_values
    ),
    st.builds(ChatMessage, content=content, role=st.text(min_size=1, max_size=5), id=ids),
)


@settings(max_examples=80, deadline=None)
@given(messages)
def test_every_message_maps_to_a_statemw_message_and_back(message: BaseMessage) -> None:
    stored = to_message(message)
    assert from_message(stored) == message
    if isinstance(message, AIMessage):  # statemw's windows see the calls
        assert tool_call_ids(stored) == {c["id"] for c in message.tool_calls}
    if isinstance(message, ToolMessage):
        assert tool_result_ids(stored) == {message.tool_call_id}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3), max_size=8), st.integers(0, 12), st.none() | st.integers(1, 80))
def test_a_window_never_splits_a_call_from_its_results(
    shape: list[int], last: int, max_tokens: int | None
) -> None:
    store = Store("memory://")
    history = StatemwChatMessageHistory("p", store=store)
    for n, kind in enumerate(shape):
        history.add_messages(turn(n) if kind == 1 else [HumanMessage(f"q{n}"), AIMessage("a")])
    window = StatemwChatMessageHistory("p", store=store, last=last, max_tokens=max_tokens).messages
    calls = {c["id"] for m in window if isinstance(m, AIMessage) for c in m.tool_calls}
    results = {m.tool_call_id for m in window if isinstance(m, ToolMessage)}
    assert calls == results


# -- two app servers at once, and a new process ----------------------------------------------------


class TaggedChatModel(ScriptedChatModel):
    """The scripted model of one app server: its message and tool-call ids carry the server's
    tag, so every message of both servers is told apart."""

    tag: str = ""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        reply = super()._generate(messages, *args, **kwargs).generations[0].message
        assert isinstance(reply, AIMessage)
        tagged = reply.model_copy(
            update={
                "id": f"{self.tag}{reply.id}",
                "tool_calls": [{**c, "id": f"{self.tag}{c['id']}"} for c in reply.tool_calls],
            }
        )
        return ChatResult(generations=[ChatGeneration(message=tagged)])


def _key(message: BaseMessage) -> str:
    return json.dumps(message_to_dict(message), sort_keys=True)


CITIES = {"a": ["Berlin", "Lisbon", "Oslo"], "b": ["Oslo", "Berlin", "Lisbon"]}


def keyed_chain(
    model: BaseChatModel, history: Callable[[str], BaseChatMessageHistory]
) -> RunnableWithMessageHistory:
    """make_chain's tool loop, handed the history under a key of its own.

    The form for runners that may share a session at once: without `history_messages_key`,
    RunnableWithMessageHistory reads the history again when the turn ends and drops as many
    input messages as the history holds *then* (it takes them for the history it prepended), so
    a turn during which another runner appended loses its own input (langchain-core 1.x,
    `_aexit_history`). With the key it appends exactly the turn's input and output."""

    def loop(inputs: dict[str, Any]) -> list[BaseMessage]:
        return tool_loop(model, [*inputs["history"], *inputs["input"]])

    with warnings.catch_warnings():  # langchain-core 1.x points to LangGraph; it still works
        warnings.filterwarnings("ignore", "RunnableWithMessageHistory is deprecated")
        return RunnableWithMessageHistory(
            RunnableLambda(loop),
            history,
            input_messages_key="input",
            history_messages_key="history",
        )


def test_two_runnables_on_two_servers_at_once_lose_and_duplicate_nothing(
    backend_kind: str, tmp_path: Path
) -> None:
    """Two app servers (a Store, a RunnableWithMessageHistory and its ainvoke each, on threads
    and loops of their own) run three turns each on one session id at the same time."""
    servers = server_stores(backend_kind, tmp_path)

    def server(tag: str, store: Store) -> Callable[[], Awaitable[list[list[str]]]]:
        async def turns() -> list[list[str]]:
            chain = keyed_chain(TaggedChatModel(tag=tag), histories(store))
            runs = []
            for n, city in enumerate(CITIES[tag]):
                asked = HumanMessage(f"{tag}{n}: the weather in {city}?")
                new = await chain.ainvoke({"input": [asked]}, CONFIG)
                assert new[-1].text == f"The weather: {FORECASTS[city]}."
                runs.append([_key(m) for m in [asked, *new]])
            return runs

        return turns

    try:
        runs = at_once(server("a", servers[0]), server("b", servers[1]))
        history = StatemwChatMessageHistory("chat", store=servers[0]).messages
    finally:
        for store in servers:
            store.close()
    stored = [_key(m) for m in history]
    produced = [key for server_runs in runs for run in server_runs for key in run]
    assert len(produced) == 2 * 3 * 4  # human, AI tool call, tool result, AI answer: 3 turns each
    assert Counter(stored) == Counter(produced)  # every message of both, each exactly once
    assert len(set(produced)) == len(produced)
    for server_runs in runs:  # each turn's messages together and in order (one append each)
        for run in server_runs:
            start = stored.index(run[0])
            assert stored[start : start + len(run)] == run


@pytest.mark.parametrize("backend", ["diskcache", "postgres"])
def test_a_conversation_continues_in_a_new_process(backend: str, tmp_path: Path) -> None:
    """A turn in one process, the next in another: the second sees every message of the first."""
    url = store_url(backend, tmp_path)
    first = in_child(langchain_turn, url, "trip", "What is the weather in Berlin?")
    second = in_child(langchain_turn, url, "trip", "Once more, please.")
    assert first["before"] == []
    kinds = [m["type"] for m in first["after"]]
    assert kinds == ["human", "ai", "tool", "ai"]
    assert second["before"] == first["after"]  # every message, identical
    assert second["model_input"][:4] == first["after"]  # and the model was sent them
    assert second["reply"] == "The weather: rain, 12 C."  # the city came from the history
    assert second["after"][:4] == first["after"]
    assert len(second["after"]) == 8
