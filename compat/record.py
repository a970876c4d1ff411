"""pytest plugin (compat/run.py loads it with -p): each test's outcome, as JSON, for run.py.

Written to $STATEMW_COMPAT_REPORT at the end of the session: {nodeid: {"outcome", "message"}},
the message being pytest's one-line crash summary (what `-rA` prints).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}
_results: dict[str, dict[str, str]] = {}


def _message(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message).strip().splitlines()[0][:300] if crash.message else ""
    if isinstance(report.longrepr, tuple):  # a skip: (path, line, reason)
        return str(report.longrepr[2])
    return str(report.longrepr or "").strip().splitlines()[-1][:300] if report.longrepr else ""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        if report.outcome == "failed" and report.when != "call":
            outcome = "error"  # a fixture's setup or teardown failed
        else:
            outcome = report.outcome
        previous = _results.get(report.nodeid)
        if previous is None or _RANK[outcome] > _RANK[previous["outcome"]]:
            message = "" if outcome == "passed" else f"[{report.when}] {_message(report)}"
            _results[report.nodeid] = {"outcome": outcome, "message": message}


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("STATEMW_COMPAT_REPORT")
    if path:
        Path(path).write_text(json.dumps(_results, indent=2) + "\n")
