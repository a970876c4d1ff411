"""Shared fixtures: a fake clock, and a Store on each backend (the contract suite runs on all)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from statemw import Store, configure
from tests import postgres_server, redis_server
from tests.demo_server import DemoServer
from tests.support import BACKENDS, DEMO_BROWSERS, Browser, FakeClock, store_url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session", autouse=True)
def _redis_keys_cleanup() -> Iterator[None]:
    """Redis tests share one server: delete this run's keys (and stop a server we started)."""
    yield
    redis_server.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _postgres_schemas_cleanup() -> Iterator[None]:
    """PostgreSQL tests share one server: drop this run's schemas."""
    yield
    postgres_server.cleanup()


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend_kind: str, tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    """A Store on each backend, with a fake clock; also the configured default."""
    store = Store(store_url(backend_kind, tmp_path), clock=clock)
    configure(store)
    yield store
    configure(None)
    store.close()


@pytest.fixture
def memory_store(clock: FakeClock) -> Store:
    """One memory store, for tests of pure logic that need not run on every backend."""
    return Store("memory://", clock=clock)


@pytest.fixture(params=list(DEMO_BROWSERS))
def open_browser(request: pytest.FixtureRequest, store: Store) -> Callable[[], Browser]:
    """Opens a device on the demo (each app in turn, on each backend) through its test client."""
    factory = DEMO_BROWSERS[str(request.param)]
    return lambda: factory(store)


@pytest.fixture(params=["starlette_app", "flask_app"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DemoServer]:
    """A demo app as a real server process (each app in turn), its store in tmp_path."""
    demo = DemoServer(str(request.param), tmp_path / "store")
    demo.start()
    yield demo
    demo.stop()
