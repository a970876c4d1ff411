"""The demo assistant and stale state: corrections said in words, facts that show their age and
are asked about again once they may have changed (issue 14). A fake clock moves time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from examples.agent import HOME_CHECK, respond
from statemw import Session, Store
from tests.support import Browser, FakeClock

DAY = 86400.0


@pytest.fixture
def me(clock: FakeClock) -> Session:
    """A logged-in user's conversation in a memory store."""
    return Store("memory://", clock=clock).create(user_id="harsh")


def returning(me: Session, clock: FakeClock, days: float) -> Session:
    """The same conversation, saved, and loaded again `days` later."""
    me.save()
    clock.advance(days * DAY)
    return me.store.load(me.id)


# -- corrections -----------------------------------------------------------------------------------


def test_actually_make_it_corrects_the_destination_and_says_so(me: Session) -> None:
    respond(me, "Find flights to Berlin")
    reply = respond(me, "Actually make it Munich")
    assert (reply, me["destination"]) == (
        "Changed destination to Munich (was Berlin). Munich, noted. When would you like to travel?",
        "Munich",
    )


def test_not_this_but_that_corrects_the_slot_holding_this(me: Session) -> None:
    respond(me, "Find flights to Berlin")
    reply = respond(me, "not Berlin, Paris")
    assert (reply.startswith("Changed destination to Paris (was Berlin)."), me["destination"]) == (
        True,
        "Paris",
    )


def test_change_the_date_to_corrects_the_date(me: Session) -> None:
    respond(me, "Find flights to Berlin")
    respond(me, "Next Tuesday")
    reply = respond(me, "change the date to Friday")
    assert (reply, me["date"], me["destination"]) == (
        "Changed date to Friday (was Next Tuesday). Friday works. Morning or evening?",
        "Friday",
        "Berlin",
    )


def test_make_it_with_a_time_corrects_the_departure_time(me: Session) -> None:
    for text in ("Find flights to Berlin", "Next Tuesday", "Morning"):
        respond(me, text)
    respond(me, "Actually, make it evening")
    assert me["time_of_day"] == "evening"


def test_a_correction_of_where_the_user_lives_goes_to_the_users_state(me: Session) -> None:
    respond(me, "I live in San Francisco")
    reply = respond(me, "not San Francisco, Oakland")
    assert (reply, me.user["home"]) == ("Changed home to Oakland (was San Francisco).", "Oakland")


def test_lowercase_place_names_are_places_too(me: Session) -> None:
    respond(me, "find flights to berlin")
    assert me["destination"] == "Berlin"
    reply = respond(me, "actually make it munich")
    assert reply.startswith("Changed destination to Munich (was Berlin).")
    reply = respond(me, "not munich, paris")
    assert (reply.startswith("Changed destination to Paris (was Munich)."), me["destination"]) == (
        True,
        "Paris",
    )
    respond(me, "not paris, new york")
    assert me["destination"] == "New York"


def test_lowercase_corrections_of_where_the_user_lives(me: Session) -> None:
    respond(me, "i live in san francisco")
    assert me.user["home"] == "San Francisco"
    respond(me, "not san francisco, oakland")
    assert me.user["home"] == "Oakland"


@pytest.mark.parametrize(
    ("text", "destination"),
    [
        ("find flights for two to rome please", "Rome"),
        ("find flights to berlin tomorrow morning", "Berlin"),
        ("Find flights for Berlin", "Berlin"),
        ("hotel in lisbon for friday", "Lisbon"),
    ],
)
def test_a_lowercase_place_is_found_among_other_words(
    me: Session, text: str, destination: str
) -> None:
    respond(me, text)
    assert me["destination"] == destination


@pytest.mark.parametrize("text", ["make it cheaper", "I'm in a hurry", "ok", "make it two"])
def test_words_that_are_not_places_change_no_destination(me: Session, text: str) -> None:
    respond(me, "Find flights to Berlin")
    respond(me, text)
    assert me["destination"] == "Berlin"


