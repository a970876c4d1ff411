"""postgresql:// postgres:// — durable sessions in PostgreSQL, through psycopg 3.

Two thin shells drive the I/O-free operations of postgres_ops.py: one on a psycopg_pool
ConnectionPool (one per process), one on an AsyncConnectionPool (one per event loop, closed when
that loop shuts down). Connections run in autocommit, so each statement is its own transaction:
a save is one call of the schema's commit function, a load one SELECT. Faults: any connection
failure is StoreUnavailable naming host, port and database (never the password).

One module, past 400 lines, because it is one idea: the two shells and the pools they share;
the SQL is in postgres_sql.py, the operations in postgres_ops.py.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from statemw import _report
from statemw._drive import adrive, drive
from statemw.backends import postgres_ops as ops
from statemw.backends.base import Progress
from statemw.backends.per_loop import PerLoop
from statemw.backends.threaded import ThreadedSubscription, on_asyncio, to_thread
from statemw.changes import AsyncSubscription, Change
from statemw.errors import ConfigurationError, InvalidValue, StoreUnavailable
from statemw.records import Committed, Delta, SessionHeader, Snapshot

Row = tuple[Any, ...]


# -- faults ----------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _translate(
    settings: ops.Settings, exc: psycopg.Error, cause: BaseException | None
) -> Exception:
    """The statemw error for a psycopg one; `cause` is what a direct connect said after a
    pool timeout (the pool itself only says that it waited)."""
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return ConfigurationError(f"postgres at {settings.target}: {_first_line(exc)}")
    if isinstance(exc, psycopg.DataError):  # e.g. a NUL character in a key: text refuses it
        return InvalidValue(f"PostgreSQL refused a value: {_first_line(exc)}")
    reason = _first_line(cause if cause is not None else exc)
    return StoreUnavailable(f"postgres at {settings.target}: {reason}")


def _why_no_connection(settings: ops.Settings) -> BaseException | None:
    """After a pool timeout: the error a fresh connection attempt gives, None if it works."""
    try:
        psycopg.Connection.connect(settings.conninfo, **settings.connect_kwargs).close()
    except psycopg.Error as exc:
        return exc
    return None


async def _awhy_no_connection(settings: ops.Settings) -> BaseException | None:
    try:
        conn = await psycopg.AsyncConnection.connect(settings.conninfo, **settings.connect_kwargs)
    except psycopg.Error as exc:
        return exc
    await conn.close()
    return None


def _failed(error: Exception, health: _report.Health | None) -> Exception:
    if health is not None and isinstance(error, StoreUnavailable):
        health.failed(error)
    return error


@contextmanager
def faults(settings: ops.Settings, health: _report.Health | None = None) -> Iterator[None]:
    """psycopg errors as statemw's; `health` hears of each outage (logged once)."""
    try:
        yield
    except psycopg.Error as exc:
        cause = _why_no_connection(settings) if isinstance(exc, PoolTimeout) else None
        raise _failed(_translate(settings, exc, cause), health) from exc
    if health is not None and health.down:
        health.recovered()


@asynccontextmanager
async def afaults(
    settings: ops.Settings, health: _report.Health | None = None
) -> AsyncIterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        cause = await _awhy_no_connection(settings) if isinstance(exc, PoolTimeout) else None
        raise _failed(_translate(settings, exc, cause), health) from exc
    if health is not None and health.down:
        health.recovered()


def _close_elsewhere(pool: ConnectionPool[Any]) -> None:
    threading.Thread(target=pool.close, name="statemw pool close", daemon=True).start()


T = TypeVar("T")


class _Connection:
    """A pooled connection that runs the queries an operation yields (ops.Connection)."""

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        self.conn = conn

    def query(self, query: ops.Query) -> ops.Rows:
        _report.round_trip()
        cursor = self.conn.execute(query.sql, query.params, binary=query.params is not None)
        return cursor.fetchall() if cursor.description is not None else []


