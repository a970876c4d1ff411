"""Streamed answers are saved: what a handler adds while its response streams is kept.

The shape of an LLM endpoint: the user's message is added, the answer streams token by token,
and the generator adds the assistant's message when the stream ends. Each stack saves at the
response's start and again when its body ends, disconnects or raises.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    MutableMapping,
)
from typing import TYPE_CHECKING, Any, Literal

import anyio
import pytest
from fastapi import FastAPI
from flask import Flask, Response, stream_with_context
from flask import session as flask_session
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from statemw import Session, Store, StoreUnavailable, stateful
from statemw.asgi import StateMiddleware
from statemw.backends.base import AsyncBackend, Backend, Commit
from statemw.fastapi import SessionDep
from statemw.flask import FlaskState
from statemw.keys import Cookie
from statemw.records import Committed, Delta
from statemw.wsgi import ENVIRON_KEY
from statemw.wsgi import StateMiddleware as WSGIStateMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

SECRET = "stream-secret"
TOKENS = ["Hel", "lo ", "there"]
Mode = Literal["complete", "raise"]


class ModelFailed(Exception):
    """The model's stream broke off."""


def answer_tokens(session: Session, mode: Mode = "complete") -> Iterator[str]:
    """A model's streamed answer; the assistant message is added when it ends (or breaks)."""
    text = ""
    try:
        for token in TOKENS:
            text += token
            yield token
            if mode == "raise":
                raise ModelFailed("the model's connection dropped")
    finally:
        session.add_message("assistant", text)


async def aanswer_tokens(session: Session, hang: anyio.Event | None = None) -> AsyncIterator[str]:
    """The async twin; with `hang`, the model stalls after the first token until cancelled."""
    text = ""
    try:
        for token in TOKENS:
            text += token
            yield token
            if hang is not None:
                await hang.wait()
    finally:
        session.add_message("assistant", text)


def history(store: Store, session_id: str) -> list[Any]:
    return [m["content"] for m in store.load(session_id).messages]


def answered_then_broken(client: Client, store: Store, path: str) -> list[Any]:
    """A WSGI client's full answer at `path`, then a stream that raises at /broken: the history."""
    first = client.get(path)
    assert first.text == "Hello there"  # a server reads the body to its end
    with pytest.raises(ModelFailed):
        client.get("/broken").get_data()
    return history(store, first.headers["x-sid"])


def answered_then_cut(client: Client, store: Store, path: str) -> list[Any]:
    """A WSGI client's full answer at `path`, then one it closes after the first token (the
    server's close() after a disconnect): the history."""
    first = client.get(path)
    assert first.text == "Hello there"
    partial = client.get(path, buffered=False)
    assert next(iter(partial.response)) == b"Hel"
    partial.close()
    return history(store, first.headers["x-sid"])


# -- Starlette, FastAPI, raw ASGI -----------------------------------------------------------------


def starlette_app(store: Store, hang: anyio.Event | None = None) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        session: Session = request.session  # type: ignore[assignment]
        session.add_message("user", request.query_params.get("text", "hi"))
        return StreamingResponse(
            aanswer_tokens(session, hang), media_type="text/plain", headers={"x-sid": session.id}
        )

    async def sse(request: Request) -> StreamingResponse:
        session: Session = request.session  # type: ignore[assignment]

        async def events() -> AsyncIterator[str]:
            async for token in aanswer_tokens(session):
                yield f"data: {token}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def broken(request: Request) -> StreamingResponse:
        session: Session = request.session  # type: ignore[assignment]
        session.add_message("user", "hi")
        return StreamingResponse(answer_tokens(session, "raise"), headers={"x-sid": session.id})

    async def replay(request: Request) -> StreamingResponse:
        session: Session = request.session  # type: ignore[assignment]

        async def read_only() -> AsyncIterator[str]:
            for message in session.messages:
                yield str(message["content"])

        return StreamingResponse(read_only())

    async def plain(request: Request) -> PlainTextResponse:
        session: Session = request.session  # type: ignore[assignment]
        session.add_message("user", "hi")
        session.add_message("assistant", "".join(TOKENS))
        return PlainTextResponse("".join(TOKENS))

    return Starlette(
        routes=[
            Route("/chat", chat),
            Route("/sse", sse),
            Route("/broken", broken),
            Route("/replay", replay),
            Route("/plain", plain),
        ],
        middleware=[Middleware(StateMiddleware, store=store, secret_key=SECRET)],
    )