def test_a_sentence_with_not_in_it_is_not_taken_for_a_correction(me: Session) -> None:
    respond(me, "Find flights to Berlin")
    respond(me, "I'm not sure, maybe later")
    assert me["destination"] == "Berlin"


# -- stale facts -----------------------------------------------------------------------------------


def test_a_fresh_fact_is_not_asked_about(me: Session, clock: FakeClock) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 1)
    assert "still" not in respond(me, "Hi")


def test_a_stale_fact_is_asked_about_after_the_answer(me: Session, clock: FakeClock) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, HOME_CHECK / DAY)
    assert respond(me, "Hi") == (
        "Hello! Try: Find flights to Berlin. By the way: Are you still in San Francisco?"
    )


def test_yes_confirms_the_stale_fact(me: Session, clock: FakeClock) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 15)
    respond(me, "Hi")
    reply = respond(me, "Yes")
    assert (reply, me.user["home"], me.stale_keys()) == (
        "Thanks, I'll keep San Francisco as your home.",
        "San Francisco",
        [],
    )


def test_a_new_value_replaces_the_stale_fact(me: Session, clock: FakeClock) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 15)
    respond(me, "Hi")
    reply = respond(me, "No, I moved to New York")
    assert (reply, me.user["home"], me.stale_keys()) == (
        "Updated: you live in New York (was San Francisco). Thanks!",
        "New York",
        [],
    )


def test_a_bare_new_value_replaces_the_stale_fact(me: Session, clock: FakeClock) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 15)
    respond(me, "Hi")
    respond(me, "Munich")
    assert me.user["home"] == "Munich"


def test_no_forgets_the_stale_fact_and_asks_for_the_new_one(me: Session, clock: FakeClock) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 15)
    respond(me, "Hi")
    assert respond(me, "No") == "OK, I've forgotten San Francisco. What is your home now?"
    respond(me, "Lisbon")
    assert me.user["home"] == "Lisbon"


def test_a_confirmed_fact_is_asked_about_again_only_after_another_period(
    me: Session, clock: FakeClock
) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 15)
    respond(me, "Hi")
    respond(me, "Yes")
    me = returning(me, clock, 13)
    assert "still" not in respond(me, "Hi")


def test_an_unrelated_answer_leaves_the_fact_stale_and_it_is_asked_again(
    me: Session, clock: FakeClock
) -> None:
    respond(me, "I live in San Francisco")
    me = returning(me, clock, 15)
    respond(me, "Hi")
    reply = respond(me, "Find flights to Berlin")
    assert reply.endswith("By the way: Are you still in San Francisco?")
    assert me.stale_keys() == ["home"]


# -- the page shows each fact's age ----------------------------------------------------------------


def test_the_page_shows_how_old_each_fact_is_and_which_are_due(
    open_browser: Callable[[], Browser],
    clock: FakeClock,
) -> None:
    page = open_browser()
    page.login("harsh")
    page.say("I live in San Francisco")
    page.say("Find flights to Berlin")
    assert page.state()["ages"] == {
        "session": {"destination": {"age": "just now", "stale": False}},
        "user": {"home": {"age": "just now", "stale": False}},
    }
    clock.advance(15 * DAY)
    assert page.state()["ages"] == {
        "session": {"destination": {"age": "15 days ago", "stale": False}},
        "user": {"home": {"age": "15 days ago", "stale": True}},
    }


def test_the_question_the_assistant_asked_is_not_shown_as_remembered(
    open_browser: Callable[[], Browser],
    clock: FakeClock,
) -> None:
    page = open_browser()
    page.login("harsh")
    page.say("I live in San Francisco")
    clock.advance(15 * DAY)
    assert page.say("Hi")["state"] == {}


def test_an_edited_fact_is_fresh_again(
    open_browser: Callable[[], Browser],
    clock: FakeClock,
) -> None:
    page = open_browser()
    page.login("harsh")
    page.say("I live in San Francisco")
    clock.advance(15 * DAY)
    edited = page.client.put("/api/state/user/home", json={"value": "Oakland"})
    assert edited.status_code == 200
    assert page.state()["ages"]["user"] == {"home": {"age": "just now", "stale": False}}
