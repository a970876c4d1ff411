"""Per-turn cost as a conversation grows: statemw against the real peer libraries.

One "turn" for every product, through its own public API as its users would write it: load the
conversation, add one user message, read the last 20 messages, persist. The conversation is
pre-filled to 10, 1,000, 10,000 and 100,000 messages (bulk where the product allows it); each
size reports the median per-turn time, and each product its ratio largest / 10. Every product
runs in its own child process with a time budget, so one slow peer cannot stall the run; a size
that would not fit the budget is reported as skipped, with the estimate that ruled it out.

The peers are bench-only: they are not statemw dependencies. Set up a separate venv:

    python3.11 -m venv /tmp/peers
    /tmp/peers/bin/pip install starsessions==2.2.1 redis 'Flask-Session==0.8.0' cachelib \\
        openai-agents==0.24.0 'google-adk==2.13.0' sqlalchemy greenlet aiosqlite \\
        langgraph==1.2.24 langgraph-checkpoint-sqlite
    /tmp/peers/bin/pip install -e .
    /tmp/peers/bin/python bench/peers.py [--sizes 10,1000,10000,100000] [--only adk]

Redis products use 127.0.0.1:6379 db 15 and delete only the keys they wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Annotated, Any, TypeVar

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/15"
KEY_PREFIX = "statemw-bench-peers:"
RECENT = 20
NEW_TEXT = "and one more thing " + "y" * 40


def old_text(i: int) -> str:
    """The i-th pre-filled message: about 70 characters, like growth.py."""
    return f"message {i} " + "x" * 60


def role(i: int) -> str:
    return "user" if i % 2 else "assistant"


def turns_for(n: int) -> int:
    """More turns for cheap small sizes, fewer (never under 10) for large ones."""
    return 200 if n <= 10 else 100 if n <= 1000 else 30 if n <= 10000 else 10


@dataclass
class Bench:
    """One pre-filled conversation: turn() runs one turn and returns how many messages it read."""

    turn: Callable[[], int]
    close: Callable[[], None]


class Loop:
    """One event loop per child process, so async peers are driven the way a server would."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wait() -> T:
            return await awaitable

        return self.runner.run(wait())


def close_all(closers: list[Callable[[], None]]) -> Callable[[], None]:
    def close() -> None:
        for closer in closers:
            closer()

    return close


LOOP = Loop()


# --- statemw -----------------------------------------------------------------------------------


def statemw_bench(url: str) -> Callable[[int, str], Bench]:
    def setup(n: int, tmp: str) -> Bench:
        from statemw import Store

        store = Store(url.format(tmp=tmp))
        session = store.create(user_id="bench")
        for start in range(0, n, 1000):  # one save per 1,000 messages
            for i in range(start, min(n, start + 1000)):
                session.add_message(role(i), old_text(i))
            session.save()
        sid = session.id

        def turn() -> int:
            s = store.load(sid)
            s.add_message("user", NEW_TEXT)
            recent = s.get_history(last=RECENT)  # what the README tells users to call
            s.save()
            return len(recent)

        return Bench(turn, store.close)

    return setup


# --- starsessions ------------------------------------------------------------------------------


def starsessions_bench(kind: str) -> Callable[[int, str], Bench]:
    """starsessions' store + JsonSerializer: what its middleware does around a request."""

    def setup(n: int, tmp: str) -> Bench:
        from starsessions.serializers import JsonSerializer  # type: ignore[import-not-found]

        serializer = JsonSerializer()
        sid = KEY_PREFIX + "starsessions"
        closers: list[Callable[[], None]] = []
        if kind == "memory":
            from starsessions.stores.memory import InMemoryStore  # type: ignore[import-not-found]

            store = InMemoryStore()
        else:
            from redis.asyncio import Redis
            from starsessions.stores.redis import RedisStore  # type: ignore[import-not-found]

            conn = Redis.from_url(REDIS_URL)
            store = RedisStore(connection=conn, prefix="")

            def close_redis() -> None:
                LOOP.run(conn.delete(sid))
                LOOP.run(conn.aclose())

            closers.append(close_redis)
        messages = [{"role": role(i), "content": old_text(i)} for i in range(n)]
        LOOP.run(store.write(sid, serializer.serialize({"messages": messages}), 3600, 3600))

        async def aturn() -> int:
            data = serializer.deserialize(await store.read(sid, 3600))
            data["messages"].append({"role": "user", "content": NEW_TEXT})
            recent = data["messages"][-RECENT:]
            await store.write(sid, serializer.serialize(data), 3600, 3600)
            return len(recent)

        return Bench(lambda: LOOP.run(aturn()), close_all(closers))

    return setup


