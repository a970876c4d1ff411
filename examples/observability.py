"""A Starlette app whose session store is traced and measured (docs/observability.md).

The app sets the OpenTelemetry SDK up as any traced app does; statemw reports to the global
providers on its own. Spans go to the console, or to an OTLP collector when
OTEL_EXPORTER_OTLP_ENDPOINT is set (and opentelemetry-exporter-otlp is installed).

    python -m examples.observability            # serve on 127.0.0.1:8000 (needs uvicorn)
    python -m examples.observability --demo     # two turns in-process, then the span tree
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from statemw import Session, Store
from statemw.asgi import StateMiddleware


def set_up_telemetry(spans: SpanExporter | None = None, reader: MetricReader | None = None) -> None:
    """The app's own OpenTelemetry set-up; statemw needs nothing more."""
    resource = Resource.create({"service.name": "chat"})
    tracer_provider = TracerProvider(resource=resource)
    if spans is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    elif os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
            OTLPSpanExporter,
        )

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    if reader is None:
        reader = PeriodicExportingMetricReader(ConsoleMetricExporter(), 60_000)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


async def chat(request: Request) -> JSONResponse:
    session = request.session
    assert isinstance(session, Session)
    text = (await request.json())["text"]
    history = await session.aget_history(last=20)
    session.add_message("user", text)
    session.add_message("assistant", f"({len(history)} messages before this one)")
    return JSONResponse({"messages": len(session.messages)})


def make_app(store: Store | None = None) -> Any:
    app = Starlette(
        routes=[Route("/chat", chat, methods=["POST"])],
        middleware=[
            Middleware(
                StateMiddleware,
                store=store or Store(os.environ.get("STATEMW_URL", "memory://")),
                secret_key=os.environ.get("SECRET_KEY", "change-me"),
            )
        ],
    )
    return OpenTelemetryMiddleware(app)  # the request span statemw's spans are children of


def span_tree(spans: Sequence[ReadableSpan]) -> str:
    """Spans as an indented tree, each with its duration and statemw's attributes."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            shown = {k: v for k, v in (span.attributes or {}).items() if k.startswith("statemw.")}
            attrs = " ".join(f"{k.removeprefix('statemw.')}={v}" for k, v in shown.items())
            lines.append(f"{'  ' * depth}{span.name}  {ms:.2f} ms  {attrs}".rstrip())
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def demo() -> str:
    """Two turns of one browser; the span tree of the second."""
    from starlette.testclient import TestClient

    exporter = InMemorySpanExporter()
    set_up_telemetry(spans=exporter, reader=InMemoryMetricReader())
    with TestClient(make_app(Store("memory://"))) as client:
        client.post("/chat", json={"text": "Find flights to Berlin"})
        exporter.clear()
        client.post("/chat", json={"text": "Only direct ones"})
    # the ASGI instrumentation's own receive/send spans left out
    return span_tree([s for s in exporter.get_finished_spans() if " http " not in s.name])


if __name__ == "__main__":
    if "--demo" in sys.argv:
        print(demo())
    else:
        import uvicorn

        set_up_telemetry()
        uvicorn.run(make_app(), host="127.0.0.1", port=8000)
