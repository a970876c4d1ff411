"""The store each compat test runs on: $STATEMW_COMPAT_STORE is memory (the default),
diskcache (in the test's tmp_path) or a redis:// URL (under a key prefix of the test's own,
deleted afterwards)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from statemw import Store


@contextmanager
def open_store(tmp_path: Path) -> Iterator[Store]:
    kind = os.environ.get("STATEMW_COMPAT_STORE") or "memory"
    prefix = None
    if kind == "memory":
        url = "memory://"
    elif kind == "diskcache":
        url = f"diskcache://{tmp_path / 'store'}"
    elif kind.startswith(("redis://", "rediss://", "unix://")):
        prefix = f"statemw-compat-{uuid.uuid4().hex[:12]}:"
        url = f"{kind}{'&' if '?' in kind else '?'}key_prefix={prefix}"
    else:
        raise ValueError(f"STATEMW_COMPAT_STORE: memory, diskcache or a redis URL, not {kind!r}")
    store = Store(url)
    try:
        yield store
    finally:
        store.close()
        if prefix is not None:
            _delete_keys(kind, prefix)


def _delete_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
