"""A web request through each product's real middleware, at 0 to 10,000 messages (issue 9).

Three requests, each through the product's own middleware or extension, with the session cookie
carried between requests as a browser would (the harness keeps a cookie jar):

- turn: load the session, read the model's window (`session.get_history(last=20)` on statemw,
  `session["messages"][-20:]` on dict sessions), add one user message, save;
- read-only: read the window, write nothing;
- untouched: a handler that never touches the session, on a request that carries the cookie.

Products: statemw's `StateMiddleware` (Starlette) and `FlaskState` (Flask) on memory://, diskcache
and Redis; starsessions (memory and Redis, SessionMiddleware + SessionAutoloadMiddleware);
Flask-Session (Redis, and cachelib's FileSystemCache); Starlette's and Flask's cookie sessions; the
bare frameworks. Each at L = 0, 100, 1,000 and 10,000 messages already in the conversation, filled
through the product's own session API (1,000 messages per request). A cookie session that would
not fit the 4,096 bytes a browser keeps is reported as n/a.

The instrument: the ASGI app is awaited directly with a scope/receive/send built before the
clock starts, and the WSGI app called directly with a prepared environ; the clock covers the
app call and the response body only. The harness floor (an app that does nothing) is printed.
Each cell warms up, then times requests until about `--seconds` of measured time and at least
30 requests, and reports the median. A turn cell keeps the conversation near L: every
max(10, L/50) turns the harness starts a fresh conversation of L messages (untimed), so a turn
sees between L and L + that many messages. Every response is checked: the turn and read-only
handlers answer "<messages> <window>", and the harness checks the count grows by one per turn
(so the response saw the session the cookie named); after an untouched cell a read-only request
checks the session is still intact.

Also in the same run: the raw floors (redis-py, one MULTI reading a hash and 20 list items; one
MULTI writing a list item, a hash field and two EXPIREs; both sync and asyncio; a diskcache
transaction of 2 gets and 2 sets), Redis commands, client reads (~ round trips) and key changes
per request (INFO deltas), statemw's get_history on a loaded 100-message session and a one-key
save in a 100,000-key session against a 10-key one; then the issue's ratios with PASS/FAIL.

Every product runs in its own child process (so one product's heap or slowness does not touch
another's numbers) with a time budget. The whole matrix runs `--rounds` times (default 2, the
second in reverse order) and each cell reports the least of its round medians, since other load
on the machine only adds time; the spread between rounds is printed as the run's noise.

The peers and matplotlib are bench-only, in their own venv, with statemw installed editable from
the checkout to measure:

    python3.11 -m venv /tmp/webbench
    /tmp/webbench/bin/pip install -e '/path/to/checkout[all]' starsessions==2.2.1 \\
        'Flask-Session==0.8.0' cachelib redis matplotlib
    /tmp/webbench/bin/python bench/web.py [--plot] [--json results.json]
    /tmp/webbench/bin/python bench/web.py --only statemw-starlette-memory --sizes 0 --kinds turn \\
        --rounds 1
    /tmp/webbench/bin/python bench/web.py --compare before.json after.json   # cell by cell
    /tmp/webbench/bin/python bench/web.py --replot after.json   # the plot, from a --json file

Redis: 127.0.0.1:6379 db 15, every key under "statemw-bench-web:<run id>:", deleted afterwards. INFO
counters are server-wide: the smallest of five repetitions is reported, so other clients of the
same server can only inflate them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, cast

REDIS_URL = "redis://127.0.0.1:6379/15"
RUN = os.environ.setdefault("STATEMW_BENCH_RUN", str(os.getpid()))
"""This run's id, which its workers inherit: two runs at once (bench/instructions.py beside
bench/web.py) keep apart their keys, which each one's cleanup deletes."""
PREFIX = f"statemw-bench-web:{RUN}:"
SECRET = "bench-secret-key"
SIZES = (0, 100, 1000, 10000)
KINDS = ("turn", "read", "untouched")
RECENT = 20
FILL_CHUNK = 1000
COOKIE_LIMIT = 4096  # bytes of one cookie a browser keeps (RFC 6265 minimum, what browsers do)
MIN_REQUESTS = 30
NEW_TEXT = "and one more thing " + "y" * 40


WORDS = (
    "the",
    "a",
    "to",
    "of",
    "and",
    "in",
    "is",
    "it",
    "you",
    "that",
    "for",
    "on",
    "with",
    "this",
    "be",
    "are",
    "can",
    "have",
    "not",
    "what",
    "from",
    "or",
    "by",
    "at",
    "as",
    "your",
    "was",
    "if",
    "will",
    "my",
    "so",
    "but",
    "do",
    "flight",
    "train",
    "hotel",
    "morning",
    "evening",
    "price",
    "ticket",
    "seat",
    "window",
    "aisle",
    "berlin",
    "paris",
    "tuesday",
    "next",
    "book",
    "change",
    "cancel",
    "return",
    "one",
    "way",
)


def old_text(i: int) -> str:
    """The i-th pre-filled message: about 70 characters of words, as long as bench/peers.py's.

    Words, not "x" * 60: Flask's cookie session compresses, and a run of one letter would let
    100 messages fit a 4 KB cookie that real text does not compress into.
    """
    x, out = i * 2654435761 + 12345, [f"message {i}:"]
    while sum(len(w) + 1 for w in out) < 70:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(WORDS[(x >> 33) % len(WORDS)])
    return " ".join(out)


def role(i: int) -> str:
    return "user" if i % 2 else "assistant"


