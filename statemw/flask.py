"""Flask extension: `flask.session` becomes the statemw Session.

    FlaskState(app)          # or ext = FlaskState(); ext.init_app(app)

Configuration from app.config: STATEMW_URL (or STATEMW_STORE, a Store), STATEMW_TTL,
STATEMW_IDLE, STATEMW_ENCRYPTION_KEY, STATEMW_WINDOW, STATEMW_KEYS (a list of keys); SECRET_KEY
signs the cookie, and Flask's SESSION_COOKIE_* settings and PERMANENT_SESSION_LIFETIME shape it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, cast

from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import ServiceUnavailable

from statemw._flow import Binding, Requests
from statemw.errors import StoreUnavailable
from statemw.keys import Cookie, IdSource
from statemw.session import Session
from statemw.store import Store
from statemw.wsgi import SavedAtEnd, incoming_from_environ

EXTENSION = "statemw"
_BINDING = "statemw.binding"
_DOWN = "statemw.unavailable"
_STORE_OPTIONS = {
    "STATEMW_TTL": "ttl",
    "STATEMW_IDLE": "idle",
    "STATEMW_ENCRYPTION_KEY": "encryption_key",
    "STATEMW_WINDOW": "window",
    "STATEMW_MAX_MESSAGE_BYTES": "max_message_bytes",
    "STATEMW_MAX_VALUE_BYTES": "max_value_bytes",
    "STATEMW_MAX_STATE_BYTES": "max_state_bytes",
    "STATEMW_MAX_MESSAGES": "max_messages",
}


def _store_from_config(config: Any) -> Store | None:
    if config.get("STATEMW_STORE") is not None:
        store: Store = config["STATEMW_STORE"]
        return store
    options = {opt: config[name] for name, opt in _STORE_OPTIONS.items() if name in config}
    if config.get("STATEMW_URL") or options:
        return Store(config.get("STATEMW_URL"), **options)
    return None  # the process-wide default store


def _cookie_from_config(config: Any) -> Cookie:
    lifetime = config.get("PERMANENT_SESSION_LIFETIME", timedelta(days=31))
    max_age = int(lifetime.total_seconds()) if isinstance(lifetime, timedelta) else int(lifetime)
    same_site: Any = str(config.get("SESSION_COOKIE_SAMESITE") or "lax").lower()
    return Cookie(
        config.get("SECRET_KEY"),
        name=config.get("SESSION_COOKIE_NAME", "session"),
        max_age=max_age,
        path=config.get("SESSION_COOKIE_PATH") or config.get("APPLICATION_ROOT") or "/",
        domain=config.get("SESSION_COOKIE_DOMAIN") or None,
        same_site=same_site,
        https_only=True if config.get("SESSION_COOKIE_SECURE") else None,
        partitioned=bool(config.get("SESSION_COOKIE_PARTITIONED", False)),
        http_only=bool(config.get("SESSION_COOKIE_HTTPONLY", True)),
    )


class _Interface(SessionInterface):
    """Flask's session contract, answered by the shared adapter flow."""

    def open_session(self, app: Flask, request: Request) -> Session:  # type: ignore[override]
        requests: Requests = app.extensions[EXTENSION]
        try:
            binding = requests.open(incoming_from_environ(request.environ, request))
        except StoreUnavailable as exc:
            # Flask opens sessions outside its error handling; _refuse_when_down raises it inside
            request.environ[_DOWN] = exc
            return requests.store.create()
        request.environ[_BINDING] = binding
        return binding.session

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        binding: Binding | None = request.environ.get(_BINDING)
        if binding is None:
            return
        requests: Requests = app.extensions[EXTENSION]
        try:
            headers = requests.close(binding, streaming=response.is_streamed)
        except StoreUnavailable:
            # never answer as if the turn was stored
            response.status_code = 503
            response.headers["Retry-After"] = "1"
            response.set_data(b'{"error": "session store unavailable"}')
            response.mimetype = "application/json"
            return
        for name, value in headers:
            response.headers.add(name, value)
        if response.is_streamed:  # stream_with_context: save what the generator adds, at its end
            body = cast(Iterable[bytes], response.response)
            response.response = SavedAtEnd(body, lambda: requests.finish(binding))


def _refuse_when_down() -> None:
    """Turn a store that was down at session open into a 503 Flask's error handlers see."""
    exc = request.environ.get(_DOWN)
    if exc is not None:
        raise ServiceUnavailable("session store unavailable") from exc


class FlaskState:
    """The Flask extension: `FlaskState(app)` or `FlaskState().init_app(app)`."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        store: Store | None = None,
        keys: Sequence[IdSource] | None = None,
    ) -> None:
        self._store = store
        self._keys = keys
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        store = self._store or _store_from_config(app.config)
        keys = self._keys or app.config.get("STATEMW_KEYS") or [_cookie_from_config(app.config)]
        app.extensions[EXTENSION] = Requests(store, keys, secret_key=app.config.get("SECRET_KEY"))
        app.session_interface = _Interface()
        app.before_request(_refuse_when_down)


def store_for(app: Flask) -> Store:
    """The store an app's sessions live in (for forget_user, listing, ...)."""
    requests: Requests = app.extensions[EXTENSION]
    return requests.store
