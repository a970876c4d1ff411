"""pytest plugin (compat/run.py loads it with -p in the statemw run of Starlette's tests).

The tests build `StateMiddleware` (imported as SessionMiddleware) with Starlette's keywords only,
so statemw keeps sessions in its default store: this points it at a fresh store for each test
(memory:// unless $STATEMW_COMPAT_STORE says otherwise) instead of the per-user disk directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from stores import open_store

from statemw import configure


@pytest.fixture(autouse=True)
def statemw_store(tmp_path: Path) -> Iterator[None]:
    with open_store(tmp_path) as store:
        configure(store)
        yield
        configure(None)
