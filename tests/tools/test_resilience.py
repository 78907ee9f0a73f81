"""Tools with a resilience policy: the pipeline runs inside the ``execute_tool`` span."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from agentwatch._session import session
from agentwatch.resilience import (
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    Retry,
    ToolTimeoutError,
    ToolUnavailable,
)
from agentwatch.tools import ToolRegistry, tool
from support import Signals
from tools._support import attrs, duration_points, tool_records, tool_spans

NO_WAIT = Retry(attempts=3, backoff=0, max_delay=0, jitter=False, budget=None)


class Flaky:
    """Fails with ``ConnectionError`` ``failures`` times, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.errors: list[BaseException] = []

    def __call__(self, city: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            error = ConnectionError(f"backend down ({self.calls})")
            self.errors.append(error)
            raise error
        return f"sunny in {city}"


def events(span: Any, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def test_every_attempt_is_inside_one_span(tele: Signals) -> None:
    flaky = Flaky(failures=2)
    weather = tool(name="weather", policy=Policy(retry=NO_WAIT))(flaky)

    assert weather("Paris") == "sunny in Paris"

    (span,) = tool_spans(tele, "weather")
    assert flaky.calls == 3
    assert attrs(span)["agentwatch.resilience.attempts"] == 3
    assert len(events(span, "retry")) == 2
    assert span.status.status_code is StatusCode.UNSET and "error.type" not in attrs(span)
    assert duration_points(tele) == [
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather", "count": 1}
    ]


def test_exhausted_retries_raise_the_tools_last_exception(tele: Signals) -> None:
    flaky = Flaky(failures=5)
    weather = tool(name="weather", policy=Policy(retry=NO_WAIT))(flaky)

    with pytest.raises(ConnectionError) as caught:
        weather("Paris")

    assert caught.value is flaky.errors[-1]
    (span,) = tool_spans(tele, "weather")
    assert attrs(span)["error.type"] == "ConnectionError"
    assert attrs(span)["agentwatch.resilience.attempts"] == 3
    assert span.status.status_code is StatusCode.ERROR


def test_an_optional_tool_returns_its_degradation_result(
    tele: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    prefs = tool(name="get_user_preferences", policy=Policy(critical=False))(Flaky(failures=9))

    with session(agent_name="a") as s:
        result = prefs("Paris")

    assert isinstance(result, ToolUnavailable)
    assert result.tool == "get_user_preferences" and result.reason == "dependency"
    assert "unavailable" in result.message
    (span,) = tool_spans(tele)
    assert attrs(span)["error.type"] == "ConnectionError"  # the cause, on span and metric alike
    assert span.status.status_code is StatusCode.ERROR
    assert len(events(span, "fallback")) == 1
    assert attrs(span)["agentwatch.tool.result.bytes"] > 0  # the degradation result went back
    assert duration_points(tele)[0]["error.type"] == "ConnectionError"
    (record,) = tool_records(caplog)
    assert record.success is False and record.error_type == "ConnectionError"
    assert (s.tool_calls, s.tool_errors) == (1, 1)


def test_an_open_circuit_short_circuits_inside_the_span(tele: Signals) -> None:
    flaky = Flaky(failures=9)
    policy = Policy(breaker=CircuitBreaker(failure_threshold=1, break_duration=60))
    search = tool(name="search_knowledge_base", policy=policy)(flaky)

    with pytest.raises(ConnectionError):
        search("q")
    with pytest.raises(CircuitOpenError):
        search("q")

    assert flaky.calls == 1  # the second call never reached the tool
    first, second = tool_spans(tele)
    assert attrs(first)["error.type"] == "ConnectionError"
    assert attrs(second)["error.type"] == "circuit_open"
    assert len(events(second, "circuit_rejected")) == 1
    assert sorted(p["error.type"] for p in duration_points(tele)) == ["ConnectionError", "circuit_open"]


def test_an_open_circuit_degrades_an_optional_tool(tele: Signals) -> None:
    policy = Policy(critical=False, breaker=CircuitBreaker(failure_threshold=1, break_duration=60))
    related = tool(name="fetch_related_content", policy=policy)(Flaky(failures=9))

    assert isinstance(related("a"), ToolUnavailable)
    result = related("b")
    assert isinstance(result, ToolUnavailable) and result.reason == "circuit_open"
    assert [attrs(s)["error.type"] for s in tool_spans(tele)] == ["ConnectionError", "circuit_open"]


@pytest.mark.anyio
async def test_async_timeout_and_retry(tele: Signals) -> None:
    @tool(policy=Policy(timeout=0.05))
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    with pytest.raises(ToolTimeoutError) as caught:
        await slow()
    assert isinstance(caught.value, TimeoutError)
    assert attrs(tool_spans(tele, "slow")[0])["error.type"] == "timeout"

    flaky = Flaky(failures=1)

    @tool(policy=Policy(retry=NO_WAIT))
    async def recovers(city: str) -> str:
        return flaky(city)

    assert await recovers("Rome") == "sunny in Rome"
    assert attrs(tool_spans(tele, "recovers")[0])["agentwatch.resilience.attempts"] == 2


def test_a_sync_attempt_timeout_keeps_the_span_as_parent(tele: Signals) -> None:
    seen: list[int] = []

    @tool(policy=Policy(timeout=5, attempt_timeout=0.05))
    def stuck() -> None:
        seen.append(trace.get_current_span().get_span_context().span_id)
        time.sleep(0.3)

    with pytest.raises(ToolTimeoutError):
        stuck()
    (span,) = tool_spans(tele, "stuck")
    assert seen == [span.context.span_id]  # the worker thread ran inside the execute_tool span
    assert attrs(span)["error.type"] == "timeout"


def test_registry_and_its_policies(tele: Signals) -> None:
    registry = ToolRegistry()
    registry.register(Flaky(failures=1), name="weather", policy=Policy(retry=NO_WAIT))
    assert registry.call("weather", {"city": "Oslo"}, call_id="c1") == "sunny in Oslo"
    assert attrs(tool_spans(tele)[0])["agentwatch.resilience.attempts"] == 2
