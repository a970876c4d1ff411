"""Per-turn cost of each framework adapter at 10 and 10,000 items, beside the framework's store.

One turn, through each framework's own session interface as its runner drives it:

    OpenAI Agents SDK  add_items([user message]) + get_items(limit=20)         (SessionSettings)
    LangChain          add_messages([HumanMessage]) + messages                  (the whole history;
                       statemw also with last=20, its window)
    Google ADK         get_session(num_recent_events=20) + append_event(user event)

Each session is pre-filled to N items (realistic shapes: a user turn, a tool call with its result,
an answer), a new adapter object is made per turn (as a stateless server does per request), and
the median of the turns is reported. statemw runs on its embedded diskcache store; the peers on
their own default persistent stores (SQLiteSession on a file, DatabaseSessionService on SQLite)
and in memory.

Peers that are not statemw dependencies (SQLAlchemy for ADK's DatabaseSessionService,
langchain-community for SQLChatMessageHistory) live in a bench-only venv:

    python3.11 -m venv /tmp/peers-int
    /tmp/peers-int/bin/pip install 'sqlalchemy>=2' aiosqlite greenlet langchain-community
    /tmp/peers-int/bin/pip install -e '.[integrations]'
    /tmp/peers-int/bin/python bench/integrations.py [--sizes 10,10000] [--only adk]

A peer whose package is missing is reported as such, not skipped silently.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

RECENT = 20


def turns_for(n: int) -> int:
    return 60 if n <= 100 else 20


@dataclass
class Bench:
    """A pre-filled session: turn() runs one turn and returns how many items it read."""

    turn: Callable[[], Awaitable[int]]
    close: Callable[[], None]


# -- items of each framework ------------------------------------------------------------------


def openai_items(n: int) -> list[Any]:
    """n Responses-API items in turns of four: user, function_call, output, assistant."""
    items: list[Any] = []
    k = 0
    while len(items) < n:
        items += [
            {"role": "user", "content": f"question {k} " + "x" * 40},
            {
                "type": "function_call",
                "call_id": f"c{k}",
                "name": "lookup",
                "arguments": '{"q": 1}',
            },
            {"type": "function_call_output", "call_id": f"c{k}", "output": "result " + "y" * 40},
            {"role": "assistant", "content": f"answer {k} " + "z" * 40},
        ]
        k += 1
    return items[:n]


def langchain_messages(n: int) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    out: list[Any] = []
    k = 0
    while len(out) < n:
        call = {"name": "lookup", "args": {"q": k}, "id": f"c{k}"}
        out += [
            HumanMessage(f"question {k} " + "x" * 40, id=f"h{k}"),
            AIMessage("", id=f"a{k}", tool_calls=[call]),
            ToolMessage("result " + "y" * 40, tool_call_id=f"c{k}", id=f"t{k}"),
            AIMessage(f"answer {k} " + "z" * 40, id=f"b{k}"),
        ]
        k += 1
    return out[:n]


def adk_events(n: int) -> list[Any]:
    from google.adk.events.event import Event
    from google.genai import types

    base = time.time() - n - 10
    out: list[Any] = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            part = types.Part(text=f"question {i} " + "x" * 40)
        elif kind == 1:
            part = types.Part(function_call=types.FunctionCall(id=f"c{i}", name="f", args={"q": 1}))
        elif kind == 2:
            response = types.FunctionResponse(id=f"c{i - 1}", name="f", response={"r": "y" * 40})
            part = types.Part(function_response=response)
        else:
            part = types.Part(text=f"answer {i} " + "z" * 40)
        role = "user" if kind in (0, 2) else "model"
        author = "user" if kind == 0 else "agent"
        content = types.Content(role=role, parts=[part])
        out.append(Event(author=author, invocation_id="bench", content=content, timestamp=base + i))
    return out


def user_event() -> Any:
    from google.adk.events.event import Event
    from google.genai import types

    content = types.Content(role="user", parts=[types.Part(text="and one more thing")])
    return Event(author="user", invocation_id="bench", content=content)


# -- OpenAI Agents SDK ----------------------------------------------------------------------------


def agents_statemw(n: int, tmp: str) -> Bench:
    from statemw import Store
    from statemw.integrations.openai_agents import StatemwSession

    store = Store(f"diskcache://{tmp}/statemw")
    items = openai_items(n)
    for start in range(0, n, 1000):
        asyncio.run(StatemwSession("bench", store=store).add_items(items[start : start + 1000]))

    async def turn() -> int:
        session = StatemwSession("bench", store=store)
        await session.add_items([{"role": "user", "content": "and one more thing"}])
        return len(await session.get_items(limit=RECENT))

    return Bench(turn, store.close)


def agents_sqlite(n: int, tmp: str) -> Bench:
    from agents import SQLiteSession

    path = f"{tmp}/agents.db"
    first = SQLiteSession("bench", path)
    asyncio.run(first.add_items(openai_items(n)))
    first.close()

    async def turn() -> int:
        session = SQLiteSession("bench", path)
        try:
            await session.add_items([{"role": "user", "content": "and one more thing"}])
            return len(await session.get_items(limit=RECENT))
        finally:
            session.close()

    return Bench(turn, lambda: None)


# -- LangChain ------------------------------------------------------------------------------------


def langchain_statemw(last: int | None) -> Callable[[int, str], Bench]:
    def setup(n: int, tmp: str) -> Bench:
        from langchain_core.messages import HumanMessage

        from statemw import Store
        from statemw.integrations.langchain import StatemwChatMessageHistory

        store = Store(f"diskcache://{tmp}/statemw")
        messages = langchain_messages(n)
        for start in range(0, n, 1000):
            StatemwChatMessageHistory("bench", store=store).add_messages(
                messages[start : start + 1000]
            )

        async def turn() -> int:
            history = StatemwChatMessageHistory("bench", store=store, last=last)
            await history.aadd_messages([HumanMessage("and one more thing")])
            return len(await history.aget_messages())

        return Bench(turn, store.close)

    return setup


def langchain_memory(n: int, tmp: str) -> Bench:
    from langchain_core.chat_history import InMemoryChatMessageHistory
    from langchain_core.messages import HumanMessage

    with warnings.catch_warnings():  # deprecated in langchain-core 1.6.4, still the default
        warnings.simplefilter("ignore")
        history = InMemoryChatMessageHistory()
    history.add_messages(langchain_messages(n))

    async def turn() -> int:
        await history.aadd_messages([HumanMessage("and one more thing")])
        return len(await history.aget_messages())

    return Bench(turn, lambda: None)


def langchain_sql(n: int, tmp: str) -> Bench:
    from langchain_community.chat_message_histories import SQLChatMessageHistory
    from langchain_core.messages import HumanMessage

    url = f"sqlite:///{tmp}/lc.db"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SQLChatMessageHistory("bench", connection=url).add_messages(langchain_messages(n))

    async def turn() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            history = SQLChatMessageHistory("bench", connection=url)
            history.add_messages([HumanMessage("and one more thing")])
            return len(history.messages)

    return Bench(turn, lambda: None)


# -- Google ADK -----------------------------------------------------------------------------------

APP, USER, SID = "bench", "u", "s1"


def adk_bench(make: Callable[[str], Any], prefill: Callable[[Any, Any, list[Any]], Any]) -> Any:
    def setup(n: int, tmp: str) -> Bench:
        from google.adk.sessions.base_session_service import GetSessionConfig

        service = make(tmp)
        loop = asyncio.new_event_loop()
        session = loop.run_until_complete(
            service.create_session(app_name=APP, user_id=USER, session_id=SID)
        )
        loop.run_until_complete(prefill(service, session, adk_events(n)))
        config = GetSessionConfig(num_recent_events=RECENT)

        async def turn() -> int:
            s = await service.get_session(app_name=APP, user_id=USER, session_id=SID, config=config)
            await service.append_event(s, user_event())
            return len(s.events)

        def close() -> None:
            closer = getattr(service, "close", None)
            if closer is not None:
                loop.run_until_complete(closer())
            loop.close()

        bench = Bench(turn, close)
        bench.loop = loop  # type: ignore[attr-defined]
        return bench

    return setup


async def append_all(service: Any, session: Any, events: list[Any]) -> None:
    for event in events:
        await service.append_event(session, event)


async def statemw_prefill(service: Any, session: Any, events: list[Any]) -> None:
    """statemw's bulk path: whole pages of events in one save (what append_event stores)."""
    from statemw.integrations.adk import to_message

    for start in range(0, len(events), 1000):
        stored = await service.store.aload(session.id)
        for event in events[start : start + 1000]:
            stored.add_message(to_message(event))
        await stored.asave()


