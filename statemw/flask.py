"""Flask extension: `flask.session` becomes the statemw Session.

    FlaskState(app)          # or ext = FlaskState(); ext.init_app(app)

The session id travels in Flask's own session cookie, set as Flask sets it: SESSION_COOKIE_NAME,
_DOMAIN, _PATH (else APPLICATION_ROOT), _HTTPONLY, _SECURE, _SAMESITE, _PARTITIONED,
PERMANENT_SESSION_LIFETIME and SESSION_REFRESH_EACH_REQUEST are read on each request, as Flask
reads them; SECRET_KEY signs it and SECRET_KEY_FALLBACKS still open it. With no SECRET_KEY the
request gets Flask's null session (it fails on write, with Flask's message). `session.permanent`
works as in Flask (default False: a browser-session cookie; SESSION_PERMANENT=True changes the
default, as in Flask-Session).

The store comes from the app's config on first use: STATEMW_URL (or STATEMW_STORE, a Store),
STATEMW_TTL, STATEMW_IDLE, STATEMW_ENCRYPTION_KEY, STATEMW_WINDOW, STATEMW_MAX_*; STATEMW_KEYS
(a list of keys) replaces the cookie.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar, cast

import flask
from flask import Flask, Request, Response, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.http import dump_cookie

from statemw._flow import Binding, Reply, Requests
from statemw._signing import Signing
from statemw.errors import StoreUnavailable
from statemw.keys import Found, IdSource, Incoming, SigningSecret
from statemw.session import Session
from statemw.store import Store
from statemw.wsgi import SavedAtEnd, incoming_from_environ

K = TypeVar("K")
V = TypeVar("V")

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


def _current_app() -> Flask:
    """The app behind `flask.current_app`: each attribute read through the proxy costs a
    context lookup, and a cookie's settings take a dozen."""
    return cast(Flask, flask.current_app._get_current_object())  # type: ignore[attr-defined]


def _lifetime(app: Flask) -> int:
    lifetime = app.permanent_session_lifetime
    return int(lifetime.total_seconds() if isinstance(lifetime, timedelta) else lifetime)


@dataclass(frozen=True)
class FlaskCookie:
    """The session id in Flask's session cookie, with the app's settings of this request."""

    carrier: bool = field(default=True, init=False)
    vary: str | None = field(default="Cookie", init=False)
    _signings: dict[tuple[Any, ...], Signing] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _rendered: dict[tuple[Any, ...], tuple[str, str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def with_default_secret(self, secret_key: SigningSecret | None) -> FlaskCookie:
        return self

    def signing(self, app: Flask) -> Signing | None:
        """SECRET_KEY signs, SECRET_KEY_FALLBACKS verify too (None: no SECRET_KEY)."""
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        signing = self._signings.get(keys)
        if signing is None:
            made = Signing(list(keys), "statemw.cookie", timed=True)
            signing = _remember(self._signings, keys, made)
        return signing

    def find(self, incoming: Incoming) -> Found | None:
        app = _current_app()
        value = incoming.cookies.get(app.config["SESSION_COOKIE_NAME"])
        signing = self.signing(app)
        sid = signing.unsign(value, _lifetime(app)) if value and signing else None
        return None if sid is None else Found(session_id=sid)

    def outgoing(self, session_id: str | None, incoming: Incoming) -> list[tuple[str, str]]:
        """Set-Cookie as Flask's own session interface writes it (via werkzeug)."""
        app = _current_app()
        interface = app.session_interface
        options: dict[str, Any] = {
            "domain": interface.get_cookie_domain(app),
            "path": interface.get_cookie_path(app),
            "secure": interface.get_cookie_secure(app),
            "partitioned": interface.get_cookie_partitioned(app),
            "samesite": interface.get_cookie_samesite(app),
            "httponly": interface.get_cookie_httponly(app),
        }
        name = interface.get_cookie_name(app)
        if session_id is None:
            return [("Set-Cookie", dump_cookie(name, "", max_age=0, expires=0, **options))]
        signing = self.signing(app)
        assert signing is not None  # open_session gives a null session without SECRET_KEY
        expires = interface.get_expiration_time(app, flask.session)
        value = signing.sign(session_id)
        if expires is not None:
            return [("Set-Cookie", dump_cookie(name, value, expires=expires, **options))]
        rendered_name, attributes = self._rendered_around_value(name, options)
        return [("Set-Cookie", f"{rendered_name}={value}{attributes}")]

    def _rendered_around_value(self, name: str, options: dict[str, Any]) -> tuple[str, str]:
        """What werkzeug writes before and after a browser-session cookie's value, for these
        settings: the same for every response until the app's settings change. (A signed id
        is base64 and dots, which werkzeug never quotes, so the value goes in as it is.)"""
        settings = (name, *options.values())
        rendered = self._rendered.get(settings)
        if rendered is None:
            rendered_name, _, attributes = dump_cookie(name, "", **options).partition("=")
            rendered = _remember(self._rendered, settings, (rendered_name, attributes))
        return rendered


def _remember(made: dict[K, V], settings: K, value: V) -> V:
    """Keep what was made for these settings (an app's keys, its cookie settings). Settings
    change rarely, so past a few sets the dict starts afresh."""
    if len(made) > 8:
        made.clear()
    made[settings] = value
    return value


class _Interface(SessionInterface):
    """Flask's session contract, answered by the shared request flow."""

    def open_session(self, app: Flask, request: Request) -> Session | None:  # type: ignore[override]
        requests = _requests(app)
        if not app.secret_key and any(isinstance(k, FlaskCookie) for k in requests.keys):
            return None  # Flask's null session: it fails on write, with Flask's message
        try:
            binding = requests.open(incoming_from_environ(request.environ, request))
        except StoreUnavailable as exc:
            # Flask opens sessions outside its error handling; _refuse_when_down raises it inside
            request.environ[_DOWN] = exc
            return requests.store.create()
        binding.session.permanent_default = bool(app.config.get("SESSION_PERMANENT", False))
        request.environ[_BINDING] = binding
        return binding.session

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        # taken out of the environ: the binding reaches the environ again (the request's
        # headers), and that loop would leave the request's objects to the garbage collector
        binding: Binding | None = request.environ.pop(_BINDING, None)
        if binding is None:
            return
        requests = _requests(app)
        refresh = bool(session.permanent and app.config["SESSION_REFRESH_EACH_REQUEST"])
        try:
            reply = requests.close(binding, streaming=response.is_streamed, refresh=refresh)
        except StoreUnavailable:
            # never answer as if the turn was stored
            response.status_code = 503
            response.headers["Retry-After"] = "1"
            response.set_data(b'{"error": "session store unavailable"}')
            response.mimetype = "application/json"
            return
        add_reply(response, reply)
        if response.is_streamed:  # stream_with_context: save what the generator adds, at its end
            body = cast(Iterable[bytes], response.response)
            response.response = SavedAtEnd(body, lambda: requests.finish(binding))


def add_reply(response: Response, reply: Reply) -> None:
    """Put a session's reply on a Flask response: Vary merged, the id's headers added."""
    if reply.vary and "Vary" not in response.headers:  # set as is: parsing one costs 5 µs
        response.headers["Vary"] = ", ".join(dict.fromkeys(reply.vary))
    else:
        for name in reply.vary:
            response.vary.add(name)
    for name, value in reply.headers:
        response.headers.add(name, value)


def _refuse_when_down() -> None:
    """Turn a store that was down at session open into a 503 Flask's error handlers see."""
    exc = request.environ.get(_DOWN)
    if exc is not None:
        raise ServiceUnavailable("session store unavailable") from exc


class _AppState:
    """Per-app state in app.extensions: the request flow, built on the first request."""

    def __init__(self, store: Store | None, keys: Sequence[IdSource] | None) -> None:
        self.store = store
        self.keys = keys
        self.requests: Requests | None = None


def _requests(app: Flask) -> Requests:
    state: _AppState = app.extensions[EXTENSION]
    if state.requests is None:
        store = state.store or _store_from_config(app.config)
        keys = state.keys or app.config.get("STATEMW_KEYS") or [FlaskCookie()]
        state.requests = Requests(store, keys, secret_key=app.config.get("SECRET_KEY"))
    return state.requests


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
        app.extensions[EXTENSION] = _AppState(self._store, self._keys)
        app.session_interface = _Interface()
        app.before_request(_refuse_when_down)


def store_for(app: Flask) -> Store:
    """The store an app's sessions live in (for forget_user, listing, ...)."""
    return _requests(app).store
