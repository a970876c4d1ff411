"""@stateful on plain functions, a Flask view and a Starlette endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from statemw import InvalidValue, Session, Store, stateful
from statemw.keys import Cookie, UserID


def test_a_named_session_is_created_on_first_use_and_continued(store: Store) -> None:
    @stateful(store)
    def turn(text: str, session: Session) -> int:
        session.add_message("user", text)
        return len(session.messages)

    assert turn("hi", session_id="slack-C042") == 1
    assert turn("again", session_id="slack-C042") == 2
    assert turn("elsewhere", session_id="slack-C777") == 1
    assert store.load("slack-C042").messages[-1]["content"] == "again"


def test_a_named_session_with_empty_state_is_still_continued(store: Store) -> None:
    @stateful(store)
    def count(session: Session) -> int:
        session.add_message("user", "x")
        return len(session.messages)

    assert count(session_id="c1") == 1
    assert count(session_id="c1") == 2


@pytest.mark.anyio
async def test_async_functions_work_the_same(store: Store) -> None:
    @stateful(store)
    async def turn(text: str, session: Session) -> int:
        session["last"] = text
        return len(session)

    assert await turn("hi", session_id="s-1") == 1
    assert store.load("s-1")["last"] == "hi"


def test_a_session_can_be_handed_in_and_is_saved(store: Store) -> None:
    @stateful(store)
    def turn(session: Session) -> None:
        session["seen"] = True

    mine = store.create()
    turn(session=mine)
    assert store.load(mine.id)["seen"] is True


def test_a_call_that_names_no_session_is_refused(store: Store) -> None:
    @stateful(store)
    def turn(session: Session) -> None: ...

    with pytest.raises(InvalidValue, match="session_id"):
        turn()


def test_decorating_a_function_without_the_parameter_is_an_error(store: Store) -> None:
    with pytest.raises(TypeError):

        @stateful(store)
        def no_session() -> None: ...


def test_on_a_flask_view_the_key_finds_the_session_and_sets_the_cookie(store: Store) -> None:
    app = Flask(__name__)

    @app.post("/chat")
    @stateful(store, key=Cookie(secret_key="k"))
    def chat(session: Session) -> Any:
        session.add_message("user", "hi")
        return {"count": len(session.messages)}

    client = app.test_client()
    assert client.post("/chat").json == {"count": 1}
    assert client.post("/chat").json == {"count": 2}


def test_on_a_starlette_endpoint_a_user_key_continues_the_users_session(store: Store) -> None:
    @stateful(store, key=UserID(lambda request: request.headers.get("x-user")))
    async def chat(request: Request, session: Session) -> JSONResponse:
        session.add_message("user", "hi")
        return JSONResponse({"count": len(session.messages)})

    client = TestClient(Starlette(routes=[Route("/chat", chat, methods=["POST"])]))
    client.post("/chat", headers={"x-user": "harsh"})
    assert client.post("/chat", headers={"x-user": "harsh"}).json() == {"count": 2}


def test_a_named_session_nobody_wrote_to_is_not_stored(store: Store) -> None:
    @stateful(store)
    def peek(session: Session) -> int:
        return len(session.messages)

    assert peek(session_id="only-looked-at") == 0
    assert store.get("only-looked-at") is None