class _AsyncConnection:
    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self.conn = conn

    async def query(self, query: ops.Query) -> ops.Rows:
        _report.round_trip()
        cursor = await self.conn.execute(query.sql, query.params, binary=query.params is not None)
        return await cursor.fetchall() if cursor.description is not None else []


class _Schema:
    """Whether this process has checked (or made) the schema: shared by both shells."""

    def __init__(self) -> None:
        self.ready = False
        self.lock = threading.Lock()


# -- the blocking backend --------------------------------------------------------------------------


class PostgresBackend:
    """The blocking backend: operations run on a connection of this process's pool."""

    def __init__(self, settings: ops.Settings, schema: _Schema) -> None:
        self.settings = settings
        self.sql = settings.sql
        self._schema = schema
        self.health = _report.health(f"postgres at {settings.target}")
        self._pool_: ConnectionPool[psycopg.Connection[Row]] | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def pool(self) -> ConnectionPool[psycopg.Connection[Row]]:
        """This process's pool, opened on first use (a forked child opens its own)."""
        with self._lock:
            if self._pool_ is None or self._pid != os.getpid():
                s = self.settings
                self._pool_ = ConnectionPool(
                    s.conninfo,
                    kwargs=s.connect_kwargs,
                    min_size=s.pool_min_size,
                    max_size=max(s.pool_max_size, s.pool_min_size),
                    timeout=s.pool_timeout,
                    open=False,
                    name=f"statemw {s.target}",
                )
                self._pool_.open(wait=False)
                self._pid = os.getpid()
                # A Store nobody closed: close its pool when the backend is collected, from a
                # thread of our own (the pool's __del__ may run in its own worker, which then
                # cannot join itself).
                self._finalizer = weakref.finalize(self, _close_elsewhere, self._pool_)
                self._finalizer.atexit = False
            return self._pool_

    def _drive(self, op: ops.Op[T]) -> T:
        with faults(self.settings, self.health), self.pool().connection() as conn:
            return drive(op, _Connection(conn))

    def _ready(self) -> None:
        """The schema exists at our version (checked once per process, made if missing)."""
        if not self._schema.ready:
            with self._schema.lock:
                if not self._schema.ready:
                    self._drive(
                        ops.ensure_schema_op(
                            self.sql, create=self.settings.create, where=self.settings.target
                        )
                    )
                    self._schema.ready = True

    def _run(self, op: ops.Op[T]) -> T:
        self._ready()
        return self._drive(op)

    def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        return self._run(ops.load_op(self.sql, session_id, window, now))

    def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        return self._run(ops.read_messages_op(self.sql, session_id, start, stop))

    def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        return self._run(ops.read_vectors_op(self.sql, session_id, start, stop))

    def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        return self._run(ops.read_vectors_at_op(self.sql, session_id, positions))

    def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        return self._run(ops.read_header_op(self.sql, session_id, now))

    def commit(self, delta: Delta) -> Committed:
        return self._run(ops.commit_op(self.sql, delta, self.settings.notify))

    def delete(self, session_id: str) -> bool:
        return self._run(ops.delete_op(self.sql, session_id, self.settings.notify))

    def rename(self, old_id: str, new_id: str, now: float) -> None:
        self._run(ops.rename_op(self.sql, old_id, new_id, now))

    def user_sessions(self, user_id: str, now: float) -> list[str]:
        return self._run(ops.user_sessions_op(self.sql, user_id, now))

    def forget_user(self, user_id: str) -> int:
        return self._run(ops.forget_user_op(self.sql, user_id, self.settings.notify))

    def session_ids(self) -> Iterator[str]:
        after = ""
        while page := self._run(ops.session_ids_op(self.sql, after)):
            yield from page
            after = page[-1]

    def purge(self, now: float, progress: Progress | None = None) -> int:
        return self._run(ops.purge_op(self.sql, now, progress))

    def close(self) -> None:
        with self._lock:
            pool, self._pool_ = self._pool_, None
            if self._finalizer is not None:
                self._finalizer.detach()
        if pool is not None and self._pid == os.getpid():
            pool.close()

    def subscribe(self, session_id: str) -> PostgresSubscription:
        if not self.settings.notify:
            raise ConfigurationError("this store was opened with notify=False: no subscribe")
        self._ready()  # LISTEN calls the schema's listen()
        return PostgresSubscription(self.settings, session_id)


