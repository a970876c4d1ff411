"""Observability (issue 18): spans, metrics and log lines for store operations, read back through
the OpenTelemetry SDK's in-memory exporter and metric reader, with no content, key, user or raw
session id in any of them."""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi import FastAPI
from flask import Flask
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware as AsgiTracing
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware as WsgiTracing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from statemw import (
    ConflictError,
    CorruptRecord,
    Session,
    SessionNotFound,
    Store,
    StoreUnavailable,
    stateful,
    telemetry,
)
from statemw import asgi as statemw_asgi
from statemw import wsgi as statemw_wsgi
from statemw.backends.kv import KVBackend
from statemw.fastapi import SessionDep
from statemw.flask import FlaskState
from statemw.telemetry import session_hash
from tests.support import FakeClock, store_url

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

CONTENT = "plantedCONTENTmarker"
KEY = "plantedKEYmarker"
VALUE = "plantedVALUEmarker"
USER = "plantedUSERmarker"
SECRET = "cookie-secret"


@dataclass
class Otel:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        spans = list(self.spans.get_finished_spans())
        return [s for s in spans if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.finished(name)
        assert len(found) == 1, [s.name for s in self.finished()]
        return found[0]

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]

    def total(self, metric: str, **attributes: str) -> float:
        """The sum of a counter's points (a histogram's count) whose attributes include these."""
        total = 0.0
        for point in self.points(metric):
            if all(point.attributes.get(k) == v for k, v in attributes.items()):
                total += point.count if hasattr(point, "count") else point.value
        return total


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    yield Otel(exporter, reader, tracer_provider)
    telemetry.uninstrument()
    tracer_provider.shutdown()
    meter_provider.shutdown()


