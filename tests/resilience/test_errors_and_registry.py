"""Structured errors, the process-wide registry and the default telemetry."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.resilience import (
    AttemptContext,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    ErrorCategory,
    Pipeline,
    Policy,
    ResilienceError,
    Retry,
    ToolDisabledError,
    ToolTimeoutError,
    _telemetry,
    circuit,
    circuits,
    configure_resilience_telemetry,
    current_telemetry,
    disable_tool,
    disabled_tools,
    enable_tool,
    error_type_of,
)
from resilience._support import event_counts
from support import Signals

ERRORS = [
    ToolTimeoutError(name="search", kind="tool", timeout=2.0, scope="attempt"),
    CircuitOpenError(name="gpt-4o", kind="llm", circuit="openai:gpt-4o", retry_in=12.5),
    BulkheadFullError(name="search", kind="tool", max_concurrent=25, max_queue=0),
    ToolDisabledError(name="search"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_carry_name_kind_category_and_survive_pickling(error: ResilienceError) -> None:
    assert isinstance(error, ResilienceError)
    assert error.name in str(error)
    assert isinstance(error.category, ErrorCategory)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), copy.name, copy.kind, copy.category) == (
        str(error),
        error.name,
        error.kind,
        error.category,
    )


def test_error_messages_and_types() -> None:
    timeout, rejected, full, disabled = ERRORS
    assert str(timeout) == "tool 'search' timed out: it exceeded its attempt timeout of 2 s"
    assert isinstance(timeout, TimeoutError)
    stream = ToolTimeoutError(name="gpt-4o", kind="llm", timeout=3.0, scope="first_chunk")
    assert str(stream) == "model 'gpt-4o' timed out: it exceeded its time-to-first-chunk timeout of 3 s"
    assert str(rejected) == (
        "circuit 'openai:gpt-4o' for model 'gpt-4o' is open (the next probe call is allowed in 12.5 s); "
        "the call was not made"
    )
    assert (
        str(full)
        == "tool 'search' is at its limit of 25 concurrent calls with no queue; the call was rejected"
    )
    assert str(disabled) == "tool 'search' is disabled by an operator; the call was not made"
    assert [error_type_of(e) for e in ERRORS] == ["timeout", "circuit_open", "bulkhead_full", "tool_disabled"]
    assert error_type_of(ConnectionError()) == "ConnectionError"
    assert error_type_of(pickle.PicklingError()) == "_pickle.PicklingError"


def test_disable_and_enable_tool() -> None:
    disable_tool("a")
    disable_tool("b")
    enable_tool("a")
    enable_tool("never-disabled")
    assert disabled_tools() == frozenset({"b"})


def test_circuits_snapshot_and_manual_control_by_key() -> None:
    Pipeline(Policy(breaker=CircuitBreaker()), name="search")
    assert [(s.key, s.name, s.kind, s.state.value) for s in circuits()] == [
        ("search", "search", "tool", "closed")
    ]
    live = circuit("search")
    assert live is not None
    live.open()
    assert circuits()[0].state.value == "open"
    assert circuit("missing") is None


@pytest.fixture
def restore_default_telemetry() -> Iterator[None]:
    saved = _telemetry._current
    yield
    _telemetry._current = saved


@pytest.mark.usefixtures("restore_default_telemetry")
def test_configured_telemetry_reaches_existing_pipelines_and_manual_transitions(signals: Signals) -> None:
    pipeline = Pipeline(
        Policy(timeout=None, retry=Retry(attempts=2), breaker=CircuitBreaker()),
        name="search",
        sleep=lambda s: None,
    )
    configured = configure_resilience_telemetry(signals.meter_provider)
    assert configure_resilience_telemetry(signals.meter_provider) is configured
    assert current_telemetry() is configured

    def down(ctx: AttemptContext) -> Any:
        raise ConnectionError

    with pytest.raises(ConnectionError):
        pipeline.call(down)
    pipeline.circuits["search"].open()
    pipeline.circuits["search"].close()
    assert event_counts(signals) == {
        ("retry", "search"): 1,
        ("circuit_opened", "search"): 1,
        ("circuit_closed", "search"): 1,
    }
    manual = [
        dict(p.attributes)
        for p in signals.points("agentwatch.resilience.events")
        if dict(p.attributes)["agentwatch.resilience.event"] == "circuit_opened"
    ]
    assert manual[0]["agentwatch.circuit.manual"] is True