def test_starlette_keeps_the_streamed_answer(store: Store) -> None:
    client = TestClient(starlette_app(store))
    response = client.get("/chat", params={"text": "hi"})
    assert response.text == "Hello there"
    assert history(store, response.headers["x-sid"]) == ["hi", "Hello there"]
    again = client.get("/chat", params={"text": "and again"})
    assert history(store, again.headers["x-sid"]) == [
        "hi",
        "Hello there",
        "and again",
        "Hello there",
    ]


def test_a_session_first_written_inside_the_stream_gets_its_cookie_with_the_headers(
    store: Store,
) -> None:
    client = TestClient(starlette_app(store))
    response = client.get("/sse")
    assert response.text == "data: Hel\n\ndata: lo \n\ndata: there\n\n"
    assert "session" in response.cookies
    client.get("/sse")
    [sid] = store.session_ids()
    assert history(store, sid) == ["Hello there", "Hello there"]


def test_a_fresh_client_gets_a_cookie_with_any_streamed_body_but_nothing_is_stored(
    store: Store,
) -> None:
    """docs/web.md's table: with no id, a streamed response carries the new id (its body may
    still write), a non-streamed one does not; neither writes when nothing was added."""
    client = TestClient(starlette_app(store))
    streamed = client.get("/replay")
    assert streamed.text == ""
    assert streamed.headers["set-cookie"].startswith("session=")
    assert streamed.headers["vary"] == "Cookie"
    assert list(store.session_ids()) == []
    assert client.get("/replay").text == ""  # the id of nothing stored is never adopted
    assert list(store.session_ids()) == []


def test_a_read_only_stream_writes_nothing(store: Store) -> None:
    client = TestClient(starlette_app(store))
    sid = client.get("/chat").headers["x-sid"]
    revision = store.load(sid).revision
    response = client.get("/replay")
    assert response.text == "hiHello there"
    assert "set-cookie" not in response.headers
    assert store.load(sid).revision == revision


def test_a_stream_that_raises_keeps_what_was_added(store: Store) -> None:
    client = TestClient(starlette_app(store), raise_server_exceptions=False)
    client.get("/chat")  # the cookie
    with pytest.raises(ModelFailed):
        TestClient(starlette_app(store), cookies=client.cookies).get("/broken")
    [sid] = store.session_ids()
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


async def request_then_disconnect(app: Any, path: str, cookie: str) -> list[dict[str, Any]]:
    """Drive an ASGI app as a server would when the client goes away after the first chunk."""
    sent: list[dict[str, Any]] = []
    first_chunk = anyio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await first_chunk.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_chunk.set()

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"cookie", cookie.encode())],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
        "http_version": "1.1",
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_a_client_that_disconnects_mid_stream_keeps_the_partial_answer(
    store: Store,
) -> None:
    app = starlette_app(store, hang=anyio.Event())
    seed = starlette_app(store)
    with TestClient(seed) as client:
        sid = client.get("/chat").headers["x-sid"]
        cookie = f"session={client.cookies['session']}"
    sent = await request_then_disconnect(app, "/chat", cookie)
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"Hel"]
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


def fastapi_app(store: Store, hang: anyio.Event | None = None) -> FastAPI:
    api = FastAPI()
    api.add_middleware(StateMiddleware, store=store, secret_key=SECRET, lazy_paths=["/"])

    @api.get("/chat")
    async def chat(session: SessionDep) -> StreamingResponse:
        session.add_message("user", "hi")
        return StreamingResponse(aanswer_tokens(session, hang), headers={"x-sid": session.id})

    @api.get("/broken")
    async def broken(session: SessionDep) -> StreamingResponse:
        session.add_message("user", "hi")
        return StreamingResponse(answer_tokens(session, "raise"), headers={"x-sid": session.id})

    @api.get("/plain")
    async def plain(session: SessionDep) -> dict[str, str]:
        session.add_message("user", "hi")
        return {"sid": session.id}

    return api


def test_fastapi_keeps_the_streamed_answer(store: Store) -> None:
    client = TestClient(fastapi_app(store))
    sid = client.get("/chat").headers["x-sid"]
    client.get("/chat")
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hello there"]


def test_fastapi_keeps_what_was_added_when_the_stream_raises(store: Store) -> None:
    client = TestClient(fastapi_app(store))
    sid = client.get("/chat").headers["x-sid"]
    with pytest.raises(ModelFailed):
        client.get("/broken")
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


