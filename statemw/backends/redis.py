"""redis:// — placeholder until the Redis backend lands."""

from __future__ import annotations

from typing import Any

from statemw.backends.base import AsyncBackend, Backend
from statemw.errors import ConfigurationError


def open_redis(url: str, **options: Any) -> tuple[Backend, AsyncBackend]:
    raise ConfigurationError("the Redis backend is not available yet")
