"""Every byte a store holds, as an attacker with the disk (or the Redis server) would read it."""

from __future__ import annotations

from pathlib import Path

from statemw import Store
from statemw.backends.disk import DiskKV
from statemw.backends.kv import KVBackend
from statemw.backends.memory import MemoryKV


def store_bytes(store: Store) -> bytes:
    """memory: every key and value; diskcache: every file of the directory as it is on disk
    (SQLite's free pages, its WAL and the value files included); Redis: every key name under
    the store's prefix and every field, member and value; PostgreSQL: every column of every
    row of the store's tables."""
    backend = store.backend
    if isinstance(backend, KVBackend):
        kv = backend.kv
        if isinstance(kv, MemoryKV):
            return b"\0".join(k.encode() + b"\0" + v for k, v in kv._data.items())
        assert isinstance(kv, DiskKV)
        files = sorted(p for p in Path(kv.directory).rglob("*") if p.is_file())
        return b"\0".join(p.name.encode() + b"\0" + p.read_bytes() for p in files)
    from statemw.backends.postgres import PostgresBackend

    if isinstance(backend, PostgresBackend):
        from tests.postgres_server import raw_postgres_values

        return b"\0".join(raw_postgres_values(backend))
    from statemw.backends.redis.client import RedisBackend

    assert isinstance(backend, RedisBackend)
    from tests.redis_server import raw_redis_values

    names = list(backend.client.scan_iter(match=backend.layout.prefix + "*"))
    return b"\0".join(names + raw_redis_values(backend))


def stored_records(store: Store) -> int:
    """How many records (keys, rows) the store holds."""
    backend = store.backend
    if isinstance(backend, KVBackend):
        return sum(1 for _ in backend.kv.keys(""))
    from statemw.backends.postgres import PostgresBackend

    if isinstance(backend, PostgresBackend):
        from tests.postgres_server import execute

        schema = backend.settings.schema
        return sum(
            execute(f'SELECT count(*) FROM "{schema}".{table}')[0][0]
            for table in ("sessions", "state", "messages", "vectors")
        )
    from statemw.backends.redis.client import RedisBackend

    assert isinstance(backend, RedisBackend)
    return sum(1 for _ in backend.client.scan_iter(match=backend.layout.prefix + "*"))
