"""The contract between the Store and a backend, in a sync and an async flavour.

A backend stores headers, message logs and vectors as bytes; it applies a save's Delta atomically
(merging with concurrent saves by `records.apply_delta` or its equivalent) and reads a load's
Snapshot in as few round trips as it can. It never decodes values or messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from statemw.changes import AsyncSubscription, Subscription
from statemw.records import Delta, SessionHeader, Snapshot

Progress = Callable[[int, int], None]
"""progress(done, total) for long sweeps (the CLI draws a bar with it)."""


class Backend(Protocol):
    """Blocking backend calls (Flask, WSGI, plain scripts)."""

    def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        """The header, the last `window` messages after any summary, parents' and user's headers."""

    def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        """Encoded messages [start, stop) of the log (clamped to what exists)."""

    def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        """Cached vectors of messages in [start, stop), by position."""

    def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        """The header alone (state, counters), None when absent or expired."""

    def commit(self, delta: Delta) -> SessionHeader:
        """Apply a save atomically; returns the header as committed."""

    def delete(self, session_id: str) -> bool:
        """Remove a session, its sub-sessions and its messages; False when there was none."""

    def rename(self, old_id: str, new_id: str, now: float) -> None:
        """Move a session (and sub-sessions) to a new id, atomically where the backend can."""

    def user_sessions(self, user_id: str, now: float) -> list[str]:
        """Ids of a user's live sessions, oldest first."""

    def forget_user(self, user_id: str) -> int:
        """Remove every session of the user and the user's state; the number of sessions."""

    def session_ids(self) -> Iterator[str]:
        """Every stored top-level session id (live or not yet purged)."""

    def purge(self, now: float, progress: Progress | None = None) -> int:
        """Remove expired sessions and expired state keys; the number of sessions removed.

        `progress(done, total)` is called after each stored record is looked at."""

    def close(self) -> None: ...

    def subscribe(self, session_id: str) -> Subscription:
        """Start listening to a session's commits (see Changes)."""


class AsyncBackend(Protocol):
    """The same calls as awaitables (Starlette, FastAPI, any asyncio code)."""

    async def load(self, session_id: str, window: int, now: float) -> Snapshot | None: ...

    async def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]: ...

    async def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]: ...

    async def read_header(self, session_id: str, now: float) -> SessionHeader | None: ...

    async def commit(self, delta: Delta) -> SessionHeader: ...

    async def delete(self, session_id: str) -> bool: ...

    async def rename(self, old_id: str, new_id: str, now: float) -> None: ...

    async def user_sessions(self, user_id: str, now: float) -> list[str]: ...

    async def forget_user(self, user_id: str) -> int: ...

    def session_ids(self) -> AsyncIterator[str]: ...

    async def purge(self, now: float, progress: Progress | None = None) -> int: ...

    async def close(self) -> None: ...

    async def subscribe(self, session_id: str) -> AsyncSubscription: ...