# --- Flask-Session -----------------------------------------------------------------------------


def flask_session_bench(kind: str) -> Callable[[int, str], Bench]:
    """A real Flask app with Flask-Session, driven through its test client (cookie kept)."""

    def setup(n: int, tmp: str) -> Bench:
        from flask import Flask, jsonify, request, session
        from flask.typing import ResponseReturnValue
        from flask_session import Session  # type: ignore[import-not-found]

        app = Flask(__name__)
        app.config["SECRET_KEY"] = "bench"
        closers: list[Callable[[], None]] = []
        if kind == "cachelib":
            from cachelib import FileSystemCache  # type: ignore[import-not-found]

            app.config["SESSION_TYPE"] = "cachelib"
            app.config["SESSION_CACHELIB"] = FileSystemCache(f"{tmp}/flask", threshold=0)
        else:
            from redis import Redis

            conn = Redis.from_url(REDIS_URL)
            app.config["SESSION_TYPE"] = "redis"
            app.config["SESSION_REDIS"] = conn
            app.config["SESSION_KEY_PREFIX"] = KEY_PREFIX + "flask:"

            def close_redis() -> None:
                for key in conn.scan_iter(KEY_PREFIX + "flask:*"):
                    conn.delete(key)
                conn.close()

            closers.append(close_redis)
        Session(app)

        @app.post("/fill")
        def fill() -> ResponseReturnValue:
            count = int(request.args["n"])
            session["messages"] = [{"role": role(i), "content": old_text(i)} for i in range(count)]
            return "ok"

        @app.post("/turn")
        def turn_view() -> ResponseReturnValue:
            messages = session.setdefault("messages", [])
            messages.append({"role": "user", "content": NEW_TEXT})
            session.modified = True  # an in-place append is not seen by the session dict
            return jsonify(messages[-RECENT:])

        client = app.test_client()
        assert client.post(f"/fill?n={n}").status_code == 200

        def turn() -> int:
            response = client.post("/turn")
            return len(response.get_json())

        return Bench(turn, close_all(closers))

    return setup


# --- OpenAI Agents SDK -------------------------------------------------------------------------


def openai_bench(reuse: bool) -> Callable[[int, str], Bench]:
    """SQLiteSession on a file: a new session object per request, as a stateless server does
    (reuse=False: opens a connection and checks the schema each turn), or one object kept."""

    def setup(n: int, tmp: str) -> Bench:
        from agents import SQLiteSession

        path = f"{tmp}/agents.db"
        sid = "bench"
        first = SQLiteSession(sid, path)
        items: list[Any] = [{"role": role(i), "content": old_text(i)} for i in range(n)]
        LOOP.run(first.add_items(items))  # one executemany
        if not reuse:
            first.close()

        async def aturn() -> int:
            session = first if reuse else SQLiteSession(sid, path)
            try:
                await session.add_items([{"role": "user", "content": NEW_TEXT}])
                recent = await session.get_items(limit=RECENT)
            finally:
                if not reuse:
                    session.close()
            return len(recent)

        return Bench(lambda: LOOP.run(aturn()), first.close if reuse else lambda: None)

    return setup


# --- Google ADK --------------------------------------------------------------------------------