async def database_prefill(service: Any, session: Any, events: list[Any]) -> None:
    """ADK's DatabaseSessionService has no bulk append: one append_event per event (10k: ~min)."""
    await append_all(service, session, events)


def adk_statemw(tmp: str) -> Any:
    from statemw import Store
    from statemw.integrations.adk import StatemwSessionService

    return StatemwSessionService(store=Store(f"diskcache://{tmp}/statemw"))


def adk_database(tmp: str) -> Any:
    from google.adk.sessions import DatabaseSessionService

    return DatabaseSessionService(db_url=f"sqlite+aiosqlite:///{tmp}/adk.db")


def adk_memory(tmp: str) -> Any:
    from google.adk.sessions import InMemorySessionService

    return InMemorySessionService()


# -- running --------------------------------------------------------------------------------------

PRODUCTS: dict[str, list[tuple[str, Callable[[int, str], Bench]]]] = {
    "openai-agents": [
        ("statemw StatemwSession (diskcache)", agents_statemw),
        ("SQLiteSession (file)", agents_sqlite),
    ],
    "langchain": [
        ("statemw history, whole (diskcache)", langchain_statemw(None)),
        ("statemw history, last=20 (diskcache)", langchain_statemw(RECENT)),
        ("InMemoryChatMessageHistory", langchain_memory),
        ("SQLChatMessageHistory (SQLite file)", langchain_sql),
    ],
    "adk": [
        ("statemw StatemwSessionService (diskcache)", adk_bench(adk_statemw, statemw_prefill)),
        ("DatabaseSessionService (SQLite)", adk_bench(adk_database, database_prefill)),
        ("InMemorySessionService", adk_bench(adk_memory, append_all)),
    ],
}


