"""Deadlines for the async backend's operations: one timer per event loop, not one per operation.

`asyncio.timeout` puts a timer in the loop's heap for each use and takes it out again, about 10
µs a use on a small VM, and a web turn makes two operations. Here an operation notes when it is
due in a set, and one timer, which runs while operations come and go, cancels those past their
deadline, at most a quarter of the limit late. The cancellation then surfaces as TimeoutError,
as it does from `asyncio.timeout`, and a cancellation that came from elsewhere stays one.
"""

from __future__ import annotations

import asyncio
from typing import Any

CHECKS_PER_LIMIT = 4
"""How often per limit the timer looks: an operation fails at most a quarter of it late."""


class Deadline:
    """One operation's deadline, from `Deadlines.begin` to `done`."""

    __slots__ = ("cancelling", "fired", "owner", "task", "when")

    def __init__(self, owner: Deadlines, task: asyncio.Task[Any], when: float) -> None:
        self.owner = owner
        self.task = task
        self.when = when
        self.cancelling = task.cancelling()  # cancellations asked for before this one began
        self.fired = False

    def done(self) -> bool:
        """The operation ended; True when it was cancelled by this deadline alone (so the
        CancelledError it raised means a timeout, not a cancellation from elsewhere)."""
        self.owner.pending.discard(self)
        return self.fired and self.task.uncancel() <= self.cancelling


class Deadlines:
    """The deadlines of one event loop's operations, `seconds` each."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds
        self.pending: set[Deadline] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False  # an operation began since the timer last looked

    def begin(self) -> Deadline:
        """The running task's operation starts now."""
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("an operation with a deadline must run in a task")
        deadline = Deadline(self, task, self.loop.time() + self.seconds)
        self.pending.add(deadline)
        self._busy = True
        if self._timer is None:
            self._timer = self.loop.call_later(self.seconds / CHECKS_PER_LIMIT, self._check)
        return deadline

    def _check(self) -> None:
        now = self.loop.time()
        for deadline in self.pending:
            if not deadline.fired and deadline.when <= now:
                deadline.fired = True
                deadline.task.cancel()
        if self.pending or self._busy:  # still in use: look again; else stop until next time
            self._busy = False
            self._timer = self.loop.call_later(self.seconds / CHECKS_PER_LIMIT, self._check)
        else:
            self._timer = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
