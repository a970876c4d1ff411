"""One driver for every flow: generators that yield I/O steps and are sent back the answers.

statemw writes each operation once, as a generator (a *flow*) that yields the I/O it needs as
`Step` objects: a store load, a backend commit, a Redis script. `drive` carries out the steps
with blocking calls, `adrive` with awaitables; so sync and async code share every decision and
differ only in the driver (as httpx's auth flows and psycopg's generators do).

    def load_flow(sid: str) -> Flow[Backend, AsyncBackend, Session | None]:
        snapshot = yield from ask(Load(sid, window, now))     # typed: Snapshot | None
        ...
    drive(load_flow(sid), backend)          # blocking
    await adrive(load_flow(sid), abackend)  # in an event loop

A `Watch` given to either driver is shown every step it runs, with the answer or what the step
raised: telemetry counts round trips and bytes that way, with no driver loop of its own.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, cast

R = TypeVar("R")
T = TypeVar("T")
IO = TypeVar("IO")
AIO = TypeVar("AIO")


class Step(Generic[IO, AIO, R]):
    """One I/O request of a flow, answered with an R: by `run` on a blocking `IO` (a backend, a
    client), or by `arun` on its async twin `AIO`. Steps are made per call, so they are slotted
    dataclasses and not frozen ones (whose __init__ costs three times as much)."""

    __slots__ = ()

    def run(self, io: IO) -> R:
        raise NotImplementedError

    async def arun(self, aio: AIO) -> R:
        raise NotImplementedError


Flow: TypeAlias = Generator[Step[IO, AIO, Any], Any, T]
"""An operation written once: yields steps, returns a T."""


def ask(step: Step[IO, AIO, R]) -> Generator[Step[IO, AIO, R], R, R]:
    """Yield one step from a flow and get its answer, typed: `x = yield from ask(step)`."""
    answer = yield step
    return answer


class Watch(Protocol):
    """What a driver shows each step it runs, after running it (telemetry's tally)."""

    def answered(self, step: Step[IO, AIO, R], answer: R) -> None: ...

    def raised(self, step: Step[IO, AIO, R], error: Exception) -> None: ...


def drive(flow: Flow[IO, AIO, T], io: IO, watch: Watch | None = None) -> T:
    """Run a flow with blocking I/O. A step that raises is thrown into the flow, so a flow can
    catch what its I/O raises (a save that finds the session deleted, say). A `watch`, if
    given, is shown each step with its answer or its error."""
    try:
        step = next(flow)
        while True:
            try:
                answer = step.run(io)
            except Exception as exc:
                if watch is not None:
                    watch.raised(step, exc)
                step = flow.throw(exc)
            else:
                if watch is not None:
                    watch.answered(step, answer)
                step = flow.send(answer)
    except StopIteration as done:
        return cast(T, done.value)


async def adrive(flow: Flow[IO, AIO, T], aio: AIO, watch: Watch | None = None) -> T:
    """Run a flow in an event loop: `drive`, awaiting each step. An `aio` whose calls never wait
    names its blocking twin as `blocking_inline`, and the flow is driven on that directly (the
    same calls, without a coroutine per step)."""
    blocking = getattr(aio, "blocking_inline", None)
    if blocking is not None:
        return drive(flow, blocking, watch)
    try:
        step = next(flow)
        while True:
            try:
                answer = await step.arun(aio)
            except Exception as exc:
                if watch is not None:
                    watch.raised(step, exc)
                step = flow.throw(exc)
            else:
                if watch is not None:
                    watch.answered(step, answer)
                step = flow.send(answer)
    except StopIteration as done:
        return cast(T, done.value)
