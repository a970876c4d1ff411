"""pytest plugin (compat/run.py loads it with -p in both Flask runs): Flask 3.1.3's
tests/conftest.py reads `_pytest.monkeypatch.notset`, which pytest 9 renamed to
`_pytest.compat.NOTSET`; without the old name every Flask test errors in its setup.

Both names stand for the same sentinel MonkeyPatch.undo() compares with, so the alias changes
nothing else.
"""

from __future__ import annotations

import _pytest.monkeypatch
from _pytest.compat import NOTSET

if not hasattr(_pytest.monkeypatch, "notset"):
    _pytest.monkeypatch.notset = NOTSET  # type: ignore[attr-defined]
