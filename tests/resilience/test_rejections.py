"""Every way the resilience layer refuses a call without making it emits one of
``REJECTION_EVENTS`` (what the Tools dashboard's "Rejections" panel counts: tests/stack checks the
panel against the same set), and a call that was made emits none of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentwatch.resilience import (
    AttemptContext,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    RateLimit,
    RateLimitedError,
    ToolDisabledError,
    circuit,
    disable_tool,
)
from agentwatch.resilience._telemetry import REJECTION_EVENTS
from support import Signals


def _events_of(signals: Signals, tool: str) -> set[str]:
    return {
        str(point.attributes["agentwatch.resilience.event"])
        for point in signals.points("agentwatch.resilience.events")
        if point.attributes.get("gen_ai.tool.name") == tool
    }


def test_each_refusal_emits_exactly_one_rejection_event(make: Any, signals: Signals) -> None:
    made: list[str] = []

    def attempt(tool: str) -> Callable[[AttemptContext], str]:
        def run(ctx: AttemptContext) -> str:
            made.append(tool)
            return "ok"

        return run

    release, inside = threading.Event(), threading.Event()

    def held(ctx: AttemptContext) -> str:
        inside.set()
        release.wait(5)
        return "ok"

    full = make(Policy(timeout=None, bulkhead=Bulkhead(max_concurrent=1)), name="full")
    holder = threading.Thread(target=full.call, args=(held,))
    holder.start()
    inside.wait(5)
    broken = make(Policy(timeout=None, breaker=CircuitBreaker()), name="broken")
    broken.call(attempt("broken"))
    limited = make(
        Policy(timeout=None, rate_limit=RateLimit(requests=1, period=60.0, max_wait=0)), name="limited"
    )
    limited.call(attempt("limited"))
    switched = make(Policy(timeout=None), name="switched")
    switched.call(attempt("switched"))
    made_before = list(made)
    assert not any(
        _events_of(signals, tool) & REJECTION_EVENTS for tool in ("full", "broken", "limited", "switched")
    )

    live = circuit("broken")
    assert live is not None
    live.open()
    disable_tool("switched")
    refused: dict[str, set[str]] = {}
    try:
        for pipeline, error in (
            (full, BulkheadFullError),
            (broken, CircuitOpenError),
            (limited, RateLimitedError),
            (switched, ToolDisabledError),
        ):
            before = _events_of(signals, pipeline.name)
            with pytest.raises(error):
                pipeline.call(attempt(pipeline.name))
            refused[pipeline.name] = (_events_of(signals, pipeline.name) - before) & REJECTION_EVENTS
    finally:
        release.set()
        holder.join(5)
    assert made == made_before  # none of the refused calls was made
    assert {tool: len(events) for tool, events in refused.items()} == dict.fromkeys(refused, 1)
    assert set().union(*refused.values()) == REJECTION_EVENTS
