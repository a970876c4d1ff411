"""What statemw tells an operator: OpenTelemetry spans and metrics for every store operation, and
problems on the standard `statemw` logger. Nothing here ever names a session in clear, a user,
a state key or value, or a message: a session appears as `session_hash(id)`, a short keyed hash
that is the same in spans and in log lines.

OpenTelemetry is optional (`pip install 'statemw[otel]'` brings `opentelemetry-api` only; the app
brings the SDK and exporter it already uses). statemw reports to the global tracer and meter
providers once the app has set one, or to the providers given to `instrument()`. Without the API,
or with no provider, an operation pays one check (`observer()` returns None) and nothing else.

Spans, children of whatever span is current (a web framework's request span):
    statemw.load, statemw.save, statemw.delete, statemw.get_history, statemw.purge,
    statemw.forget_user
    attributes: statemw.backend, statemw.session_hash, statemw.messages_loaded,
    statemw.messages_appended, statemw.keys_changed, statemw.bytes_written, statemw.round_trips,
    statemw.outcome (ok, not_found, conflict, unavailable, corrupt, error), statemw.sessions_removed
    (purge, forget_user), error.type (the exception's class, never its message).

Metrics: statemw.operation.duration (s), statemw.save.bytes (By), statemw.round_trips,
statemw.conflicts, statemw.unavailable, statemw.expired.reclaimed; see docs/observability.md.

Logging (always, with or without OpenTelemetry): WARNING once when a store becomes unavailable and
INFO when it is back; ERROR for a corrupt record; INFO for a strict save's conflict and for purge
and forget-user summaries. Nothing at INFO or above on the happy path.

One module, past 400 lines, because it is one idea: what an operator sees, spans, metrics
and logs, with the same hashed names in all three.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Sized
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from statemw._drive import AIO, IO, Flow, R, Step, adrive, drive
from statemw._report import (
    ROUND_TRIPS,
    Health,
    conflict,
    corrupt_record,
    forgot_user,
    health,
    logger,
    purged,
    round_trip,
    session_hash,
    set_hash_key,
)
from statemw._version import __version__
from statemw.backends.base import Commit, Load, ReadMessages
from statemw.errors import (
    ConflictError,
    CorruptRecord,
    SessionNotFound,
    StoreUnavailable,
)
from statemw.records import Snapshot

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from statemw.store import Store

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover - the extra is not installed
    HAVE_OTEL = False
else:
    HAVE_OTEL = True

# Whether the app set a provider: read from the API's own globals (two attribute reads), since the
# public get_tracer_provider() looks in os.environ on every call (about 1.4 us). An API version
# without them falls back to the public calls, slower but the same answer.
try:
    from opentelemetry.metrics import _internal as _otel_meter_global

    _GLOBALS = hasattr(otel_trace, "_TRACER_PROVIDER") and hasattr(
        _otel_meter_global, "_METER_PROVIDER"
    )
except ImportError:  # pragma: no cover - not installed, or a future API
    _GLOBALS = False

__all__ = [
    "ROUND_TRIPS",
    "Health",
    "Observer",
    "backend_name",
    "conflict",
    "corrupt_record",
    "forgot_user",
    "health",
    "instrument",
    "logger",
    "observer",
    "purged",
    "round_trip",
    "session_hash",
    "set_hash_key",
    "uninstrument",
]

T = TypeVar("T")

# -- what one operation did -----------------------------------------------------------------------

NETWORKED = frozenset({"redis", "postgresql"})
_BACKENDS = {
    "memory": "memory",
    "diskcache": "diskcache",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "redis+cluster": "redis",
    "rediss+cluster": "redis",
    "postgres": "postgresql",
    "postgresql": "postgresql",
}


_names: dict[str, str] = {}


def backend_name(url: str) -> str:
    """memory, diskcache, redis or postgresql: the store URL's kind, never the URL itself."""
    name = _names.get(url)
    if name is None:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        name = _names[url] = _BACKENDS.get(scheme, "other")
    return name


def outcome_of(exc: BaseException) -> str:
    if isinstance(exc, SessionNotFound):
        return "not_found"
    if isinstance(exc, ConflictError):
        return "conflict"
    if isinstance(exc, StoreUnavailable):
        return "unavailable"
    if isinstance(exc, CorruptRecord):
        return "corrupt"
    return "error"


