"""The demo chat app on Flask: `python -m examples.flask_app` (or `make demo-flask`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from flask import (
    Flask,
    Response,
    jsonify,
    request,
    send_from_directory,
    session,
    stream_with_context,
)

from examples import api
from statemw import InvalidValue, Session, Store
from statemw.flask import FlaskState
from statemw.keys import Cookie, UserID

FEED_SECONDS = 600
HEARTBEAT = 5.0


def create_app(store: Store | None = None, secret: str | None = None) -> Flask:
    store = store or api.demo_store()
    secret = secret or api.demo_secret()
    login = api.Login(secret)
    app = Flask(__name__, static_folder=str(api.STATIC), static_url_path="/static")
    app.config["SECRET_KEY"] = secret

    def current() -> Session:
        current_session: Session = session._get_current_object()  # type: ignore[attr-defined]
        return current_session

    @app.get("/")
    def index() -> Response:
        return send_from_directory(api.STATIC, "index.html")

    @app.get("/api/state")
    def get_state() -> Response:
        return jsonify(api.state(current()))

    @app.post("/api/chat")
    def post_chat() -> Response:
        return jsonify(api.chat(current(), (request.get_json(silent=True) or {}).get("text")))

    @app.post("/api/chat/stream")
    def post_chat_stream() -> Response:
        pieces = api.chat_stream(current(), (request.get_json(silent=True) or {}).get("text"))

        def paced() -> Iterator[str]:
            try:
                for piece in pieces:
                    yield piece
                    time.sleep(api.token_delay())
            finally:
                pieces.close()  # a client that left: the answer so far is logged

        return Response(
            stream_with_context(paced()),
            mimetype="text/plain",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @app.put("/api/state/<scope>/<key>")
    def put_item(scope: str, key: str) -> Response:
        value = (request.get_json(silent=True) or {}).get("value")
        return jsonify(api.edit(current(), scope, key, value))

    @app.delete("/api/state/<scope>/<key>")
    def delete_item(scope: str, key: str) -> Response:
        return jsonify(api.forget_item(current(), scope, key))

    @app.post("/api/login")
    def post_login() -> Response:
        user = api.check_user_name((request.get_json(silent=True) or {}).get("user"))
        current_id = store.current_session_id(user)
        found = store.get(current_id) if current_id else None
        response = jsonify(api.state(found if found is not None else store.create(user)))
        response.set_cookie(
            api.LOGIN_COOKIE, login.cookie_value(user), httponly=True, samesite="Lax"
        )
        return response

    @app.post("/api/logout")
    def post_logout() -> Response:
        response = jsonify(api.state(store.create()))
        response.delete_cookie(api.LOGIN_COOKIE)
        response.delete_cookie("session")  # the cookie pointed at the user's conversation
        return response

    @app.post("/api/forget")
    def post_forget() -> Response:
        session_now = current()
        api.forget_me(session_now)
        return jsonify(api.state(session_now))

    @app.get("/api/events")
    def events() -> Response:
        session_now = current()

        def feed() -> Iterator[str]:
            """Push an event per committed change (see the Starlette app)."""
            deadline = time.monotonic() + FEED_SECONDS
            following = api.followed(store, session_now)
            while time.monotonic() < deadline:
                if following is None:
                    time.sleep(HEARTBEAT)  # no conversation yet: nothing to listen to
                else:
                    with store.subscribe(following, timeout=HEARTBEAT) as changes:
                        for change in changes:
                            yield f"data: {change.revision}\n\n"
                now = api.followed(store, session_now)
                if now != following:
                    following = now
                    yield "data: switched\n\n"

        return Response(feed(), mimetype="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.errorhandler(InvalidValue)
    def bad_input(exc: InvalidValue) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    def current_user(req: Any) -> str | None:
        return login.user(req.cookies.get(api.LOGIN_COOKIE))

    FlaskState(app, store=store, keys=[UserID(current_user), Cookie(secret_key=secret)])
    return app