class PostgresSubscription:
    """LISTEN on a connection of its own; the commit function NOTIFYs as it commits."""

    def __init__(self, settings: ops.Settings, session_id: str) -> None:
        self.session_id = session_id
        self._settings = settings
        self._pending: deque[Change] = deque()
        with faults(settings):
            self._conn = psycopg.Connection.connect(settings.conninfo, **settings.connect_kwargs)
            try:
                query = ops.listen_query(settings.sql, session_id)
                self._conn.execute(query.sql, query.params)
            except BaseException:
                self._conn.close()
                raise

    def get(self, wait: float | None) -> Change | None:
        if not self._pending:
            with faults(self._settings):
                for note in self._conn.notifies(timeout=wait, stop_after=1):
                    self._pending.append(ops.parse_change(self.session_id, note.payload))
        return self._pending.popleft() if self._pending else None

    def close(self) -> None:
        self._conn.close()


# -- the async backend -----------------------------------------------------------------------------


async def _shut_pool(pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]]) -> None:
    """A loop's pool, when that loop shuts down or the store closes (statemw.backends.per_loop)."""
    with suppress(psycopg.Error):
        await pool.close()


class AsyncPostgresBackend:
    """The same operations over psycopg's AsyncConnectionPool, one pool per event loop.

    psycopg's async pool needs asyncio; under another event loop (trio) each operation runs on
    the blocking backend `sync`, in a worker thread."""

    def __init__(self, settings: ops.Settings, schema: _Schema, sync: PostgresBackend) -> None:
        self._sync = sync
        self.settings = settings
        self.health = sync.health
        self.sql = settings.sql
        self._schema = schema
        self._loops: PerLoop[AsyncConnectionPool[psycopg.AsyncConnection[Row]]] = PerLoop(
            _shut_pool
        )

    async def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Row]]:
        """This event loop's pool."""
        loop = asyncio.get_running_loop()
        entry = self._loops.entries.get(loop)
        if entry is None:
            s = self.settings
            # min_size=0: no connection is opened ahead in the background. asyncio.run cancels
            # every task before it closes async generators (our finalizer), and the pool's
            # workers swallow a cancellation that hits a connect in flight, so such a loop
            # would never finish. Connections open as calls need them, then stay for reuse.
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
                s.conninfo,
                kwargs=s.connect_kwargs,
                min_size=0,
                max_size=max(s.pool_max_size, 1),
                timeout=s.pool_timeout,
                open=False,
                name=f"statemw {s.target}",
            )
            entry = await self._loops.add(loop, pool)  # (before any wait: one pool per loop)
            await entry.open(wait=False)
        return entry

    async def _drive(self, op: ops.Op[T]) -> T:
        async with afaults(self.settings, self.health), (await self.pool()).connection() as conn:
            return await adrive(op, _AsyncConnection(conn))

    async def _ready(self) -> None:
        if not self._schema.ready:  # two loops may both migrate: the advisory lock orders them
            await self._drive(
                ops.ensure_schema_op(
                    self.sql, create=self.settings.create, where=self.settings.target
                )
            )
            self._schema.ready = True

    async def _run(self, op: ops.Op[T]) -> T:
        if not on_asyncio():
            return await to_thread(self._sync._run, op)
        await self._ready()
        return await self._drive(op)

    async def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        return await self._run(ops.load_op(self.sql, session_id, window, now))

    async def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        op = ops.read_messages_op(self.sql, session_id, start, stop)
        return await self._run(op)

    async def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        op = ops.read_vectors_op(self.sql, session_id, start, stop)
        return await self._run(op)

    async def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        return await self._run(ops.read_vectors_at_op(self.sql, session_id, positions))

    async def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        return await self._run(ops.read_header_op(self.sql, session_id, now))

    async def commit(self, delta: Delta) -> Committed:
        return await self._run(ops.commit_op(self.sql, delta, self.settings.notify))

    async def delete(self, session_id: str) -> bool:
        return bool(await self._run(ops.delete_op(self.sql, session_id, self.settings.notify)))

    async def rename(self, old_id: str, new_id: str, now: float) -> None:
        await self._run(ops.rename_op(self.sql, old_id, new_id, now))

    async def user_sessions(self, user_id: str, now: float) -> list[str]:
        return await self._run(ops.user_sessions_op(self.sql, user_id, now))

    async def forget_user(self, user_id: str) -> int:
        return int(await self._run(ops.forget_user_op(self.sql, user_id, self.settings.notify)))

    async def session_ids(self) -> AsyncIterator[str]:
        after = ""
        while page := await self._run(ops.session_ids_op(self.sql, after)):
            for session_id in page:
                yield session_id
            after = page[-1]

    async def purge(self, now: float, progress: Progress | None = None) -> int:
        return int(await self._run(ops.purge_op(self.sql, now, progress)))

    async def close(self) -> None:
        """Close this loop's pool (other loops' pools close when their loops shut down)."""
        if not on_asyncio():
            return
        await self._loops.close(asyncio.get_running_loop())

    async def subscribe(self, session_id: str) -> AsyncSubscription:
        if not on_asyncio():
            return ThreadedSubscription(await to_thread(self._sync.subscribe, session_id))
        if not self.settings.notify:
            raise ConfigurationError("this store was opened with notify=False: no subscribe")
        await self._ready()  # LISTEN calls the schema's listen()
        return await AsyncPostgresSubscription.open(self.settings, session_id)


