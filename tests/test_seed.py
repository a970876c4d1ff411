"""Every snippet of the seed document ("Statefulness Returns") runs as written.

Only imports and the user's own functions (agent, summarize, db, ...) are added.
"""

from __future__ import annotations

from typing import Any

from statemw import Session, Store


class Agent:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def generate(self, history: list[dict[str, Any]]) -> str:
        self.seen = history
        return "Morning or evening?"

    def resume(self, session: Session) -> None:
        self.seen = session.get_history()


def summarize(messages: Any) -> str:
    return f"The user talked about flights ({len(messages)} messages)."


def test_session_management(store: Store) -> None:
    agent = Agent()

    session = Session.create(user_id="harsh")
    session.add_message("user", "Find flights to Berlin")
    session.add_message("agent", "When would you like to travel?")
    session.add_message("user", "Next Tuesday")

    # Agent has full conversation history
    response = agent.generate(session.get_history())

    assert response == "Morning or evening?"
    assert [m["content"] for m in agent.seen] == [
        "Find flights to Berlin",
        "When would you like to travel?",
        "Next Tuesday",
    ]


def test_context_window_management(store: Store) -> None:
    MAX_TOKENS = 200
    session = Session.create(user_id="harsh")
    for i in range(40):
        session.add_message("user", f"Message number {i} about the trip to Berlin")
    before = session.token_count()

    if session.token_count() > MAX_TOKENS:
        # Summarize old messages
        summary = summarize(session.messages[:-10])
        session.messages = [summary] + session.messages[-10:]  # noqa: RUF005 - the seed, as written

    assert session.token_count() < before
    history = session.get_history()
    assert history[0]["content"] == "The user talked about flights (30 messages)."
    assert len(history) == 11
    assert len(session.messages) == 40  # the originals are kept, no longer sent
    session.save()
    assert Session.load(session.id).get_history() == history


def test_state_persistence(store: Store) -> None:
    agent = Agent()
    first = Session.create(user_id="harsh", session_id="abc123")
    first.add_message("user", "Find flights to Berlin")

    # Save session to database
    first.save()

    # Later, restore session
    session = Session.load(session_id="abc123")
    agent.resume(session)

    assert agent.seen == [{"role": "user", "content": "Find flights to Berlin"}]


def test_hybrid_state(store: Store) -> None:
    class DB:
        def get_user(self, user_id: str | None) -> dict[str, Any]:
            return {"name": "Harsh", "id": user_id}

    def get_real_time_context() -> dict[str, Any]:
        return {"weather": "sunny"}

    db = DB()
    session = Session.create(user_id="harsh")
    session["location"] = "Bangalore"

    session.messages = [{"role": "user", "content": "Plan my trip"}]  # Conversation history
    user_profile = db.get_user(session.user_id)  # Persistent user data
    current_context = get_real_time_context()  # Live data

    combined = session + user_profile + current_context

    assert combined == {"location": "Bangalore", "name": "Harsh", "id": "harsh", "weather": "sunny"}
    assert session.messages[0]["content"] == "Plan my trip"


def test_hierarchical_sessions(store: Store) -> None:
    main = Session.create(user_id="harsh")
    main["trip"] = "Berlin"
    flights = main.child("flights")
    hotels = main.child("hotels")
    activities = main.child("activities")
    flights["airline"] = "LH"

    assert flights["trip"] == hotels["trip"] == activities["trip"] == "Berlin"
    assert "airline" not in hotels


def test_ephemeral_state(store: Store) -> None:
    results = [{"flight": "LH123"}]
    session = Session.create(user_id="harsh")

    session.set("flight_search_results", results, ttl=300)  # 5 min

    assert session["flight_search_results"] == results
    assert session.expires_at("flight_search_results") == store.clock() + 300
