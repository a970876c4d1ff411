"""The Redis backend's I/O: thin sync and async shells over the operations of ops.py.

Two shells, one per redis-py client (redis.Redis, redis.asyncio.Redis), drive the same I/O-free
operations; the scripts in lua.py do each write atomically on the server.

One module, past 400 lines, because the two shells are twins (each method a line over the
same op) and must stay side by side; what they share of connections and faults is here too.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from statemw import _report
from statemw._drive import adrive, drive
from statemw.backends.base import Progress
from statemw.backends.per_loop import PerLoop
from statemw.backends.redis import ops
from statemw.backends.redis.deadlines import Deadlines
from statemw.backends.redis.faults import FAULTS, afaults, answered, failed, faults, unavailable
from statemw.backends.redis.lua import CLUSTER_SCRIPTS
from statemw.backends.redis.pubsub import AsyncRedisSubscription, RedisSubscription
from statemw.backends.threaded import ThreadedSubscription, on_asyncio, to_thread
from statemw.changes import AsyncSubscription
from statemw.errors import ConfigurationError
from statemw.records import Committed, Delta, SessionHeader, Snapshot

T = TypeVar("T")

DEFAULT_PREFIX = "statemw:"

# Client options a store URL's user may pass through Store(url, **options).
_CLIENT_OPTIONS = {
    "socket_timeout",
    "socket_connect_timeout",
    "max_connections",
    "health_check_interval",
    "username",
    "password",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_cert_reqs",
}


class RedisBackend:
    """The blocking backend over redis.Redis (or redis.cluster.RedisCluster)."""

    def __init__(
        self, client: Any, layout: ops.KeyLayout, health: _report.Health | None = None
    ) -> None:
        self.client = client
        self.layout = layout
        self.health = health
        # Connections taken from redis-py's pool and kept between calls (as _LoopClient.send
        # does, for the same reason); shared by threads (list pop/append are atomic), dropped
        # in a forked child, whose parent owns them.
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._keep = 0 if layout.cluster else client.connection_pool.max_connections // 2
        self.load_path = ops.LoadPath()  # shared with the async backend over this one
        # Standalone: a script goes out as ops.Script.evalsha's bytes on a pooled connection.
        # Cluster: redis-py's Script objects, which find the slot's node.
        self._scripts = (
            {name: client.register_script(src) for name, src in CLUSTER_SCRIPTS.items()}
            if layout.cluster
            else None
        )

    def call(self, call: ops.RedisStep) -> Any:
        """Send one call an operation yields (ops.Caller)."""
        _report.round_trip()
        if isinstance(call, ops.Script):
            if self._scripts is None:
                return self._send(call.evalsha())
            return self._scripts[call.name](keys=list(call.keys), args=list(call.args))
        if isinstance(call, ops.Command):
            return self.client.execute_command(*call.args)
        if isinstance(call, ops.Transaction):  # standalone only (ops.load_op)
            return _executed(self._send(call.packed(), replies=len(call.commands) + 2))
        assert isinstance(call, ops.Pipeline)
        pipe = self.client.pipeline(transaction=False)
        for command in call.commands:
            pipe.execute_command(*command.args)
        return pipe.execute()

    def _send(self, packed: bytes, replies: int = 1) -> Any:
        """Commands already in RESP, on a kept connection when one is idle (after a fault
        redis-py has disconnected it, and sending connects it again); the last of `replies`
        replies (a transaction's first are OK and QUEUED)."""
        idle = self._idle
        if self._pid != os.getpid():
            idle.clear()
            self._pid = os.getpid()
        try:
            conn = idle.pop()
        except IndexError:
            conn = self.client.connection_pool.get_connection()
        else:
            if conn.can_read(timeout=0):  # a stray reply, or closed (connects a disconnected one)
                conn.disconnect()
        try:
            conn.send_packed_command([packed])
            for _ in range(replies - 1):
                conn.read_response()
            return conn.read_response()
        finally:
            if len(idle) < self._keep:
                idle.append(conn)
            else:
                self.client.connection_pool.release(conn)

    def _run(self, op: ops.Op[T]) -> T:
        try:
            answer = drive(op, self)
        except FAULTS as exc:
            raise failed(self.health, exc) from exc
        answered(self.health)
        return answer

    def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        return self._run(ops.load_op(self.layout, session_id, window, now, self.load_path))

    def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        return self._run(ops.read_messages_op(self.layout, session_id, start, stop))

    def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        return self._run(ops.read_vectors_op(self.layout, session_id, start, stop))

    def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        return self._run(ops.read_vectors_at_op(self.layout, session_id, positions))

    def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        return self._run(ops.read_header_op(self.layout, session_id, now))

    def commit(self, delta: Delta) -> Committed:
        return self._run(ops.commit_op(self.layout, delta, self.load_path))

    def delete(self, session_id: str) -> bool:
        return self._run(ops.delete_op(self.layout, session_id, self.load_path.states))

    def rename(self, old_id: str, new_id: str, now: float) -> None:
        self._run(ops.rename_op(self.layout, old_id, new_id, now, self.load_path.states))

    def user_sessions(self, user_id: str, now: float) -> list[str]:
        return self._run(ops.user_sessions_op(self.layout, user_id, now))

    def forget_user(self, user_id: str) -> int:
        return self._run(ops.forget_user_op(self.layout, user_id, self.load_path.states))

    def _header_keys(self, pattern: str | None = None) -> list[str]:
        with faults(self.health):
            pattern = pattern or self.layout.header_pattern()
            keys = [ops.text_of(k) for k in self.client.scan_iter(match=pattern, count=1000)]
        return list(dict.fromkeys(keys))  # SCAN may return a key twice

    def session_ids(self) -> Iterator[str]:
        for key in self._header_keys():
            sid = ops.top_level_session_id(self.layout, key)
            if sid is not None:
                yield sid

    def purge(self, now: float, progress: Progress | None = None) -> int:
        indexes = self._header_keys(self.layout.index_pattern())
        return self._run(ops.purge_op(self.layout, self._header_keys(), now, progress, indexes))

    def close(self) -> None:
        self.client.close()

    def subscribe(self, session_id: str) -> RedisSubscription:
        return RedisSubscription(self.client, self.layout, session_id)


def _executed(replies: list[Any]) -> list[Any]:
    """EXEC's replies; a command that failed inside the transaction raises its error."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class _LoopClient:
    """The async client of one event loop (statemw.backends.per_loop): redis.asyncio
    connections belong to the loop that opened them."""

    def __init__(self, client: Any, cluster: bool, deadlines: Deadlines | None) -> None:
        self.client = client
        self.deadlines = deadlines  # of the operations on this loop (None: no limit of ours)
        self.scripts = (  # see RedisBackend.__init__
            {name: client.register_script(src) for name, src in CLUSTER_SCRIPTS.items()}
            if cluster
            else None
        )
        self._idle: list[Any] = []  # connections taken from the pool, ready for `send`
        pool = None if cluster else client.connection_pool
        self._keep = 0 if pool is None else pool.max_connections // 2

    async def shut(self) -> None:
        """Its loop shuts down (or the store closes): stop the deadlines, close the client."""
        if self.deadlines is not None:
            self.deadlines.close()
        with suppress(*FAULTS):
            await self.client.aclose()

    async def send(self, packed: bytes, replies: int = 1) -> Any:
        """Commands already in RESP, on a connection of our own when one is idle; the last of
        `replies` replies (see RedisBackend._send).

        Borrowing from redis-py's pool and giving back costs more than the round trip itself
        (a lock, connection checks, telemetry events), so up to half the pool's connections
        stay here between calls, checked as the pool would check them; the other half remains
        for subscriptions, SCAN, plain commands and bursts."""
        idle, pool = self._idle, self.client.connection_pool
        conn = idle.pop() if idle else await pool.get_connection()
        try:
            if conn.is_connected and await conn.can_read():  # a stray reply, or closed
                await conn.disconnect()  # send_packed_command connects again
            await conn.send_packed_command(packed)
            for _ in range(replies - 1):
                await conn.read_response()
            return await conn.read_response()
        finally:  # after a fault redis-py has disconnected it, unless the reply was an error
            if len(idle) < self._keep:
                idle.append(conn)
            else:
                await pool.release(conn)

    async def call(self, call: ops.RedisStep) -> Any:
        """Send one call an operation yields (ops.AsyncCaller): the driver runs on this."""
        _report.round_trip()
        if isinstance(call, ops.Script):
            if self.scripts is None:
                return await self.send(call.evalsha())
            return await self.scripts[call.name](keys=list(call.keys), args=list(call.args))
        if isinstance(call, ops.Command):
            return await self.client.execute_command(*call.args)
        if isinstance(call, ops.Transaction):  # standalone only (ops.load_op)
            return _executed(await self.send(call.packed(), replies=len(call.commands) + 2))
        assert isinstance(call, ops.Pipeline)
        pipe = self.client.pipeline(transaction=False)
        for command in call.commands:
            pipe.execute_command(*command.args)
        return await pipe.execute()


class AsyncRedisBackend:
    """The same operations over redis.asyncio.Redis (or its RedisCluster), one per event loop.

    redis.asyncio needs asyncio; under another event loop (trio) each operation runs on the
    blocking client `sync`, in a worker thread."""

    def __init__(
        self,
        factory: Callable[[], Any],
        layout: ops.KeyLayout,
        sync: RedisBackend,
        *,
        timeout: float | None = None,
        health: _report.Health | None = None,
    ) -> None:
        self._factory = factory
        self.health = health
        self.layout = layout
        self._sync = sync
        self._timeout = timeout  # seconds an operation may take (None: the client's own)
        self._loops: PerLoop[_LoopClient] = PerLoop(_LoopClient.shut)

    async def _loop_client(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        entry = self._loops.entries.get(loop)
        if entry is None:
            deadlines = None if self._timeout is None else Deadlines(loop, self._timeout)
            client = _LoopClient(self._factory(), self.layout.cluster, deadlines)
            entry = await self._loops.add(loop, client)
        return entry

    async def client(self) -> Any:
        """This event loop's redis-py client."""
        return (await self._loop_client()).client

    async def call(self, call: ops.RedisStep) -> Any:
        """Send one call an operation yields, on this event loop's client."""
        return await (await self._loop_client()).call(call)

    async def _run(self, op: ops.Op[T]) -> T:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # trio, say: the blocking client, in a worker thread
            return await to_thread(self._sync._run, op)
        entry = self._loops.entries.get(loop) or await self._loop_client()
        deadline = None if entry.deadlines is None else entry.deadlines.begin()
        try:
            answer = await adrive(op, entry)
        except FAULTS as exc:
            raise failed(self.health, exc) from exc
        except asyncio.CancelledError as exc:
            if deadline is not None:
                timed_out, deadline = deadline.done(), None
                if timed_out:
                    late = TimeoutError(f"no reply within {self._timeout} s")
                    raise failed(self.health, late) from exc
            raise
        finally:
            if deadline is not None:
                deadline.done()
        answered(self.health)
        return answer

    async def load(self, session_id: str, window: int, now: float) -> Snapshot | None:
        path = self._sync.load_path
        return await self._run(ops.load_op(self.layout, session_id, window, now, path))

    async def read_messages(self, session_id: str, start: int, stop: int) -> list[bytes]:
        return await self._run(ops.read_messages_op(self.layout, session_id, start, stop))

    async def read_vectors(self, session_id: str, start: int, stop: int) -> dict[int, bytes]:
        return await self._run(ops.read_vectors_op(self.layout, session_id, start, stop))

    async def read_vectors_at(self, session_id: str, positions: Sequence[int]) -> dict[int, bytes]:
        return await self._run(ops.read_vectors_at_op(self.layout, session_id, positions))

    async def read_header(self, session_id: str, now: float) -> SessionHeader | None:
        return await self._run(ops.read_header_op(self.layout, session_id, now))

    async def commit(self, delta: Delta) -> Committed:
        return await self._run(ops.commit_op(self.layout, delta, self._sync.load_path))

    async def delete(self, session_id: str) -> bool:
        return await self._run(ops.delete_op(self.layout, session_id, self._sync.load_path.states))

    async def rename(self, old_id: str, new_id: str, now: float) -> None:
        await self._run(
            ops.rename_op(self.layout, old_id, new_id, now, self._sync.load_path.states)
        )

    async def user_sessions(self, user_id: str, now: float) -> list[str]:
        return await self._run(ops.user_sessions_op(self.layout, user_id, now))

    async def forget_user(self, user_id: str) -> int:
        return await self._run(
            ops.forget_user_op(self.layout, user_id, self._sync.load_path.states)
        )

    async def _header_keys(self, pattern: str | None = None) -> list[str]:
        if not on_asyncio():
            return await to_thread(self._sync._header_keys, pattern)
        async with afaults(self.health):
            client = await self.client()
            pattern = pattern or self.layout.header_pattern()
            keys = [ops.text_of(k) async for k in client.scan_iter(match=pattern, count=1000)]
        return list(dict.fromkeys(keys))  # SCAN may return a key twice

    async def session_ids(self) -> AsyncIterator[str]:
        for key in await self._header_keys():
            sid = ops.top_level_session_id(self.layout, key)
            if sid is not None:
                yield sid

    async def purge(self, now: float, progress: Progress | None = None) -> int:
        header_keys = await self._header_keys()
        indexes = await self._header_keys(self.layout.index_pattern())
        return await self._run(ops.purge_op(self.layout, header_keys, now, progress, indexes))

    async def close(self) -> None:
        """Close this loop's client (other loops' clients close when their loops shut down)."""
        if not on_asyncio():
            return
        await self._loops.close(asyncio.get_running_loop())

    async def subscribe(self, session_id: str) -> AsyncSubscription:
        if not on_asyncio():
            return ThreadedSubscription(await to_thread(self._sync.subscribe, session_id))
        client = await self.client()
        if self.layout.cluster:  # its pub/sub needs the slot map, which the client reads lazily
            async with afaults():
                await client.initialize()
        return await AsyncRedisSubscription.open(client, self.layout, session_id)


def _client_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - _CLIENT_OPTIONS
    if unknown:
        raise ConfigurationError(
            f"unknown Redis option(s) {sorted(unknown)}: use key_prefix, "
            + ", ".join(sorted(_CLIENT_OPTIONS))
        )
    kwargs: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    kwargs.update(options)
    return kwargs


def _check_url_options(pool: Any, url: str) -> None:
    """An option redis-py does not know in the URL's query fails here, named, and not as a
    TypeError at the first command (redis-py passes the query on to each new connection).
    Building a connection opens no socket."""
    try:
        pool.connection_class(**pool.connection_kwargs)
    except TypeError as exc:
        names = [k for k, _ in parse_qsl(url.partition("?")[2]) if repr(k) in str(exc)]
        raise ConfigurationError(
            f"unknown option {', '.join(names) or '?'} ({exc}); a key prefix is key_prefix=..."
        ) from None


def _split_prefix(url: str) -> tuple[str, str | None]:
    """Take `key_prefix=` out of the URL's query (redis-py would reject it)."""
    base, _, query = url.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    prefix = next((v for k, v in pairs if k == "key_prefix"), None)
    if prefix is None:
        return url, None
    rest = urlencode([(k, v) for k, v in pairs if k != "key_prefix"])
    return (base + "?" + rest if rest else base), prefix


def _target(url: str) -> str:
    """The server a URL names, for log lines: scheme, host, port, database; never credentials."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def open_redis(url: str, **options: Any) -> tuple[RedisBackend, AsyncRedisBackend]:
    """Both backends on one URL. Options: key_prefix ("statemw:"), socket_timeout (5 s),
    socket_connect_timeout (2 s), max_connections, health_check_interval, credentials, TLS files.

    Commands are never retried by the client: a save whose reply was lost is not sent twice (it
    may have committed); the caller gets StoreUnavailable and the next call reconnects.
    """
    url, query_prefix = _split_prefix(url)
    prefix = str(options.pop("key_prefix", query_prefix or DEFAULT_PREFIX))
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(f"key_prefix must not contain braces, got {prefix!r}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    cluster = scheme.endswith("+cluster")
    kwargs = _client_kwargs(options)
    op_timeout: float | None = None  # the cluster client keeps its own socket timeouts
    try:
        if cluster:
            plain = scheme.removesuffix("+cluster") + "://" + rest
            if not urlsplit(plain).hostname:
                raise ConfigurationError("redis+cluster:// needs a host: redis+cluster://host:port")
            sync: Any = redis.cluster.RedisCluster.from_url(plain, **kwargs)
            asyn: Callable[[], Any] = functools.partial(
                redis.asyncio.cluster.RedisCluster.from_url, plain, **kwargs
            )
        else:
            kwargs["retry"] = Retry(NoBackoff(), 0)
            sync = redis.Redis.from_url(url, **kwargs)
            _check_url_options(sync.connection_pool, url)
            # The async client's socket timeout wraps every send in asyncio.wait_for (a task
            # each); a deadline per operation (AsyncRedisBackend._run, deadlines.py) costs a
            # set entry instead.
            op_timeout = kwargs["socket_timeout"]
            asyn = functools.partial(
                redis.asyncio.Redis.from_url,
                url,
                **{
                    **kwargs,
                    "socket_timeout": None,
                    "retry": redis.asyncio.retry.Retry(NoBackoff(), 0),
                },
            )
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL: {exc}") from exc
    except FAULTS as exc:  # the cluster client reads the topology when it is built
        raise unavailable(exc) from exc
    layout = ops.KeyLayout(prefix, cluster=cluster)
    health = _report.health(_target(url))
    backend = RedisBackend(sync, layout, health)
    return backend, AsyncRedisBackend(asyn, layout, backend, timeout=op_timeout, health=health)