class AsyncPostgresSubscription:
    """PostgresSubscription over an AsyncConnection; cancelling a waiting get() is safe."""

    def __init__(
        self, settings: ops.Settings, conn: psycopg.AsyncConnection[Row], session_id: str
    ) -> None:
        self.session_id = session_id
        self._settings = settings
        self._conn = conn
        self._pending: deque[Change] = deque()

    @classmethod
    async def open(cls, settings: ops.Settings, session_id: str) -> AsyncPostgresSubscription:
        async with afaults(settings):
            conn = await psycopg.AsyncConnection.connect(
                settings.conninfo, **settings.connect_kwargs
            )
            try:
                query = ops.listen_query(settings.sql, session_id)
                await conn.execute(query.sql, query.params)
            except BaseException:
                await conn.close()
                raise
        return cls(settings, conn, session_id)

    async def get(self, wait: float | None) -> Change | None:
        if not self._pending:
            async with afaults(self._settings):
                async for note in self._conn.notifies(timeout=wait, stop_after=1):
                    self._pending.append(ops.parse_change(self.session_id, note.payload))
        return self._pending.popleft() if self._pending else None

    async def close(self) -> None:
        await self._conn.close()


def open_postgres(url: str, **options: Any) -> tuple[PostgresBackend, AsyncPostgresBackend]:
    """Both backends on one URL. Options (also as URL query parameters): schema ("statemw"),
    pool_min_size (1), pool_max_size (10), pool_timeout (5 s: how long a call waits for a
    connection), connect_timeout (2 s), notify (True: commits NOTIFY for subscribe).

    Statements are never retried: a save whose reply was lost may have committed, so the caller
    gets StoreUnavailable and decides; the pool replaces broken connections by itself.
    """
    settings = ops.settings(url, options)
    schema = _Schema()
    backend = PostgresBackend(settings, schema)
    return backend, AsyncPostgresBackend(settings, schema, backend)
