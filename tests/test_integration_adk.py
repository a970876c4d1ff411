"""statemw as Google ADK's session service: ADK's own Runner on a scripted model."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.agents_adk import APP, FORECASTS, ScriptedLlm, ask, make_agent
from statemw import Store
from statemw.integrations.adk import StatemwSessionService, to_event, to_message
from tests.framework_turns import adk_turn, in_child
from tests.support import at_once, server_stores, store_url

pytestmark = pytest.mark.anyio


def text_event(text: str, author: str = "user", **fields: Any) -> Event:
    return Event(
        author=author,
        invocation_id="i",
        content=types.Content(role="user", parts=[types.Part(text=text)]),
        **fields,
    )


def call_event(call_id: str) -> Event:
    call = types.FunctionCall(id=call_id, name="f", args={"x": 1})
    return Event(
        author="agent",
        invocation_id="i",
        content=types.Content(role="model", parts=[types.Part(function_call=call)]),
    )


def response_event(call_id: str) -> Event:
    response = types.FunctionResponse(id=call_id, name="f", response={"ok": True})
    return Event(
        author="agent",
        invocation_id="i",
        content=types.Content(role="user", parts=[types.Part(function_response=response)]),
    )


async def test_the_service_is_an_adk_session_service() -> None:
    assert isinstance(StatemwSessionService(store=Store("memory://")), BaseSessionService)


async def test_adks_runner_keeps_a_tool_calling_conversation_and_user_state(store: Store) -> None:
    service = StatemwSessionService(store=store)
    runner = Runner(agent=make_agent(ScriptedLlm()), app_name=APP, session_service=service)
    created = await service.create_session(app_name=APP, user_id="u")
    assert await ask(runner, "u", created.id, "Weather in Berlin?") == "The weather: rain, 12 C."
    assert await ask(runner, "u", created.id, "And Oslo?") == "The weather: snow, -3 C."
    session = await service.get_session(app_name=APP, user_id="u", session_id=created.id)
    assert session is not None
    assert len(session.events) == 8  # user, call, response, answer: twice
    assert session.state["user:last_city"] == "Oslo"
    other = await service.create_session(app_name=APP, user_id="u")
    assert other.state["user:last_city"] == "Oslo"  # user: state is shared by the user's sessions


async def test_a_session_continues_after_a_restart_on_the_same_directory(tmp_path: Path) -> None:
    url = f"diskcache://{tmp_path / 'store'}"
    agent = make_agent(ScriptedLlm())
    service = StatemwSessionService(store=Store(url))
    runner = Runner(agent=agent, app_name=APP, session_service=service)
    created = await service.create_session(app_name=APP, user_id="u", session_id="trip")
    await ask(runner, "u", "trip", "Weather in Lisbon?")
    service.store.close()
    service = StatemwSessionService(store=Store(url))
    runner = Runner(agent=agent, app_name=APP, session_service=service)
    assert await ask(runner, "u", created.id, "Again?") == "The weather: sun, 24 C."


async def test_events_come_back_identical(store: Store) -> None:
    service = StatemwSessionService(store=store)
    session = await service.create_session(app_name=APP, user_id="u")
    events = [text_event("hi", branch="b"), call_event("c"), response_event("c")]
    for event in events:
        await service.append_event(session, event)
    again = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert again is not None
    assert again.events == events


async def test_state_prefixes_go_to_session_user_app_and_nowhere(store: Store) -> None:
    service = StatemwSessionService(store=store)
    session = await service.create_session(
        app_name=APP, user_id="u", state={"k": 1, "user:lang": "de", "app:v": 2, "temp:t": 3}
    )
    event = text_event("x", actions=EventActions(state_delta={"k": 5, "temp:scratch": 1}))
    await service.append_event(session, event)
    assert session.state["temp:scratch"] == 1  # for the rest of the invocation
    again = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert again is not None
    assert again.state == {"k": 5, "user:lang": "de", "app:v": 2}
    assert store.load(session.id)["k"] == 5
    assert store.user_state("u")[f"{APP}/lang"] == "de"
    assert store.load(f"adk-app.{APP}")["v"] == 2
    assert await service.get_user_state(app_name=APP, user_id="u") == {"lang": "de"}


async def test_temp_state_is_kept_for_its_ttl_when_asked(store: Store, clock: Any) -> None:
    service = StatemwSessionService(store=store, temp_ttl=60)
    session = await service.create_session(app_name=APP, user_id="u")
    await service.append_event(
        session, text_event("x", actions=EventActions(state_delta={"temp:t": 1}))
    )
    again = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert again is not None
    assert again.state["temp:t"] == 1
    clock.advance(61)
    later = await service.get_session(app_name=APP, user_id="u", session_id=session.id)
    assert later is not None
    assert "temp:t" not in later.state


async def test_recent_events_never_split_a_call_from_its_response(store: Store) -> None:
    service = StatemwSessionService(store=store)
    session = await service.create_session(app_name=APP, user_id="u")
    events = [text_event("a"), call_event("c"), response_event("c"), text_event("b", "agent")]
    for event in events:
        await service.append_event(session, event)

    async def recent(n: int) -> list[Event]:
        config = GetSessionConfig(num_recent_events=n)
        got = await service.get_session(
            app_name=APP, user_id="u", session_id=session.id, config=config
        )
        assert got is not None
        return got.events

    assert await recent(2) == events[3:]
    assert await recent(3) == events[1:]
    assert await recent(0) == []


async def test_after_timestamp_returns_the_events_from_then_on(store: Store) -> None:
    service = StatemwSessionService(store=store)
    session = await service.create_session(app_name=APP, user_id="u")
    events = [text_event(str(n), timestamp=1000.0 + n) for n in range(5)]
    for event in events:
        await service.append_event(session, event)
    config = GetSessionConfig(after_timestamp=1002.0)
    got = await service.get_session(app_name=APP, user_id="u", session_id=session.id, config=config)
    assert got is not None
    assert got.events == events[2:]


async def test_sessions_are_listed_deleted_and_scoped_by_app_and_user(store: Store) -> None:
    service = StatemwSessionService(store=store)
    one = await service.create_session(app_name=APP, user_id="u", session_id="one")
    await service.create_session(app_name="other", user_id="u", session_id="two")
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id="u", session_id="one")
    listed = await service.list_sessions(app_name=APP, user_id="u")
    assert [s.id for s in listed.sessions] == [one.id]
    assert await service.get_session(app_name=APP, user_id="v", session_id="one") is None
    await service.delete_session(app_name=APP, user_id="u", session_id="one")
    assert await service.get_session(app_name=APP, user_id="u", session_id="one") is None


async def test_two_runners_appending_at_once_lose_and_duplicate_nothing(store: Store) -> None:
    service = StatemwSessionService(store=store)
    created = await service.create_session(app_name=APP, user_id="u", session_id="s")

    async def write(tag: str) -> None:
        session = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert session is not None
        for n in range(10):
            event = text_event(f"{tag}{n}")
            await service.append_event(session, event)
            await service.append_event(session, event)  # a retry: never stored twice

    await asyncio.gather(write("a"), write("b"))
    got = await service.get_session(app_name=APP, user_id="u", session_id=created.id)
    assert got is not None
    said = sorted(
        e.content.parts[0].text or "" for e in got.events if e.content and e.content.parts
    )
    assert said == sorted([f"a{n}" for n in range(10)] + [f"b{n}" for n in range(10)])


async def test_a_users_sessions_are_erased_with_the_user(store: Store) -> None:
    service = StatemwSessionService(store=store)
    session = await service.create_session(app_name=APP, user_id="u", state={"user:x": 1})
    store.forget_user("u")
    assert await service.get_session(app_name=APP, user_id="u", session_id=session.id) is None
    assert await service.get_user_state(app_name=APP, user_id="u") == {}


# -- properties --------------------------------------------------------------------------------

texts = st.text(max_size=10)
parts = st.one_of(
    st.builds(types.Part, text=texts),
    st.builds(
        types.Part,
        function_call=st.builds(
            types.FunctionCall, id=texts, name=texts, args=st.dictionaries(texts, texts)
        ),
    ),
    st.builds(
        types.Part,
        inline_data=st.builds(
            types.Blob, mime_type=st.just("image/png"), data=st.binary(max_size=8)
        ),
    ),
)
events = st.builds(
    Event,
    author=st.sampled_from(["user", "agent"]),
    invocation_id=texts,
    content=st.builds(
        types.Content, role=st.sampled_from(["user", "model"]), parts=st.lists(parts, max_size=3)
    ),
    branch=st.none() | texts,
    timestamp=st.floats(0, 2e9),
)


@settings(max_examples=60, deadline=None)
@given(events)
def test_every_event_maps_to_a_message_and_back(event: Event) -> None:
    assert to_event(to_message(event)) == event


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["text", "call", "late"]), max_size=16), st.integers(0, 10))
def test_a_window_of_recent_events_never_splits_a_call_from_its_response(
    script: list[str], n: int
) -> None:
    async def window() -> list[Event]:
        service = StatemwSessionService(store=Store("memory://"))
        session = await service.create_session(app_name=APP, user_id="u")
        for k, step in enumerate(script):
            if step == "text":
                await service.append_event(session, text_event(str(k)))
            elif step == "call":
                await service.append_event(session, call_event(f"c{k}"))
                await service.append_event(session, response_event(f"c{k}"))
            elif k:
                await service.append_event(session, response_event(f"c{k - 1}"))
        config = GetSessionConfig(num_recent_events=n)
        got = await service.get_session(
            app_name=APP, user_id="u", session_id=session.id, config=config
        )
        assert got is not None
        return got.events

    chosen = asyncio.run(window())
    assert len(chosen) <= n
    parts = [p for e in chosen if e.content for p in e.content.parts or []]
    calls = {p.function_call.id for p in parts if p.function_call}
    answers = {p.function_response.id for p in parts if p.function_response}
    assert answers <= calls


# -- two app servers at once, and a new process ----------------------------------------------------


class TaggedLlm(ScriptedLlm):
    """The scripted model of one app server: its function-call ids carry the server's tag."""

    tag: str = ""

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        async for response in super().generate_content_async(llm_request, stream):
            for part in (response.content.parts if response.content else None) or []:
                if part.function_call is not None:
                    part.function_call.id = f"{self.tag}{part.function_call.id}"
            yield response