def adk_bench(kind: str, recent_only: bool) -> Callable[[int, str], Bench]:
    """get_session (all events, or GetSessionConfig(num_recent_events=20)) + append_event."""

    def setup(n: int, tmp: str) -> Bench:
        from google.adk.events import Event
        from google.adk.sessions.base_session_service import (
            GetSessionConfig,
        )
        from google.genai import types

        def event(author: str, text: str, ts: float | None = None) -> Any:
            content = types.Content(role=author, parts=[types.Part(text=text)])
            extra: dict[str, Any] = {} if ts is None else {"timestamp": ts}
            return Event(author=author, invocation_id="bench", content=content, **extra)

        app, user, sid = "bench", "u", "s1"
        service: Any
        if kind == "memory":
            from google.adk.sessions import InMemorySessionService

            service = InMemorySessionService()
        elif kind == "database":
            from google.adk.sessions import DatabaseSessionService

            service = DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{tmp}/adk-db.sqlite")
        else:
            from google.adk.sessions.sqlite_session_service import (
                SqliteSessionService,
            )

            service = SqliteSessionService(f"{tmp}/adk-sqlite.sqlite")
        session = LOOP.run(service.create_session(app_name=app, user_id=user, session_id=sid))
        base = time.time() - n - 10
        events = [event("user" if i % 2 else "model", old_text(i), base + i) for i in range(n)]
        adk_prefill(kind, service, session, events, tmp)
        config = GetSessionConfig(num_recent_events=RECENT) if recent_only else None

        async def aturn() -> int:
            s = await service.get_session(app_name=app, user_id=user, session_id=sid, config=config)
            await service.append_event(s, event("user", NEW_TEXT))
            return len(s.events[-RECENT:])

        def close() -> None:
            closer = getattr(service, "close", None)
            if closer is not None:
                LOOP.run(closer())

        return Bench(lambda: LOOP.run(aturn()), close)

    return setup


def adk_prefill(kind: str, service: Any, session: Any, events: list[Any], tmp: str) -> None:
    """ADK has no bulk append: rows are written by ADK's own serializers, in one transaction.

    memory: the service's public `sessions` dict (append_event scans all events per call).
    database: StorageEvent.from_event rows through the service's own sqlalchemy sessionmaker.
    sqlite: the exact INSERT that SqliteSessionService.append_event runs, as one executemany.
    """
    if kind == "memory":
        stored = service.sessions[session.app_name][session.user_id][session.id]
        stored.events.extend(events)
        stored.last_update_time = events[-1].timestamp if events else stored.last_update_time
    elif kind == "database":
        schema = service._get_schema_classes()

        async def insert() -> None:
            async with service.database_session_factory() as sql:
                sql.add_all([schema.StorageEvent.from_event(session, e) for e in events])
                await sql.commit()

        LOOP.run(insert())
    else:
        with sqlite3.connect(f"{tmp}/adk-sqlite.sqlite") as db:
            db.executemany(
                "INSERT INTO events (id, app_name, user_id, session_id, invocation_id, timestamp,"
                " event_data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.id,
                        session.app_name,
                        session.user_id,
                        session.id,
                        e.invocation_id,
                        e.timestamp,
                        e.model_dump_json(exclude_none=True),
                    )
                    for e in events
                ],
            )
        db.close()


# --- LangGraph ---------------------------------------------------------------------------------


