"""statemw as the OpenAI Agents SDK's session: the SDK's own Runner on a scripted model."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Runner, set_tracing_disabled
from agents.memory import Session as AgentsSession
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import ResponseFunctionToolCall

from examples.agents_openai import FORECASTS, ScriptedModel, make_agent
from statemw import Store
from statemw.integrations.openai_agents import StatemwSession, links, to_item, to_message
from tests.framework_turns import in_child, openai_agents_turn
from tests.support import at_once, server_stores, store_url

pytestmark = pytest.mark.anyio
set_tracing_disabled(True)


def fc(call_id: str) -> Any:
    return {"type": "function_call", "call_id": call_id, "name": "f", "arguments": "{}"}


def out(call_id: str) -> Any:
    return {"type": "function_call_output", "call_id": call_id, "output": "ok"}


def user(text: str) -> Any:
    return {"role": "user", "content": text}


def reasoning(n: int) -> Any:
    return {
        "type": "reasoning",
        "id": f"rs_{n}",
        "summary": [{"type": "summary_text", "text": "."}],
    }


async def test_a_statemw_session_passes_the_sdks_runtime_protocol_check() -> None:
    assert isinstance(StatemwSession("s", store=Store("memory://")), AgentsSession)


async def test_the_runner_keeps_a_tool_calling_conversation_over_several_turns(
    store: Store,
) -> None:
    model = ScriptedModel()
    agent = make_agent(model)
    session = StatemwSession("chat", store=store)
    first = await Runner.run(agent, "Weather in Berlin?", session=session)
    second = await Runner.run(agent, "And Lisbon?", session=session)
    assert (first.final_output, second.final_output) == (
        "The weather: rain, 12 C.",
        "The weather: sun, 24 C.",
    )
    items: list[Any] = await session.get_items()
    kinds = [i.get("type", "message") for i in items]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output", "message"] * 2
    assert model.inputs[-1][: len(items) - 4] == items[:6]  # turn 2 saw turn 1 from the store


async def test_a_conversation_continues_after_a_restart_on_the_same_directory(
    tmp_path: Path,
) -> None:
    agent = make_agent(ScriptedModel())
    url = f"diskcache://{tmp_path / 'store'}"
    store = Store(url)
    await Runner.run(agent, "Weather in Oslo?", session=StatemwSession("c", store=store))
    before = await StatemwSession("c", store=store).get_items()
    store.close()
    restarted = StatemwSession("c", store=Store(url))
    assert await restarted.get_items() == before
    result = await Runner.run(agent, "Again, please.", session=restarted)
    assert result.final_output == "The weather: snow, -3 C."  # the city came from history
    assert len(await restarted.get_items()) == 2 * len(before)


async def test_a_limit_never_starts_inside_a_call_and_its_output(store: Store) -> None:
    session = StatemwSession("s", store=store)
    await session.add_items([user("hi"), reasoning(1), fc("a"), fc("b"), out("a"), out("b")])
    await session.add_items([{"role": "assistant", "content": "done"}])
    assert await session.get_items(limit=1) == [{"role": "assistant", "content": "done"}]
    assert len(await session.get_items(limit=5)) == 1  # the 5-item group does not fit in 4
    assert (await session.get_items(limit=6))[0] == reasoning(1)
    assert len(await session.get_items(limit=7)) == 7


async def test_a_token_budget_keeps_whole_groups_and_at_least_the_newest(store: Store) -> None:
    session = StatemwSession("s", store=store, max_tokens=1)
    await session.add_items([user("hi"), fc("a"), out("a")])
    assert await session.get_items() == [fc("a"), out("a")]


async def test_pop_item_removes_and_returns_the_newest_item(store: Store) -> None:
    session = StatemwSession("s", store=store)
    assert await session.pop_item() is None
    await session.add_items([user("a"), fc("c"), out("c")])
    assert await session.pop_item() == out("c")
    assert await StatemwSession("s", store=store).get_items() == [user("a"), fc("c")]


async def test_clear_session_removes_every_item_and_keeps_the_state(store: Store) -> None:
    session = StatemwSession("s", store=store)
    await session.add_items([user("a")])
    held = store.load("s")
    held["theme"] = "dark"
    held.save()
    await session.clear_session()
    assert await session.get_items() == []
    assert store.load("s")["theme"] == "dark"


async def test_two_runners_appending_at_once_lose_and_duplicate_nothing(store: Store) -> None:
    one, two = StatemwSession("s", store=store), StatemwSession("s", store=store)

    async def write(session: StatemwSession, tag: str) -> None:
        for n in range(10):
            await session.add_items([user(f"{tag}{n}"), {"role": "assistant", "content": "ok"}])

    await asyncio.gather(write(one, "a"), write(two, "b"))
    got: list[Any] = await one.get_items()
    said = [i["content"] for i in got if i.get("role") == "user"]
    assert sorted(said) == sorted([f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)])


async def test_compaction_sends_a_summary_instead_of_older_items(store: Store) -> None:
    seen: list[list[Any]] = []

    def summarize(items: list[Any]) -> str:
        seen.append(items)
        return f"{len(items)} items"

    session = StatemwSession("s", store=store, compact_at=30, summarize=summarize, keep_last=2)
    await session.add_items([user("x" * 40), fc("a"), out("a"), user("y" * 40)])
    items: list[Any] = await session.get_items()
    assert items[0] == {
        "role": "system",
        "content": "Summary of the earlier conversation: 1 items",
    }  # the cut moved before the call: a call is never summarized away from its output
    assert items[1:] == [fc("a"), out("a"), user("y" * 40)]
    assert seen == [[user("x" * 40)]]  # summarize was called once, with what it covers
    assert len(store.load("s").messages) == 4  # the originals stay


async def test_a_session_of_a_user_is_erased_with_the_user(store: Store) -> None:
    session = StatemwSession("s", store=store, user_id="harsh")
    await session.add_items([user("hi")])
    store.forget_user("harsh")
    assert await session.get_items() == []


# -- properties --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
items = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system", "developer"])},
        optional={"content": json_values, "type": st.just("message"), "id": st.text(max_size=6)},
    ),
    st.builds(fc, st.text(min_size=1, max_size=4)),
    st.builds(out, st.text(min_size=1, max_size=4)),
    st.builds(reasoning, st.integers(0, 9)),
    st.dictionaries(st.text(max_size=6).filter(lambda k: k != "role"), json_values, max_size=4),
)


@given(items)
def test_every_item_maps_to_a_message_and_back_identically(item: dict[str, Any]) -> None:
    assert to_item(to_message(item)) == item


conversation = st.lists(
    st.sampled_from(["user", "reasoning", "call", "call2", "out", "out2", "late_out"]),
    max_size=30,
)


def build(script: list[str]) -> list[Any]:
    """A conversation with calls answered right away, in parallel, late, or never."""
    built: list[Any] = []
    for n, step in enumerate(script):
        if step == "user":
            built.append(user(str(n)))
        elif step == "reasoning":
            built.append(reasoning(n))
        elif step == "call":
            built += [fc(f"c{n}"), out(f"c{n}")]
        elif step == "call2":
            built += [fc(f"c{n}"), fc(f"d{n}"), out(f"c{n}"), out(f"d{n}")]
        elif step == "out":
            built.append(out("never-called"))
        elif step == "out2":
            built.append(fc(f"c{n}"))  # a call whose output comes much later, or never
        elif step == "late_out" and n > 0:
            built.append(out(f"c{n - 1}"))
    return built


@settings(max_examples=60, deadline=None)
@given(conversation, st.integers(0, 12), st.one_of(st.none(), st.integers(1, 60)))
def test_a_window_never_splits_a_call_from_its_output(
    script: list[str], limit: int, max_tokens: int | None
) -> None:
    async def window() -> list[Any]:
        session = StatemwSession("p", store=Store("memory://"), max_tokens=max_tokens)
        await session.add_items(build(script) or [user("x")])
        return await session.get_items(limit=limit)

    chosen = asyncio.run(window())
    assert len(chosen) <= limit
    calls = {c for i in chosen for c in links(to_message(i))[0]}
    answered = {a for i in chosen for a in links(to_message(i))[1]}
    assert answered <= calls  # no output without its call
    everything = build(script)
    all_answered = {a for i in everything for a in links(to_message(i))[1]}
    assert (calls & all_answered) <= answered  # no call without its (existing) output


# -- two app servers at once, and a new process ----------------------------------------------------


class TaggedModel(ScriptedModel):
    """The scripted model of one app server: its item and call ids carry the server's tag, so
    every item of both servers is told apart."""

    def __init__(self, tag: str) -> None:
        super().__init__()
        self.tag = tag

    def _respond(self, items: list[Any]) -> list[Any]:
        tagged = []
        for item in super()._respond(items):
            update = {"id": f"{self.tag}{item.id}"}
            if isinstance(item, ResponseFunctionToolCall):
                update["call_id"] = f"{self.tag}{item.call_id}"
            tagged.append(item.model_copy(update=update))
        return tagged


def _key(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def _in_order(part: list[str], whole: list[str]) -> bool:
    rest = iter(whole)
    return all(key in rest for key in part)


CITIES = {"a": ["Berlin", "Lisbon", "Oslo"], "b": ["Oslo", "Berlin", "Lisbon"]}


def test_two_runners_on_two_servers_at_once_lose_and_duplicate_nothing(
    backend_kind: str, tmp_path: Path
) -> None:
    """Two app servers (a Store, a StatemwSession and Runner.run each, on threads and loops of
    their own) run three turns each on one session id at the same time."""
    servers = server_stores(backend_kind, tmp_path)

    def server(tag: str, store: Store) -> Callable[[], Awaitable[list[list[str]]]]:
        async def turns() -> list[list[str]]:
            agent = make_agent(TaggedModel(tag))
            runs = []
            for n, city in enumerate(CITIES[tag]):
                text = f"{tag}{n}: the weather in {city}?"
                result = await Runner.run(agent, text, session=StatemwSession("s", store=store))
                assert result.final_output == f"The weather: {FORECASTS[city]}."
                new = [i.to_input_item() for i in result.new_items]
                runs.append([_key({"content": text, "role": "user"}), *map(_key, new)])
            return runs

        return turns

    try:
        runs = at_once(server("a", servers[0]), server("b", servers[1]))
        stored = [_key(i) for i in asyncio.run(StatemwSession("s", store=servers[0]).get_items())]
    finally:
        for store in servers:
            store.close()
    produced = [key for server_runs in runs for run in server_runs for key in run]
    assert len(produced) == 2 * 3 * 5  # user, reasoning, call, output, answer: 3 turns each
    assert Counter(stored) == Counter(produced)  # every item of both, each exactly once
    assert len(set(produced)) == len(produced)
    for server_runs in runs:
        assert _in_order([key for run in server_runs for key in run], stored)


@pytest.mark.parametrize("backend", ["diskcache", "postgres"])
def test_a_conversation_continues_in_a_new_process(backend: str, tmp_path: Path) -> None:
    """A turn in one process, the next in another: the second sees every item of the first."""
    url = store_url(backend, tmp_path)
    first = in_child(openai_agents_turn, url, "trip", "What is the weather in Berlin?")
    second = in_child(openai_agents_turn, url, "trip", "Once more, please.")
    assert first["before"] == []
    kinds = [i.get("type", "message") for i in first["after"]]
    assert kinds == ["message", "reasoning", "function_call", "function_call_output", "message"]
    assert second["before"] == first["after"]  # every item, identical
    assert second["model_input"][:5] == first["after"]  # and the model was sent them
    assert second["reply"] == "The weather: rain, 12 C."  # the city came from the history
    assert second["after"][:5] == first["after"]
    assert len(second["after"]) == 10