@pytest.mark.anyio
async def test_fastapi_keeps_the_partial_answer_when_the_client_disconnects(store: Store) -> None:
    with TestClient(fastapi_app(store)) as client:
        sid = client.get("/chat").headers["x-sid"]
        cookie = f"session={client.cookies['session']}"
    sent = await request_then_disconnect(fastapi_app(store, anyio.Event()), "/chat", cookie)
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"Hel"]
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


async def raw_asgi(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app with no framework: chunks with more_body=True, the message added before the
    last one."""
    session: Session = scope["session"]
    session.add_message("user", "hi")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for token in TOKENS:
        await send({"type": "http.response.body", "body": token.encode(), "more_body": True})
    session.add_message("assistant", "".join(TOKENS))
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_a_raw_asgi_app_sending_chunks_keeps_what_it_added_before_the_last(
    store: Store,
) -> None:
    client = TestClient(StateMiddleware(raw_asgi, store=store, secret_key=SECRET))
    assert client.get("/").text == "Hello there"
    client.get("/")
    [sid] = store.session_ids()
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hello there"]


async def raw_asgi_broken(scope: Any, receive: Any, send: Any) -> None:
    """A raw ASGI app whose model fails after the first chunk; it records the partial answer."""
    session: Session = scope["session"]
    session.add_message("user", "hi")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": TOKENS[0].encode(), "more_body": True})
    session.add_message("assistant", TOKENS[0])
    raise ModelFailed("the model's connection dropped")


async def raw_asgi_listening(scope: Any, receive: Any, send: Any) -> None:
    """A raw ASGI app that stops streaming when the client goes away (http.disconnect) and
    records what it had sent; it never sends the last, more_body=False, chunk."""
    session: Session = scope["session"]
    session.add_message("user", "hi")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": TOKENS[0].encode(), "more_body": True})
    while (await receive())["type"] != "http.disconnect":
        pass
    session.add_message("assistant", TOKENS[0])


def raw_app(store: Store) -> Any:
    """The three raw apps behind one middleware, by path."""
    apps = {"/": raw_asgi, "/broken": raw_asgi_broken, "/listening": raw_asgi_listening}

    async def route(scope: Any, receive: Any, send: Any) -> None:
        await apps[scope["path"]](scope, receive, send)

    return StateMiddleware(route, store=store, secret_key=SECRET)


def test_a_raw_asgi_app_that_raises_mid_body_keeps_what_it_added(store: Store) -> None:
    client = TestClient(raw_app(store))
    client.get("/")
    with pytest.raises(ModelFailed):
        client.get("/broken")
    [sid] = store.session_ids()
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


@pytest.mark.anyio
async def test_a_raw_asgi_app_keeps_what_it_added_when_the_client_disconnects(
    store: Store,
) -> None:
    client = TestClient(raw_app(store))
    client.get("/")
    cookie = f"session={client.cookies['session']}"
    sent = await request_then_disconnect(raw_app(store), "/listening", cookie)
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"Hel"]
    [sid] = store.session_ids()
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


def test_the_answer_is_saved_before_the_client_sees_the_end_of_the_body(store: Store) -> None:
    seen: list[list[Any]] = []

    async def record_at_end(scope: Any, receive: Any, send: Any) -> None:
        async def watch(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                seen.append(history(store, scope["session"].id))
            await send(message)

        await middleware(scope, receive, watch)

    middleware = StateMiddleware(raw_asgi, store=store, secret_key=SECRET)
    TestClient(record_at_end).get("/")
    assert seen == [["hi", "Hello there"]]


def test_a_subscriber_sees_the_streamed_answer_commit_once(store: Store) -> None:
    client = TestClient(starlette_app(store))
    sid = client.get("/chat").headers["x-sid"]
    with store.subscribe(sid) as changes:
        client.get("/chat")
        seen: list[int] = []
        while (change := changes.get(wait=2.0 if len(seen) < 2 else 0.2)) is not None:
            seen.append(change.message_count)
    assert seen == [3, 4]  # the user's message when the stream started, the answer at its end


def test_an_error_in_the_late_save_is_logged_and_the_response_still_completes(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_asave = store.asave
    saves = 0

    async def second_save_fails(session: Session, **options: Any) -> None:
        nonlocal saves
        saves += 1
        if saves > 1:
            raise StoreUnavailable("the store went down mid-stream")
        await real_asave(session, **options)

    monkeypatch.setattr(store, "asave", second_save_fails)
    with caplog.at_level(logging.ERROR, logger="statemw"):
        response = TestClient(starlette_app(store)).get("/chat")
    assert response.status_code == 200
    assert response.text == "Hello there"
    assert caplog.text.count("saving the session at the end of the response failed") == 1
    assert history(store, response.headers["x-sid"]) == ["hi"]


# -- Flask and plain WSGI -------------------------------------------------------------------------


def flask_app(store: Store) -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    FlaskState(app, store=store)

    def current() -> Session:
        return flask_session._get_current_object()  # type: ignore[attr-defined, no-any-return]

    @app.get("/chat")
    def chat() -> Response:
        session = current()
        session.add_message("user", "hi")
        tokens = answer_tokens(session)
        return Response(stream_with_context(tokens), headers={"x-sid": session.id})

    @app.get("/broken")
    def broken() -> Response:
        session = current()
        session.add_message("user", "hi")
        return Response(stream_with_context(answer_tokens(session, "raise")))

    @app.get("/plain")
    def plain() -> str:
        session = current()
        session.add_message("user", "hi")
        session.add_message("assistant", "".join(TOKENS))
        return "".join(TOKENS)

    return app


def test_flask_stream_with_context_keeps_the_streamed_answer(store: Store) -> None:
    client = flask_app(store).test_client()
    response = client.get("/chat")
    assert response.text == "Hello there"
    assert client.get("/chat").text == "Hello there"
    assert history(store, response.headers["x-sid"]) == ["hi", "Hello there", "hi", "Hello there"]


def test_flask_keeps_the_partial_answer_when_the_client_goes_away(store: Store) -> None:
    client = flask_app(store).test_client()
    response = client.get("/chat", buffered=False)
    assert next(iter(response.response)) == b"Hel"
    response.close()  # the server's close() after a disconnect
    assert history(store, response.headers["x-sid"]) == ["hi", "Hel"]


def test_flask_keeps_what_was_added_when_the_stream_raises(store: Store) -> None:
    client = flask_app(store).test_client()
    assert answered_then_broken(client, store, "/chat") == ["hi", "Hello there", "hi", "Hel"]


def wsgi_chat(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """/: the streamed answer; /broken: the model fails after the first token; /plain: the
    answer in one piece (a list, not streamed)."""
    session: Session = environ[ENVIRON_KEY]
    session.add_message("user", "hi")
    path = environ["PATH_INFO"]
    if path == "/plain":
        session.add_message("assistant", "".join(TOKENS))
        body = "".join(TOKENS).encode()
        start_response("200 OK", [("Content-Length", str(len(body))), ("X-Sid", session.id)])
        return [body]
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Sid", session.id)])
    mode: Mode = "raise" if path == "/broken" else "complete"
    return (token.encode() for token in answer_tokens(session, mode))


def test_plain_wsgi_keeps_the_streamed_answer_and_the_partial_one(store: Store) -> None:
    client = Client(WSGIStateMiddleware(wsgi_chat, store=store, secret_key=SECRET))
    assert answered_then_cut(client, store, "/") == ["hi", "Hello there", "hi", "Hel"]


def test_plain_wsgi_keeps_what_was_added_when_the_stream_raises(store: Store) -> None:
    client = Client(WSGIStateMiddleware(wsgi_chat, store=store, secret_key=SECRET))
    assert answered_then_broken(client, store, "/") == ["hi", "Hello there", "hi", "Hel"]


def second_save_fails(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes down between the save at the response's start and the one at its end."""
    real_save = store.save
    saves = 0

    def save(session: Session, **options: Any) -> None:
        nonlocal saves
        saves += 1
        if saves > 1:
            raise StoreUnavailable("the store went down mid-stream")
        real_save(session, **options)

    monkeypatch.setattr(store, "save", save)


def test_plain_wsgi_logs_an_error_in_the_late_save_and_the_response_still_completes(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    second_save_fails(store, monkeypatch)
    client = Client(WSGIStateMiddleware(wsgi_chat, store=store, secret_key=SECRET))
    with caplog.at_level(logging.ERROR, logger="statemw"):
        response = client.get("/")
        assert (response.status_code, response.text) == (200, "Hello there")
        response.close()
    assert caplog.text.count("saving the session at the end of the response failed") == 1
    assert history(store, response.headers["X-Sid"]) == ["hi"]


def test_flask_logs_an_error_in_the_late_save_and_the_response_still_completes(
    store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    second_save_fails(store, monkeypatch)
    client = flask_app(store).test_client()
    with caplog.at_level(logging.ERROR, logger="statemw"):
        response = client.get("/chat")
        assert (response.status_code, response.text) == (200, "Hello there")
        response.close()
    assert caplog.text.count("saving the session at the end of the response failed") == 1
    assert history(store, response.headers["x-sid"]) == ["hi"]


# -- @stateful ------------------------------------------------------------------------------------


def stateful_starlette_app(store: Store, hang: anyio.Event | None = None) -> Starlette:
    @stateful(store, key=Cookie(secret_key=SECRET))
    async def chat(request: Request, session: Session) -> StreamingResponse:
        session.add_message("user", "hi")
        return StreamingResponse(aanswer_tokens(session, hang), headers={"x-sid": session.id})

    @stateful(store, key=Cookie(secret_key=SECRET))
    async def broken(request: Request, session: Session) -> StreamingResponse:
        session.add_message("user", "hi")
        return StreamingResponse(answer_tokens(session, "raise"), headers={"x-sid": session.id})

    return Starlette(routes=[Route("/chat", chat), Route("/broken", broken)])


def test_stateful_starlette_endpoints_keep_what_was_added_when_the_stream_raises(
    store: Store,
) -> None:
    client = TestClient(stateful_starlette_app(store))
    sid = client.get("/chat").headers["x-sid"]
    with pytest.raises(ModelFailed):
        client.get("/broken")
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


@pytest.mark.anyio
async def test_stateful_starlette_endpoints_keep_the_partial_answer_on_a_disconnect(
    store: Store,
) -> None:
    client = TestClient(stateful_starlette_app(store))
    sid = client.get("/chat").headers["x-sid"]
    cookie = f"session={client.cookies['session']}"
    app = stateful_starlette_app(store, anyio.Event())
    sent = await request_then_disconnect(app, "/chat", cookie)
    assert [m.get("body") for m in sent if m["type"] == "http.response.body"] == [b"Hel"]
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hel"]


def stateful_flask_app(store: Store) -> Flask:
    app = Flask(__name__)

    @app.get("/chat")
    @stateful(store, key=Cookie(secret_key=SECRET))
    def chat(session: Session) -> Response:
        session.add_message("user", "hi")
        return Response(answer_tokens(session), headers={"x-sid": session.id})

    @app.get("/broken")
    @stateful(store, key=Cookie(secret_key=SECRET))
    def broken(session: Session) -> Response:
        session.add_message("user", "hi")
        return Response(answer_tokens(session, "raise"), headers={"x-sid": session.id})

    return app


def test_stateful_flask_views_keep_what_was_added_when_the_stream_raises(store: Store) -> None:
    client = stateful_flask_app(store).test_client()
    assert answered_then_broken(client, store, "/chat") == ["hi", "Hello there", "hi", "Hel"]


def test_stateful_flask_views_keep_the_partial_answer_when_the_client_goes_away(
    store: Store,
) -> None:
    client = stateful_flask_app(store).test_client()
    assert answered_then_cut(client, store, "/chat") == ["hi", "Hello there", "hi", "Hel"]


# -- @stateful ------------------------------------------------------------------------------------


def test_stateful_starlette_endpoints_keep_the_streamed_answer(store: Store) -> None:
    client = TestClient(stateful_starlette_app(store))
    sid = client.get("/chat").headers["x-sid"]
    client.get("/chat")
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hello there"]


def test_stateful_flask_views_keep_the_streamed_answer(store: Store) -> None:
    client = stateful_flask_app(store).test_client()
    first = client.get("/chat")
    assert first.text == "Hello there"
    sid = first.headers["x-sid"]
    assert client.get("/chat").text == "Hello there"
    assert history(store, sid) == ["hi", "Hello there", "hi", "Hello there"]


def test_a_stateful_generator_function_is_saved_when_it_ends(store: Store) -> None:
    @stateful(store)
    def reply(text: str, session: Session) -> Generator[str, None, None]:
        session.add_message("user", text)
        yield from answer_tokens(session)

    assert "".join(reply("hi", session_id="slack-C042")) == "Hello there"
    stream = reply("again", session_id="slack-C042")
    assert next(stream) == "Hel"
    stream.close()  # the consumer stopped early
    assert history(store, "slack-C042") == ["hi", "Hello there", "again", "Hel"]


@pytest.mark.anyio
async def test_a_stateful_async_generator_function_is_saved_when_it_ends(store: Store) -> None:
    @stateful(store)
    async def reply(text: str, session: Session) -> AsyncIterator[str]:
        session.add_message("user", text)
        async for token in aanswer_tokens(session):
            yield token

    assert [t async for t in reply("hi", session_id="slack-C042")] == TOKENS
    assert history(store, "slack-C042") == ["hi", "Hello there"]


# -- how many commits a turn costs ----------------------------------------------------------------


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[Delta]:
    """Every commit any store makes (the Commit step, run sync or async), in order."""
    seen: list[Delta] = []
    run, arun = Commit.run, Commit.arun

    def counted_run(step: Commit, io: Backend) -> Committed:
        seen.append(step.delta)
        return run(step, io)

    async def counted_arun(step: Commit, aio: AsyncBackend) -> Committed:
        seen.append(step.delta)
        return await arun(step, aio)

    monkeypatch.setattr(Commit, "run", counted_run)
    monkeypatch.setattr(Commit, "arun", counted_arun)
    return seen


ASGI_APPS: dict[str, Callable[[Store], Any]] = {
    "starlette": starlette_app,
    "fastapi": fastapi_app,
    "raw-asgi": raw_app,
    "stateful-starlette": stateful_starlette_app,
}
WSGI_APPS: dict[str, Callable[[Store], Any]] = {
    "flask": flask_app,
    "wsgi": lambda store: WSGIStateMiddleware(wsgi_chat, store=store, secret_key=SECRET),
    "stateful-flask": stateful_flask_app,
}

# (stack, path, commits per turn): a streamed turn that adds before and during its body commits
# twice (the user's message as the headers go, the answer at the end), a stream that adds only
# in its body once, a read-only stream never, a non-streamed turn once; a body that raises
# commits what was added, no more often.
TURNS = [
    ("starlette", "/chat", 2),
    ("starlette", "/sse", 1),
    ("starlette", "/replay", 0),
    ("starlette", "/broken", 2),
    ("starlette", "/plain", 1),
    ("fastapi", "/chat", 2),
    ("fastapi", "/broken", 2),
    ("fastapi", "/plain", 1),
    ("raw-asgi", "/", 2),
    ("raw-asgi", "/broken", 2),
    ("stateful-starlette", "/chat", 2),
    ("stateful-starlette", "/broken", 2),
    ("flask", "/chat", 2),
    ("flask", "/broken", 2),
    ("flask", "/plain", 1),
    ("wsgi", "/", 2),
    ("wsgi", "/broken", 2),
    ("wsgi", "/plain", 1),
    ("stateful-flask", "/chat", 2),
    ("stateful-flask", "/broken", 2),
]


@pytest.mark.parametrize(("stack", "path", "expected"), TURNS, ids=[f"{t[0]}{t[1]}" for t in TURNS])
def test_a_streamed_turn_commits_at_most_twice_and_a_plain_turn_once(
    store: Store, commits: list[Delta], stack: str, path: str, expected: int
) -> None:
    """Each turn twice: on a fresh session, then on the stored one (the cookie sent back)."""
    if stack in ASGI_APPS:
        client = TestClient(ASGI_APPS[stack](store), raise_server_exceptions=False)
        if path == "/replay":  # a read-only stream needs something stored to read
            client.get("/chat")

        def turn() -> None:
            client.get(path)

    else:
        wsgi = Client(WSGI_APPS[stack](store))

        def turn() -> None:
            with contextlib.suppress(ModelFailed):
                wsgi.get(path).close()  # a server reads the body to its end, then closes it

    for _ in range(2):
        before = len(commits)
        turn()
        assert len(commits) - before == expected


@pytest.mark.anyio
async def test_a_turn_the_client_leaves_mid_stream_commits_twice(
    store: Store, commits: list[Delta]
) -> None:
    client = TestClient(starlette_app(store))
    sid = client.get("/chat").headers["x-sid"]
    cookie = f"session={client.cookies['session']}"
    before = len(commits)
    await request_then_disconnect(starlette_app(store, anyio.Event()), "/chat", cookie)
    assert len(commits) - before == 2
    flask = flask_app(store).test_client()
    flask.get("/chat").close()
    before = len(commits)
    response = flask.get("/chat", buffered=False)
    assert next(iter(response.response)) == b"Hel"
    response.close()
    assert len(commits) - before == 2
    assert history(store, sid)[-2:] == ["hi", "Hel"]