class Tally:
    """Counts one operation's backend steps and what they carried (sizes, never content): the
    `Watch` a driver shows each step to."""

    __slots__ = (
        "bytes_written",
        "calls",
        "keys_changed",
        "messages_appended",
        "messages_loaded",
        "removed",
    )

    def __init__(self) -> None:
        self.calls = 0
        self.messages_loaded = 0
        self.messages_appended = 0
        self.keys_changed = 0
        self.bytes_written = 0
        self.removed: int | None = None

    def answered(self, step: Step[IO, AIO, R], answer: R) -> None:
        """A step and its answer (statemw.backends.base): what it read or wrote."""
        self.calls += 1
        if isinstance(step, Load):
            if isinstance(answer, Snapshot):
                self.messages_loaded += len(answer.window) + len(answer.lead)
        elif isinstance(step, ReadMessages):
            if isinstance(answer, Sized):
                self.messages_loaded += len(answer)
        elif isinstance(step, Commit):
            delta = step.delta
            self.messages_appended += len(delta.append)
            self.keys_changed += len(delta.set) + len(delta.delete)
            written = sum(len(m) for m in delta.append)
            written += sum(len(e.value) for e in delta.set.values())
            written += sum(len(v) for v in delta.vectors.values())
            if delta.summary is not None:
                written += len(delta.summary.value)
            self.bytes_written += written

    def raised(self, step: Step[IO, AIO, R], error: Exception) -> None:
        """A step that failed: a round trip all the same."""
        self.calls += 1


# -- OpenTelemetry ---------------------------------------------------------------------------------

DURATION_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
)  # fmt: skip
BYTES_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)

MISSING_IF_EMPTY = frozenset({"load", "delete"})
"""Operations whose None/False answer means there was no such session (outcome not_found); not
mere falsiness: a Session with no state is an empty dict."""


