"""Backends: where a store's bytes live. A URL's scheme picks one; each is imported only when used.

memory://                      memory.py (tests, one process)
diskcache:///path              disk.py (the embedded default; kv.py holds both layouts)
redis:// rediss:// unix://     redis/ (many servers; redis+cluster:// for Redis Cluster)
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from statemw.backends.base import AsyncBackend, Backend
from statemw.errors import ConfigurationError


def redact(url: str) -> str:
    """The URL with its password masked, for messages and reprs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def open_backend(url: str, options: dict[str, Any]) -> tuple[Backend, AsyncBackend]:
    """The sync and async backends a store URL names (imported only when used)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from statemw.backends.memory import open_memory
        from statemw.backends.threaded import ThreadedAsync

        backend = open_memory()
        return backend, ThreadedAsync(backend, inline=True)
    if scheme == "diskcache":
        from statemw.backends.disk import open_disk
        from statemw.backends.threaded import ThreadedAsync

        path = url[len("diskcache://") :]
        if not path:
            raise ConfigurationError("diskcache URL needs a directory: diskcache:///var/lib/app")
        disk, kv = open_disk(os.path.expanduser(path), **options)
        return disk, ThreadedAsync(disk, nonblocking=kv.nonblocking)
    if scheme in ("redis", "rediss", "redis+cluster", "rediss+cluster", "unix"):
        try:
            from statemw.backends.redis import open_redis
        except ImportError as exc:
            raise ConfigurationError(
                "the Redis backend needs redis-py: pip install 'statemw[redis]'"
            ) from exc
        return open_redis(url, **options)
    if scheme in ("postgresql", "postgres"):
        try:
            from statemw.backends.postgres import open_postgres
        except ImportError as exc:
            raise ConfigurationError(
                "the PostgreSQL backend needs psycopg 3: pip install 'statemw[postgres]'"
            ) from exc
        return open_postgres(url, **options)
    raise ConfigurationError(
        f"unknown store URL {redact(url)!r}: use memory://, diskcache:///path, "
        "redis://host:port/db, rediss://..., redis+cluster://... or postgresql://user@host/db"
    )
