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
from flask.globals import request_ctx
from werkzeug.http import dump_cookie

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


# -- behaving as flask.session does (docs/compat.md) -----------------------------------------------


def cookie_of(response: Any) -> str:
    return str(response.headers["Set-Cookie"])


def test_cookie_settings_made_after_init_are_read_on_each_request(store: Store) -> None:
    app = make_app(store)
    app.config.update(APPLICATION_ROOT="/foo", SESSION_COOKIE_SAMESITE=None)
    cookie = cookie_of(app.test_client().post("/remember", json={"name": "x"}))
    assert "Path=/foo" in cookie
    assert "SameSite" not in cookie


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"SESSION_COOKIE_NAME": "chat", "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_PATH": "/a"},
        {"SESSION_COOKIE_SAMESITE": "Strict", "SESSION_COOKIE_HTTPONLY": False},
        {"SESSION_COOKIE_DOMAIN": "example.com", "SESSION_COOKIE_PARTITIONED": True},
        {"SESSION_COOKIE_NAME": "séance"},  # werkzeug sends a non-ASCII name as latin-1
    ],
)
def test_the_set_cookie_header_is_what_werkzeug_writes_for_the_settings(
    store: Store, settings: dict[str, Any]
) -> None:
    app = make_app(store, **settings)
    cookie = cookie_of(app.test_client().post("/remember", json={"name": "x"}))
    value = cookie.split(";")[0].split("=", 1)[1]
    with app.test_request_context():
        interface = app.session_interface
        expected = dump_cookie(
            interface.get_cookie_name(app),
            value,
            domain=interface.get_cookie_domain(app),
            path=interface.get_cookie_path(app),
            secure=interface.get_cookie_secure(app),
            partitioned=interface.get_cookie_partitioned(app),
            samesite=interface.get_cookie_samesite(app),
            httponly=interface.get_cookie_httponly(app),
        )
    assert cookie == expected


def test_a_cookie_setting_changed_between_requests_is_in_the_next_cookie(store: Store) -> None:
    app = make_app(store)
    client = app.test_client()
    assert "SameSite=Lax" not in cookie_of(client.post("/remember", json={"name": "a"}))
    app.config.update(SESSION_COOKIE_SAMESITE="Lax")
    client.delete_cookie("session")
    assert "SameSite=Lax" in cookie_of(client.post("/remember", json={"name": "b"}))


def test_werkzeug_writes_a_signed_id_of_any_allowed_characters_unquoted() -> None:
    # FlaskCookie puts the signed value after "name=" as it is: werkzeug must agree
    value = "Az09_.:@+=-/child_.-" + ".AbC-_x" + ".sig-_AZ09"
    assert dump_cookie("session", value) == f"session={value}; Path=/"


def test_a_leading_dot_domain_is_sent_as_flask_sends_it_and_the_cookie_comes_back(
    store: Store,
) -> None:
    app = make_app(store, SESSION_COOKIE_DOMAIN=".example.com", SERVER_NAME="www.example.com")
    client = app.test_client()
    cookie = cookie_of(client.post("/remember", json={"name": "Harsh"}))
    assert "Domain=example.com" in cookie
    assert client.get("/show").json == {"name": "Harsh"}


def test_secret_key_fallbacks_still_open_sessions_after_rotation(store: Store) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/remember", json={"name": "Harsh"})
    app.config.update(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["test-secret"])
    assert client.get("/show").json == {"name": "Harsh"}
    app.config.update(SECRET_KEY_FALLBACKS=[])
    assert client.get("/show").json == {}


def test_a_permanent_session_cookie_has_an_expiry_and_a_plain_one_does_not(store: Store) -> None:
    app = make_app(store)

    @app.post("/stay")
    def stay() -> str:
        session.permanent = True
        return ""

    client = app.test_client()
    assert "Expires=" not in cookie_of(client.post("/remember", json={"name": "x"}))
    assert "Expires=" in cookie_of(client.post("/stay"))
    assert store.load(next(iter(store.session_ids()))).permanent is True


def test_session_permanent_true_makes_every_session_permanent(store: Store) -> None:
    cookie = cookie_of(
        make_app(store, SESSION_PERMANENT=True).test_client().post("/remember", json={"name": "x"})
    )
    assert "Expires=" in cookie


def test_a_permanent_session_is_refreshed_on_each_request_without_a_store_write(
    store: Store,
) -> None:
    app = make_app(store, SESSION_PERMANENT=True, SESSION_REFRESH_EACH_REQUEST=True)
    client = app.test_client()
    client.post("/remember", json={"name": "x"})
    [sid] = store.session_ids()
    revision = store.load(sid).revision
    assert "Set-Cookie" in client.get("/show").headers
    assert store.load(sid).revision == revision
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    assert "Set-Cookie" not in client.get("/show").headers


def test_without_a_secret_key_reads_work_and_writes_fail_as_in_flask(store: Store) -> None:
    app = make_app(store)
    app.secret_key = None
    with app.test_request_context():
        assert session.get("anything") is None
        with pytest.raises(RuntimeError, match="session is unavailable"):
            session["k"] = 1


def test_vary_cookie_joins_the_responses_own_vary_header(store: Store) -> None:
    app = make_app(store)

    @app.get("/negotiated")
    def negotiated() -> Any:
        response = jsonify(dict(session))
        response.vary.add("Accept-Encoding")
        session["seen"] = True
        return response

    client = app.test_client()
    response = client.get("/negotiated")
    assert response.headers.get_all("Vary") == ["Accept-Encoding, Cookie"]
    assert "Vary" not in client.get("/ping").headers  # never touched the session


def test_clearing_a_session_removes_its_record_and_expires_the_cookie(store: Store) -> None:
    app = make_app(store)

    @app.post("/clear")
    def clear() -> str:
        session.clear()
        return ""

    client = app.test_client()
    client.post("/remember", json={"name": "x"})
    cookie = cookie_of(client.post("/clear"))
    assert cookie.startswith("session=;")
    assert "Expires=Thu, 01 Jan 1970" in cookie
    assert list(store.session_ids()) == []


def test_modified_and_accessed_report_the_request_as_flask_does(store: Store) -> None:
    app = make_app(store)
    client = app.test_client()
    with client:  # (flask.session itself would mark the session accessed: read Flask's slot)
        client.post("/remember", json={"name": "x"})
        assert request_ctx._session is not None
        assert request_ctx._session.modified  # still true after the save, as Flask reports it
        assert request_ctx._session.accessed
    with client:
        client.get("/ping")
        assert request_ctx._session is not None
        assert not request_ctx._session.accessed
        assert not request_ctx._session.modified
