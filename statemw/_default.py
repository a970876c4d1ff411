"""The process-wide default store: what Session.create and Session.load use when given none.

statemw.store registers the Store class here when it is imported, so Session (which the store
builds) can reach the default store without importing the store module: no import circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statemw.store import Store

_default: Store | None = None
_factory: Callable[[str | None], Store] | None = None


def register(factory: Callable[[str | None], Store]) -> None:
    """statemw.store: how to make a store from a URL (None: STATEMW_URL or the default)."""
    global _factory
    _factory = factory


def configure(store: Store | str | None) -> Store | None:
    """Set the store Session.create and Session.load use (a Store or a URL; None resets)."""
    global _default
    if isinstance(store, str):
        assert _factory is not None, "statemw.store registers the Store class on import"
        store = _factory(store)
    _default = store
    return _default


def default_store() -> Store:
    """The configured store, else one on STATEMW_URL or the default diskcache directory."""
    global _default
    if _default is None:
        assert _factory is not None, "statemw.store registers the Store class on import"
        _default = _factory(None)
    return _default
