"""Live changes on memory and diskcache: the local equivalent of Redis pub/sub.

Commits through the same backend object wake listeners at once; with a poll interval a listener
also re-reads the header, which catches commits by other processes sharing a diskcache directory.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress

from statemw.changes import Change
from statemw.records import SessionHeader

MAX_PENDING_CHANGES = 1000
"""A subscriber that stops reading keeps only this many changes (the oldest are dropped)."""


def _changed_keys(old: SessionHeader | None, new: SessionHeader, now: float) -> tuple[str, ...]:
    """State keys whose value differs between two headers (what a poller can tell)."""
    before = {} if old is None else old.live_state(now)
    after = new.live_state(now)
    return tuple(
        sorted(
            k
            for k in set(before) | set(after)
            if k not in before
            or k not in after
            or (before[k].value, before[k].updated_at) != (after[k].value, after[k].updated_at)
        )
    )


class LocalSubscription:
    """Listens to one session of a KVBackend without busy-waiting.

    Commits made through the same backend object wake it at once (a condition variable, and for
    asyncio listeners an Event set thread-safely). With `poll_interval` it also re-reads the
    header that often, which catches commits by other processes (the diskcache backend).
    """

    def __init__(
        self,
        session_id: str,
        read_header: Callable[[str], SessionHeader | None],
        on_close: Callable[[LocalSubscription], None],
        poll_interval: float | None,
    ) -> None:
        self._read_header = read_header
        self._on_close = on_close
        self.session_id = session_id
        self._poll_interval = poll_interval
        self._cond = threading.Condition()
        self._queue: deque[Change] = deque(maxlen=MAX_PENDING_CHANGES)
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._closed = False
        self._last = read_header(session_id)

    @staticmethod
    def _same(a: SessionHeader | None, b: SessionHeader | None) -> bool:
        if a is None or b is None:
            return a is b
        return (a.created_at, a.revision) == (b.created_at, b.revision)

    def _wake(self) -> None:
        self._cond.notify_all()
        for loop, event in list(self._waiters):
            with suppress(RuntimeError):  # that loop has closed: its listener is gone
                loop.call_soon_threadsafe(event.set)

    def push(self, change: Change, header: SessionHeader | None) -> None:
        """A commit (or delete) through this backend; header is the one it committed."""
        with self._cond:
            if self._same(self._last, header) and not change.deleted:
                return
            self._last = header
            self._queue.append(change)
            self._wake()

    def _poll(self) -> None:
        header = self._read_header(self.session_id)
        now = time.time()
        with self._cond:
            if self._same(self._last, header):
                return
            if header is None:
                change = Change(self.session_id, 0, 0, deleted=True)
            else:
                change = Change(
                    self.session_id,
                    header.revision,
                    header.message_count,
                    _changed_keys(self._last, header, now),
                )
            self._last = header
            self._queue.append(change)
            self._wake()

    def _wait_step(self, deadline: float | None) -> float | None:
        """Seconds to wait before the next look: until the deadline or the next poll."""
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        if self._poll_interval is None:
            return remaining
        return self._poll_interval if remaining is None else min(self._poll_interval, remaining)

    def get(self, wait: float | None) -> Change | None:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            with self._cond:
                if self._queue:
                    return self._queue.popleft()
                if self._closed or (deadline is not None and time.monotonic() >= deadline):
                    return None
                self._cond.wait(self._wait_step(deadline))
            if self._poll_interval is not None:
                self._poll()

    async def aget(self, wait: float | None) -> Change | None:
        deadline = None if wait is None else time.monotonic() + wait
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        self._waiters.add(waiter)
        try:
            while True:
                waiter[1].clear()
                with self._cond:
                    if self._queue:
                        return self._queue.popleft()
                    if self._closed or (deadline is not None and time.monotonic() >= deadline):
                        return None
                with suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), self._wait_step(deadline))
                if self._poll_interval is not None:
                    await asyncio.to_thread(self._poll)
        finally:
            self._waiters.discard(waiter)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._wake()
        self._on_close(self)
