"""Run Starlette's and Flask's own session tests against statemw (issue 10).

    python compat/run.py                     # both suites, framework alone and with statemw
    python compat/run.py --suite flask --store diskcache -v
    python compat/run.py --json out.json --check compat/expected.json

Each run downloads the pinned sdists with pip (cached in $STATEMW_COMPAT_CACHE, default
~/.cache/statemw-compat, and checked against the sha256 below), extracts only the files the
session tests need into a temporary directory, and runs them with pytest twice:

    alone    the extracted tests as they are: proves the harness runs them correctly
    statemw  the same tests with statemw swapped in by a shim of one rewritten line plus a
             pytest plugin from this directory:
             Starlette: `from starlette.middleware.sessions import Session, SessionMiddleware`
                        becomes an import of `statemw.asgi.StateMiddleware as SessionMiddleware`;
                        shim_starlette.py points statemw's default store at a fresh store per test
             Flask:     Flask's `app` fixture (tests/conftest.py) is renamed `framework_app`;
                        shim_flask.py's `app` fixture installs `FlaskState(app)` on it

Nothing of the frameworks' test code is kept in this repository: it is fetched on every run and
lives only in the temporary directory (--keep DIR keeps a copy to read).

Exit status: 0 when both runs of every suite ran (and, with --check, matched the expectation),
1 when the framework alone failed a test or --check found a difference, 2 when the harness
itself is broken (a rewrite that no longer applies, tests that were not collected), 3 when the
sdists could not be downloaded (offline).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

EXIT_MISMATCH = 1
EXIT_HARNESS = 2
EXIT_OFFLINE = 3


@dataclass(frozen=True)
class Rewrite:
    """One exact line of the extracted copy, replaced for the statemw run."""

    path: str
    old: str
    new: str


@dataclass(frozen=True)
class Suite:
    name: str
    project: str
    version: str
    sha256: str
    files: tuple[str, ...]  # what to extract, relative to the sdist's top directory
    tests: tuple[str, ...]  # pytest arguments selecting the tests
    count: int  # how many tests that selection must run
    rewrite: Rewrite
    plugins: tuple[str, ...] = ()  # loaded with -p in both runs
    statemw_plugins: tuple[str, ...] = ()  # loaded with -p in the statemw run only


STARLETTE = Suite(
    name="starlette",
    project="starlette",
    version="1.10.0",
    sha256="b8399098d4c1e3522734f7235dc79b1fc967f96cf139c81e0fa30479e0685f9b",
    files=(
        "pyproject.toml",  # Starlette's pytest settings: warnings are errors, strict markers
        "tests/__init__.py",
        "tests/conftest.py",  # test_client_factory: a TestClient on the anyio backend under test
        "tests/types.py",
        "tests/middleware/__init__.py",
        "tests/middleware/test_session.py",
    ),
    # anyio's pytest plugin parametrizes anyio_backend over the installed backends (asyncio, trio)
    tests=("tests/middleware/test_session.py",),
    count=29,  # 14 tests x 2 backends, and test_session_tracks_modification (no client)
    rewrite=Rewrite(
        path="tests/middleware/test_session.py",
        old="from starlette.middleware.sessions import Session, SessionMiddleware",
        new=(
            "from starlette.middleware.sessions import Session\n"
            "from statemw.asgi import StateMiddleware as SessionMiddleware  # statemw compat shim"
        ),
    ),
    plugins=("anyio.pytest_plugin",),  # the only plugin Starlette's session tests use
    statemw_plugins=("shim_starlette",),
)

# test_basic.py holds Flask's 15 session tests; the rest are every other Flask test that touches
# the session through the `app` fixture (tests that build their own Flask app or install their
# own SessionInterface are left out: statemw would not be in them).
FLASK_TESTS = (
    "tests/test_basic.py::test_session_accessed",
    "tests/test_basic.py::test_session_path",
    "tests/test_basic.py::test_session_using_application_root",
    "tests/test_basic.py::test_session_using_session_settings",
    "tests/test_basic.py::test_session_using_samesite_attribute",
    "tests/test_basic.py::test_missing_session",
    "tests/test_basic.py::test_session_secret_key_fallbacks",
    "tests/test_basic.py::test_session_expiration",
    "tests/test_basic.py::test_session_stored_last",
    "tests/test_basic.py::test_session_special_types",
    "tests/test_basic.py::test_session_cookie_setting",
    "tests/test_basic.py::test_session_vary_cookie",
    "tests/test_basic.py::test_session_refresh_vary",
    "tests/test_basic.py::test_flashes",
    "tests/test_basic.py::test_extended_flashing",
    "tests/test_converters.py::test_context_available",
    "tests/test_helpers.py::TestStreaming::test_stream_keeps_session",
    "tests/test_helpers.py::TestStreaming::test_async_view",
    "tests/test_reqctx.py::TestGreenletContextCopying::test_greenlet_context_copying",
    "tests/test_reqctx.py::TestGreenletContextCopying::test_greenlet_context_copying_api",
    "tests/test_signals.py::test_flash_signal",
    "tests/test_templating.py::test_standard_context",
    "tests/test_testing.py::test_redirect_session",
    "tests/test_testing.py::test_session_transactions",
    "tests/test_testing.py::test_session_transactions_keep_context",
    "tests/test_testing.py::test_session_transaction_needs_cookies",
)

FLASK = Suite(
    name="flask",
    project="flask",
    version="3.1.3",
    sha256="0ef0e52b8a9cd932855379197dd8f94047b359ca0a78695144304cb45f87c9eb",
    files=(
        "pyproject.toml",  # Flask's pytest settings: warnings are errors
        "tests/conftest.py",  # app, client, req_ctx, app_ctx, and the leak detector
        *sorted({t.split("::")[0] for t in FLASK_TESTS}),
    ),
    tests=FLASK_TESTS,
    count=len(FLASK_TESTS),
    rewrite=Rewrite(
        path="tests/conftest.py",
        old="def app():",
        new="def framework_app():  # statemw compat shim: shim_flask.py's `app` wraps it",
    ),
    plugins=("flask_pytest9",),  # Flask 3.1.3's conftest uses a name pytest 9 removed
    statemw_plugins=("shim_flask",),
)

SUITES = {s.name: s for s in (STARLETTE, FLASK)}
RUNS = ("alone", "statemw")


class HarnessError(Exception):
    """The harness no longer does what it says (not a statemw failure)."""


class DownloadFailed(Exception):
    """pip could not fetch an sdist (no network to PyPI)."""


def cache_dir() -> Path:
    env = os.environ.get("STATEMW_COMPAT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "statemw-compat"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(suite: Suite, cache: Path) -> Path:
    """The pinned sdist: from the cache when its hash matches, else downloaded with pip."""
    sdist = cache / f"{suite.project}-{suite.version}.tar.gz"
    if sdist.is_file() and _sha256(sdist) == suite.sha256:
        return sdist
    cache.mkdir(parents=True, exist_ok=True)
    spec = f"{suite.project}=={suite.version}"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    command += ["--no-binary", ":all:", "--dest", str(cache), spec]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired as exc:
        raise DownloadFailed(f"pip download {spec} timed out") from exc
    if done.returncode != 0 or not sdist.is_file():
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
        raise DownloadFailed(f"pip download {spec} failed: " + " / ".join(errors))
    if _sha256(sdist) != suite.sha256:
        raise DownloadFailed(f"{sdist.name}: sha256 {_sha256(sdist)} is not the pinned one")
    return sdist


def extract(suite: Suite, sdist: Path, dest: Path) -> None:
    """Only `suite.files`, out of the sdist, into dest."""
    top = f"{suite.project}-{suite.version}"
    with tarfile.open(sdist) as tar:
        for name in suite.files:
            try:
                member = tar.getmember(f"{top}/{name}")
            except KeyError as exc:
                raise HarnessError(f"{sdist.name} has no {name}") from exc
            member.name = name
            tar.extract(member, dest, filter="data")


def apply_rewrite(rewrite: Rewrite, root: Path) -> None:
    path = root / rewrite.path
    lines = path.read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.rstrip("\n") == rewrite.old]
    if len(hits) != 1:
        raise HarnessError(f"{rewrite.path}: {len(hits)} lines read {rewrite.old!r}, expected 1")
    lines[hits[0]] = rewrite.new + "\n"
    path.write_text("".join(lines))


@dataclass
class Outcome:
    """One test's result: passed, failed, error (in a fixture) or skipped, and why."""

    outcome: str
    message: str = ""


@dataclass
class RunResult:
    suite: str
    run: str
    results: dict[str, Outcome]
    log: str

    @property
    def passed(self) -> int:
        return sum(r.outcome == "passed" for r in self.results.values())


def run_pytest(suite: Suite, run: str, root: Path, store: str) -> RunResult:
    report = root / "statemw-compat-report.json"
    plugins = [*suite.plugins, "record"]
    if run == "statemw":
        plugins += suite.statemw_plugins
    command = [sys.executable, "-m", "pytest", *suite.tests, "-p", "no:cacheprovider", "-q"]
    for plugin in plugins:
        command += ["-p", plugin]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the plugins named above (hypothesis: 2 s)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    env["STATEMW_COMPAT_REPORT"] = str(report)
    env["STATEMW_COMPAT_STORE"] = store
    done = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    log = done.stdout + done.stderr
    if not report.is_file():
        raise HarnessError(f"{suite.name} ({run}): pytest wrote no report\n{log}")
    raw = json.loads(report.read_text())
    results = {nodeid: Outcome(**value) for nodeid, value in raw.items()}
    if len(results) != suite.count:
        raise HarnessError(
            f"{suite.name} ({run}): {len(results)} tests ran, {suite.count} expected\n{log}"
        )
    skipped = [n for n, r in results.items() if r.outcome == "skipped"]
    if skipped:  # a skip means a missing dependency (trio, greenlet, asgiref): not measured
        raise HarnessError(f"{suite.name} ({run}): skipped {skipped}\n{log}")
    return RunResult(suite.name, run, results, log)


