"""Starlette's and Flask's own session tests against statemw (issue 10, docs/compat.md).

compat/run.py downloads the pinned framework sdists, runs their session tests alone and with
statemw swapped in; compat/expected.json says which tests statemw is expected to pass on each
store. A regression and a newly passing test both fail here, so the file stays true.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests import redis_server

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "compat" / "run.py"
EXPECTED = ROOT / "compat" / "expected.json"
OFFLINE = 3  # run.py's exit status when pip cannot download the sdists

pytestmark = pytest.mark.compat


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compat_run", RUN)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compat_run"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


harness = _load_harness()


@dataclass
class CompatRun:
    store: str
    returncode: int
    output: str
    results: dict[str, dict[str, dict[str, dict[str, str]]]]


@pytest.fixture(scope="module", params=["memory", "diskcache", "redis"])
def compat_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CompatRun:
    store = redis_server.shared_url() if request.param == "redis" else str(request.param)
    out = tmp_path_factory.mktemp("compat") / "results.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--store", store, "--json", str(out), "--check", str(EXPECTED)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode == OFFLINE:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but the framework sdists could not be downloaded:\n{output}")
        pytest.skip(f"no PyPI here, so no framework sdists to test against: {output.strip()}")
    results = json.loads(out.read_text()) if out.is_file() else {}
    return CompatRun(str(request.param), done.returncode, output, results)


def test_the_harness_runs_every_selected_test_of_both_frameworks(compat_run: CompatRun) -> None:
    assert compat_run.results, compat_run.output
    counts = {suite: len(runs["alone"]) for suite, runs in compat_run.results.items()}
    assert counts == {"starlette": 29, "flask": 26}, compat_run.output


def test_each_framework_passes_its_own_session_tests_without_statemw(
    compat_run: CompatRun,
) -> None:
    assert compat_run.results, compat_run.output
    for suite, runs in compat_run.results.items():
        failed = {n: r["message"] for n, r in runs["alone"].items() if r["outcome"] != "passed"}
        assert failed == {}, f"{suite} fails on its own: the harness is wrong\n{compat_run.output}"


def test_statemw_passes_exactly_the_tests_the_expectation_file_says(
    compat_run: CompatRun,
) -> None:
    assert compat_run.returncode == 0, compat_run.output
    assert "statemw results match" in compat_run.output


def _results(outcomes: dict[str, str]) -> dict[str, Any]:
    runs = {
        n: {"outcome": o, "message": "" if o == "passed" else "boom"} for n, o in outcomes.items()
    }
    return {"flask": {"alone": runs, "statemw": runs}}


def test_the_check_reports_a_regression_and_a_newly_passing_test(tmp_path: Path) -> None:
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"suites": {"flask": {"a": "pass", "b": "fail: cookie"}}}))

    problems = harness.compare(_results({"a": "failed", "b": "passed"}), expected, "memory")

    assert problems == [
        "flask: regression: a: boom",
        "flask: now passes (update expected.json): b",
    ]


def test_the_check_reports_tests_missing_from_either_side(tmp_path: Path) -> None:
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"suites": {"flask": {"gone": "pass"}}}))

    problems = harness.compare(_results({"new": "passed"}), expected, "memory")

    assert problems == [
        "flask: gone is in expected.json but did not run",
        "flask: new ran but is not in expected.json",
    ]


def test_a_store_kind_overrides_the_expectation_for_its_tests_only(tmp_path: Path) -> None:
    expected = tmp_path / "expected.json"
    expected.write_text(
        json.dumps(
            {
                "suites": {"flask": {"a": "pass", "b": "pass"}},
                "stores": {"redis": {"flask": {"a": "fail: trio"}}},
            }
        )
    )

    assert harness.expectations(expected, "redis://127.0.0.1:6379/0?key_prefix=x:") == {
        "flask": {"a": "fail: trio", "b": "pass"}
    }
    assert harness.expectations(expected, "memory") == {"flask": {"a": "pass", "b": "pass"}}


def test_every_expected_failure_gives_its_reason() -> None:
    data = json.loads(EXPECTED.read_text())
    tables = [*data["suites"].values()]
    tables += [table for store in data["stores"].values() for table in store.values()]
    for table in tables:
        for nodeid, expectation in table.items():
            assert expectation == "pass" or (
                expectation.startswith("fail: ") and len(expectation) > len("fail: ") + 10
            ), nodeid
