"""A request leaves no reference cycle of statemw's objects behind: its session, binding and
message log are freed when the request ends, by reference counting, not later by the garbage
collector (whose passes a per-request cycle would trigger every few dozen requests)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from statemw import Store, stateful
from statemw.asgi import StateMiddleware
from statemw.flask import FlaskState
from statemw.session import Session
from statemw.wsgi import StateMiddleware as WsgiStateMiddleware

SECRET = "test-secret"


@contextmanager
def statemw_garbage() -> Iterator[list[str]]:
    """The names of statemw's objects that only the garbage collector freed in the block."""
    found: list[str] = []
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield found
        gc.collect()
        found.extend(
            type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("statemw")
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def turns(run: Callable[[], Any], count: int = 3) -> list[str]:
    run()  # the first request creates the session (and warms up the app)
    with statemw_garbage() as found:
        for _ in range(count):
            run()
    return found


def test_a_starlette_turn_leaves_no_cycle() -> None:
    async def turn(request: Request) -> PlainTextResponse:
        s: Session = request.session  # type: ignore[assignment]
        s.get_history(last=20)
        s.add_message("user", "hello")
        return PlainTextResponse(str(len(s.messages)))

    app = Starlette(
        routes=[Route("/turn", turn, methods=["POST"])],
        middleware=[Middleware(StateMiddleware, store=Store("memory://"), secret_key=SECRET)],
    )
    with TestClient(app) as client:
        assert turns(lambda: client.post("/turn")) == []
        assert client.post("/turn").text == "5"


def test_a_flask_turn_leaves_no_cycle() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET)

    @app.post("/turn")
    def turn() -> str:
        s: Session = session  # type: ignore[assignment]
        s.get_history(last=20)
        s.add_message("user", "hello")
        return str(len(s.messages))

    FlaskState(app, store=Store("memory://"))
    client = app.test_client()
    assert turns(lambda: client.post("/turn")) == []
    assert client.post("/turn").text == "5"


def test_a_wsgi_turn_leaves_no_cycle() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        s: Session = environ["statemw.session"]
        s.add_message("user", "hello")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(s.messages)).encode()]

    client = Client(WsgiStateMiddleware(app, store=Store("memory://"), secret_key=SECRET))
    assert turns(lambda: client.post("/")) == []
    assert client.post("/").text == "5"


def test_a_decorated_function_and_a_plain_load_and_save_leave_no_cycle() -> None:
    store = Store("memory://")

    @stateful(store)
    def reply(text: str, session: Session) -> int:
        session.add_message("user", text)
        return len(session.messages)

    assert turns(lambda: reply("hi", session_id="named")) == []

    def load_and_save() -> None:
        s = store.load("named")
        s.get_history(last=20)
        s.add_message("user", "again")
        store.save(s)

    assert turns(load_and_save) == []
    assert len(store.load("named").messages) == 8