def run_all(
    suites: list[Suite], sdists: dict[str, Path], workdir: Path, store: str
) -> list[RunResult]:
    """Every suite, alone and with statemw: four pytest processes side by side."""
    jobs = []
    for suite in suites:
        for run in RUNS:
            root = workdir / f"{suite.name}-{run}"
            extract(suite, sdists[suite.name], root)
            if run == "statemw":
                apply_rewrite(suite.rewrite, root)
            jobs.append((suite, run, root))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run_pytest, suite, run, root, store) for suite, run, root in jobs]
        return [f.result() for f in futures]


def as_json(results: list[RunResult]) -> dict[str, dict[str, dict[str, dict[str, str]]]]:
    data: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for r in results:
        data.setdefault(r.suite, {})[r.run] = {
            nodeid: {"outcome": o.outcome, "message": o.message}
            for nodeid, o in sorted(r.results.items())
        }
    return data


def store_kind(store: str) -> str:
    """memory, diskcache or redis (any redis://, rediss://, redis+cluster:// or unix:// URL)."""
    scheme = store.split("://", 1)[0]
    return "redis" if scheme.startswith(("redis", "unix")) else scheme


def expectations(expected: Path, store: str) -> dict[str, dict[str, str]]:
    """The expected statemw outcome of each test id on this store: "pass", or "fail: why".

    `suites` holds them for memory://; `stores` lists what differs on another store kind."""
    data = json.loads(expected.read_text())
    want: dict[str, dict[str, str]] = {k: dict(v) for k, v in data["suites"].items()}
    for suite, overrides in data.get("stores", {}).get(store_kind(store), {}).items():
        want.setdefault(suite, {}).update(overrides)
    return want


def compare(
    data: dict[str, dict[str, dict[str, dict[str, str]]]], expected: Path, store: str
) -> list[str]:
    """What differs from the expectation file: regressions, newly passing tests, unknown ids."""
    want = expectations(expected, store)
    problems = []
    for suite, runs in sorted(data.items()):
        listed = want.get(suite, {})
        got = runs["statemw"]
        for nodeid in sorted(set(got) | set(listed)):
            if nodeid not in listed:
                problems.append(f"{suite}: {nodeid} ran but is not in {expected.name}")
                continue
            if nodeid not in got:
                problems.append(f"{suite}: {nodeid} is in {expected.name} but did not run")
                continue
            expect_pass = listed[nodeid] == "pass"
            passed = got[nodeid]["outcome"] == "passed"
            if expect_pass and not passed:
                problems.append(f"{suite}: regression: {nodeid}: {got[nodeid]['message']}")
            elif passed and not expect_pass:
                problems.append(f"{suite}: now passes (update {expected.name}): {nodeid}")
    return problems


def print_summary(results: list[RunResult], verbose: bool) -> None:
    for r in results:
        total = len(r.results)
        print(f"{r.suite:<9} {r.run:<8} {r.passed:>2}/{total} passed")
        for nodeid, o in sorted(r.results.items()):
            if o.outcome != "passed":
                print(f"    {o.outcome.upper():<6} {nodeid}: {o.message}")
        if verbose:
            print(r.log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), action="append")
    parser.add_argument(
        "--store",
        default=os.environ.get("STATEMW_COMPAT_STORE", "memory"),
        help="memory (default), diskcache, or a redis:// URL: each test gets its own store",
    )
    parser.add_argument("--json", type=Path, help="write every test's outcome here")
    parser.add_argument("--check", type=Path, help="compare with an expectation file")
    parser.add_argument("--keep", type=Path, help="keep the extracted trees in this directory")
    parser.add_argument("-v", "--verbose", action="store_true", help="print pytest's output")
    args = parser.parse_args(argv)
    suites = [SUITES[name] for name in args.suite or sorted(SUITES)]

    try:
        sdists = {s.name: fetch(s, cache_dir()) for s in suites}
    except DownloadFailed as exc:
        print(f"compat: download failed: {exc}", file=sys.stderr)
        return EXIT_OFFLINE

    workdir = Path(tempfile.mkdtemp(prefix="statemw-compat-"))
    try:
        results = run_all(suites, sdists, workdir, args.store)
    except HarnessError as exc:
        print(f"compat: harness error: {exc}", file=sys.stderr)
        return EXIT_HARNESS
    finally:
        if args.keep:
            shutil.copytree(workdir, args.keep, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)

    print_summary(results, args.verbose)
    data = as_json(results)
    if args.json:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    status = 0
    broken = [r for r in results if r.run == "alone" and r.passed != len(r.results)]
    for r in broken:
        print(f"compat: {r.suite} fails on its own: the harness does not run it correctly")
        status = EXIT_MISMATCH
    if args.check:
        problems = compare(data, args.check, args.store)
        for problem in problems:
            print(f"compat: {problem}")
        if problems:
            status = EXIT_MISMATCH
        else:
            print(f"compat: statemw results match {args.check}")
    return status


if __name__ == "__main__":
    sys.exit(main())
