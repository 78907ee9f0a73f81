"""Trace context for the services a tool calls: an ``X-Trace-ID`` propagator and a header helper.

``XTraceIdPropagator`` is registered under the ``opentelemetry_propagator`` entry point name
``x-trace-id``, so ``OTEL_PROPAGATORS=tracecontext,baggage,x-trace-id`` makes every injection point
of OpenTelemetry (instrumented HTTP clients, :func:`trace_headers`, agentwatch's LLM and MCP
calls) add ``X-Trace-ID: <32 lowercase hex digits>`` next to ``traceparent``.

Extraction rules (the header is a fallback, never an override):

1. If the context already holds a valid parent — a ``traceparent`` extracted by the
   ``tracecontext`` propagator, or any other propagator's — ``X-Trace-ID`` is ignored, whatever
   the order of ``OTEL_PROPAGATORS`` (``tracecontext`` replaces a parent set before it).
2. Otherwise a valid ``X-Trace-ID`` becomes the remote parent: its trace id, a span id derived
   from it (the caller's span id is unknown, so every request of one trace hangs off the same
   placeholder parent), and the *sampled* flag (a caller that sends a trace id wants the trace).
3. Valid means 32 hexadecimal digits, in either case, optionally as a dashed UUID
   (``8-4-4-4-12``), surrounding whitespace ignored, not all zeros. Anything else is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

__all__ = ["X_TRACE_ID_HEADER", "XTraceIdPropagator", "trace_headers"]

X_TRACE_ID_HEADER = "X-Trace-ID"
_LOOKUPS = (X_TRACE_ID_HEADER, "x-trace-id", "X-TRACE-ID")
_FORMAT = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


def _parse(value: str) -> int | None:
    text = value.strip()
    if not _FORMAT.fullmatch(text):
        return None
    trace_id = int(text.replace("-", ""), 16)
    return trace_id or None


def _placeholder_span_id(trace_id: int) -> int:
    return (trace_id & 0xFFFF_FFFF_FFFF_FFFF) or (trace_id >> 64)


class XTraceIdPropagator(TextMapPropagator):
    """Injects ``X-Trace-ID`` (the current trace id) and extracts it as a fallback parent.

    Use it through ``OTEL_PROPAGATORS=tracecontext,baggage,x-trace-id``, or compose it yourself::

        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator(), XTraceIdPropagator()])

    See the module documentation for the extraction rules.
    """

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return
        setter.set(carrier, X_TRACE_ID_HEADER, format(span_context.trace_id, "032x"))

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        if context is None:
            context = Context()
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
        for name in _LOOKUPS:
            values = getter.get(carrier, name)
            if values:
                trace_id = _parse(_first(values))
                if trace_id is None:
                    return context
                span_context = SpanContext(
                    trace_id=trace_id,
                    span_id=_placeholder_span_id(trace_id),
                    is_remote=True,
                    trace_flags=TraceFlags(TraceFlags.SAMPLED),
                )
                return trace.set_span_in_context(NonRecordingSpan(span_context), context)
        return context

    @property
    def fields(self) -> set[str]:
        return {X_TRACE_ID_HEADER}


def _first(values: Iterable[str] | str) -> str:
    if isinstance(values, str):
        return values
    for value in values:
        return value
    return ""


def trace_headers(context: Context | None = None) -> dict[str, str]:
    """The headers the configured propagators (``OTEL_PROPAGATORS``) inject for ``context``.

    For tools that call HTTP APIs through clients no instrumentation covers::

        requests.get(url, headers={**trace_headers(), "Accept": "application/json"})

    Inside an ``execute_tool`` span this gives ``traceparent`` (and ``tracestate``/``baggage``
    when set, ``X-Trace-ID`` when ``x-trace-id`` is configured) naming that span as the parent.
    Outside any span it is empty.
    """
    # Imported here: `opentelemetry.propagate` loads the OTEL_PROPAGATORS entry points when it is
    # first imported, and with x-trace-id among them that would import this module half-done.
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier
