"""statemw.wsgi.StateMiddleware around a bare WSGI app."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from werkzeug.test import Client

from statemw import Session, Store
from statemw.keys import Header
from statemw.wsgi import ENVIRON_KEY, StateMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


def counter(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/count":
        session["n"] = session.get("n", 0) + 1
    body = json.dumps(dict(session)).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def test_the_session_is_in_the_environ_and_persists(store: Store) -> None:
    client = Client(StateMiddleware(counter, store=store, secret_key="k"))
    client.get("/count")
    assert client.get("/count").json == {"n": 2}
    response = client.get("/peek")
    assert response.json == {"n": 2}
    assert "Set-Cookie" not in response.headers


def test_a_request_without_id_does_no_store_io(store: Store) -> None:
    Client(StateMiddleware(counter, store=store, secret_key="k")).get("/peek")
    assert list(store.session_ids()) == []


def test_header_keys_work_for_api_clients(store: Store) -> None:
    client = Client(StateMiddleware(counter, store=store, keys=[Header(secret_key="k")]))
    sid = client.get("/count").headers["X-Session-ID"]
    again = Client(StateMiddleware(counter, store=store, keys=[Header(secret_key="k")]))
    assert again.get("/count", headers={"X-Session-ID": sid}).json == {"n": 2}


def negotiated(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    session: Session = environ[ENVIRON_KEY]
    if environ["PATH_INFO"] == "/clear":
        session.clear()
    else:
        session["seen"] = True
    start_response("200 OK", [("Content-Type", "text/plain"), ("Vary", "Accept-Encoding")])
    return [b"ok"]


def test_vary_cookie_joins_the_apps_own_vary_header(store: Store) -> None:
    response = Client(StateMiddleware(negotiated, store=store, secret_key="k")).get("/")
    assert response.headers.get_all("Vary") == ["Accept-Encoding, Cookie"]


def test_clearing_a_session_removes_its_record_and_expires_the_cookie(store: Store) -> None:
    client = Client(StateMiddleware(negotiated, store=store, secret_key="k"))
    client.get("/")
    assert "expires=Thu, 01 Jan 1970" in client.get("/clear").headers["Set-Cookie"]
    assert list(store.session_ids()) == []
