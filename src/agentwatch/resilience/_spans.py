"""Feeding a circuit from other instrumentations' spans.

The OpenTelemetry SDK hands only *sampled* (recording) spans to ``SpanProcessor.on_end``, so a
breaker fed by spans alone starves under sampling. The policy's own outcomes stay the primary
input; this processor is an extra one, e.g. to open the circuit of a tool when the httpx client
spans of its backend host fail, whoever made them.
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from agentwatch._errors import ConfigError
from agentwatch._internal import report_internal_error
from agentwatch.resilience._breaker import Circuit
from agentwatch.resilience._config import CircuitBreaker, Policy
from agentwatch.resilience._errors import CallKind
from agentwatch.resilience._registry import Registry, default_registry
from agentwatch.resilience._telemetry import ResilienceTelemetry, current_telemetry

__all__ = ["BreakerSpanProcessor"]


class BreakerSpanProcessor(SpanProcessor):
    """Count the outcome of every ended span that ``match`` accepts against circuit ``breaker_key``.

    Status ``ERROR`` is a failure, anything else a success. Outcomes can open a closed circuit;
    only a pipeline's probe call closes a half-open one. The circuit is the registry's circuit for
    ``breaker_key`` (created with ``policy_or_breaker``'s settings if no pipeline made it first), so
    a pipeline built with the same key (a tool's name, ``provider:model``, or its ``breaker_key``)
    shares it. ``name``/``kind`` label the circuit's telemetry when this processor creates it.

    Add it with ``tracer_provider.add_span_processor(...)``. ``match`` runs on the thread that ends
    each span: keep it cheap. A fault in ``match`` is reported and the span is ignored.
    """

    def __init__(
        self,
        breaker_key: str,
        policy_or_breaker: Policy | CircuitBreaker,
        *,
        match: Callable[[ReadableSpan], bool],
        name: str | None = None,
        kind: CallKind = "tool",
        registry: Registry | None = None,
        telemetry: ResilienceTelemetry | None = None,
    ) -> None:
        config = policy_or_breaker.breaker if isinstance(policy_or_breaker, Policy) else policy_or_breaker
        if not isinstance(config, CircuitBreaker):
            raise ConfigError(
                "BreakerSpanProcessor.policy_or_breaker",
                policy_or_breaker,
                "an agentwatch.CircuitBreaker, or an agentwatch.Policy with a breaker",
            )
        if not callable(match):
            raise ConfigError("BreakerSpanProcessor.match", match, "a callable(ReadableSpan) -> bool")
        self._match = match
        self._telemetry = telemetry
        self.circuit: Circuit = (registry or default_registry()).circuit_for(
            breaker_key, config, name=name or breaker_key, kind=kind
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if not self._match(span):
                return
            transition = self.circuit.record_outcome(span.status.status_code is not StatusCode.ERROR)
            if transition is not None:
                (self._telemetry or current_telemetry()).circuit_transition(
                    self.circuit, transition, span=None
                )
        except Exception:  # noqa: BLE001 - a span processor must never fail the span's owner
            report_internal_error("resilience.span_processor")

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