def langgraph_bench(kind: str, delta: bool = False) -> Callable[[int, str], Bench]:
    """MessagesState (add_messages reducer), one no-op node, a checkpointer, invoke per turn.

    delta=True swaps the reducer for the beta DeltaChannel with langgraph's own (experimental,
    underscore-named) batch messages reducer, as its docstring shows: checkpoints then store the
    new writes and a full snapshot only every 100th update.
    """

    def setup(n: int, tmp: str) -> Bench:
        from langgraph.graph import END, START, MessagesState, StateGraph  # type: ignore[import-not-found]

        closers: list[Callable[[], None]] = []
        if kind == "memory":
            from langgraph.checkpoint.memory import InMemorySaver  # type: ignore[import-not-found]

            saver = InMemorySaver()
        else:
            from langgraph.checkpoint.sqlite import SqliteSaver  # type: ignore[import-not-found]

            conn = sqlite3.connect(f"{tmp}/langgraph.sqlite", check_same_thread=False)
            saver = SqliteSaver(conn)
            closers.append(conn.close)

        def noop(state: Any) -> dict[str, Any]:
            return {}

        schema: Any = MessagesState
        if delta:
            from langgraph.channels.delta import DeltaChannel  # type: ignore[import-not-found]
            from langgraph.graph.message import (  # type: ignore[import-not-found]
                _messages_delta_reducer,
            )
            from typing_extensions import TypedDict

            make: Any = TypedDict  # a functional TypedDict, so the hints resolve at runtime
            channel = DeltaChannel(_messages_delta_reducer)
            schema = make("DeltaMessages", {"messages": Annotated[list[Any], channel]})
        builder = StateGraph(schema)
        builder.add_node("noop", noop)
        builder.add_edge(START, "noop")
        builder.add_edge("noop", END)
        graph = builder.compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "bench"}}
        history = [{"role": "user" if i % 2 else "ai", "content": old_text(i)} for i in range(n)]
        graph.invoke({"messages": history}, config)  # one invoke, one checkpoint

        def turn() -> int:
            out = graph.invoke({"messages": [{"role": "user", "content": NEW_TEXT}]}, config)
            return len(out["messages"][-RECENT:])

        return Bench(turn, close_all(closers))

    return setup


# --- registry, worker and driver ---------------------------------------------------------------

PRODUCTS: dict[str, Callable[[int, str], Bench]] = {
    "statemw memory://": statemw_bench("memory://"),
    "statemw diskcache": statemw_bench("diskcache://{tmp}/statemw"),
    "starsessions InMemoryStore": starsessions_bench("memory"),
    "starsessions RedisStore": starsessions_bench("redis"),
    "Flask-Session cachelib FileSystemCache": flask_session_bench("cachelib"),
    "Flask-Session redis": flask_session_bench("redis"),
    "OpenAI Agents SQLiteSession (file), new object per turn": openai_bench(reuse=False),
    "OpenAI Agents SQLiteSession (file), one object kept": openai_bench(reuse=True),
    "ADK InMemory, all events": adk_bench("memory", recent_only=False),
    "ADK InMemory, num_recent_events=20": adk_bench("memory", recent_only=True),
    "ADK Database sqlite+aiosqlite, all events": adk_bench("database", recent_only=False),
    "ADK Database sqlite+aiosqlite, num_recent=20": adk_bench("database", recent_only=True),
    "ADK SqliteSessionService, all events": adk_bench("sqlite", recent_only=False),
    "ADK SqliteSessionService, num_recent=20": adk_bench("sqlite", recent_only=True),
    "LangGraph InMemorySaver": langgraph_bench("memory"),
    "LangGraph SqliteSaver (file)": langgraph_bench("sqlite"),
    "LangGraph SqliteSaver + DeltaChannel (beta)": langgraph_bench("sqlite", delta=True),
}


def median_ms(turn: Callable[[], int], turns: int) -> float:
    for _ in range(3):
        assert turn() == RECENT
    times = []
    for _ in range(turns):
        start = time.perf_counter()
        read = turn()
        times.append(time.perf_counter() - start)
        assert read == RECENT
    return statistics.median(times) * 1000


