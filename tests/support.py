"""What the tests share: a fake clock, the backends and their URLs, generated conversations, and
the rules every context window keeps (check_rules, check_budget), and a device speaking the
demo's JSON API."""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import strategies as st
from starlette.testclient import TestClient

from examples import flask_app, starlette_app
from statemw import Session, Store
from statemw.messages import MessageRecord, tool_call_ids, tool_result_ids
from statemw.window import group
from tests import postgres_server, redis_server


def event_loop_outlives_its_run(store: Store, session_id: str) -> bool:
    """Load a session in an event loop of its own (asyncio.run, as a job or a test client
    does), and say whether that loop is still alive once it has ended: a store must not keep
    every loop it served (and its client or pool)."""
    seen: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def load() -> None:
        seen.append(weakref.ref(asyncio.get_running_loop()))
        assert await store.aget(session_id) is not None

    asyncio.run(load())
    gc.collect()
    return seen[0]() is not None


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BACKENDS = ["memory", "diskcache", "redis", "postgres"]


def store_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "diskcache":
        return f"diskcache://{tmp_path / 'store'}"
    if kind == "redis":
        return redis_server.isolated_url(tmp_path.name)
    if kind == "postgres":
        return postgres_server.isolated_url()
    raise AssertionError(kind)


def server_stores(kind: str, tmp_path: Path, n: int = 2) -> list[Store]:
    """`n` Stores on one store, as `n` app servers would each open: a Store each on the same
    URL (memory://, which one process alone holds, is one Store shared)."""
    url = store_url(kind, tmp_path)
    return [Store(url)] * n if kind == "memory" else [Store(url) for _ in range(n)]


T = TypeVar("T")


def at_once(*jobs: Callable[[], Awaitable[T]], timeout: float = 60) -> list[T]:
    """Run each job on an event loop of its own, in a thread of its own, all let go together
    (as app servers serving two requests of one session at the same moment); their results in
    order, or the first job's error."""
    start = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def serve(k: int) -> None:
        async def run() -> T:
            start.wait(timeout)
            return await jobs[k]()

        try:
            results[k] = asyncio.run(run())
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(k,)) for k in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a job did not finish in time"
    if errors:
        raise errors[0]
    return results


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Random chats: an optional system prompt, then user/assistant turns, tool-call groups (OpenAI
    tool_calls + tool messages, or Anthropic tool_use + tool_result blocks) and orphaned results."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": "You are a travel agent."})
    for turn in range(draw(st.integers(0, 40))):
        kind = draw(st.sampled_from(["user", "assistant", "tools", "blocks", "orphan"]))
        text = "x" * draw(st.integers(0, 120))
        if kind == "tools":
            calls = [f"c{turn}-{i}" for i in range(draw(st.integers(1, 3)))]
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": c, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        for c in calls
                    ],
                }
            )
            messages.extend({"role": "tool", "tool_call_id": c, "content": text} for c in calls)
        elif kind == "blocks":  # Anthropic style: tool_use blocks, answered in one user turn
            calls = [f"u{turn}-{i}" for i in range(draw(st.integers(1, 3)))]
            messages.append(
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": text}]
                    + [{"type": "tool_use", "id": c, "name": "f", "input": {}} for c in calls],
                }
            )
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": c, "content": text} for c in calls
                    ],
                }
            )
        elif kind == "orphan":
            messages.append({"role": "tool", "tool_call_id": f"gone-{turn}", "content": text})
        else:
            messages.append({"role": kind, "content": f"{turn} {text}"})
    return messages


def recorded_calls(
    backend: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[Any, ...]]:
    """The arguments of each call to `backend.<name>` from now on, blocking or async; the call
    still goes through. An async backend that never waits (memory) has its flows driven on its
    blocking twin (statemw._drive): the twin's calls are recorded too."""
    calls: list[tuple[Any, ...]] = []
    twin = getattr(backend, "blocking_inline", None)
    if twin is not None:
        calls = recorded_calls(twin, name, monkeypatch)
    method: Callable[..., Any] = getattr(backend, name)
    if inspect.iscoroutinefunction(method):

        async def arecorded(*args: Any) -> Any:
            calls.append(args)
            return await method(*args)

        monkeypatch.setattr(backend, name, arecorded)
    else:

        def recorded(*args: Any) -> Any:
            calls.append(args)
            return method(*args)

        monkeypatch.setattr(backend, name, recorded)
    return calls


def stored_session(messages: list[dict[str, Any]], window: int = 7) -> Session:
    store = Store("memory://", window=window)
    session = store.create()
    for message in messages:
        session.add_message(message)
    session.save()
    return store.load(session.id)


# -- the demo, as a device sees it ----------------------------------------------------------------


def json_of(response: Any) -> Any:
    """A response's JSON, from a Starlette (a method) or a Flask (a property) test client."""
    return response.json() if callable(response.json) else response.json


class Browser:
    """One device: a client with its own cookies, speaking the demo's JSON API."""

    def __init__(self, client: Any) -> None:  # a Starlette TestClient or a Flask test client
        self.client = client

    def say(self, text: str) -> dict[str, Any]:
        response = self.client.post("/api/chat", json={"text": text})
        assert response.status_code == 200
        data: dict[str, Any] = json_of(response)
        return data

    def login(self, user: str) -> dict[str, Any]:
        data: dict[str, Any] = json_of(self.client.post("/api/login", json={"user": user}))
        return data

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json_of(self.client.get("/api/state"))
        return data


def starlette_browser(store: Store) -> Browser:
    return Browser(TestClient(starlette_app.create_app(store, "test-secret")))


def flask_browser(store: Store) -> Browser:
    return Browser(flask_app.create_app(store, "test-secret").test_client())


DEMO_BROWSERS: dict[str, Callable[[Store], Browser]] = {
    "starlette": starlette_browser,
    "flask": flask_browser,
}


def check_rules(original: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    # a subsequence of the conversation, in order
    it = iter(original)
    assert all(any(m == o for o in it) for m in sent)
    # the leading system prompt stays
    if original and original[0]["role"] == "system":
        assert sent[0] == original[0]
    # no orphaned tool result, and a call's results travel with it
    calls_sent: set[str] = set()
    for message in sent:
        assert tool_result_ids(message) <= calls_sent
        calls_sent |= tool_call_ids(message)
    for message in sent:
        for call in tool_call_ids(message):
            expected = [o for o in original if call in tool_result_ids(o)]
            assert [m for m in sent if call in tool_result_ids(m)] == expected


def check_budget(session: Session, sent: list[dict[str, Any]], budget: int) -> None:
    """The newest group always goes; beyond it (and system messages) everything fits."""
    newest = newest_group(session)
    if newest:
        assert sent[-len(newest) :] == newest
    records = session.messages.records(0, len(session.messages))
    tokens = [next(r.tokens for r in records if r.message == m) for m in sent]
    if len(sent) > len(newest) + sum(1 for m in sent if m["role"] == "system"):
        assert sum(tokens) <= budget


def newest_group(session: Session) -> list[dict[str, Any]]:
    """The last tool-call group or message that is not a system message."""
    records = [MessageRecord(m, 0, 0.0) for m in session.messages]
    groups = [(start, stop) for start, stop, _, system in group(records) if not system]
    return [dict(r.message) for r in records[slice(*groups[-1])]] if groups else []
