from __future__ import annotations

from statemw import Session, Store


def test_a_saved_session_loads_with_its_messages_and_state(store: Store) -> None:
    session = Session.create(user_id="harsh")
    session.add_message("user", "Find flights to Berlin")
    session["location"] = "Bangalore"
    session.save()

    again = Session.load(session.id)

    assert again.get_history() == [{"role": "user", "content": "Find flights to Berlin"}]
    assert again["location"] == "Bangalore"