@contextmanager
def scratch() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="statemw-peers-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def worker(name: str, sizes: list[int], budget: float) -> None:
    """Measure one product at each size, one JSON line per size, skipping what cannot fit."""
    setup = PRODUCTS[name]
    began = time.monotonic()
    points: list[tuple[int, float, float]] = []
    for index, n in enumerate(sizes):
        with scratch() as tmp:
            start = time.monotonic()
            bench = setup(max(n, RECENT), tmp)
            fill_s = time.monotonic() - start
            turns = turns_for(n)
            try:
                ms = median_ms(bench.turn, turns)
            finally:
                bench.close()
        print(json.dumps({"size": n, "ms": ms, "turns": turns, "fill_s": fill_s}), flush=True)
        points.append((n, ms, fill_s))
        rest = sizes[index + 1 :]
        if not rest or len(points) < 2:
            continue  # too little to extrapolate from; the parent's hard timeout still applies
        # Per-turn ms as a line through the last two sizes, fill time as linear in n.
        (n0, ms0, _), (n1, ms1, fill1) = points[-2], points[-1]
        nxt = rest[0]
        slope = max(0.0, (ms1 - ms0) / (n1 - n0))
        guess = (ms1 + slope * (nxt - n1)) / 1000 * (turns_for(nxt) + 3) + fill1 * nxt / n1
        left = budget - (time.monotonic() - began)
        if guess > left:
            reason = f"estimated {guess:.0f} s > {max(left, 0):.0f} s left of the product's budget"
            for m in rest:
                print(json.dumps({"size": m, "skipped": reason}), flush=True)
            return


def run_product(name: str, sizes: list[int], budget: float) -> list[dict[str, Any]]:
    cmd = [sys.executable, __file__, "--worker", name, "--sizes", ",".join(map(str, sizes))]
    cmd += ["--budget", str(budget)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=budget + 30)
        out, err, failed = done.stdout, done.stderr, done.returncode != 0
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err, failed = f"killed after {budget + 30:.0f} s", True
    rows: list[dict[str, Any]] = [json.loads(line) for line in out.splitlines() if line]
    seen = {row["size"] for row in rows}
    for n in sizes:
        if n not in seen:
            last = err.strip().splitlines()[-1] if failed and err.strip() else "no result"
            rows.append({"size": n, "skipped": f"failed: {last}"[:160]})
    return rows


def versions() -> str:
    names = ["statemw", "starsessions", "Flask-Session", "cachelib", "openai-agents"]
    names += ["google-adk", "SQLAlchemy", "aiosqlite", "langgraph", "langgraph-checkpoint"]
    names += ["langgraph-checkpoint-sqlite", "redis", "diskcache", "Flask"]
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def cell(row: dict[str, Any]) -> str:
    return f"{row['ms']:.3f}" if "ms" in row else "skipped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,1000,10000,100000")
    parser.add_argument("--only", default="", help="substring filter on product names")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds per product")
    parser.add_argument("--total", type=float, default=540.0, help="seconds for the whole run")
    parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.worker:
        worker(args.worker, sizes, args.budget)
        return

    names = [p for p in PRODUCTS if args.only.lower() in p.lower()]
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {platform.platform()}")
    print(versions())
    began = time.monotonic()
    results: dict[str, list[dict[str, Any]]] = {}
    for index, name in enumerate(names):
        left = args.total - (time.monotonic() - began)
        budget = max(5.0, min(args.budget, left - 10 * (len(names) - index - 1)))
        rows = sorted(run_product(name, sizes, budget), key=lambda r: int(r["size"]))
        results[name] = rows
        print(f"  {name}: " + ", ".join(f"{r['size']:,}={cell(r)}" for r in rows), flush=True)

    print(f"\nmedian ms per turn (load, add 1, read last {RECENT}, persist); turns per size: ")
    print(
        ", ".join(f"{n:,}: {turns_for(n)}" for n in sizes)
        + f"; run took {time.monotonic() - began:.0f} s"
    )
    print()
    print("| product | " + " | ".join(f"{n:,}" for n in sizes) + " | largest / 10 |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    notes = []
    for name, rows in results.items():
        measured = [r for r in rows if "ms" in r]
        ratio = "n/a"
        if len(measured) > 1 and measured[0]["size"] == sizes[0]:
            top = measured[-1]
            ratio = f"{top['ms'] / measured[0]['ms']:.1f} (at {top['size']:,})"
        print(f"| {name} | " + " | ".join(cell(r) for r in rows) + f" | {ratio} |")
        notes += [f"{name} @ {r['size']:,}: {r['skipped']}" for r in rows if "skipped" in r]
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
