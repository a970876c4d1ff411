"""Store(validate=fn): stale keys go through one function when a web request loads a session.

Every adapter shares statemw/_flow.py, so each is driven once here: ASGI (sync and async
validate), WSGI, Flask and @stateful. The clock is fake. Tests whose outcome goes through the
store (what validate writes or confirms, the user's keys, each adapter's driver) take the `store`
fixture and run on every backend; the rest (when validate is not called) run in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest
from flask import Flask, jsonify, session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from statemw import ConfigurationError, Session, StaleKey, Store, stateful
from statemw.asgi import StateMiddleware
from statemw.flask import FlaskState
from statemw.keys import Header
from statemw.wsgi import ENVIRON_KEY
from statemw.wsgi import StateMiddleware as WSGIStateMiddleware
from tests.support import FakeClock

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

WEEK = 7 * 86400.0  # shorter than the store's idle timeout (30 days), so sessions live
HEADER = "X-Session-ID"


class Calls:
    """A validate function that records what it was given and flags the stale keys."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, session: Session, stale: list[StaleKey]) -> None:
        self.seen.append(sorted(stale))
        session["_to_confirm"] = sorted(stale)


class AsyncCalls(Calls):
    async def __call__(self, session: Session, stale: list[StaleKey]) -> None:  # type: ignore[override]
        super().__call__(session, stale)


async def asgi_remember(request: Request) -> JSONResponse:
    request.session.set("location", "San Francisco", confirm_after=WEEK)  # type: ignore[attr-defined]
    return JSONResponse({})


async def asgi_show(request: Request) -> JSONResponse:
    return JSONResponse(dict(request.session))


def asgi_client(store: Store) -> TestClient:
    app = Starlette(
        routes=[Route("/remember", asgi_remember, methods=["POST"]), Route("/show", asgi_show)],
        middleware=[Middleware(StateMiddleware, store=store, keys=[Header(HEADER, signed=False)])],
    )
    return TestClient(app)


def validating_store(clock: FakeClock, validate: Any) -> Store:
    return Store("memory://", clock=clock, validate=validate)


def remembered(client: TestClient | Client) -> str:
    response = client.post("/remember")
    sid = response.headers[HEADER]
    assert isinstance(sid, str)
    return sid


def test_validate_runs_before_the_handler_of_a_request_whose_session_has_stale_keys(
    store: Store, clock: FakeClock
) -> None:
    store.validate = calls = Calls()
    client = asgi_client(store)
    sid = remembered(client)
    clock.advance(WEEK)
    shown = client.get("/show", headers={HEADER: sid}).json()
    assert (calls.seen, shown["_to_confirm"]) == ([["location"]], ["location"])


def test_validate_is_not_called_while_nothing_is_stale(clock: FakeClock) -> None:
    calls = Calls()
    client = asgi_client(validating_store(clock, calls))
    sid = remembered(client)
    clock.advance(WEEK - 1)
    client.get("/show", headers={HEADER: sid})
    assert calls.seen == []


def test_validate_is_not_called_for_a_request_without_a_session(clock: FakeClock) -> None:
    calls = Calls()
    asgi_client(validating_store(clock, calls)).get("/show")
    assert calls.seen == []


def test_what_validate_changes_is_saved_with_the_request(store: Store, clock: FakeClock) -> None:
    store.validate = Calls()
    client = asgi_client(store)
    sid = remembered(client)
    clock.advance(WEEK)
    client.get("/show", headers={HEADER: sid})
    assert store.load(sid)["_to_confirm"] == ["location"]


def test_validate_that_confirms_makes_the_next_request_fresh(
    store: Store, clock: FakeClock
) -> None:
    calls: list[list[str]] = []

    def confirm_all(session: Session, stale: list[StaleKey]) -> None:
        calls.append(list(stale))
        for key in stale:
            session.confirm(key)

    store.validate = confirm_all
    client = asgi_client(store)
    sid = remembered(client)
    clock.advance(WEEK)
    client.get("/show", headers={HEADER: sid})
    client.get("/show", headers={HEADER: sid})
    assert calls == [["location"]]


def test_an_async_validate_is_awaited_under_the_asgi_middleware(
    store: Store, clock: FakeClock
) -> None:
    store.validate = AsyncCalls()
    client = asgi_client(store)
    sid = remembered(client)
    clock.advance(WEEK)
    assert client.get("/show", headers={HEADER: sid}).json()["_to_confirm"] == ["location"]


def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    current: Session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/remember":
        current.set("location", "San Francisco", confirm_after=WEEK)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(dict(current)).encode()]


def wsgi_client(store: Store) -> Client:
    return Client(WSGIStateMiddleware(wsgi_app, store=store, keys=[Header(HEADER, signed=False)]))


def test_validate_runs_under_the_wsgi_middleware(store: Store, clock: FakeClock) -> None:
    store.validate = Calls()
    client = wsgi_client(store)
    sid = remembered(client)
    clock.advance(WEEK)
    shown = client.get("/show", headers={HEADER: sid}).json
    assert (shown or {}).get("_to_confirm") == ["location"]


def test_an_async_validate_in_a_blocking_request_is_refused_clearly(clock: FakeClock) -> None:
    client = wsgi_client(validating_store(clock, AsyncCalls()))
    sid = remembered(client)
    clock.advance(WEEK)
    with pytest.raises(ConfigurationError, match="async adapters"):
        client.get("/show", headers={HEADER: sid})


def test_validate_runs_before_a_flask_view(store: Store, clock: FakeClock) -> None:
    store.validate = Calls()
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k")
    FlaskState(app, store=store, keys=[Header(HEADER, signed=False)])

    @app.post("/remember")
    def remember() -> Any:
        session.set("location", "San Francisco", confirm_after=WEEK)  # type: ignore[attr-defined]
        return jsonify({})

    @app.get("/show")
    def show() -> Any:
        return jsonify(dict(session))

    client = app.test_client()
    sid = client.post("/remember").headers[HEADER]
    clock.advance(WEEK)
    assert client.get("/show", headers={HEADER: sid}).json == {
        "location": "San Francisco",
        "_to_confirm": ["location"],
    }


def test_validate_runs_for_a_session_a_stateful_function_names(clock: FakeClock) -> None:
    calls = Calls()
    store = validating_store(clock, calls)

    @stateful(store)
    def turn(text: str, session: Session) -> Any:
        if text == "remember":
            session.set("location", "San Francisco", confirm_after=WEEK)
        return session.get("_to_confirm")

    turn("remember", session_id="slack-C042")
    clock.advance(WEEK)
    assert turn("hi", session_id="slack-C042") == ["location"]


def test_validate_sees_the_users_stale_keys_too(store: Store, clock: FakeClock) -> None:
    store.validate = calls = Calls()
    first = store.create(user_id="harsh")
    first.user.set("home", "San Francisco", confirm_after=WEEK)
    first["k"] = "v"
    first.save()
    clock.advance(WEEK)
    asgi_client(store).get("/show", headers={HEADER: first.id})
    assert calls.seen == [["home"]]
