"""Trace context for the services tools call: ``X-Trace-ID`` and ``trace_headers()``, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.propagation import XTraceIdPropagator, trace_headers
from agentwatch.tools import tool
from support import Signals

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
OTHER_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def composite(*, x_first: bool = False) -> CompositePropagator:
    parts: list[TextMapPropagator] = [TraceContextTextMapPropagator(), W3CBaggagePropagator()]
    return CompositePropagator([XTraceIdPropagator(), *parts] if x_first else [*parts, XTraceIdPropagator()])


def parent_of(context: Any) -> trace.SpanContext:
    return trace.get_current_span(context).get_span_context()


@pytest.fixture
def tracer_provider(signals: Signals) -> TracerProvider:
    return signals.tracer_provider


def test_injects_the_current_trace_id(tracer_provider: TracerProvider) -> None:
    carrier: dict[str, str] = {}
    XTraceIdPropagator().inject(carrier)
    assert carrier == {}  # no span, no header

    with tracer_provider.get_tracer("t").start_as_current_span("s") as span:
        composite().inject(carrier)
    assert carrier["X-Trace-ID"] == format(span.get_span_context().trace_id, "032x")
    assert carrier["traceparent"].split("-")[1] == carrier["X-Trace-ID"]
    assert XTraceIdPropagator().fields == {"X-Trace-ID"}


@pytest.mark.parametrize("header", ["X-Trace-ID", "x-trace-id"])
@pytest.mark.parametrize(
    "value",
    [TRACE_ID, TRACE_ID.upper(), f" {TRACE_ID} ", "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"],
)
def test_extracts_x_trace_id_as_a_fallback_parent(header: str, value: str) -> None:
    context = composite().extract({header: value})
    parent = parent_of(context)
    assert parent.is_valid and parent.is_remote
    assert format(parent.trace_id, "032x") == TRACE_ID
    assert parent.trace_flags == TraceFlags.SAMPLED
    # Every request of one trace hangs off the same placeholder parent.
    assert parent_of(composite().extract({header: value})).span_id == parent.span_id


@pytest.mark.parametrize("x_first", [False, True])
def test_a_traceparent_always_wins(x_first: bool) -> None:
    context = composite(x_first=x_first).extract({"traceparent": TRACEPARENT, "X-Trace-ID": OTHER_TRACE_ID})
    parent = parent_of(context)
    assert format(parent.trace_id, "032x") == TRACE_ID
    assert format(parent.span_id, "016x") == "00f067aa0ba902b7"


def test_an_invalid_traceparent_falls_back_to_x_trace_id() -> None:
    parent = parent_of(composite().extract({"traceparent": "00-nonsense-01", "X-Trace-ID": OTHER_TRACE_ID}))
    assert format(parent.trace_id, "032x") == OTHER_TRACE_ID


@pytest.mark.parametrize("value", ["", "abc", "0" * 32, "g" * 32, TRACE_ID + "0", "4bf92f35-77b3-4da6-a3ce"])
def test_invalid_values_are_ignored(value: str) -> None:
    assert not parent_of(composite().extract({"X-Trace-ID": value})).is_valid


def test_registered_under_the_x_trace_id_entry_point() -> None:
    (entry,) = entry_points(group="opentelemetry_propagator", name="x-trace-id")
    assert entry.load() is XTraceIdPropagator


def test_otel_propagators_turns_it_on_everywhere() -> None:
    # OTEL_PROPAGATORS is read once, when opentelemetry.propagate is imported: a fresh interpreter.
    script = textwrap.dedent(
        """
        import json, sys
        from opentelemetry import propagate, trace
        from opentelemetry.sdk.trace import TracerProvider
        from agentwatch.propagation import trace_headers

        TRACE_ID = sys.argv[1]
        tracer = TracerProvider().get_tracer("t")
        with tracer.start_as_current_span("s") as span:
            headers = trace_headers()
        extracted = trace.get_current_span(propagate.extract({"X-Trace-ID": TRACE_ID})).get_span_context()
        print(json.dumps({
            "headers": headers,
            "trace_id": format(span.get_span_context().trace_id, "032x"),
            "extracted": format(extracted.trace_id, "032x"),
        }))
        """
    )
    env = {**os.environ, "OTEL_PROPAGATORS": "tracecontext,baggage,x-trace-id"}
    out = subprocess.run(
        [sys.executable, "-c", script, TRACE_ID], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["headers"]["X-Trace-ID"] == data["trace_id"]
    assert data["headers"]["traceparent"].split("-")[1] == data["trace_id"]
    assert data["extracted"] == TRACE_ID


def test_a_misspelled_propagator_is_named_and_tools_still_run() -> None:
    # opentelemetry.propagate raises a bare ValueError at import for an unknown name: a tool call
    # must not trip over it, and instrument() must say which setting is wrong.
    script = textwrap.dedent(
        """
        import json
        import agentwatch

        @agentwatch.tool
        def double(x: int) -> int:
            return 2 * x

        result = double(x=2)
        try:
            agentwatch.instrument(configure_sdk=False)
        except agentwatch.ConfigError as exc:
            print(json.dumps({"result": result, "setting": exc.setting, "accepted": exc.accepted}))
        """
    )
    env = {**os.environ, "OTEL_PROPAGATORS": "tracecontext,x-trace-idd"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["result"] == 4
    assert data["setting"] == "OTEL_PROPAGATORS"
    assert "x-trace-id" in data["accepted"]
    assert "tracecontext" in data["accepted"]


def test_trace_headers_use_the_configured_propagators(tracer_provider: TracerProvider) -> None:
    assert trace_headers() == {}
    with tracer_provider.get_tracer("t").start_as_current_span("s") as span:
        headers = trace_headers()
    context = span.get_span_context()
    flags = int(context.trace_flags)
    assert headers == {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"}
    explicit = trace_headers(trace.set_span_in_context(span))
    assert explicit == headers


class _Service:
    """A downstream HTTP service on 127.0.0.1 that continues the caller's trace."""

    def __init__(self, tracer_provider: TracerProvider, propagator: TextMapPropagator) -> None:
        tracer = tracer_provider.get_tracer("downstream")
        service = self
        self.received: list[dict[str, str]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service.received.append(dict(self.headers.items()))
                context = propagator.extract(self.headers)
                with tracer.start_as_current_span("GET /weather", context=context, kind=SpanKind.SERVER):
                    body = b'{"forecast": "sunny"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/weather"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Service:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def tele(signals: Signals) -> Iterator[Signals]:
    set_default_telemetry(**signals.providers)
    yield signals
    set_default_telemetry()


def _only(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_a_tools_http_call_continues_the_trace(tele: Signals) -> None:
    with _Service(tele.tracer_provider, composite()) as service:

        @tool
        def get_forecast(city: str) -> dict[str, str]:
            response = httpx.get(service.url, params={"city": city}, headers=trace_headers())
            response.raise_for_status()
            result: dict[str, str] = response.json()
            return result

        assert get_forecast("Paris") == {"forecast": "sunny"}

    spans = tele.finished()
    tool_span = _only(spans, "execute_tool get_forecast")
    server = _only(spans, "GET /weather")
    assert server.kind is SpanKind.SERVER
    assert server.context.trace_id == tool_span.context.trace_id
    assert server.parent is not None and server.parent.span_id == tool_span.context.span_id
    assert server.parent.is_remote


def test_a_service_that_only_gets_x_trace_id_joins_the_trace(tele: Signals) -> None:
    with _Service(tele.tracer_provider, composite()) as service:

        @tool
        def legacy_client() -> int:
            headers: dict[str, str] = {}
            XTraceIdPropagator().inject(headers)  # a shop's client that sends X-Trace-ID only
            return httpx.get(service.url, headers=headers).status_code

        assert legacy_client() == 200

    tool_span = _only(tele.finished(), "execute_tool legacy_client")
    server = _only(tele.finished(), "GET /weather")
    assert server.context.trace_id == tool_span.context.trace_id
    assert "traceparent" not in {k.lower() for k in service.received[0]}
