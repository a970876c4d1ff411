"""The demo apps (Starlette and Flask) through their test clients: one suite, both apps; and the
agent framework examples, run as scripts."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from examples.agent import respond
from statemw import Store
from tests.support import Browser, json_of

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_seeds_travel_conversation_builds_on_earlier_turns(
    open_browser: Callable[[], Browser],
) -> None:
    me = open_browser()
    assert me.say("Find flights to Berlin")["reply"].endswith("When would you like to travel?")
    assert me.say("Next Tuesday")["reply"] == "Next Tuesday works. Morning or evening?"
    reply = me.say("Morning")
    assert reply["reply"] == "A morning departure. What's your budget?"
    assert reply["state"] == {
        "destination": "Berlin",
        "date": "Next Tuesday",
        "time_of_day": "morning",
    }
    assert [m["role"] for m in reply["messages"]] == ["user", "assistant"] * 3


def test_the_support_bot_remembers_the_original_complaint(
    open_browser: Callable[[], Browser],
) -> None:
    me = open_browser()
    me.say("My order hasn't arrived")
    assert me.say("ORDER-123")["reply"].startswith(
        "I see ORDER-123 was shipped 3 days ago, and you said it hasn't arrived."
    )


def test_a_second_device_of_the_same_user_continues_the_conversation(
    open_browser: Callable[[], Browser],
) -> None:
    phone, laptop = open_browser(), open_browser()
    phone.login("harsh")
    phone.say("Find hotels in Berlin")
    laptop.login("harsh")
    assert laptop.state()["messages"][0]["content"] == "Find hotels in Berlin"
    assert laptop.say("Under $150")["state"]["budget"] == "under $150"
    assert len(phone.state()["messages"]) == 4


def test_user_facts_follow_the_user_into_a_new_conversation(
    open_browser: Callable[[], Browser], store: Store
) -> None:
    me = open_browser()
    me.login("harsh")
    me.say("I live in San Francisco")
    assert me.state()["user_state"] == {"home": "San Francisco"}
    fresh = store.create(user_id="harsh")
    assert "San Francisco" in respond(fresh, "Book a flight to Tokyo")


def test_remembered_items_can_be_corrected_and_deleted(open_browser: Callable[[], Browser]) -> None:
    me = open_browser()
    me.say("Find flights to Berlin")
    client = me.client
    assert json_of(client.put("/api/state/session/destination", json={"value": "Paris"}))[
        "state"
    ] == {"destination": "Paris"}
    assert "Paris" in me.say("What do you remember?")["reply"]
    assert json_of(client.delete("/api/state/session/destination"))["state"] == {}


def test_forget_me_removes_the_conversation_and_the_users_facts(
    open_browser: Callable[[], Browser], store: Store
) -> None:
    me = open_browser()
    me.login("harsh")
    me.say("I live in San Francisco")
    me.say("Find flights to Berlin")
    forgotten = json_of(me.client.post("/api/forget"))
    assert forgotten["messages"] == []
    assert forgotten["user_state"] == {}
    assert store.user_sessions("harsh") == []
    assert me.state()["messages"] == []


def test_the_context_window_is_shown_with_token_counts(open_browser: Callable[[], Browser]) -> None:
    context = open_browser().say("Find flights to Berlin")["context"]
    assert [m["role"] for m in context["messages"]] == ["user", "assistant"]
    assert context["token_count"] == sum(m["tokens"] for m in context["messages"])


def test_the_streamed_answer_arrives_word_by_word_and_is_remembered(
    open_browser: Callable[[], Browser], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEMO_TOKEN_DELAY", "0")
    me = open_browser()
    response = me.client.post("/api/chat/stream", json={"text": "Find flights to Berlin"})
    assert response.status_code == 200
    assert response.text == "Berlin, noted. When would you like to travel?"
    assert me.state()["messages"] == [
        {"role": "user", "content": "Find flights to Berlin"},
        {"role": "assistant", "content": "Berlin, noted. When would you like to travel?"},
    ]


def test_bad_input_is_a_400_with_a_message(open_browser: Callable[[], Browser]) -> None:
    client = open_browser().client
    response = client.post("/api/chat", json={"text": "   "})
    assert response.status_code == 400
    assert json_of(response)["error"] == "say something"
    assert client.post("/api/chat/stream", json={"text": ""}).status_code == 400
    assert client.put("/api/state/nowhere/x", json={"value": 1}).status_code == 400


def test_the_page_and_its_assets_are_served(open_browser: Callable[[], Browser]) -> None:
    client = open_browser().client
    for path in ("/", "/static/app.js", "/static/style.css"):
        response = client.get(path)
        assert response.status_code == 200
        getattr(response, "close", lambda: None)()


def test_a_price_per_night_is_not_a_departure_time(store: Store) -> None:
    session = store.create()
    respond(session, "Find flights to Berlin")
    respond(session, "Next Tuesday")
    respond(session, "Morning")
    respond(session, "Under $150/night")
    assert session["time_of_day"] == "morning"
    assert session["budget"] == "under $150"


# -- the agent framework examples, run as the docs say -----------------------------------------

AGENT_EXAMPLES = sorted(p.stem for p in EXAMPLES.glob("agents_*.py"))
PRINTED = {
    "agents_openai": "The weather: rain, 12 C.\nThe weather: sun, 24 C.\nThe weather: sun, 24 C.\n"
    "15 items; 1 in a 3\n",
    "agents_langchain": "The weather: rain, 12 C.\nThe weather: snow, -3 C.\n"
    "The weather: snow, -3 C.\n12 messages\n",
    "agents_adk": "The weather: rain, 12 C.\nThe weather: snow, -3 C.\nThe weather: snow, -3 C.\n"
    "12 events; the user's last city: Oslo\n",
}
"""What each example prints: a city named two turns back still answers after the restart."""


def test_every_agent_framework_example_is_checked() -> None:
    assert sorted(PRINTED) == AGENT_EXAMPLES


@pytest.mark.parametrize("name", AGENT_EXAMPLES)
def test_an_agent_framework_example_runs_as_a_script(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python -m examples.agents_*` (README, docs/integrations.md): the module run as __main__,
    its own temporary directory, its restart and all."""
    monkeypatch.delitem(sys.modules, f"examples.{name}", raising=False)  # run afresh, as a script
    runpy.run_module(f"examples.{name}", run_name="__main__", alter_sys=True)
    assert capsys.readouterr().out == PRINTED[name]