def batch_for(size: int) -> int:
    """Turns per conversation before the harness starts a fresh one at `size` messages."""
    return max(10, size // 50)


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


# --- the harness: direct ASGI / WSGI calls with a cookie jar --------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes
    ns: int  # time inside the app call


class CookieJar:
    """What a browser keeps: name -> value, updated from Set-Cookie; attributes ignored."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def absorb(self, set_cookies: Iterable[str]) -> None:
        for line in set_cookies:
            pair, _, attrs = line.partition(";")
            name, _, value = pair.strip().partition("=")
            lowered = attrs.lower()
            gone = "max-age=0" in lowered.replace(" ", "") or "1970" in lowered
            if gone or value in ("", '""', "''", "null"):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value

    def largest(self) -> int:
        return max((len(k) + 1 + len(v) for k, v in self.cookies.items()), default=0)


class Client:
    """One browser against one app; `request` times only the app call."""

    def __init__(self) -> None:
        self.jar = CookieJar()

    async def request(self, method: str, path: str, query: str = "") -> Reply:
        raise NotImplementedError


class AsgiClient(Client):
    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def request(self, method: str, path: str, query: str = "") -> Reply:
        headers = [(b"host", b"testserver")]
        if self.jar.cookies:
            headers.append((b"cookie", self.jar.header().encode("latin-1")))
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        sent = {"done": False}
        status = [0]
        body: list[bytes] = []
        raw_headers: list[tuple[bytes, bytes]] = []

        async def receive() -> dict[str, Any]:
            if sent["done"]:
                return {"type": "http.disconnect"}
            sent["done"] = True
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                raw_headers.extend(message.get("headers", []))
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        start = time.perf_counter_ns()
        await self.app(scope, receive, send)
        ns = time.perf_counter_ns() - start
        self.jar.absorb(v.decode("latin-1") for k, v in raw_headers if k.lower() == b"set-cookie")
        return Reply(status[0], b"".join(body), ns)


class WsgiClient(Client):
    BASE = {
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SCRIPT_NAME": "",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "testserver",
        "CONTENT_LENGTH": "0",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app

    async def request(self, method: str, path: str, query: str = "") -> Reply:
        environ: dict[str, Any] = dict(self.BASE)
        environ.update(
            REQUEST_METHOD=method,
            PATH_INFO=path,
            QUERY_STRING=query,
        )
        environ["wsgi.input"] = io.BytesIO(b"")
        environ["wsgi.errors"] = sys.stderr
        if self.jar.cookies:
            environ["HTTP_COOKIE"] = self.jar.header()
        got: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            got.append((status, headers))
            return lambda data: None

        start = time.perf_counter_ns()
        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        ns = time.perf_counter_ns() - start
        status, headers = got[-1]
        self.jar.absorb(v for k, v in headers if k.lower() == "set-cookie")
        return Reply(int(status.split()[0]), body, ns)


# --- the products ---------------------------------------------------------------------------------


@dataclass
class App:
    client: Client
    close: Callable[[], Awaitable[None]]
    session: bool = True  # False: a bare framework, the handlers never see a session


@dataclass
class Product:
    name: str
    framework: str  # "starlette" or "flask"
    build: Callable[[str], App]  # scratch dir -> app
    redis: bool = False


async def nothing() -> None:
    return None


def starlette_routes(kind: str) -> list[Any]:
    """The endpoints (bench/state_keys.py uses /keys and /key); kind: "statemw", "dict" (a dict
    session) or "bare"."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from statemw import Session

    if kind == "statemw":

        async def turn(request: Request) -> PlainTextResponse:
            s = cast(Session, request.session)
            window = s.get_history(last=RECENT)
            s.add_message("user", NEW_TEXT)
            return PlainTextResponse(f"{len(s.messages)} {len(window)}")

        async def read(request: Request) -> PlainTextResponse:
            s = cast(Session, request.session)
            window = s.get_history(last=RECENT)
            return PlainTextResponse(f"{len(s.messages)} {len(window)}")

        async def fill(request: Request) -> PlainTextResponse:
            s = cast(Session, request.session)
            start, n = int(request.query_params["start"]), int(request.query_params["n"])
            s["user"] = "bench"
            for i in range(start, start + n):
                s.add_message(role(i), old_text(i))
            return PlainTextResponse(str(len(s.messages)))

    elif kind == "dict":

        async def turn(request: Request) -> PlainTextResponse:
            s = request.session
            messages = s.get("messages", [])
            window = messages[-RECENT:]
            messages.append({"role": "user", "content": NEW_TEXT})
            s["messages"] = messages
            return PlainTextResponse(f"{len(messages)} {len(window)}")

        async def read(request: Request) -> PlainTextResponse:
            messages = request.session.get("messages", [])
            window = messages[-RECENT:]
            return PlainTextResponse(f"{len(messages)} {len(window)}")

        async def fill(request: Request) -> PlainTextResponse:
            s = request.session
            start, n = int(request.query_params["start"]), int(request.query_params["n"])
            messages = s.get("messages", [])
            messages.extend(
                {"role": role(i), "content": old_text(i)} for i in range(start, start + n)
            )
            s["user"] = "bench"
            s["messages"] = messages
            return PlainTextResponse(str(len(messages)))

    else:

        async def turn(request: Request) -> PlainTextResponse:
            return PlainTextResponse("ok")

        read = fill = turn

    async def untouched(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def fill_keys(request: Request) -> PlainTextResponse:
        if kind == "bare":
            return PlainTextResponse("ok")
        start, n = int(request.query_params["start"]), int(request.query_params["n"])
        return PlainTextResponse(add_keys(request.session, start, n))

    async def one_key(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok" if kind == "bare" else count_hit(request.session))

    return [
        Route("/turn", turn, methods=["POST"]),
        Route("/read", read),
        Route("/untouched", untouched),
        Route("/fill", fill, methods=["POST"]),
        Route("/keys", fill_keys, methods=["POST"]),
        Route("/key", one_key, methods=["POST"]),
    ]


def add_keys(session: MutableMapping[str, Any], start: int, n: int) -> str:
    """The /keys handler of every session (statemw's and the dict ones): state keys
    key<start>..key<start+n-1> set; answers how many keys the session holds."""
    for i in range(start, start + n):
        session[f"key{i}"] = f"value {i}"
    return str(len(session))


def count_hit(session: MutableMapping[str, Any]) -> str:
    """The /key handler (bench/state_keys.py): one key changed in a session of many; answers
    the key count and the hits, so each response proves it saw its own session."""
    session["hits"] = session.get("hits", 0) + 1
    return f"{len(session)} {session['hits']}"


def starlette_app(kind: str, middleware: list[Any], close: Callable[[], Awaitable[None]]) -> App:
    from starlette.applications import Starlette

    app = Starlette(routes=starlette_routes(kind), middleware=middleware)
    return App(AsgiClient(app), close, session=kind != "bare")


def statemw_starlette(url: str) -> Callable[[str], App]:
    def build(tmp: str) -> App:
        from starlette.middleware import Middleware

        from statemw import Store
        from statemw.asgi import StateMiddleware

        store = Store(url.format(tmp=tmp))
        middleware = [Middleware(StateMiddleware, store=store, secret_key=SECRET)]
        return starlette_app("statemw", middleware, store.aclose)

    return build


def starsessions_app(kind: str) -> Callable[[str], App]:
    def build(tmp: str) -> App:
        from starlette.middleware import Middleware
        from starsessions import (  # type: ignore[import-not-found]
            InMemoryStore,
            SessionAutoloadMiddleware,
            SessionMiddleware,
        )

        store: Any
        close = nothing
        if kind == "memory":
            store = InMemoryStore()
        else:
            from redis.asyncio import Redis
            from starsessions.stores.redis import RedisStore  # type: ignore[import-not-found]

            conn = Redis.from_url(REDIS_URL)
            store = RedisStore(connection=conn, prefix=PREFIX + "starsessions:")

            async def close() -> None:
                await conn.aclose()

        middleware = [
            Middleware(SessionMiddleware, store=store, cookie_https_only=False),
            Middleware(SessionAutoloadMiddleware),
        ]
        return starlette_app("dict", middleware, close)

    return build


def starlette_cookie(tmp: str) -> App:
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware

    return starlette_app("dict", [Middleware(SessionMiddleware, secret_key=SECRET)], nothing)


def bare_starlette(tmp: str) -> App:
    return starlette_app("bare", [], nothing)


def flask_app(kind: str, configure: Callable[[Any], None]) -> Any:
    from flask import Flask, request, session

    from statemw import Session

    app = Flask("bench_web")
    app.config["SECRET_KEY"] = SECRET
    configure(app)

    if kind == "statemw":

        @app.post("/turn")
        def turn() -> str:
            s = cast(Session, session)
            window = s.get_history(last=RECENT)
            s.add_message("user", NEW_TEXT)
            return f"{len(s.messages)} {len(window)}"

        @app.get("/read")
        def read() -> str:
            s = cast(Session, session)
            window = s.get_history(last=RECENT)
            return f"{len(s.messages)} {len(window)}"

        @app.post("/fill")
        def fill() -> str:
            s = cast(Session, session)
            start, n = int(request.args["start"]), int(request.args["n"])
            s["user"] = "bench"
            for i in range(start, start + n):
                s.add_message(role(i), old_text(i))
            return str(len(s.messages))

    elif kind == "dict":

        @app.post("/turn")
        def turn() -> str:
            messages = session.get("messages", [])
            window = messages[-RECENT:]
            messages.append({"role": "user", "content": NEW_TEXT})
            session["messages"] = messages
            return f"{len(messages)} {len(window)}"

        @app.get("/read")
        def read() -> str:
            messages = session.get("messages", [])
            window = messages[-RECENT:]
            return f"{len(messages)} {len(window)}"

        @app.post("/fill")
        def fill() -> str:
            start, n = int(request.args["start"]), int(request.args["n"])
            messages = session.get("messages", [])
            messages.extend(
                {"role": role(i), "content": old_text(i)} for i in range(start, start + n)
            )
            session["user"] = "bench"
            session["messages"] = messages
            return str(len(messages))

    else:

        @app.post("/turn")
        def turn() -> str:
            return "ok"

        @app.get("/read")
        def read() -> str:
            return "ok"

        @app.post("/fill")
        def fill() -> str:
            return "ok"

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    @app.post("/keys")
    def fill_keys() -> str:
        if kind == "bare":
            return "ok"
        return add_keys(session, int(request.args["start"]), int(request.args["n"]))

    @app.post("/key")
    def one_key() -> str:
        return "ok" if kind == "bare" else count_hit(session)

    return app


def statemw_flask(url: str) -> Callable[[str], App]:
    def build(tmp: str) -> App:
        from statemw.flask import FlaskState, store_for

        def configure(app: Any) -> None:
            app.config["STATEMW_URL"] = url.format(tmp=tmp)
            FlaskState(app)

        app = flask_app("statemw", configure)

        async def close() -> None:
            store_for(app).close()

        return App(WsgiClient(app), close)

    return build


def flask_session_app(kind: str) -> Callable[[str], App]:
    def build(tmp: str) -> App:
        from flask_session import Session  # type: ignore[import-not-found]

        closers: list[Callable[[], None]] = []

        def configure(app: Any) -> None:
            if kind == "redis":
                from redis import Redis

                conn = Redis.from_url(REDIS_URL)
                closers.append(conn.close)
                app.config.update(
                    SESSION_TYPE="redis",
                    SESSION_REDIS=conn,
                    SESSION_KEY_PREFIX=PREFIX + "flask-session:",
                )
            else:
                from cachelib import FileSystemCache  # type: ignore[import-not-found]

                # threshold=0: never prune, so the peer is not charged for the harness's sessions
                cache = FileSystemCache(cache_dir=f"{tmp}/flask-session", threshold=0)
                app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)
            Session(app)

        app = flask_app("dict", configure)

        async def close() -> None:
            for closer in closers:
                closer()

        return App(WsgiClient(app), close)

    return build


def flask_cookie(tmp: str) -> App:
    return App(WsgiClient(flask_app("dict", lambda app: None)), nothing)


def bare_flask(tmp: str) -> App:
    return App(WsgiClient(flask_app("bare", lambda app: None)), nothing, session=False)


STATEMW_REDIS = REDIS_URL + "?key_prefix=" + PREFIX + "statemw:"
PRODUCTS = [
    Product("bare-starlette", "starlette", bare_starlette),
    Product("starlette-cookie", "starlette", starlette_cookie),
    Product("starsessions-memory", "starlette", starsessions_app("memory")),
    Product("starsessions-redis", "starlette", starsessions_app("redis"), redis=True),
    Product("statemw-starlette-memory", "starlette", statemw_starlette("memory://")),
    Product("statemw-starlette-diskcache", "starlette", statemw_starlette("diskcache://{tmp}/s")),
    Product("statemw-starlette-redis", "starlette", statemw_starlette(STATEMW_REDIS), redis=True),
    Product("bare-flask", "flask", bare_flask),
    Product("flask-cookie", "flask", flask_cookie),
    Product("flask-session-filesystem", "flask", flask_session_app("filesystem")),
    Product("flask-session-redis", "flask", flask_session_app("redis"), redis=True),
    Product("statemw-flask-memory", "flask", statemw_flask("memory://")),
    Product("statemw-flask-diskcache", "flask", statemw_flask("diskcache://{tmp}/s")),
    Product("statemw-flask-redis", "flask", statemw_flask(STATEMW_REDIS), redis=True),
]
BY_NAME = {p.name: p for p in PRODUCTS}


# --- measuring one cell ---------------------------------------------------------------------------


class Mismatch(AssertionError):
    pass


def check(reply: Reply, expect: str | None) -> None:
    if reply.status != 200:
        raise Mismatch(f"HTTP {reply.status}: {reply.body[:120]!r}")
    if expect is not None and reply.body.decode() != expect:
        raise Mismatch(f"expected {expect!r}, the response said {reply.body.decode()[:80]!r}")


def window_answer(count: int) -> str:
    return f"{count} {min(RECENT, count)}"


async def fill(app: App, size: int) -> None:
    """A fresh conversation of `size` messages through the product's own session API."""
    app.client.jar.cookies.clear()
    done = 0
    while True:
        n = min(FILL_CHUNK, size - done)
        with warnings.catch_warnings():  # werkzeug warns about a cookie over 4 KB: we report it
            warnings.simplefilter("ignore")
            reply = await app.client.request("POST", "/fill", f"start={done}&n={n}")
        done += n
        check(reply, str(done) if app.session else None)
        if done >= size:
            return


def too_big_for_cookie(app: App) -> str | None:
    largest = app.client.jar.largest()
    if largest > COOKIE_LIMIT:
        return f"the session cookie would be {largest:,} bytes; browsers keep at most 4,096"
    return None


class Cell:
    """Requests of one kind on a conversation kept near `size` messages."""

    def __init__(self, app: App, kind: str, size: int) -> None:
        self.app, self.kind, self.size = app, kind, size
        self.in_batch = 0
        self.batch = batch_for(size) if kind == "turn" else 0

    async def start(self) -> None:
        await fill(self.app, self.size)
        self.in_batch = 0

    async def one(self) -> int:
        """One checked request; returns its ns. A turn may first start a fresh conversation."""
        app = self.app
        if self.kind == "turn":
            if self.in_batch >= self.batch:
                await self.start()
            count = self.size + self.in_batch
            reply = await app.client.request("POST", "/turn")
            self.in_batch += 1
            check(reply, f"{count + 1} {min(RECENT, count)}" if app.session else "ok")
        elif self.kind == "read":
            reply = await app.client.request("GET", "/read")
            check(reply, window_answer(self.size) if app.session else "ok")
        else:
            reply = await app.client.request("GET", "/untouched")
            check(reply, "ok")
        return reply.ns

    async def verify_intact(self) -> None:
        if self.kind != "turn" and self.app.session:
            check(await self.app.client.request("GET", "/read"), window_answer(self.size))


async def time_cell(cell: Cell, seconds: float) -> dict[str, Any]:
    warm_until = time.perf_counter() + min(0.2, seconds / 5)
    warm = 0
    while warm < 5 or time.perf_counter() < warm_until:
        await cell.one()
        warm += 1
    gc.collect()
    samples: list[int] = []
    measured = 0
    wall_limit = time.perf_counter() + 3 * seconds
    goal = int(seconds * 1e9)
    while len(samples) < MIN_REQUESTS or (measured < goal and time.perf_counter() < wall_limit):
        ns = await cell.one()
        samples.append(ns)
        measured += ns
    await cell.verify_intact()
    samples.sort()
    us = [s / 1000 for s in samples]
    return {
        "us": statistics.median(us),
        "p10": us[len(us) // 10],
        "p90": us[(len(us) * 9) // 10],
        "p99": us[(len(us) * 99) // 100],
        "mean": statistics.fmean(us),
        "n": len(us),
    }


# --- Redis counters -------------------------------------------------------------------------------


def redis_counters(conn: Any) -> dict[str, float]:
    info = conn.info("stats", "commandstats", "persistence", "cpu")
    cmds = sum(
        v["calls"] for k, v in info.items() if k.startswith("cmdstat_") and k != "cmdstat_info"
    )
    return {
        "cmds": cmds,
        "reads": int(info["total_reads_processed"]),
        "dirty": int(info["rdb_changes_since_last_save"]),
        # the server's own CPU (user + system, getrusage), in µs: what a request costs Redis,
        # scripts, parsing and socket work included
        "cpu_us": (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6,
    }


async def count_redis(cell: Cell, conn: Any, requests: int = 10) -> dict[str, float]:
    """Commands, client reads (~ round trips) and key changes per request: least of 5 runs.

    The counters are server-wide, so another client can only add to a run; "stable" is 1.0 when
    at least two runs agree on commands and key changes (then very likely this product's alone).
    """
    runs: list[dict[str, float]] = []
    for _ in range(5):
        if cell.kind == "turn":
            await cell.start()  # the counted turns then need no fill in between
        before = redis_counters(conn)
        for _ in range(requests):
            await cell.one()
        after = redis_counters(conn)
        delta = {k: (after[k] - before[k]) / requests for k in after}
        delta["reads"] -= 1 / requests  # the second INFO's own read
        delta["dirty"] = max(0.0, delta["dirty"])  # a BGSAVE in between resets the counter
        runs.append(delta)
    best = {k: min(run[k] for run in runs) for k in runs[0]}
    # reads of a large request vary with TCP segmentation: agreement is on commands and writes
    agreeing = sum(all(abs(run[k] - best[k]) < 1e-9 for k in ("cmds", "dirty")) for run in runs)
    best["stable"] = 1.0 if agreeing >= 2 else 0.0
    return best


def redis_cleanup() -> None:
    import redis

    conn = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(conn.scan_iter(PREFIX + "*", count=1000))
        for start in range(0, len(keys), 500):
            conn.delete(*keys[start : start + 500])
    finally:
        conn.close()


def redis_cleanup_after(names: Iterable[str]) -> None:
    """redis_cleanup() when one of these products (names of PRODUCTS) keeps its sessions in
    Redis: their keys would otherwise stay there for the idle TTL."""
    if any(name in BY_NAME and BY_NAME[name].redis for name in names):
        redis_cleanup()


# --- workers --------------------------------------------------------------------------------------


@contextmanager
def scratch() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="statemw-bench-web-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def started_cell(product: str, kind: str, size: int, warm: int) -> AsyncIterator[Cell]:
    """A cell of one product (a name of PRODUCTS) in a scratch directory, its conversation
    started and `warm` requests made; the app closed afterwards. For the scripts beside this
    one that time a product's requests in their own process."""
    with scratch() as tmp:
        app = BY_NAME[product].build(tmp)
        try:
            cell = Cell(app, kind, size)
            await cell.start()
            for _ in range(warm):
                await cell.one()
            yield cell
        finally:
            await app.close()


def check_products(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """Stop with a usage error naming any of `names` that is not a product here."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown products {', '.join(unknown)}; known: {', '.join(BY_NAME)}")


async def product_worker(name: str, sizes: list[int], kinds: list[str], seconds: float) -> None:
    product = BY_NAME[name]
    conn: Any = None
    if product.redis:
        import redis

        conn = redis.Redis.from_url(REDIS_URL)
    try:
        for size in sizes:
            with scratch() as tmp:
                app = product.build(tmp)
                try:
                    await measure_size(product, app, size, kinds, seconds, conn)
                finally:
                    await app.close()
                    if product.redis:
                        redis_cleanup()
    finally:
        if conn is not None:
            conn.close()


async def measure_size(
    product: Product, app: App, size: int, kinds: list[str], seconds: float, conn: Any
) -> None:
    row = {"type": "cell", "product": product.name, "size": size}
    try:
        await fill(app, size)
    except Exception as exc:
        for kind in kinds:
            emit({**row, "kind": kind, "error": f"fill: {type(exc).__name__}: {exc}"[:200]})
        return
    reason = too_big_for_cookie(app)
    if reason is not None:
        for kind in kinds:
            emit({**row, "kind": kind, "na": reason})
        return
    for kind in kinds:
        cell = Cell(app, kind, size)
        try:
            await cell.start()
            result = await time_cell(cell, seconds)
            if conn is not None:
                result["redis"] = await count_redis(cell, conn)
        except Exception as exc:
            emit({**row, "kind": kind, "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        emit({**row, "kind": kind, **result})


async def adaptive(
    run: Callable[[], Awaitable[int]], seconds: float, least: int = MIN_REQUESTS, warm: int = 3
) -> dict[str, Any]:
    """Median us of `run` (which returns its own ns), after a short warm-up."""
    for _ in range(warm):
        await run()
    gc.collect()
    samples: list[int] = []
    measured, goal = 0, int(seconds * 1e9)
    wall_limit = time.perf_counter() + 3 * seconds
    while len(samples) < least or (measured < goal and time.perf_counter() < wall_limit):
        ns = await run()
        samples.append(ns)
        measured += ns
    return {"us": statistics.median(samples) / 1000, "n": len(samples)}


def timed(fn: Callable[[], object]) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        start = time.perf_counter_ns()
        fn()
        return time.perf_counter_ns() - start

    return run


async def floors_worker(seconds: float) -> None:
    """The harness floor and the raw store floors."""

    async def bare_asgi(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def bare_wsgi(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    for name, client in (
        ("harness-asgi", AsgiClient(bare_asgi)),
        ("harness-wsgi", WsgiClient(bare_wsgi)),
    ):

        async def call(client: Client = client) -> int:
            return (await client.request("GET", "/")).ns

        emit({"type": "floor", "name": name, **await adaptive(call, seconds)})

    import redis
    import redis.asyncio

    item = b"\x82\xa4role\xa4user\xa7content\xd9\x3b" + NEW_TEXT.encode()
    hkey, lkey = PREFIX + "raw:{h}:head", PREFIX + "raw:{h}:log"
    sync = redis.Redis.from_url(REDIS_URL)
    try:
        sync.hset(hkey, mapping={"count": 100, "tokens": 2000, "rev": 7, "created": 1.0, "u": "x"})
        sync.rpush(lkey, *[item] * 100)

        def sync_read() -> None:
            pipe = sync.pipeline(transaction=True)
            pipe.hgetall(hkey)
            pipe.lrange(lkey, -RECENT, -1)
            _head, items = pipe.execute()
            assert len(items) == RECENT

        def sync_write() -> None:
            pipe = sync.pipeline(transaction=True)
            pipe.rpush(lkey, item)
            pipe.hset(hkey, "count", 101)
            pipe.expire(hkey, 3600)
            pipe.expire(lkey, 3600)
            pipe.execute()

        emit({"type": "floor", "name": "redis-read", **await adaptive(timed(sync_read), seconds)})
        emit({"type": "floor", "name": "redis-write", **await adaptive(timed(sync_write), seconds)})

        aconn = redis.asyncio.Redis.from_url(REDIS_URL)

        async def async_read() -> int:
            start = time.perf_counter_ns()
            pipe = aconn.pipeline(transaction=True)
            pipe.hgetall(hkey)
            pipe.lrange(lkey, -RECENT, -1)
            _head, items = await pipe.execute()
            ns = time.perf_counter_ns() - start
            assert len(items) == RECENT
            return ns

        async def async_write() -> int:
            start = time.perf_counter_ns()
            pipe = aconn.pipeline(transaction=True)
            pipe.rpush(lkey, item)
            pipe.hset(hkey, "count", 101)
            pipe.expire(hkey, 3600)
            pipe.expire(lkey, 3600)
            await pipe.execute()
            return time.perf_counter_ns() - start

        emit({"type": "floor", "name": "redis-read-async", **await adaptive(async_read, seconds)})
        emit({"type": "floor", "name": "redis-write-async", **await adaptive(async_write, seconds)})
        await aconn.aclose()
    finally:
        sync.delete(hkey, lkey)
        sync.close()

    import diskcache

    with scratch() as tmp:
        cache = diskcache.Cache(f"{tmp}/raw")
        cache.set("head", b"h" * 120)
        cache.set("log:0", item)

        def transaction() -> None:
            with cache.transact():
                head = cache.get("head")
                cache.get("log:0")
                cache.set("head", head)
                cache.set("log:1", item)

        emit(
            {
                "type": "floor",
                "name": "diskcache-txn",
                **await adaptive(timed(transaction), seconds),
            }
        )
        cache.close()


async def api_worker(seconds: float) -> None:
    """statemw's public API: get_history on a loaded session, and a one-key save."""
    from statemw import Store

    store = Store("memory://")
    session = store.create()
    for i in range(100):
        session.add_message(role(i), old_text(i))
    session.save()
    sid = session.id

    def first_call(cold: bool = False, **options: Any) -> Callable[[], Awaitable[int]]:
        """get_history on a session just loaded; `cold`: its records never decoded before in
        this process (the store's decoded records, statemw._decoded, forgotten first)."""

        async def run() -> int:
            loaded = store.load(sid)
            if cold:
                store.codec._decoded.clear()
            start = time.perf_counter_ns()
            window = loaded.get_history(**options)
            ns = time.perf_counter_ns() - start
            assert window
            return ns

        return run

    def load() -> None:
        store.load(sid)

    loaded = store.load(sid)
    loaded.get_history(last=RECENT)
    cases: list[tuple[str, Callable[[], Awaitable[int]]]] = [
        ("load", timed(load)),
        ("get_history(last=20)", first_call(last=RECENT)),
        ("get_history(last=20), records new to the process", first_call(True, last=RECENT)),
        ("get_history(max_tokens=4000)", first_call(max_tokens=4000)),
        ("get_history()", first_call()),
        ("get_history(last=20), again", timed(lambda: loaded.get_history(last=RECENT))),
        ("messages[-20:]", first_call_slice(store, sid)),
    ]
    for name, run in cases:
        emit({"type": "api", "name": name, **await adaptive(run, seconds)})
    store.close()

    for store_name, url in (
        ("memory", "memory://"),
        ("diskcache", "diskcache://{tmp}/s"),
        ("redis", REDIS_URL + "?key_prefix=" + PREFIX + "api:"),
    ):
        with scratch() as tmp:
            big = Store(url.format(tmp=tmp))
            try:
                for keys in (10, 100_000):
                    for collect, again, suffix in (
                        (True, False, ""),
                        (False, False, ", collector as it falls"),
                        (True, True, ", again on the loaded session"),
                    ):
                        result = await save_one_key(
                            big, keys, seconds, collect=collect, again=again
                        )
                        name = f"save 1 of {keys:,} keys, {store_name}{suffix}"
                        emit({"type": "api", "name": name, **result})
                result = await save_one_key(big, 10, seconds, after_load_of=100_000)
                name = f"save 1 of 10 keys, {store_name}, right after a 100,000-key load"
                emit({"type": "api", "name": name, **result})
            finally:
                big.close()
                redis_cleanup()


def first_call_slice(store: Any, sid: str) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        loaded = store.load(sid)
        start = time.perf_counter_ns()
        window = loaded.messages[-RECENT:]
        ns = time.perf_counter_ns() - start
        assert len(window) == RECENT
        return ns

    return run


def filled_session(store: Any, keys: int) -> str:
    """A stored session of `keys` state keys; its id."""
    session = store.create()
    for i in range(keys):
        session[f"key{i}"] = f"value {i}"
    session.save()
    return str(session.id)


async def save_one_key(
    store: Any,
    keys: int,
    seconds: float,
    *,
    collect: bool = True,
    again: bool = False,
    after_load_of: int = 0,
) -> dict[str, Any]:
    """Load, change one key (untimed), save (timed): at least 5 saves (a slow one is 1 s).

    `collect=False` times the save with the garbage collector as it is. Loading 100,000 keys
    makes a few hundred thousand objects, so the collector's next full pass (proportional to
    everything alive, not to what the save does) tends to fall inside the save that follows;
    with `collect=True` the collector is paused for the save alone (it runs at the next
    allocation after), so the save's own cost is what is timed. Both are reported.

    `again=True` loads the session once and times each save after another change to it: the
    save's own work, without the load's 100,000 objects just built around it (a save right
    after that load finds the processor's caches full of them, and pays to refill them).

    `after_load_of=N`: another session of N keys is loaded (untimed) right before each save, so
    a small save pays what a big load's footprint adds to any save that follows it."""
    sid = filled_session(store, keys)
    other = filled_session(store, after_load_of) if after_load_of else None
    counter = [0]

    kept = store.load(sid) if again else None

    async def run() -> int:
        footprint = store.load(other) if other is not None else None
        loaded = kept if kept is not None else store.load(sid)
        counter[0] += 1
        loaded["key0"] = f"changed {counter[0]}"
        if collect:
            gc.disable()
        try:
            start = time.perf_counter_ns()
            loaded.save()
            return time.perf_counter_ns() - start
        finally:
            gc.enable()
            del footprint

    result = await adaptive(run, seconds, least=5, warm=1)
    assert store.load(sid)["key0"] == f"changed {counter[0]}"
    for record in (sid, other):
        if record is not None:
            store.delete(record)
    return result


def worker(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    if args.worker == "floors":
        coro: Awaitable[None] = floors_worker(args.seconds)
    elif args.worker == "api":
        coro = api_worker(args.seconds)
    else:
        coro = product_worker(args.worker, sizes, kinds, args.seconds)

    async def main() -> None:
        await coro

    asyncio.run(main())


# --- driver ---------------------------------------------------------------------------------------


def run_worker(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name]
    cmd += ["--sizes", args.sizes, "--kinds", args.kinds, "--seconds", str(args.seconds)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
        out, err, failed = done.stdout, done.stderr, done.returncode != 0
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err, failed = f"killed after {args.budget:.0f} s", True
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    if failed:
        last = err.strip().splitlines()[-1] if err.strip() else "no output"
        rows.append({"type": "failure", "worker": name, "error": last[:300]})
        print(f"  {name}: FAILED: {last[:300]}", file=sys.stderr)
    return rows


@dataclass
class Results:
    """Rows from every round: a cell keeps the least median (external load only adds time) and
    the least of each Redis counter; `spread` keeps every round's median."""

    cells: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    api: dict[str, float] = field(default_factory=dict)
    spread: dict[str, list[float]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        if row["type"] == "cell":
            key = (row["product"], row["kind"], row["size"])
            old = self.cells.get(key)
            if "us" in row:
                self.spread.setdefault(f"{key[0]} {key[1]} L={key[2]:,}", []).append(row["us"])
            if old is None or "us" not in old or ("us" in row and row["us"] < old["us"]):
                if old is not None and "redis" in old and "redis" in row:
                    row = {**row, "redis": _least(old["redis"], row["redis"])}
                self.cells[key] = row
            elif "redis" in old and "redis" in row:
                old["redis"] = _least(old["redis"], row["redis"])
        elif row["type"] in ("floor", "api"):
            best = self.floors if row["type"] == "floor" else self.api
            best[row["name"]] = min(best.get(row["name"], row["us"]), row["us"])
            self.spread.setdefault(row["name"], []).append(row["us"])
        else:
            self.failures.append(row)

    def us(self, product: str, kind: str, size: int) -> float | None:
        row = self.cells.get((product, kind, size))
        return None if row is None or "us" not in row else float(row["us"])


def _least(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    least = {k: min(a[k], b[k]) for k in a}
    least["stable"] = max(a.get("stable", 1.0), b.get("stable", 1.0))
    return least


def print_spread(res: Results) -> None:
    """How far apart the rounds were: the noise of this run, cell by cell."""
    ratios = sorted(
        ((max(v) / min(v), k) for k, v in res.spread.items() if len(v) > 1 and min(v) > 0),
        reverse=True,
    )
    if not ratios:
        return
    noisy = [f"{k} {r:.2f}x" for r, k in ratios if r > 1.25]
    print(
        f"\nnoise: round medians of {len(ratios)} cells differ by a median of"
        f" {statistics.median(r for r, _ in ratios):.2f}x; {len(noisy)} differ by more than 1.25x"
        + (": " + ", ".join(noisy[:8]) if noisy else "")
    )


def fmt(us: float | None) -> str:
    if us is None:
        return "-"
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def cell_text(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if "na" in row:
        return "n/a"
    if "error" in row:
        return "error"
    return fmt(row["us"])


def print_tables(res: Results, sizes: list[int], kinds: list[str], names: list[str]) -> None:
    notes: list[str] = []
    for kind in kinds:
        print(f"\n{kind}: median µs per request")
        print("| product | " + " | ".join(f"L={n:,}" for n in sizes) + " |")
        print("|---|" + "---:|" * len(sizes))
        for name in names:
            rows = [res.cells.get((name, kind, n)) for n in sizes]
            print(f"| {name} | " + " | ".join(cell_text(r) for r in rows) + " |")
            for n, r in zip(sizes, rows, strict=True):
                if r is not None and ("na" in r or "error" in r):
                    note = f"{name} L={n:,}: {r.get('na') or r.get('error')}"
                    if note not in notes and ("error" in r or n == max(sizes)):
                        notes.append(note)
    redis_names = [n for n in names if BY_NAME[n].redis]
    if redis_names:
        print(
            "\nRedis per request: commands / client reads (~ round trips) / keys changed /"
            " server CPU µs (? = no two of 5 runs agreed: another client was busy)"
        )
        print("| product | request | " + " | ".join(f"L={n:,}" for n in sizes) + " |")
        print("|---|---|" + "---:|" * len(sizes))
        for name in redis_names:
            for kind in kinds:
                texts = []
                for n in sizes:
                    counts = res.cells.get((name, kind, n), {}).get("redis")
                    texts.append(
                        "-"
                        if not counts
                        else f"{counts['cmds']:.1f} / {counts['reads']:.1f} / {counts['dirty']:.1f}"
                        + (f" / {counts['cpu_us']:.0f}" if "cpu_us" in counts else "")
                        + ("" if counts.get("stable", 1.0) else " ?")
                    )
                print(f"| {name} | {kind} | " + " | ".join(texts) + " |")
    for note in notes:
        print(f"- {note}")


def verdict(ok: bool | None) -> str:
    return "n/a " if ok is None else "PASS" if ok else "FAIL"


def print_ratios(res: Results, sizes: list[int]) -> list[str]:
    """The issue's targets, each line PASS/FAIL (n/a when a cell was not measured)."""
    lines: list[str] = []
    fl = res.floors

    def line(ok: bool | None, text: str) -> None:
        lines.append(f"{verdict(ok)}  {text}")

    def ratio_line(label: str, value: float | None, other: float | None, limit: float) -> None:
        if value is None or other is None:
            line(None, f"{label}: not measured")
            return
        r = value / other
        line(r <= limit, f"{label}: {fmt(value)} / {fmt(other)} µs = {r:.2f}x (target <= {limit}x)")

    for fw, peer in (("starlette", "starsessions-redis"), ("flask", "flask-session-redis")):
        ours = f"statemw-{fw}-redis"
        ratio_line(
            f"{ours} turn vs {peer}, L=0", res.us(ours, "turn", 0), res.us(peer, "turn", 0), 1.0
        )
        suffix = "-async" if fw == "starlette" else ""
        raw = [fl.get(f"redis-read{suffix}"), fl.get(f"redis-write{suffix}")]
        for n in sizes:
            bare = res.us(f"bare-{fw}", "turn", n)
            floor = None if None in raw or bare is None else sum(x for x in raw if x) + bare
            ratio_line(
                f"{ours} turn vs raw read+write{suffix} + bare {fw}, L={n:,}",
                res.us(ours, "turn", n),
                floor,
                1.3,
            )
    ratio_line(
        "statemw-starlette-memory turn vs starsessions-memory, L=0",
        res.us("statemw-starlette-memory", "turn", 0),
        res.us("starsessions-memory", "turn", 0),
        2.0,
    )
    for fw in ("starlette", "flask"):
        txn = fl.get("diskcache-txn")
        for n in sizes:
            bare = res.us(f"bare-{fw}", "turn", n)
            ratio_line(
                f"statemw-{fw}-diskcache turn vs raw diskcache txn + bare {fw}, L={n:,}",
                res.us(f"statemw-{fw}-diskcache", "turn", n),
                None if txn is None or bare is None else txn + bare,
                4.0,
            )
    top = max(sizes)
    for fw, peer, factor in (
        ("starlette", "starsessions-redis", 50),
        ("flask", "flask-session-redis", 15),
    ):
        ours_us, theirs = res.us(f"statemw-{fw}-redis", "turn", top), res.us(peer, "turn", top)
        if top != 10000 or ours_us is None or theirs is None:
            line(None, f"statemw-{fw}-redis at L=10,000 vs {peer}: not measured")
            continue
        speedup = theirs / ours_us
        line(
            speedup >= factor,
            f"statemw-{fw}-redis at L=10,000: {fmt(theirs)} / {fmt(ours_us)} µs = {speedup:.1f}x"
            f" faster than {peer} (target >= {factor}x)",
        )
    for fw in ("starlette", "flask"):
        for kind, most_reads in (("untouched", 1.0), ("read", 1.0)):
            for n in sizes:
                row = res.cells.get((f"statemw-{fw}-redis", kind, n), {})
                counts = row.get("redis")
                if not counts:
                    continue
                ok = counts["reads"] <= most_reads + 0.05 and counts["dirty"] < 0.05
                line(
                    ok,
                    f"statemw-{fw}-redis {kind}, L={n:,}: {counts['cmds']:.1f} commands,"
                    f" {counts['reads']:.1f} round trips, {counts['dirty']:.1f} keys written"
                    f" (target <= 1 read round trip, no write)",
                )
        for store in ("memory", "diskcache", "redis"):
            for n in sizes:
                took = res.us(f"statemw-{fw}-{store}", "untouched", n)
                bare = res.us(f"bare-{fw}", "untouched", n)
                if took is not None and bare is not None:
                    lines.append(
                        f"info  statemw-{fw}-{store} untouched, L={n:,}: {fmt(took)} µs,"
                        f" {fmt(took - bare)} µs over bare {fw}"
                    )
    for name, limit in (("get_history(last=20)", 20.0), ("get_history(max_tokens=4000)", 40.0)):
        us = res.api.get(name)
        text = f"{name}, first call on a loaded 100-message memory session"
        line(
            None if us is None else us <= limit, f"{text}: {fmt(us)} µs (target <= {limit:.0f} µs)"
        )
    for store in ("memory", "diskcache", "redis"):
        big, small = (
            res.api.get(f"save 1 of 100,000 keys, {store}"),
            res.api.get(f"save 1 of 10 keys, {store}"),
        )
        ratio_line(
            f"save of 1 changed key, 100,000-key vs 10-key session, {store}", big, small, 5.0
        )
        as_it_falls = res.api.get(f"save 1 of 100,000 keys, {store}, collector as it falls")
        if as_it_falls is not None:
            lines.append(
                f"info  save of 1 changed key in a 100,000-key session, {store}, with the"
                f" collector running as it falls: {fmt(as_it_falls)} µs"
            )
        after_big = res.api.get(f"save 1 of 10 keys, {store}, right after a 100,000-key load")
        if after_big is not None and big is not None:
            lines.append(
                f"info  save of 1 changed key in a 10-key session right after a 100,000-key"
                f" session was loaded, {store}: {fmt(after_big)} µs (the 100,000-key session's"
                f" own: {fmt(big)} µs)"
            )
        suffix = ", again on the loaded session"
        big_again = res.api.get(f"save 1 of 100,000 keys, {store}{suffix}")
        small_again = res.api.get(f"save 1 of 10 keys, {store}{suffix}")
        if big_again is not None and small_again is not None:
            lines.append(
                f"info  save of 1 changed key again on the loaded session, 100,000-key vs"
                f" 10-key, {store}: {fmt(big_again)} / {fmt(small_again)} µs ="
                f" {big_again / small_again:.2f}x"
            )
    print()
    for text in lines:
        print(text)
    return lines


def plot(res: Results, sizes: list[int], names: list[str], path: str) -> None:
    """Log-log µs per turn against L: Starlette products left, Flask right; colour = store."""
    import matplotlib  # type: ignore[import-not-found]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found]

    colours = {
        "bare": "0.45",
        "cookie": "tab:orange",
        "memory": "tab:green",
        "diskcache": "tab:brown",
        "filesystem": "tab:purple",
        "redis": "tab:red",
    }
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.8), sharey=True)
    for ax, framework in zip(axes, ("starlette", "flask"), strict=True):
        for name in names:
            if BY_NAME[name].framework != framework:
                continue
            points = [(max(n, 1), res.us(name, "turn", n)) for n in sizes]
            xs = [x for x, y in points if y is not None]
            ys = [y for x, y in points if y is not None]
            if not xs:
                continue
            colour = next(c for key, c in colours.items() if key in name)
            if name.startswith("statemw"):
                ax.plot(xs, ys, "-o", color=colour, linewidth=2.5, label=name)
            elif name.startswith("bare") or name.endswith("cookie"):
                ax.plot(xs, ys, ":^", color=colour, linewidth=1.2, label=name)
            else:
                ax.plot(xs, ys, "--s", color=colour, linewidth=1.2, label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([max(n, 1) for n in sizes])
        ax.set_xticklabels([f"{n:,}" for n in sizes])
        ax.set_xlabel("messages already in the conversation (L; L=0 drawn at 1)")
        ax.set_title(framework.capitalize())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("median µs per turn")
    fig.suptitle(
        "One web turn (load, get_history(last=20) / messages[-20:], add 1, save) through each"
        " product's middleware; solid: statemw, dashed: peers, dotted: cookie and bare",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"\nwrote {path}")


def load_results(path: str) -> Results:
    """The results a --json file holds."""
    res = Results()
    with open(path) as f:
        for row in json.load(f)["rows"]:
            res.add(row)
    return res


def compare(old_path: str, new_path: str) -> None:
    """Cell by cell: the median µs in two --json files and their ratio (new / old)."""
    old, new = load_results(old_path), load_results(new_path)
    print(f"| product | request | L | {old_path} | {new_path} | new / old |")
    print("|---|---|---:|---:|---:|---:|")
    for key in sorted(old.cells.keys() & new.cells.keys(), key=lambda k: (k[0], k[1], k[2])):
        a, b = old.us(*key), new.us(*key)
        if a is not None and b is not None:
            print(f"| {key[0]} | {key[1]} | {key[2]:,} | {fmt(a)} | {fmt(b)} | {b / a:.2f} |")
    for group_old, group_new in ((old.floors, new.floors), (old.api, new.api)):
        for name in group_old.keys() & group_new.keys():
            a, b = group_old[name], group_new[name]
            print(f"| {name} | | | {fmt(a)} | {fmt(b)} | {b / a:.2f} |")


def versions() -> str:
    names = ["statemw", "starlette", "starsessions", "Flask", "Flask-Session", "cachelib"]
    names += ["redis", "diskcache", "msgpack"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--kinds", default=",".join(KINDS), help="turn,read,untouched")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated substrings of product names (also 'floors', 'api'); default all",
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="measured time per cell")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="repeat everything, alternating the order; each cell reports its least median",
    )
    parser.add_argument("--budget", type=float, default=300.0, help="seconds per child process")
    parser.add_argument("--json", default="", help="write the raw results to this file")
    parser.add_argument("--plot", action="store_true", help="write docs/performance.png")
    parser.add_argument("--plot-path", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two --json files, run nothing"
    )
    parser.add_argument(
        "--replot", metavar="JSON", help="draw docs/performance.png from a --json file, run nothing"
    )
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.compare:
        compare(*args.compare)
        return
    if args.replot:
        plot(load_results(args.replot), list(SIZES), [p.name for p in PRODUCTS], plot_path(args))
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    names = [p.name for p in PRODUCTS if not wanted or any(w in p.name for w in wanted)]
    extra = ["floors"]  # always: the ratios need them, and they take a few seconds
    if not wanted or any(w in "api" for w in wanted):
        extra.append("api")
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.platform()}")
    print(versions())
    print(f"statemw from {os.path.dirname(os.path.dirname(_statemw_file()))}")
    began = time.monotonic()
    res = Results()
    raw: list[dict[str, Any]] = []
    try:
        for round_no in range(args.rounds):
            order = extra + names
            if round_no % 2:
                order.reverse()
            print(f"round {round_no + 1}, load average {os.getloadavg()[0]:.1f}", flush=True)
            for name in order:
                start = time.monotonic()
                rows = run_worker(name, args)
                for row in rows:
                    row["round"] = round_no + 1
                    res.add(row)
                raw += rows
                took = time.monotonic() - start
                print(f"  {name}: {len(rows)} results in {took:.0f} s", flush=True)
    finally:
        redis_cleanup()
    fl = res.floors
    print(
        f"\nrun took {time.monotonic() - began:.0f} s; {args.seconds} s measured per cell and"
        f" round, {args.rounds} round(s), each cell the least of its round medians;"
        f" load average now {os.getloadavg()[0]:.1f}"
    )
    print(
        "harness floor (an app that does nothing): "
        f"ASGI {fmt(fl.get('harness-asgi'))} µs, WSGI {fmt(fl.get('harness-wsgi'))} µs"
    )
    print(
        "raw floors: redis MULTI read hash + 20 items "
        f"{fmt(fl.get('redis-read'))} µs (async {fmt(fl.get('redis-read-async'))}), "
        f"MULTI write item + field + 2 EXPIRE {fmt(fl.get('redis-write'))} µs "
        f"(async {fmt(fl.get('redis-write-async'))}), "
        f"diskcache transact 2 get + 2 set {fmt(fl.get('diskcache-txn'))} µs"
    )
    if res.api:
        print("statemw API (µs): " + ", ".join(f"{k} {fmt(v)}" for k, v in res.api.items()))
    print_tables(res, sizes, kinds, names)
    print_spread(res)
    lines = print_ratios(res, sizes)
    for failure in res.failures:
        print(f"FAILED worker {failure['worker']}: {failure['error']}")
    if args.json:
        with open(args.json, "w") as out:
            meta = {"versions": versions(), "python": platform.python_version()}
            json.dump({"meta": meta, "rows": raw, "verdicts": lines}, out, indent=1)
        print(f"\nwrote {args.json}")
    if args.plot:
        plot(res, sizes, names, plot_path(args))


def plot_path(args: argparse.Namespace) -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return str(args.plot_path or os.path.join(here, "docs", "performance.png"))


def _statemw_file() -> str:
    import statemw

    return os.path.abspath(statemw.__file__ or "")


if __name__ == "__main__":
    main()
