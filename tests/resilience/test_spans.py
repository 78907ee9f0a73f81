"""The span processor feeds a circuit from other instrumentations' spans."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

from agentwatch._errors import ConfigError
from agentwatch.resilience import (
    AttemptContext,
    BreakerSpanProcessor,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Policy,
    ResilienceTelemetry,
)
from support import Signals


def to_backend(span: ReadableSpan) -> bool:
    return span.kind is SpanKind.CLIENT and (span.attributes or {}).get("server.address") == "kb.internal"


def http_span(provider: TracerProvider, host: str, *, failed: bool) -> None:
    with provider.get_tracer("httpx").start_as_current_span(
        "GET", kind=SpanKind.CLIENT, attributes={"server.address": host}
    ) as span:
        if failed:
            span.set_status(Status(StatusCode.ERROR))


def test_error_spans_open_the_circuit_a_pipeline_uses(
    make: Any, telemetry: ResilienceTelemetry, signals: Signals
) -> None:
    policy = Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=3))
    processor = BreakerSpanProcessor("kb.internal", policy, match=to_backend, telemetry=telemetry)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    pipeline = make(policy, name="search_knowledge_base", breaker_key="kb.internal")
    assert pipeline.circuits["search_knowledge_base"] is processor.circuit

    http_span(provider, "kb.internal", failed=True)
    http_span(provider, "kb.internal", failed=True)
    http_span(provider, "other.host", failed=True)  # not matched
    http_span(provider, "kb.internal", failed=False)  # a success resets the run
    for _ in range(3):
        http_span(provider, "kb.internal", failed=True)
    assert processor.circuit.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):
        pipeline.call(lambda ctx: "not called")
    opened = [
        p
        for p in signals.points("agentwatch.resilience.events")
        if dict(p.attributes)["agentwatch.resilience.event"] == "circuit_opened"
    ]
    assert [dict(p.attributes)["agentwatch.circuit.name"] for p in opened] == ["kb.internal"]
    provider.shutdown()


def test_a_failing_match_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    def broken(span: ReadableSpan) -> bool:
        raise RuntimeError("match bug")

    processor = BreakerSpanProcessor("kb", CircuitBreaker(failure_threshold=1), match=broken)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    http_span(provider, "kb", failed=True)
    assert processor.circuit.state is CircuitState.CLOSED
    assert "resilience.span_processor" in caplog.text
    provider.shutdown()


def test_needs_a_breaker() -> None:
    with pytest.raises(ConfigError) as caught:
        BreakerSpanProcessor("kb", Policy(), match=to_backend)
    assert caught.value.setting == "BreakerSpanProcessor.policy_or_breaker"


def test_span_outcomes_do_not_decide_a_half_open_circuit(make: Any, clock: Any) -> None:
    policy = Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=1, break_duration=5.0))
    pipeline = make(policy, name="kb")
    processor = BreakerSpanProcessor("kb", policy, match=lambda span: True)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    http_span(provider, "kb", failed=True)
    clock.advance(5.0)
    seen: list[str] = []

    def probe(ctx: AttemptContext) -> str:
        http_span(provider, "kb", failed=False)  # a success seen elsewhere during the probe
        seen.append(processor.circuit.state.value)
        return "ok"

    assert pipeline.call(probe) == "ok"
    assert seen == ["half_open"]
    assert processor.circuit.state is CircuitState.CLOSED
    provider.shutdown()