CITIES = {"a": ["Berlin", "Lisbon", "Oslo"], "b": ["Oslo", "Berlin", "Lisbon"]}


def _text(event: Event) -> str | None:
    parts = event.content.parts if event.content else None
    return parts[0].text if parts else None


def test_two_adk_runners_on_two_servers_at_once_lose_and_duplicate_nothing(
    backend_kind: str, tmp_path: Path
) -> None:
    """Two app servers (a Store, a StatemwSessionService and a Runner each, on threads and loops
    of their own) run three turns each with run_async on one session at the same time."""
    servers = server_stores(backend_kind, tmp_path)

    async def create() -> None:
        await StatemwSessionService(store=servers[0]).create_session(
            app_name=APP, user_id="harsh", session_id="s"
        )

    asyncio.run(create())

    def server(tag: str, store: Store) -> Callable[[], Awaitable[list[tuple[str, list[str]]]]]:
        async def turns() -> list[tuple[str, list[str]]]:
            service = StatemwSessionService(store=store)
            runner = Runner(
                agent=make_agent(TaggedLlm(tag=tag)), app_name=APP, session_service=service
            )
            runs = []
            for n, city in enumerate(CITIES[tag]):
                text = f"{tag}{n}: the weather in {city}?"
                message = types.Content(role="user", parts=[types.Part(text=text)])
                events = [
                    event
                    async for event in runner.run_async(
                        user_id="harsh", session_id="s", new_message=message
                    )
                ]
                assert _text(events[-1]) == f"The weather: {FORECASTS[city]}."
                runs.append((text, [event.id for event in events]))
            return runs

        return turns

    async def stored() -> list[Event]:
        got = await StatemwSessionService(store=servers[0]).get_session(
            app_name=APP, user_id="harsh", session_id="s"
        )
        assert got is not None
        return got.events

    try:
        runs = at_once(server("a", servers[0]), server("b", servers[1]))
        events = asyncio.run(stored())
    finally:
        for store in servers:
            store.close()
    runs_of_all = [run for server_runs in runs for run in server_runs]
    assert len(events) == 2 * 3 * 4  # user, call, response, answer: 3 turns each
    assert len({e.id for e in events}) == len(events)  # none twice
    asked = [_text(e) for e in events if e.author == "user"]
    assert Counter(asked) == Counter(text for text, _ in runs_of_all)  # every user turn, once
    answered = [e.id for e in events if e.author != "user"]
    assert Counter(answered) == Counter(i for _, ids in runs_of_all for i in ids)  # every event
    for text, ids in runs_of_all:  # each turn's events after its question, in order
        order = [e.id for e in events]
        start = [_text(e) for e in events].index(text)
        rest = iter(order[start:])
        assert all(i in rest for i in ids)


@pytest.mark.parametrize("backend", ["diskcache", "postgres"])
def test_a_session_continues_in_a_new_process(backend: str, tmp_path: Path) -> None:
    """A turn in one process, the next in another: the second sees every event of the first."""
    url = store_url(backend, tmp_path)
    first = in_child(adk_turn, url, "trip", "What is the weather in Berlin?")
    second = in_child(adk_turn, url, "trip", "Once more, please.")
    assert first["before"] == []
    assert [e["author"] for e in first["after"]] == [
        "user",
        "forecaster",
        "forecaster",
        "forecaster",
    ]
    assert second["before"] == first["after"]  # every event, identical
    sent = [[p.get("text") for p in c["parts"]] for c in second["model_input"]]
    assert sent[0] == ["What is the weather in Berlin?"]  # the model was sent the first turn
    assert sent[3] == ["The weather: rain, 12 C."]
    assert second["reply"] == "The weather: rain, 12 C."  # the city came from the history
    assert second["after"][:4] == first["after"]
    assert len(second["after"]) == 8
    assert second["state"]["user:last_city"] == "Berlin"