class Observer:
    """Spans and metrics for store operations, on one tracer and one meter (either may be None)."""

    def __init__(self, tracer: Tracer | None, meter: Any | None) -> None:
        self.tracer = tracer
        self.meter = meter
        if meter is None:
            return
        self.duration = meter.create_histogram(
            "statemw.operation.duration",
            unit="s",
            description="Time a store operation took (load, save, get_history, ...)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.save_bytes = meter.create_histogram(
            "statemw.save.bytes",
            unit="By",
            description="Bytes a save wrote: encoded values, messages, summary and vectors",
            explicit_bucket_boundaries_advisory=BYTES_BUCKETS,
        )
        self.round_trips = meter.create_counter(
            "statemw.round_trips",
            unit="{round_trip}",
            description="Round trips to the store (backend calls on memory and diskcache)",
        )
        self.conflicts = meter.create_counter(
            "statemw.conflicts",
            unit="{conflict}",
            description="Strict saves that lost a race (ConflictError)",
        )
        self.unavailable = meter.create_counter(
            "statemw.unavailable",
            unit="{operation}",
            description="Operations that failed because the store did not answer (the 503s)",
        )
        self.reclaimed = meter.create_counter(
            "statemw.expired.reclaimed",
            unit="{session}",
            description="Expired records removed: by purge, and by the sweeps memory and "
            "diskcache stores run as they are used",
        )

    # -- one operation --------------------------------------------------------------------------

    def run(
        self, op: str, store: Store, flow: Flow[Any, Any, T], session_id: str | None = None
    ) -> T:
        """drive(flow, store.backend), observed as operation `op`: the tally watches each step."""
        tally = Tally()
        with self._operation(op, store, session_id, tally) as finish:
            result = drive(flow, store.backend, tally)
            finish(result)
            return result

    async def arun(
        self, op: str, store: Store, flow: Flow[Any, Any, T], session_id: str | None = None
    ) -> T:
        tally = Tally()
        with self._operation(op, store, session_id, tally) as finish:
            result = await adrive(flow, store.abackend, tally)
            finish(result)
            return result

    def call(self, op: str, store: Store, fn: Callable[[], int]) -> int:
        """A backend call that is not a flow (purge, forget_user): its result is a count."""
        tally = Tally()
        tally.calls = 1
        with self._operation(op, store, None, tally) as finish:
            tally.removed = fn()
            finish(tally.removed)
            return tally.removed

    async def acall(self, op: str, store: Store, fn: Callable[[], Awaitable[int]]) -> int:
        tally = Tally()
        tally.calls = 1
        with self._operation(op, store, None, tally) as finish:
            tally.removed = await fn()
            finish(tally.removed)
            return tally.removed

    @contextmanager
    def _operation(
        self, op: str, store: Store, session_id: str | None, tally: Tally
    ) -> Generator[Callable[[Any], None], None, None]:
        backend = backend_name(store.url)
        span: Span | None = None
        token = None
        if self.tracer is not None:
            attributes: dict[str, str] = {"statemw.backend": backend}
            if session_id is not None:
                attributes["statemw.session_hash"] = session_hash(session_id)
            span = self.tracer.start_span(
                "statemw." + op, kind=otel_trace.SpanKind.INTERNAL, attributes=attributes
            )
            token = otel_context.attach(otel_trace.set_span_in_context(span))
        trips = [0]
        trips_token = ROUND_TRIPS.set(trips)
        outcome = "ok"
        error: BaseException | None = None

        def finish(result: Any) -> None:
            nonlocal outcome
            if op in MISSING_IF_EMPTY and (result is None or result is False):
                outcome = "not_found"

        started = time.perf_counter()
        try:
            yield finish
        except BaseException as exc:
            error = exc
            outcome = outcome_of(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            ROUND_TRIPS.reset(trips_token)
            round_trips = trips[0] if backend in NETWORKED else tally.calls
            if span is not None and token is not None:
                self._end_span(span, op, tally, round_trips, outcome, error)
                otel_context.detach(token)
            if self.meter is not None:
                self._measure(op, backend, tally, round_trips, outcome, elapsed)
            if op == "purge" and error is None:
                purged(tally.removed or 0, elapsed, backend)
            elif op == "forget_user" and error is None:
                forgot_user(tally.removed or 0, backend)

    def _end_span(
        self,
        span: Span,
        op: str,
        tally: Tally,
        round_trips: int,
        outcome: str,
        error: BaseException | None,
    ) -> None:
        attributes: dict[str, str | int] = {
            "statemw.outcome": outcome,
            "statemw.round_trips": round_trips,
        }
        if op in ("load", "get_history"):
            attributes["statemw.messages_loaded"] = tally.messages_loaded
        elif op == "save":
            attributes["statemw.messages_appended"] = tally.messages_appended
            attributes["statemw.keys_changed"] = tally.keys_changed
            attributes["statemw.bytes_written"] = tally.bytes_written
        if tally.removed is not None:
            attributes["statemw.sessions_removed"] = tally.removed
        if error is not None:
            attributes["error.type"] = type(error).__qualname__
            if outcome in ("unavailable", "corrupt", "error"):
                # the class only: statemw's messages name the session in clear
                span.set_status(otel_trace.StatusCode.ERROR, type(error).__name__)
        span.set_attributes(attributes)
        span.end()

    def _measure(
        self, op: str, backend: str, tally: Tally, round_trips: int, outcome: str, elapsed: float
    ) -> None:
        where = {"statemw.operation": op, "statemw.backend": backend}
        self.duration.record(elapsed, {**where, "statemw.outcome": outcome})
        self.round_trips.add(round_trips, where)
        if op == "save" and outcome == "ok":
            self.save_bytes.record(tally.bytes_written, {"statemw.backend": backend})
        if outcome == "conflict":
            self.conflicts.add(1, where)
        elif outcome == "unavailable":
            self.unavailable.add(1, where)
        if op == "purge" and tally.removed is not None:
            self.reclaimed.add(tally.removed, {"statemw.backend": backend})


def swept(removed: int, backend: str) -> None:
    """Count what an automatic expiry sweep (memory, diskcache) removed: the metric only, no log
    line (it is the happy path)."""
    obs = observer()
    if obs is not None and obs.meter is not None:
        obs.reclaimed.add(removed, {"statemw.backend": backend})


# -- which observer, if any: the one check every operation makes ---------------------------------

_explicit: Observer | None = None
_global: tuple[Any, Any, Observer] | None = None


def observer() -> Observer | None:
    """The observer of this moment: instrument()'s, else one on the global providers once the
    app has set either, else None (the cost of an unobserved operation: this call)."""
    if _explicit is not None:
        return _explicit
    if not HAVE_OTEL:
        return None
    if _GLOBALS:
        tracer_provider = otel_trace._TRACER_PROVIDER
        meter_provider = _otel_meter_global._METER_PROVIDER
    else:  # pragma: no cover - an API without the globals
        tracer_provider, meter_provider = _public_providers()
    if tracer_provider is None and meter_provider is None:
        return None
    found = _global
    if found is None or found[0] is not tracer_provider or found[1] is not meter_provider:
        found = _global_observer(tracer_provider, meter_provider)
    return found[2]


def _public_providers() -> tuple[Any, Any]:
    """The global providers through the public API, None for the proxies it returns unset."""
    tracer_provider: Any = otel_trace.get_tracer_provider()
    meter_provider: Any = otel_metrics.get_meter_provider()
    if isinstance(tracer_provider, otel_trace.ProxyTracerProvider):
        tracer_provider = None
    if type(meter_provider).__name__ == "_ProxyMeterProvider":
        meter_provider = None
    return tracer_provider, meter_provider


def _global_observer(tracer_provider: Any, meter_provider: Any) -> tuple[Any, Any, Observer]:
    global _global
    tracer = None if tracer_provider is None else otel_trace.get_tracer("statemw", __version__)
    meter = None if meter_provider is None else otel_metrics.get_meter("statemw", __version__)
    _global = (tracer_provider, meter_provider, Observer(tracer, meter))
    return _global


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> None:
    """Report to these providers instead of the global ones (tests; apps that keep providers of
    their own). Either may be None: no spans, or no metrics. `uninstrument()` undoes it."""
    global _explicit
    if not HAVE_OTEL:
        raise RuntimeError("statemw.telemetry needs opentelemetry-api: pip install 'statemw[otel]'")
    tracer = None
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer("statemw", __version__)
    meter = None if meter_provider is None else meter_provider.get_meter("statemw", __version__)
    _explicit = Observer(tracer, meter)


def uninstrument() -> None:
    """Back to the global providers (or to nothing, when the app set none)."""
    global _explicit
    _explicit = None
