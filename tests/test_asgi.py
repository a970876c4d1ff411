"""statemw.asgi.StateMiddleware through real Starlette apps."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from statemw import ConfigurationError, Store
from statemw.asgi import StateMiddleware, get_session
from statemw.keys import Cookie, Header, IdSource, SigningSecret, UserID
from tests.support import recorded_calls

SECRET = "test-secret"


async def remember(request: Request) -> JSONResponse:
    body = await request.json()
    session = request.session
    session["name"] = body["name"]
    return JSONResponse({"ok": True})


async def add_message(request: Request) -> JSONResponse:
    text = (await request.json())["text"]
    request.session.add_message("user", text)  # type: ignore[attr-defined]
    return JSONResponse({"count": len(request.session.messages)})  # type: ignore[attr-defined]


async def show(request: Request) -> JSONResponse:
    return JSONResponse({"session": request.session})


async def nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("pong")


async def forget(request: Request) -> PlainTextResponse:
    request.session.delete()  # type: ignore[attr-defined]
    return PlainTextResponse("forgotten")


async def login(request: Request) -> PlainTextResponse:
    request.session.rotate()  # type: ignore[attr-defined]
    request.session["logged_in"] = True
    return PlainTextResponse("welcome")


async def lazy(request: Request) -> JSONResponse:
    if request.query_params.get("touch"):
        session = await get_session(request)
        return JSONResponse({"name": session.get("name")})
    return JSONResponse({"touched": False})


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    websocket.session.add_message("user", text)  # type: ignore[attr-defined]
    await websocket.send_text(str(len(websocket.session.messages)))  # type: ignore[attr-defined]
    await websocket.close()


def make_app(store: Store, keys: Sequence[IdSource] | None = None, **options: Any) -> Starlette:
    if keys is None:
        options.setdefault("secret_key", SECRET)
    return Starlette(
        routes=[
            Route("/remember", remember, methods=["POST"]),
            Route("/messages", add_message, methods=["POST"]),
            Route("/show", show),
            Route("/ping", nothing),
            Route("/forget", forget, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/lazy/page", lazy),
            WebSocketRoute("/ws", socket),
        ],
        middleware=[Middleware(StateMiddleware, store=store, keys=keys, **options)],
    )


def test_a_request_without_a_session_id_stores_nothing_and_sets_no_cookie(store: Store) -> None:
    client = TestClient(make_app(store))
    response = client.get("/ping")
    assert "set-cookie" not in response.headers
    assert list(store.session_ids()) == []


def test_a_write_sets_a_safe_cookie_and_the_next_request_reads_it_back(store: Store) -> None:
    client = TestClient(make_app(store))
    response = client.post("/remember", json={"name": "Harsh"})
    cookie = response.headers["set-cookie"]
    assert "; httponly; samesite=lax" in cookie  # Starlette's own cookie text
    assert "secure" not in cookie  # plain http

    shown = client.get("/show")
    assert shown.json() == {"session": {"name": "Harsh"}}
    assert "set-cookie" not in shown.headers  # read-only: nothing written
    assert shown.headers["vary"] == "Cookie"
    assert len(list(store.session_ids())) == 1


def test_cookies_are_secure_on_https(store: Store) -> None:
    client = TestClient(make_app(store), base_url="https://testserver")
    assert "; secure" in client.post("/remember", json={"name": "x"}).headers["set-cookie"]


def test_a_read_only_request_writes_nothing(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/remember", json={"name": "Harsh"})
    sid = next(iter(store.session_ids()))
    revision = store.load(sid).revision
    client.get("/show")
    assert store.load(sid).revision == revision


@pytest.mark.parametrize(
    "cookie",
    [
        "garbage",
        "",
        "a.b.c",
        TimestampSigner("another-apps-secret", salt="statemw.cookie").sign("x" * 24).decode(),
    ],
    ids=["garbage", "empty", "dots", "foreign-key"],
)
def test_a_bad_cookie_starts_a_fresh_session_never_an_error(store: Store, cookie: str) -> None:
    client = TestClient(make_app(store))
    client.cookies.set("session", cookie)
    response = client.get("/show")
    assert response.status_code == 200
    assert response.json() == {"session": {}}


def test_a_tampered_or_truncated_cookie_does_not_reach_the_session(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/remember", json={"name": "Harsh"})
    good = client.cookies["session"]
    middle = len(good) - 10  # inside the signature; the last base64 character may be padding bits
    flipped = good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1 :]
    for bad in (good[:-1], flipped, good[: len(good) // 2]):
        stranger = TestClient(make_app(store))
        stranger.cookies.set("session", bad)
        assert stranger.get("/show").json() == {"session": {}}


class _SignedLongAgo(TimestampSigner):
    def get_timestamp(self) -> int:
        return super().get_timestamp() - 15 * 24 * 3600  # older than the cookie's 14 days


def test_an_expired_cookie_starts_a_fresh_session(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/remember", json={"name": "Harsh"})
    sid = next(iter(store.session_ids()))
    client.cookies.set("session", _SignedLongAgo(SECRET, salt="statemw.cookie").sign(sid).decode())
    assert client.get("/show").json() == {"session": {}}


def test_a_signed_id_the_store_does_not_know_is_never_adopted(store: Store) -> None:
    client = TestClient(make_app(store))
    invented = TimestampSigner(SECRET, salt="statemw.cookie").sign("invented-id-0000").decode()
    client.cookies.set("session", invented)
    client.post("/remember", json={"name": "Mallory"})
    assert "invented-id-0000" not in set(store.session_ids())


def test_an_old_secret_still_opens_cookies_after_rotation(store: Store) -> None:
    old = TestClient(make_app(store, secret_key="old"))
    old.post("/remember", json={"name": "Harsh"})
    rotated = TestClient(make_app(store, keys=[Cookie(secret_key=["new", "old"])]))
    rotated.cookies = old.cookies
    assert rotated.get("/show").json() == {"session": {"name": "Harsh"}}


def test_delete_clears_the_cookie(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/remember", json={"name": "Harsh"})
    response = client.post("/forget")
    assert "expires=Thu, 01 Jan 1970 00:00:00 GMT" in response.headers["set-cookie"]
    assert list(store.session_ids()) == []


def test_rotate_issues_a_new_cookie_and_the_old_one_stops_working(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/remember", json={"name": "Harsh"})
    before = client.cookies["session"]
    client.post("/login")
    assert client.cookies["session"] != before
    assert client.get("/show").json() == {"session": {"name": "Harsh", "logged_in": True}}
    stale = TestClient(make_app(store))
    stale.cookies.set("session", before)
    assert stale.get("/show").json() == {"session": {}}


def test_header_key_carries_the_id_for_api_clients(store: Store) -> None:
    client = TestClient(make_app(store, keys=[Header("X-Session-ID", secret_key=SECRET)]))
    first = client.post("/messages", json={"text": "Find flights to Berlin"})
    sid = first.headers["x-session-id"]
    assert "set-cookie" not in first.headers
    second = client.post("/messages", json={"text": "Next Tuesday"}, headers={"X-Session-ID": sid})
    assert second.json() == {"count": 2}


def test_an_unsigned_header_id_is_only_honoured_if_the_store_knows_it(store: Store) -> None:
    client = TestClient(make_app(store, keys=[Header("X-Session-ID", signed=False)]))
    sid = client.post("/messages", json={"text": "hi"}).headers["x-session-id"]
    again = client.post("/messages", json={"text": "again"}, headers={"X-Session-ID": sid})
    assert again.json() == {"count": 2}
    invented = client.post("/messages", json={"text": "x"}, headers={"X-Session-ID": "made-up"})
    assert invented.headers["x-session-id"] != "made-up"


def test_user_id_key_continues_one_conversation_on_every_device(store: Store) -> None:
    def user_from_auth(request: Request) -> str | None:
        return request.headers.get("x-authenticated-user")  # stands in for the app's own auth

    app = make_app(store, keys=[UserID(user_from_auth), Cookie(secret_key=SECRET)])
    phone, laptop = TestClient(app), TestClient(app)
    me = {"x-authenticated-user": "harsh"}
    phone.post("/messages", json={"text": "Find hotels in Berlin"}, headers=me)
    assert laptop.post("/messages", json={"text": "Under $150"}, headers=me).json() == {"count": 2}
    stranger = TestClient(app).post(
        "/messages", json={"text": "hi"}, headers={"x-authenticated-user": "someone"}
    )
    assert stranger.json() == {"count": 1}


def test_an_app_written_for_starlettes_session_middleware_works_unchanged(store: Store) -> None:
    async def visit(request: Request) -> JSONResponse:
        request.session["visits"] = request.session.get("visits", 0) + 1
        return JSONResponse({"session": request.session})

    async def logout(request: Request) -> JSONResponse:
        request.session.clear()
        return JSONResponse({"session": request.session})

    app = Starlette(
        routes=[Route("/", visit), Route("/logout", logout)],
        middleware=[
            Middleware(
                StateMiddleware,
                store=store,
                secret_key=SECRET,
                session_cookie="app_session",
                max_age=3600,
                same_site="strict",
            )
        ],
    )
    client = TestClient(app)
    assert client.get("/").json() == {"session": {"visits": 1}}
    response = client.get("/")
    assert response.json() == {"session": {"visits": 2}}
    assert "app_session" in client.cookies
    assert client.get("/logout").json() == {"session": {}}
    assert client.get("/").json() == {"session": {"visits": 1}}


@pytest.mark.anyio
async def test_concurrent_requests_on_one_session_lose_nothing(store: Store) -> None:
    app = make_app(store)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.post("/remember", json={"name": "Harsh"})
        await asyncio.gather(
            *(client.post("/messages", json={"text": f"turn {i}"}) for i in range(30))
        )
    sid = next(iter(store.session_ids()))
    contents = sorted(m["content"] for m in store.load(sid).messages)
    assert contents == sorted(f"turn {i}" for i in range(30))
    assert store.load(sid)["name"] == "Harsh"


def test_websocket_messages_are_saved(store: Store) -> None:
    client = TestClient(make_app(store))
    client.post("/remember", json={"name": "Harsh"})
    with client.websocket_connect("/ws") as ws:
        ws.send_text("hello over a socket")
        assert ws.receive_text() == "1"
    sid = next(iter(store.session_ids()))
    assert store.load(sid).messages[-1]["content"] == "hello over a socket"


def test_lazy_routes_do_no_store_io_unless_the_session_is_used(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(make_app(store, lazy_paths=["/lazy"]))
    client.post("/remember", json={"name": "Harsh"})
    loads = recorded_calls(store.abackend, "load", monkeypatch)
    assert client.get("/lazy/page").json() == {"touched": False}
    assert loads == []
    assert client.get("/lazy/page?touch=1").json() == {"name": "Harsh"}
    assert len(loads) == 1
    client.get("/show")
    assert len(loads) == 2  # other routes load up front


def test_a_store_that_is_down_answers_503(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    down = Store(f"diskcache://{blocker}/sessions")
    client = TestClient(make_app(down), raise_server_exceptions=False)
    assert client.get("/ping").status_code == 200  # no session id: no store I/O at all
    response = client.post("/remember", json={"name": "x"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    client.cookies.set(
        "session", TimestampSigner(SECRET, salt="statemw.cookie").sign("abc").decode()
    )
    assert client.get("/show").status_code == 503


def test_a_store_that_is_down_can_propagate_instead(tmp_path: Path) -> None:
    from statemw import StoreUnavailable

    blocker = tmp_path / "file"
    blocker.write_text("x")
    app = make_app(Store(f"diskcache://{blocker}/s"), unavailable_status=None)
    with pytest.raises(StoreUnavailable):
        TestClient(app).post("/remember", json={"name": "x"})


# -- behaving as Starlette's SessionMiddleware does (docs/compat.md) -------------------------------


async def negotiated(request: Request) -> JSONResponse:
    request.session["seen"] = True
    return JSONResponse({}, headers={"vary": "Accept-Encoding"})


async def clear(request: Request) -> PlainTextResponse:
    request.session.clear()
    return PlainTextResponse("cleared")


def compat_app(store: Store, **options: Any) -> Starlette:
    options.setdefault("secret_key", SECRET)
    return Starlette(
        routes=[
            Route("/remember", remember, methods=["POST"]),
            Route("/show", show),
            Route("/ping", nothing),
            Route("/negotiated", negotiated),
            Route("/clear", clear, methods=["POST"]),
        ],
        middleware=[Middleware(StateMiddleware, store=store, **options)],
    )


def test_the_set_cookie_text_is_starlettes_own(store: Store) -> None:
    cookie = (
        TestClient(compat_app(store)).post("/remember", json={"name": "x"}).headers["set-cookie"]
    )
    assert re.fullmatch(r"session=[\w.-]+; path=/; Max-Age=1209600; httponly; samesite=lax", cookie)


@pytest.mark.parametrize(
    ("options", "flags"),
    [
        ({"partitioned": True}, "httponly; samesite=lax; partitioned"),
        ({"domain": "example.com"}, "httponly; samesite=lax; domain=example.com"),
        (
            {"domain": "example.com", "partitioned": True},
            "httponly; samesite=lax; domain=example.com; partitioned",
        ),
        (
            {"https_only": True, "domain": "example.com", "partitioned": True},
            "httponly; samesite=lax; secure; domain=example.com; partitioned",
        ),
    ],
    ids=["partitioned", "domain", "domain-partitioned", "secure-domain-partitioned"],
)
def test_cookie_attributes_are_written_as_starlette_writes_them(
    memory_store: Store, options: dict[str, Any], flags: str
) -> None:
    """Pinned to the text, and to what Starlette's own SessionMiddleware (the version installed,
    the one compat/run.py pins) sends with the same options: only the signed value differs."""
    ours = TestClient(compat_app(memory_store, **options)).post("/remember", json={"name": "x"})
    cookie = ours.headers["set-cookie"]
    assert re.fullmatch(rf"session=[\w.-]+; path=/; Max-Age=1209600; {flags}", cookie)
    theirs = Starlette(
        routes=[Route("/remember", remember, methods=["POST"])],
        middleware=[Middleware(SessionMiddleware, secret_key=SECRET, **options)],
    )
    expected = TestClient(theirs).post("/remember", json={"name": "x"}).headers["set-cookie"]
    assert cookie.split(";", 1)[1] == expected.split(";", 1)[1]


def test_vary_cookie_joins_the_responses_own_vary_header(store: Store) -> None:
    response = TestClient(compat_app(store)).get("/negotiated")
    assert response.headers.get_list("vary") == ["Accept-Encoding, Cookie"]


def test_only_a_route_that_uses_the_session_varies_by_cookie(store: Store) -> None:
    client = TestClient(compat_app(store))
    assert client.get("/show").headers["vary"] == "Cookie"  # a fresh client that reads: varies
    client.post("/remember", json={"name": "x"})
    assert "vary" not in client.get("/ping").headers  # carries the cookie, never touches it


def test_clearing_a_session_removes_its_record_and_expires_the_cookie(store: Store) -> None:
    client = TestClient(compat_app(store))
    client.post("/remember", json={"name": "x"})
    cookie = client.post("/clear").headers["set-cookie"]
    assert cookie.startswith("session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT;")
    assert list(store.session_ids()) == []


def test_max_age_may_be_a_timedelta(store: Store) -> None:
    client = TestClient(compat_app(store, max_age=timedelta(hours=1)))
    assert "; Max-Age=3600; " in client.post("/remember", json={"name": "x"}).headers["set-cookie"]


def test_max_age_is_typed_to_take_a_timedelta(store: Store) -> None:
    """Passed directly, not through **options: mypy (strict, over tests) checks these calls."""
    routes = [Route("/remember", remember, methods=["POST"])]
    app = StateMiddleware(
        Starlette(routes=routes), store=store, secret_key=SECRET, max_age=timedelta(minutes=30)
    )
    cookie = TestClient(app).post("/remember", json={"name": "x"}).headers["set-cookie"]
    assert "; Max-Age=1800; " in cookie
    keys: list[IdSource] = [Cookie(SECRET, max_age=timedelta(days=1))]
    assert Cookie(SECRET, max_age=timedelta(days=1)).max_age == 86400
    app = StateMiddleware(Starlette(routes=routes), store=store, keys=keys)
    cookie = TestClient(app).post("/remember", json={"name": "x"}).headers["set-cookie"]
    assert "; Max-Age=86400; " in cookie


def test_a_middleware_with_no_secret_and_no_keys_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="secret_key"):
        StateMiddleware(Starlette())


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_a_trio_app_saves_on_every_store(store: Store, anyio_backend: str) -> None:
    transport = httpx.ASGITransport(app=compat_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        await client.post("/remember", json={"name": "Harsh"})
        assert (await client.get("/show")).json() == {"session": {"name": "Harsh"}}


def test_issued_cookies_verify_with_plain_itsdangerous(store: Store) -> None:
    client = TestClient(compat_app(store))
    value = client.post("/remember", json={"name": "x"}).cookies["session"]
    session_id = TimestampSigner(SECRET, salt="statemw.cookie").unsign(value, max_age=60)
    assert list(store.session_ids()) == [session_id.decode()]


def test_the_old_key_names_still_work_and_warn() -> None:
    import statemw.keys

    with pytest.warns(DeprecationWarning, match=r"statemw\.keys\.IdSource"):
        from statemw.keys import Key
    assert Key is IdSource
    with pytest.warns(DeprecationWarning, match=r"statemw\.keys\.SigningSecret"):
        assert statemw.keys.SecretKey is SigningSecret
    with pytest.raises(AttributeError, match="Nothing"):
        statemw.keys.Nothing  # noqa: B018
