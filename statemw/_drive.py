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
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, TypeAlias, TypeVar, cast

R = TypeVar("R")
T = TypeVar("T")
IO = TypeVar("IO")
AIO = TypeVar("AIO")


class Step(Generic[IO, AIO, R]):
    """One I/O request of a flow, answered with an R: by `run` on a blocking `IO` (a backend, a
    client), or by `arun` on its async twin `AIO`."""

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


def drive(flow: Flow[IO, AIO, T], io: IO) -> T:
    """Run a flow with blocking I/O. A step that raises is thrown into the flow, so a flow can
    catch what its I/O raises (a save that finds the session deleted, say)."""
    try:
        step = next(flow)
        while True:
            try:
                answer = step.run(io)
            except Exception as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as done:
        return cast(T, done.value)


async def adrive(flow: Flow[IO, AIO, T], aio: AIO) -> T:
    """Run a flow in an event loop: `drive`, awaiting each step."""
    try:
        step = next(flow)
        while True:
            try:
                answer = await step.arun(aio)
            except Exception as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(answer)
    except StopIteration as done:
        return cast(T, done.value)