def measure(setup: Callable[[int, str], Bench], n: int) -> tuple[float, int]:
    """Median seconds per turn, and the items the last turn read."""
    with tempfile.TemporaryDirectory() as tmp:
        bench = setup(n, tmp)
        loop: asyncio.AbstractEventLoop = getattr(bench, "loop", None) or asyncio.new_event_loop()
        try:
            times = []
            read = 0
            for _ in range(turns_for(n)):
                start = time.perf_counter()
                read = loop.run_until_complete(bench.turn())
                times.append(time.perf_counter() - start)
            return statistics.median(times), read
        finally:
            bench.close()
            if not hasattr(bench, "loop"):
                loop.close()


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,10000")
    parser.add_argument("--only", choices=sorted(PRODUCTS), action="append")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"# Python {platform.python_version()}, {platform.machine()}")
    for package in ("openai-agents", "langchain-core", "langchain-community", "google-adk"):
        print(f"# {package} {version(package)}")
    for framework in args.only or list(PRODUCTS):
        print(f"\n## {framework}: median ms per turn (items read by the turn)")
        growth = f"{sizes[-1]:,} / {sizes[0]:,}"
        print("| store | " + " | ".join(f"{n:,} items" for n in sizes) + f" | {growth} |")
        print("|---|" + "---|" * (len(sizes) + 1))
        for name, setup in PRODUCTS[framework]:
            cells, medians = [], []
            for n in sizes:
                try:
                    seconds, read = measure(setup, n)
                except ImportError as exc:
                    cells.append(f"not installed ({exc.name or exc})")
                    continue
                medians.append(seconds)
                cells.append(f"{seconds * 1000:.2f} ({read})")
            ratio = f"{medians[-1] / medians[0]:.1f}x" if len(medians) == len(sizes) > 1 else "-"
            print(f"| {name} | " + " | ".join(cells) + f" | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
