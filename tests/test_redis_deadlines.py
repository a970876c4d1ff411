"""An async Redis operation's deadline (statemw.backends.redis.deadlines): a server that never
answers fails the operation as StoreUnavailable, and a cancellation from elsewhere stays one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from statemw import Store
from statemw.backends.redis.deadlines import Deadline, Deadlines
from statemw.errors import StoreUnavailable


class FakeTimer:
    def __init__(self, when: float, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The clock and timers Deadlines uses, moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], object]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t.when <= self.now and not t.cancelled]
        self.timers = [t for t in self.timers if t not in due]
        for timer in due:
            timer.callback()


async def operation(deadlines: Deadlines, began: list[Deadline]) -> None:
    """An operation that never ends by itself."""
    began.append(deadlines.begin())
    await asyncio.Event().wait()


async def started(deadlines: Deadlines) -> tuple[asyncio.Task[None], Deadline]:
    began: list[Deadline] = []
    task = asyncio.create_task(operation(deadlines, began))
    await asyncio.sleep(0)  # let it begin
    return task, began[0]


async def ended(task: asyncio.Task[None], deadline: Deadline) -> bool:
    """What the operation's end says: was it its deadline that cancelled it?"""
    with pytest.raises(asyncio.CancelledError):
        await task
    return deadline.done()


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop()


@pytest.fixture
def deadlines(loop: FakeLoop) -> Deadlines:
    return Deadlines(loop, 1.0)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_operation_past_its_deadline_is_cancelled_as_timed_out(
    loop: FakeLoop, deadlines: Deadlines
) -> None:
    task, deadline = await started(deadlines)
    loop.advance(0.75)
    assert task.cancelling() == 0
    loop.advance(0.5)
    assert task.cancelling() == 1
    assert await ended(task, deadline) is True


@pytest.mark.anyio
async def test_an_operation_cancelled_from_elsewhere_is_no_timeout(deadlines: Deadlines) -> None:
    task, deadline = await started(deadlines)
    task.cancel()
    assert await ended(task, deadline) is False


@pytest.mark.anyio
async def test_a_deadline_and_a_cancellation_from_elsewhere_stay_a_cancellation(
    loop: FakeLoop, deadlines: Deadlines
) -> None:
    task, deadline = await started(deadlines)
    task.cancel()
    loop.advance(1.25)
    assert await ended(task, deadline) is False


@pytest.mark.anyio
async def test_the_timer_stops_once_no_operation_comes(
    loop: FakeLoop, deadlines: Deadlines
) -> None:
    task, deadline = await started(deadlines)
    task.cancel()
    await ended(task, deadline)
    loop.advance(0.25)  # an operation ran since the last look: one more look
    assert len(loop.timers) == 1
    loop.advance(0.25)  # nothing since: the timer stops
    assert loop.timers == []
    task, _ = await started(deadlines)  # and starts again with the next operation
    assert len(loop.timers) == 1
    task.cancel()


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()
        await reader.read()  # until the client goes

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0", accepted
    finally:
        for writer in writers:
            writer.close()
        server.close()


@pytest.mark.anyio
async def test_a_redis_that_never_answers_is_store_unavailable_after_the_socket_timeout() -> None:
    async with silent_server() as (url, _):
        store = Store(url, socket_timeout=0.2, socket_connect_timeout=1)
        started_at = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"TimeoutError: no reply within 0\.2 s"):
            async with asyncio.timeout(5):  # (a broken deadline fails here, not hangs)
                await store.aget("a" * 24)
        assert time.monotonic() - started_at < 2  # 0.2 s, at most a quarter late, and slack
        await store.aclose()


@pytest.mark.anyio
async def test_cancelling_a_request_waiting_on_redis_cancels_it() -> None:
    async with silent_server() as (url, accepted):
        store = Store(url, socket_timeout=30, socket_connect_timeout=1)
        waiting = asyncio.create_task(store.aget("a" * 24))
        await accepted.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await store.aclose()
