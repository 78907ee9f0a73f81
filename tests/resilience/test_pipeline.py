"""The engine end to end: degradation, disabled tools, LLM fallback chains, span events and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, Span

from agentwatch._errors import ConfigError
from agentwatch.resilience import (
    AttemptContext,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    ResilienceTelemetry,
    Retry,
    ToolDisabledError,
    ToolUnavailable,
    disable_tool,
    enable_tool,
)
from resilience._support import FakeClock, event_counts, events
from support import Signals, make_signals


class StatusError(Exception):
    def __init__(self, status: int, body: Any = None) -> None:
        super().__init__(f"Error code: {status}")
        self.status_code = status
        self.response = httpx.Response(status)
        self.body = body


def down(ctx: AttemptContext) -> str:
    raise ConnectionError("backend down")


async def adown(ctx: AttemptContext) -> str:
    raise ConnectionError("backend down")


@pytest.fixture
def tracer(signals: Signals) -> Any:
    return signals.tracer_provider.get_tracer("test")


# -- graceful degradation -----------------------------------------------------------------------


def test_optional_tool_degrades_while_critical_raises(make: Any, tracer: Any, signals: Signals) -> None:
    optional = make(Policy(timeout=None, critical=False), name="get_user_preferences")
    critical = make(Policy(timeout=None), name="search_knowledge_base")
    with tracer.start_as_current_span("execute_tool get_user_preferences") as span:
        result = optional.call(down, span=span)
    assert result == ToolUnavailable(
        tool="get_user_preferences",
        reason="dependency",
        message="The tool 'get_user_preferences' is unavailable (its dependency failed); proceed without it.",
    )
    assert isinstance(result, ToolUnavailable)
    assert json.loads(json.dumps(result.to_dict())) == {
        "status": "unavailable",
        "tool": "get_user_preferences",
        "reason": "dependency",
        "message": result.message,
    }
    assert "backend down" not in result.message
    span_data = signals.only_span("execute_tool get_user_preferences")
    assert span_data.attributes is not None
    assert span_data.attributes["error.type"] == "ConnectionError"
    (fallback,) = events(span_data, "fallback")
    assert fallback["agentwatch.fallback.reason"] == "dependency"
    with pytest.raises(ConnectionError):
        critical.call(down)


@pytest.mark.anyio
async def test_optional_async_tool_degrades_while_critical_raises(make: Any) -> None:
    optional = make(Policy(timeout=None, critical=False), name="fetch_related_content")
    result = await optional.acall(adown)
    assert isinstance(result, ToolUnavailable)
    assert result.reason == "dependency"
    with pytest.raises(ConnectionError):
        await make(Policy(timeout=None), name="search").acall(adown)


def test_optional_tool_still_raises_validation_errors(make: Any) -> None:
    error = ValueError("city is required")

    def invalid(ctx: AttemptContext) -> str:
        raise error

    with pytest.raises(ValueError, match="city is required") as caught:
        make(Policy(timeout=None, critical=False)).call(invalid)
    assert caught.value is error


def test_optional_tool_degrades_on_open_circuit_and_timeout(make: Any, clock: FakeClock) -> None:
    pipeline = make(
        Policy(timeout=None, critical=False, breaker=CircuitBreaker(failure_threshold=1)), name="prefs"
    )
    assert pipeline.call(down).reason == "dependency"
    rejected = pipeline.call(lambda ctx: "never")
    assert rejected.reason == "circuit_open"
    assert "circuit open" in rejected.message

    release = threading.Event()
    slow = make(Policy(timeout=0.05, critical=False), name="slow", clock=time.monotonic)
    try:
        result = slow.call(lambda ctx: release.wait(5))
    finally:
        release.set()
    assert result == ToolUnavailable.for_tool("slow", "timeout")


@pytest.mark.parametrize(
    ("policy", "kind", "setting"),
    [
        (Policy(timeout=None, critical=False), "llm", "Policy.critical"),
        (Policy(fallback_models=["gpt-4o"]), "tool", "Policy.fallback_models"),
        (Policy(first_chunk_timeout=1.0), "tool", "Policy.first_chunk_timeout"),
    ],
)
def test_a_setting_that_would_do_nothing_is_refused(
    make: Any, policy: Policy, kind: str, setting: str
) -> None:
    # LLM calls never degrade, and tools have no fallback models or chunks: say so, not ignore it.
    with pytest.raises(ConfigError) as caught:
        make(policy, name="gpt-4o", kind=kind)
    assert caught.value.setting == setting


# -- disabled tools -----------------------------------------------------------------------------


def test_disabled_tool_degrades_or_raises_at_once_and_works_after_enable(
    make: Any, tracer: Any, signals: Signals
) -> None:
    critical = make(Policy(timeout=None), name="search_knowledge_base")
    optional = make(Policy(timeout=None, critical=False), name="get_user_preferences")
    calls: list[str] = []

    def tool(ctx: AttemptContext) -> str:
        calls.append("called")
        return "data"

    disable_tool("search_knowledge_base")
    disable_tool("get_user_preferences")
    with tracer.start_as_current_span("critical") as span, pytest.raises(ToolDisabledError) as caught:
        critical.call(tool, span=span)
    assert caught.value.name == "search_knowledge_base"
    assert "disabled" in str(caught.value)
    assert optional.call(tool) == ToolUnavailable.for_tool("get_user_preferences", "tool_disabled")
    assert calls == []
    span_data = signals.only_span("critical")
    assert span_data.attributes is not None
    assert span_data.attributes["error.type"] == "tool_disabled"
    assert [e["name"] for e in events(span_data)] == ["tool_disabled"]

    enable_tool("search_knowledge_base")
    enable_tool("get_user_preferences")
    assert critical.call(tool) == "data"
    assert optional.call(tool) == "data"


@pytest.mark.anyio
async def test_disabled_async_tool(make: Any) -> None:
    pipeline = make(Policy(timeout=None), name="search")

    async def tool(ctx: AttemptContext) -> str:
        return "data"

    disable_tool("search")
    with pytest.raises(ToolDisabledError):
        await pipeline.acall(tool)
    enable_tool("search")
    assert await pipeline.acall(tool) == "data"


# -- LLM fallback chains ------------------------------------------------------------------------


def test_llm_falls_back_to_the_next_model(make: Any, tracer: Any, signals: Signals) -> None:
    policy = Policy(timeout=None, retry=Retry(attempts=2), fallback_models=["gpt-4o-mini", "gpt-4.1-nano"])
    pipeline = make(policy, name="gpt-4o", kind="llm", provider="openai")
    models: list[str | None] = []

    def chat(ctx: AttemptContext) -> str:
        models.append(ctx.model)
        assert ctx.disable_sdk_retries is True
        if ctx.model == "gpt-4o":
            raise StatusError(503)
        return f"answer from {ctx.model}"

    with tracer.start_as_current_span("chat gpt-4o") as span:
        assert pipeline.call(chat, span=span) == "answer from gpt-4o-mini"
    assert models == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    span_data = signals.only_span()
    assert span_data.attributes is not None
    assert span_data.attributes["agentwatch.resilience.attempts"] == 3
    assert "error.type" not in span_data.attributes
    names = [e["name"] for e in events(span_data)]
    assert names == ["retry", "fallback"]
    (fallback,) = events(span_data, "fallback")
    assert fallback["gen_ai.request.model"] == "gpt-4o-mini"
    assert fallback["agentwatch.fallback.reason"] == "dependency"
    assert fallback["error.type"] == "test_pipeline.StatusError" or fallback["error.type"].endswith(
        "StatusError"
    )


@pytest.mark.anyio
async def test_async_llm_chain_raises_the_last_error_when_all_fail(make: Any) -> None:
    pipeline = make(Policy(timeout=None, fallback_models=["b", "c"]), name="a", kind="llm")
    errors = {m: StatusError(500) for m in "abc"}
    models: list[str | None] = []

    async def chat(ctx: AttemptContext) -> str:
        models.append(ctx.model)
        raise errors[ctx.model or ""]

    with pytest.raises(StatusError) as caught:
        await pipeline.acall(chat)
    assert caught.value is errors["c"]
    assert models == ["a", "b", "c"]


def test_context_length_errors_fall_back_but_other_validation_errors_do_not(make: Any) -> None:
    pipeline = make(Policy(timeout=None, fallback_models=["big-context"]), name="small", kind="llm")

    def too_long(ctx: AttemptContext) -> str:
        if ctx.model == "small":
            raise StatusError(400, body={"code": "context_length_exceeded"})
        return "ok"

    assert pipeline.call(too_long) == "ok"
    bad_request = StatusError(400, body={"code": "invalid_value"})
    models: list[str | None] = []

    def invalid(ctx: AttemptContext) -> str:
        models.append(ctx.model)
        raise bad_request

    with pytest.raises(StatusError) as caught:
        pipeline.call(invalid)
    assert caught.value is bad_request
    assert models == ["small"]


def test_open_circuit_of_the_primary_model_goes_to_the_fallback(make: Any) -> None:
    policy = Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=1), fallback_models=["backup"])
    pipeline = make(policy, name="primary", kind="llm", provider="p")
    pipeline.circuits["primary"].open()
    assert pipeline.call(lambda ctx: ctx.model) == "backup"


# -- telemetry ----------------------------------------------------------------------------------


def test_span_events_attributes_and_metrics(
    make: Any, clock: FakeClock, tracer: Any, signals: Signals
) -> None:
    policy = Policy(
        timeout=None,
        retry=Retry(attempts=2, jitter=False),
        breaker=CircuitBreaker(failure_threshold=2, break_duration=5.0),
    )
    pipeline = make(policy, name="search")
    with tracer.start_as_current_span("first") as span, pytest.raises(ConnectionError):
        pipeline.call(down, span=span)
    with tracer.start_as_current_span("second") as span, pytest.raises(CircuitOpenError):
        pipeline.call(down, span=span)
    clock.advance(5.0)
    with tracer.start_as_current_span("third") as span:
        assert pipeline.call(lambda ctx: "ok", span=span) == "ok"

    first = signals.only_span("first")
    assert [e["name"] for e in events(first)] == ["retry", "circuit_opened"]
    (retry,) = events(first, "retry")
    assert retry == {
        "name": "retry",
        "agentwatch.retry.attempt": 1,
        "agentwatch.retry.delay": 0.5,
        "error.type": "ConnectionError",
    }
    assert events(first, "circuit_opened")[0]["agentwatch.circuit.name"] == "search"
    assert first.attributes is not None
    assert first.attributes["agentwatch.resilience.attempts"] == 2

    second = signals.only_span("second")
    assert second.attributes is not None
    assert second.attributes["error.type"] == "circuit_open"
    assert second.attributes["agentwatch.resilience.attempts"] == 0
    assert events(second, "circuit_rejected")[0]["error.type"] == "circuit_open"

    third = signals.only_span("third")
    assert [e["name"] for e in events(third)] == ["circuit_half_opened", "circuit_closed"]

    assert event_counts(signals) == {
        ("retry", "search"): 1,
        ("circuit_opened", "search"): 1,
        ("circuit_rejected", "search"): 1,
        ("circuit_half_opened", "search"): 1,
        ("circuit_closed", "search"): 1,
    }
    policies = {
        dict(p.attributes)["agentwatch.resilience.event"]: dict(p.attributes)["agentwatch.resilience.policy"]
        for p in signals.points("agentwatch.resilience.events")
    }
    assert policies == {
        "retry": "retry",
        "circuit_opened": "circuit_breaker",
        "circuit_rejected": "circuit_breaker",
        "circuit_half_opened": "circuit_breaker",
        "circuit_closed": "circuit_breaker",
    }
    (histogram,) = signals.points("agentwatch.resilience.attempts")
    assert dict(histogram.attributes) == {"gen_ai.tool.name": "search"}
    assert (histogram.count, histogram.sum) == (3, 3)
    assert list(histogram.explicit_bounds) == [1, 2, 3, 4, 5, 6, 8, 10]
    (gauge,) = signals.points("agentwatch.circuit.state")
    assert dict(gauge.attributes) == {"agentwatch.circuit.name": "search", "gen_ai.tool.name": "search"}
    assert gauge.value == 0


def test_circuit_gauge_reports_open_and_llm_model(make: Any, signals: Signals) -> None:
    pipeline = make(Policy(breaker=CircuitBreaker()), name="gpt-4o", kind="llm", provider="openai")
    pipeline.circuits["gpt-4o"].open()
    (gauge,) = signals.points("agentwatch.circuit.state")
    assert dict(gauge.attributes) == {
        "agentwatch.circuit.name": "openai:gpt-4o",
        "gen_ai.request.model": "gpt-4o",
    }
    assert gauge.value == 2


def test_sampled_out_span_still_gets_metrics(make: Any, signals: Signals) -> None:
    unsampled = make_signals(sampler=ALWAYS_OFF)
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=2)))
    with unsampled.tracer_provider.get_tracer("t").start_as_current_span("x") as span:
        assert not span.is_recording()
        with pytest.raises(ConnectionError):
            pipeline.call(down, span=span)
    assert event_counts(signals) == {("retry", "search"): 1}


class ExplodingSpan(NonRecordingSpan):
    """A recording span whose every write fails."""

    def is_recording(self) -> bool:
        return True

    def add_event(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter bug")

    def set_attribute(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter bug")


class ExplodingMeterProvider(MeterProvider):
    def get_meter(self, *args: Any, **kwargs: Any) -> Any:
        meter = super().get_meter(*args, **kwargs)

        class Broken:
            def add(self, *a: Any, **k: Any) -> None:
                raise RuntimeError("meter bug")

            record = add

        meter.create_counter = lambda *a, **k: Broken()  # type: ignore[method-assign]
        meter.create_histogram = lambda *a, **k: Broken()  # type: ignore[method-assign]
        return meter


@pytest.fixture
def broken_telemetry() -> Iterator[ResilienceTelemetry]:
    provider = ExplodingMeterProvider()
    yield ResilienceTelemetry(meter_provider=provider)
    provider.shutdown()


def test_telemetry_faults_never_change_the_outcome(
    make: Any, broken_telemetry: ResilienceTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    span: Span = ExplodingSpan(NonRecordingSpan(None).get_span_context())  # type: ignore[arg-type]
    policy = Policy(
        timeout=None, retry=Retry(attempts=2), breaker=CircuitBreaker(failure_threshold=2), critical=False
    )
    pipeline = make(policy, telemetry=broken_telemetry)
    flaky = iter([ConnectionError("once")])

    def tool(ctx: AttemptContext) -> str:
        for error in flaky:
            raise error
        return "ok"

    assert pipeline.call(tool, span=span) == "ok"
    assert pipeline.call(down, span=span) == ToolUnavailable.for_tool("search", "dependency")
    assert pipeline.call(down, span=span).reason == "circuit_open"
    critical = make(Policy(timeout=None), name="critical", telemetry=broken_telemetry)
    error = ConnectionError("mine")

    def raising(ctx: AttemptContext) -> str:
        raise error

    with pytest.raises(ConnectionError) as caught:
        critical.call(raising, span=span)
    assert caught.value is error
    assert "agentwatch: internal error" in caplog.text
