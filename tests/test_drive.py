"""The one driver: a flow's steps run by `drive` and `adrive`, shown to a `Watch` on the way."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from statemw._drive import AIO, IO, Flow, R, Step, adrive, ask, drive


class Double(Step[int, int, int]):
    """Answers its number times the I/O's factor; a negative number fails."""

    def __init__(self, n: int) -> None:
        self.n = n

    def run(self, io: int) -> int:
        if self.n < 0:
            raise ValueError(self.n)
        return self.n * io

    async def arun(self, aio: int) -> int:
        return self.run(aio)


def flow() -> Generator[Step[int, int, int], int, int]:
    first = yield from ask(Double(1))
    try:
        yield from ask(Double(-1))
    except ValueError:
        first += 100
    second = yield from ask(Double(2))
    return first + second


class Seen:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def answered(self, step: Step[IO, AIO, R], answer: R) -> None:
        self.events.append(("answered", answer))

    def raised(self, step: Step[IO, AIO, R], error: Exception) -> None:
        self.events.append(("raised", type(error).__name__))


EXPECTED = [("answered", 10), ("raised", "ValueError"), ("answered", 20)]


def test_a_watch_sees_every_step_with_its_answer_or_its_error() -> None:
    seen = Seen()
    steps: Flow[int, int, int] = flow()
    assert drive(steps, 10, seen) == 130
    assert seen.events == EXPECTED


@pytest.mark.anyio
async def test_an_async_watch_sees_the_same() -> None:
    seen = Seen()
    assert await adrive(flow(), 10, seen) == 130
    assert seen.events == EXPECTED


def test_a_flow_runs_the_same_without_a_watch() -> None:
    assert drive(flow(), 10) == 130


@pytest.mark.anyio
async def test_an_async_io_that_never_waits_has_its_blocking_twin_run_the_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def awaited(self: Double, aio: int) -> int:
        raise AssertionError("a step was awaited")

    class Inline:
        blocking_inline = 10

    monkeypatch.setattr(Double, "arun", awaited)
    twin: Any = Inline()
    seen = Seen()
    assert await adrive(flow(), twin, seen) == 130
    assert seen.events == EXPECTED