def a(span: ReadableSpan, name: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(name)


BACKEND_NAMES = {
    "memory": "memory",
    "diskcache": "diskcache",
    "redis": "redis",
    "postgres": "postgresql",
}


# -- a web turn through each adapter --------------------------------------------------------------


def starlette_app(store: Store) -> Any:
    async def turn(request: Request) -> PlainTextResponse:
        session = request.session
        assert isinstance(session, Session)
        history = await session.aget_history(last=20)
        session.add_message("user", CONTENT)
        session[KEY] = VALUE
        return PlainTextResponse(f"{len(history)} {session.id}")

    app = Starlette(
        routes=[Route("/turn", turn)],
        middleware=[Middleware(statemw_asgi.StateMiddleware, store=store, secret_key=SECRET)],
    )
    return app


def fastapi_app(store: Store) -> Any:
    app = FastAPI()

    @app.get("/turn", response_class=PlainTextResponse)
    async def turn(session: SessionDep) -> str:
        history = await session.aget_history(last=20)
        session.add_message("user", CONTENT)
        session[KEY] = VALUE
        return f"{len(history)} {session.id}"

    app.add_middleware(statemw_asgi.StateMiddleware, store=store, secret_key=SECRET)
    return app


def flask_app(store: Store) -> Any:
    app = Flask(__name__)
    app.config.update(SECRET_KEY=SECRET, STATEMW_STORE=store)
    FlaskState(app)

    @app.get("/turn")
    def turn() -> str:
        from flask import session

        assert isinstance(session, Session)
        history = session.get_history(last=20)
        session.add_message("user", CONTENT)
        session[KEY] = VALUE
        return f"{len(history)} {session.id}"

    return app


def wsgi_app(store: Store) -> Any:
    def turn(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        session: Session = environ[statemw_wsgi.ENVIRON_KEY]
        history = session.get_history(last=20)
        session.add_message("user", CONTENT)
        session[KEY] = VALUE
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"{len(history)} {session.id}".encode()]

    return statemw_wsgi.StateMiddleware(turn, store=store, secret_key=SECRET)


class Browser:
    """Two turns through an adapter under the framework's OpenTelemetry request span."""

    def __init__(self, adapter: str, store: Store, otel: Otel) -> None:
        provider = otel.tracer_provider
        if adapter in ("starlette", "fastapi"):
            app = starlette_app(store) if adapter == "starlette" else fastapi_app(store)
            self.asgi: TestClient | None = TestClient(AsgiTracing(app, tracer_provider=provider))
            self.wsgi: Client | None = None
        else:
            app = flask_app(store) if adapter == "flask" else wsgi_app(store)
            if adapter == "flask":
                app.wsgi_app = WsgiTracing(app.wsgi_app, tracer_provider=provider)
            else:
                app = WsgiTracing(app, tracer_provider=provider)
            self.asgi, self.wsgi = None, Client(app)

    def get(self, path: str) -> str:
        if self.asgi is not None:
            response = self.asgi.get(path)
            assert response.status_code == 200, response.text
            return response.text
        assert self.wsgi is not None
        answer = self.wsgi.get(path)
        assert answer.status_code == 200, answer.text
        return answer.text

    def turn(self) -> tuple[int, str]:
        """A turn: the messages the handler saw in its window, and the session's id."""
        seen, sid = self.get("/turn").split()
        return int(seen), sid


ADAPTERS = ["starlette", "fastapi", "flask", "wsgi"]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_web_turn_traces_load_history_and_save_as_children_of_the_request_span(
    adapter: str, store: Store, backend_kind: str, otel: Otel
) -> None:
    browser = Browser(adapter, store, otel)
    assert browser.turn()[0] == 0
    otel.spans.clear()
    seen, sid = browser.turn()
    assert seen == 1

    request = [s for s in otel.finished() if s.kind == SpanKind.SERVER]
    assert len(request) == 1, [s.name for s in otel.finished()]
    load, history, save = (otel.one(f"statemw.{op}") for op in ("load", "get_history", "save"))
    for span in (load, history, save):
        assert span.parent is not None
        assert span.parent.span_id == request[0].context.span_id
        assert span.context.trace_id == request[0].context.trace_id
        assert a(span, "statemw.backend") == BACKEND_NAMES[backend_kind]
        assert a(span, "statemw.session_hash") == session_hash(sid)
        assert a(span, "statemw.outcome") == "ok"
        assert span.kind == SpanKind.INTERNAL
    assert a(load, "statemw.messages_loaded") == 1
    assert a(load, "statemw.round_trips") >= 1
    assert a(history, "statemw.messages_loaded") == 0  # the window came with the load
    assert a(history, "statemw.round_trips") == 0
    assert a(save, "statemw.messages_appended") == 1
    assert a(save, "statemw.keys_changed") == 1
    assert a(save, "statemw.bytes_written") > len(CONTENT) + len(VALUE)
    assert a(save, "statemw.round_trips") >= 1


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_a_web_turn_is_measured_by_operation_and_backend(
    adapter: str, store: Store, backend_kind: str, otel: Otel
) -> None:
    browser = Browser(adapter, store, otel)
    browser.turn()
    browser.turn()
    backend = BACKEND_NAMES[backend_kind]
    where = {"statemw.backend": backend, "statemw.outcome": "ok"}
    duration = "statemw.operation.duration"
    assert otel.total(duration, **where, **{"statemw.operation": "load"}) == 1
    assert otel.total(duration, **where, **{"statemw.operation": "save"}) == 2
    assert otel.total(duration, **where, **{"statemw.operation": "get_history"}) == 2
    assert otel.total("statemw.save.bytes", **{"statemw.backend": backend}) == 2
    assert otel.total("statemw.round_trips", **{"statemw.operation": "save"}) >= 2
    for point in otel.points(duration):
        assert point.sum > 0
        assert point.sum < 10


def test_the_decorator_traces_under_the_callers_span(memory_store: Store, otel: Otel) -> None:
    @stateful(memory_store)
    def turn(text: str, session: Session) -> int:
        session.add_message("user", text)
        return len(session.messages)

    tracer = otel.tracer_provider.get_tracer("app")
    turn(CONTENT, session_id="chat-1")
    otel.spans.clear()
    with tracer.start_as_current_span("job") as job:
        assert turn(CONTENT, session_id="chat-1") == 2
    load, save = otel.one("statemw.load"), otel.one("statemw.save")
    for span in (load, save):
        assert span.parent is not None
        assert span.parent.span_id == job.get_span_context().span_id
        assert a(span, "statemw.session_hash") == session_hash("chat-1")


# -- outcomes --------------------------------------------------------------------------------------


def test_spans_and_metrics_carry_the_package_version(memory_store: Store, otel: Otel) -> None:
    import statemw

    with pytest.raises(SessionNotFound):
        memory_store.load("nope")
    scope = otel.one("statemw.load").instrumentation_scope
    assert scope is not None
    assert (scope.name, scope.version) == ("statemw", statemw.__version__)
    data = otel.metrics.get_metrics_data()
    assert data is not None
    scopes = {m.scope.version for r in data.resource_metrics for m in r.scope_metrics}
    assert scopes == {statemw.__version__}


def test_the_version_is_written_in_one_place() -> None:
    root = Path(__file__).parent.parent
    pyproject = (root / "pyproject.toml").read_text()
    assert 'version = {attr = "statemw._version.__version__"}' in pyproject
    written = [
        p.relative_to(root).as_posix()
        for p in sorted((root / "statemw").rglob("*.py"))
        if re.search(r"^\s*(__version__|VERSION)\s*=", p.read_text(), re.M)
    ]
    assert written == ["statemw/_version.py"]


def test_a_session_with_messages_and_no_state_loads_as_ok(memory_store: Store, otel: Otel) -> None:
    session = memory_store.create()
    session.add_message("user", CONTENT)
    session.save()
    assert memory_store.get(session.id) == {}  # an empty mapping, yet found
    assert a(otel.one("statemw.load"), "statemw.outcome") == "ok"


def test_the_example_app_prints_its_span_tree() -> None:
    tree = run_python("from examples.observability import demo; print(demo())").splitlines()
    assert tree[0].startswith("POST /chat")
    assert [line.split()[0] for line in tree[1:]] == [
        "statemw.load",
        "statemw.get_history",
        "statemw.save",
    ]
    assert "outcome=ok" in tree[1]
    assert "messages_appended=2" in tree[3]


def test_a_missing_session_loads_as_not_found(memory_store: Store, otel: Otel) -> None:
    assert memory_store.get("no-such-session") is None
    span = otel.one("statemw.load")
    assert a(span, "statemw.outcome") == "not_found"
    assert span.status.status_code == StatusCode.UNSET


def test_a_lost_strict_save_is_a_conflict_in_the_span_the_count_and_the_log(
    store: Store, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    session = store.create()
    session["n"] = 1
    session.save()
    mine, theirs = store.load(session.id), store.load(session.id)
    theirs["n"] = 2
    theirs.save()
    mine["n"] = 3
    with caplog.at_level(logging.INFO, "statemw"), pytest.raises(ConflictError):
        mine.save(strict=True)
    span = otel.finished("statemw.save")[-1]
    assert a(span, "statemw.outcome") == "conflict"
    assert a(span, "error.type") == "ConflictError"
    assert otel.total("statemw.conflicts") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "statemw"]
    assert any("lost a race" in line and session_hash(session.id) in line for line in lines)
    assert not any(session.id in line for line in lines)


def test_a_corrupt_record_is_logged_once_as_an_error_naming_the_hashed_id(
    clock: FakeClock, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store("memory://", clock=clock)
    session = store.create()
    session["n"] = 1
    session.save()
    assert isinstance(store.backend, KVBackend)
    store.backend.kv.set("h:" + session.id, b"\x07garbage")
    with caplog.at_level(logging.INFO, "statemw"), pytest.raises(CorruptRecord):
        store.load(session.id)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert session_hash(session.id) in errors[0].getMessage()
    assert session.id not in errors[0].getMessage()
    span = otel.one("statemw.load")
    assert a(span, "statemw.outcome") == "corrupt"
    assert span.status.status_code == StatusCode.ERROR
    assert session.id not in (span.status.description or "")
    assert not span.events  # no exception event: its message names the session in clear


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_store_outage_logs_once_and_counts_every_503(
    otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    client = TestClient(starlette_app(store))
    with caplog.at_level(logging.INFO, "statemw"):
        for _ in range(3):
            assert client.get("/turn").status_code == 503
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unavailable" in warnings[0].getMessage()
    assert otel.total("statemw.unavailable", **{"statemw.backend": "redis"}) == 3
    spans = otel.finished("statemw.save")
    assert [a(s, "statemw.outcome") for s in spans] == ["unavailable"] * 3
    assert all(s.status.status_code == StatusCode.ERROR for s in spans)


def test_the_end_of_an_outage_is_logged_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    where = tmp_path / "store"
    where.write_text("a file where the store's directory should be")
    store = Store(f"diskcache://{where}")
    session = store.create()
    session["n"] = 1
    with caplog.at_level(logging.INFO, "statemw"):
        for _ in range(2):
            with pytest.raises(StoreUnavailable):
                session.save()
        where.unlink()
        session.save()
        session["n"] = 2
        session.save()
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == ["WARNING", "INFO"], levels
    assert "answers again" in levels[1][1]
    assert "2 failed calls" in levels[1][1]


# -- history, purge, forget_user ------------------------------------------------------------------


def test_history_beyond_the_window_counts_the_messages_it_reads(store: Store, otel: Otel) -> None:
    session = store.create()
    for i in range(130):
        session.add_message("user", f"{CONTENT} {i}")
    session.save()
    loaded = store.load(session.id)  # window=100: the last 100 come with the load
    otel.spans.clear()
    assert len(loaded.get_history(last=120)) == 120
    span = otel.one("statemw.get_history")
    assert a(span, "statemw.messages_loaded") >= 20  # and any neighbour the window rules ask
    assert a(span, "statemw.round_trips") >= 1


def three_expired_sessions(store: Store, clock: FakeClock) -> None:
    """Three saved sessions, then the clock past their 30-day life."""
    for _ in range(3):
        s = store.create()
        s["n"] = 1
        s.save()
    clock.advance(31 * 86400)


def test_purge_reports_what_expiry_reclaimed(
    store: Store, clock: FakeClock, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    three_expired_sessions(store, clock)
    with caplog.at_level(logging.INFO, "statemw"):
        assert store.purge() == 3
    span = otel.one("statemw.purge")
    assert a(span, "statemw.sessions_removed") == 3
    assert otel.total("statemw.expired.reclaimed") == 3
    assert any("purge removed 3" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["memory", "diskcache"])
def test_the_sweeps_memory_and_diskcache_run_by_themselves_count_as_reclaimed(
    kind: str, tmp_path: Path, clock: FakeClock, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(store_url(kind, tmp_path), clock=clock)
    three_expired_sessions(store, clock)
    with caplog.at_level(logging.INFO, "statemw"):
        store.create().save()  # a save sweeps what has expired, no purge() needed
    assert otel.total("statemw.expired.reclaimed") == 3
    assert not caplog.records  # the happy path logs nothing
    store.close()


def test_forget_user_is_traced_and_summarised_without_the_user(
    store: Store, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        s = store.create(user_id=USER)
        s["n"] = 1
        s.save()
    with caplog.at_level(logging.INFO, "statemw"):
        assert store.forget_user(USER) == 2
    assert a(otel.one("statemw.forget_user"), "statemw.sessions_removed") == 2
    lines = [r.getMessage() for r in caplog.records]
    assert any("removed a user's 2 session(s)" in line for line in lines)
    assert not any(USER in line for line in lines)


@pytest.mark.anyio
async def test_async_operations_are_traced_like_blocking_ones(store: Store, otel: Otel) -> None:
    session = store.create()
    session.add_message("user", CONTENT)
    await session.asave()
    loaded = await store.aload(session.id)
    await loaded.aget_history()
    assert await store.adelete(session.id)
    assert not await store.adelete(session.id)
    names = [s.name for s in otel.finished()]
    assert names == [
        "statemw.save",
        "statemw.load",
        "statemw.get_history",
        "statemw.delete",
        "statemw.delete",
    ]
    assert [a(s, "statemw.outcome") for s in otel.finished("statemw.delete")] == [
        "ok",
        "not_found",
    ]


# -- nothing leaks -------------------------------------------------------------------------------


def everything_exported(otel: Otel, caplog: pytest.LogCaptureFixture) -> str:
    """Every span (name, attributes, events, status), metric point attribute and log record
    statemw produced, as one text to search."""
    parts: list[str] = []
    for span in otel.finished():
        parts.append(span.to_json())
    data = otel.metrics.get_metrics_data()
    assert data is not None
    parts.append(data.to_json())
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_text:
            parts.append(record.exc_text)
    return "\n".join(parts)


@pytest.mark.parametrize("adapter", ["starlette", "flask"])
def test_no_content_key_value_user_or_raw_session_id_reaches_spans_metrics_or_logs(
    adapter: str, store: Store, clock: FakeClock, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "statemw")
    browser = Browser(adapter, store, otel)
    web_sid = [browser.turn() for _ in range(3)][-1][1]

    named = f"sid-{CONTENT}"  # an app-chosen id, as guessable as a user name
    session = store.create(user_id=USER, session_id=named)
    session.add_message("user", CONTENT)
    session[KEY] = VALUE
    session.save()
    loaded = store.load(named)
    loaded.get_history(last=1)
    rival = store.load(named)
    rival[KEY] = VALUE + "2"
    rival.save()
    loaded[KEY] = VALUE + "3"
    with pytest.raises(ConflictError):
        loaded.save(strict=True)
    store.forget_user(USER)
    clock.advance(31 * 86400)
    store.purge()
    if isinstance(store.backend, KVBackend):  # a record that fails to decode, quoting content
        again = store.create(session_id=named)
        again[KEY] = VALUE
        again.save()
        store.backend.kv.set("h:" + named, b"\x07" + VALUE.encode())
        with pytest.raises(CorruptRecord):
            store.load(named)

    exported = everything_exported(otel, caplog)
    assert "statemw.save" in exported
    assert session_hash(web_sid) in exported
    for marker in (CONTENT, KEY, VALUE, USER, named, web_sid):
        assert marker not in exported, marker


def test_nothing_is_logged_at_info_or_above_on_the_happy_path(
    store: Store, otel: Otel, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, "statemw"):
        browser = Browser("starlette", store, otel)
        web_sid = [browser.turn() for _ in range(3)][-1][1]
        store.load(web_sid).get_history()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO] == []


# -- without a provider, without the package ---------------------------------------------------


def test_without_a_provider_there_is_no_observer() -> None:
    assert telemetry.observer() is None


def run_python(code: str) -> str:
    """What a fresh interpreter prints (its global providers are its own)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def last_json(code: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(run_python(code).splitlines()[-1])
    return answer


def test_the_global_providers_are_used_once_the_app_sets_them() -> None:
    answer = last_json(
        """
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from statemw import Store, telemetry

store = Store("memory://")
session = store.create()
session["n"] = 1
session.save()  # before the app sets a provider: nothing to report to
before = telemetry.observer() is None
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
store.load(session.id)
telemetry._GLOBALS = False  # as with an API whose globals moved: the public calls answer
store.delete(session.id)
print(json.dumps({"before": before, "spans": [s.name for s in exporter.get_finished_spans()]}))
"""
    )
    assert answer == {"before": True, "spans": ["statemw.load", "statemw.delete"]}


def test_statemw_works_without_opentelemetry_installed() -> None:
    answer = last_json(
        """
import json, sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
from statemw import Store, telemetry

store = Store("memory://")
session = store.create()
session.add_message("user", "hi")
session.save()
print(json.dumps({
    "have_otel": telemetry.HAVE_OTEL,
    "observer": telemetry.observer() is None,
    "history": store.load(session.id).get_history(),
}))
"""
    )
    assert answer == {
        "have_otel": False,
        "observer": True,
        "history": [{"role": "user", "content": "hi"}],
    }


def test_the_operations_page_names_alerts_on_metrics_that_exist() -> None:
    def section(page: str, title: str) -> str:
        text = (Path(__file__).parent.parent / "docs" / page).read_text()
        return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]

    alerts = section("operations.md", "What to watch and alert on")
    assert "(observability.md" in alerts
    named = set(re.findall(r"`(statemw\.[a-z_.]+)`", alerts))
    emitted = set(
        re.findall(r"^\| `(statemw\.[a-z_.]+)` \|", section("observability.md", "Metrics"), re.M)
    )
    assert named == emitted  # each metric statemw emits, and only those
