"""statemw.flask.FlaskState through real Flask apps, and a real threaded WSGI server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest
from flask import Flask, jsonify, request, session

from statemw import Session, Store
from statemw.flask import FlaskState, store_for
from statemw.keys import Cookie, UserID


def make_app(store: Store | None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-secret", **config)

    @app.post("/chat")
    def chat() -> Any:
        session.add_message("user", request.json["text"])  # type: ignore[attr-defined]
        return jsonify(count=len(session.messages))  # type: ignore[attr-defined]

    @app.post("/remember")
    def remember() -> Any:
        session["name"] = request.json["name"]
        return jsonify(ok=True)

    @app.get("/show")
    def show() -> Any:
        return jsonify(dict(session))

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    @app.get("/is-statemw")
    def is_statemw() -> Any:
        return jsonify(isinstance(session._get_current_object(), Session))  # type: ignore[attr-defined]

    FlaskState(app, store=store)
    return app


def test_flask_session_is_the_statemw_session(store: Store) -> None:
    client = make_app(store).test_client()
    assert client.get("/is-statemw").json is True
    client.post("/chat", json={"text": "Find flights to Berlin"})
    assert client.post("/chat", json={"text": "Next Tuesday"}).json == {"count": 2}


def test_a_request_that_does_not_write_sets_no_cookie_and_stores_nothing(store: Store) -> None:
    client = make_app(store).test_client()
    response = client.get("/ping")
    assert "Set-Cookie" not in response.headers
    assert list(store.session_ids()) == []


def test_flasks_cookie_settings_are_respected(store: Store) -> None:
    app = make_app(
        store,
        SESSION_COOKIE_NAME="chat",
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_PATH="/app",
    )
    cookie = app.test_client().post("/remember", json={"name": "x"}).headers["Set-Cookie"]
    assert cookie.startswith("chat=")
    for part in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/app"):
        assert part in cookie


def test_configuration_comes_from_app_config(tmp_path: Path) -> None:
    app = make_app(None, STATEMW_URL=f"diskcache://{tmp_path / 's'}", STATEMW_IDLE=60)
    app.test_client().post("/remember", json={"name": "Harsh"})
    store = store_for(app)
    assert store.idle == 60
    assert dict(store.load(next(iter(store.session_ids())))) == {"name": "Harsh"}


def test_init_app_follows_the_extension_pattern(store: Store) -> None:
    ext = FlaskState(store=store)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k"
    ext.init_app(app)
    assert "statemw" in app.extensions
    assert not hasattr(ext, "app")


def test_a_tampered_cookie_starts_fresh(store: Store) -> None:
    client = make_app(store).test_client()
    client.post("/remember", json={"name": "Harsh"})
    value = client.get_cookie("session")
    assert value is not None
    client.set_cookie("session", value.value[:-2])
    assert client.get("/show").json == {}


def test_user_id_key_follows_the_user_across_devices(store: Store) -> None:
    app = make_app(store)
    FlaskState(
        app,
        store=store,
        keys=[UserID(lambda req: req.headers.get("X-User")), Cookie(secret_key="test-secret")],
    )
    phone, laptop = app.test_client(), app.test_client()
    phone.post("/chat", json={"text": "Find hotels in Berlin"}, headers={"X-User": "harsh"})
    reply = laptop.post("/chat", json={"text": "Under $150"}, headers={"X-User": "harsh"})
    assert reply.json == {"count": 2}


def test_a_store_that_is_down_answers_503(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = make_app(Store(f"diskcache://{blocker}/s"))
    client = app.test_client()
    assert client.post("/remember", json={"name": "x"}).status_code == 503
    client.set_cookie("session", "anything")
    assert client.get("/ping").status_code == 200  # a bad cookie needs no store I/O


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(store: Store) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, make_app(store), _ThreadingServer, _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_concurrent_requests_through_a_threaded_server_lose_nothing(
    served: str, store: Store
) -> None:
    with httpx.Client(base_url=served, timeout=30) as client:
        client.post("/remember", json={"name": "Harsh"})
        cookies = dict(client.cookies)

        def turn(i: int) -> int:
            response = httpx.post(
                f"{served}/chat", json={"text": f"turn {i}"}, cookies=cookies, timeout=30
            )
            return response.status_code

        with ThreadPoolExecutor(max_workers=10) as pool:
            assert set(pool.map(turn, range(30))) == {200}
    sid = next(iter(store.session_ids()))
    saved = store.load(sid)
    assert sorted(m["content"] for m in saved.messages) == sorted(f"turn {i}" for i in range(30))
    assert saved["name"] == "Harsh"
