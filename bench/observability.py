"""What observability costs a web turn (issue 18): statemw's Starlette turn on memory://, and the
per-operation hook, in three set-ups, each in a child process of its own:

- absent: `opentelemetry` cannot be imported (statemw installed without the otel extra);
- off:    opentelemetry-api installed, no provider set (the default for an app that does not
          trace, or one whose other dependencies bring the API);
- sdk:    the SDK's TracerProvider (BatchSpanProcessor, an exporter that drops every batch) and
          MeterProvider (a metric reader nobody collects) set as the global providers, so every
          operation makes a real span and records real metrics; the exporter's own cost is not
          in it.

The turn is bench/web.py's: `session.get_history(last=20)`, `session.add_message(...)`, through
StateMiddleware with the cookie carried between requests, the ASGI app awaited directly (no HTTP
client in the clock), a fresh conversation every 10 turns. Each cell: a warm-up, then the median of
`--requests` requests; the best median of `--rounds` rounds (other processes only add time).

    python bench/observability.py                 # the table and the ratios
    python bench/observability.py --requests 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

MODES = ("absent", "off", "sdk")
SECRET = "bench-secret"
BATCH = 10  # turns per conversation, as bench/web.py does at L=0


def set_up(mode: str) -> None:
    if mode == "absent":
        sys.modules["opentelemetry"] = None  # type: ignore[assignment]
        return
    if mode == "off":
        return
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))


def asgi_app() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from statemw import Session, Store
    from statemw.asgi import StateMiddleware

    async def turn(request: Request) -> PlainTextResponse:
        session = request.session
        assert isinstance(session, Session)
        window = session.get_history(last=20)
        session.add_message("user", "What is the weather like in Berlin this weekend?")
        return PlainTextResponse(f"{len(session.messages)} {len(window)}")

    store = Store("memory://")
    middleware = [Middleware(StateMiddleware, store=store, secret_key=SECRET)]
    return Starlette(routes=[Route("/turn", turn, methods=["POST"])], middleware=middleware)


async def request(app: Any, cookie: str | None) -> tuple[int, str | None, bytes]:
    """One POST /turn; (ns inside the app, the cookie to send next, the body)."""
    headers = [(b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode("latin-1")))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/turn",
        "raw_path": b"/turn",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    done = False
    body: list[bytes] = []
    set_cookie: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal done
        if done:
            return {"type": "http.disconnect"}
        done = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            set_cookie.extend(
                v.decode("latin-1") for k, v in message["headers"] if k == b"set-cookie"
            )
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    start = time.perf_counter_ns()
    await app(scope, receive, send)
    ns = time.perf_counter_ns() - start
    if set_cookie:
        cookie = set_cookie[-1].split(";", 1)[0]
    return ns, cookie, b"".join(body)


async def turns(app: Any, count: int) -> list[int]:
    samples: list[int] = []
    cookie: str | None = None
    for i in range(count):
        if i % BATCH == 0:
            cookie = None  # a fresh conversation
        ns, cookie, body = await request(app, cookie)
        assert body.split()[0] == str(i % BATCH + 1).encode(), body
        samples.append(ns)
    return samples


def hook_ns(repeat: int) -> dict[str, float]:
    """ns per call: the check every operation makes, a whole store.get on memory://, and the same
    get driven directly as before the hook existed (their difference is the hook's cost)."""
    import timeit

    from statemw import Store, telemetry
    from statemw._drive import drive

    store = Store("memory://")
    session = store.create()
    session["n"] = 1
    session.save()
    sid = session.id
    cases = {
        "observer()": (telemetry.observer, 200_000),
        "store.get": (lambda: store.get(sid), 20_000),
        "drive(get)": (lambda: drive(store._get(sid), store.backend), 20_000),
    }
    best = {name: float("inf") for name in cases}
    for _ in range(repeat):  # interleaved, so a busy moment hits every case alike
        for name, (fn, number) in cases.items():
            ns = min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e9
            best[name] = min(best[name], ns)
    return best


def child(mode: str, requests: int, rounds: int) -> None:
    set_up(mode)
    from statemw import telemetry

    assert (telemetry.observer() is not None) == (mode == "sdk"), mode
    app = asgi_app()
    medians = []
    for _ in range(rounds):
        asyncio.run(turns(app, 200))  # warm-up
        samples = asyncio.run(turns(app, requests))
        medians.append(statistics.median(samples) / 1000)
    print(json.dumps({"mode": mode, "turn_us": min(medians), "hook_ns": hook_ns(rounds)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="timed turns per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, args.rounds)
        return
    results: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        command = [sys.executable, __file__, "--child", mode]
        command += ["--requests", str(args.requests), "--rounds", str(args.rounds)]
        out = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=True,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    base = results["absent"]["turn_us"]
    print(
        "| set-up | turn (median µs) | vs absent | observer() ns | store.get ns | drive(get) ns |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for mode in MODES:
        r, h = results[mode], results[mode]["hook_ns"]
        print(
            f"| {mode} | {r['turn_us']:.1f} | {r['turn_us'] / base:.3f} "
            f"| {h['observer()']:.0f} | {h['store.get']:.0f} | {h['drive(get)']:.0f} |"
        )


if __name__ == "__main__":
    main()
