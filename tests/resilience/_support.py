"""Helpers of the resilience tests (import as ``resilience._support``)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from support import Signals


class FakeClock:
    """A monotonic clock that only moves when told to, or when something sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        # Give up the GIL on every reading, to widen race windows in code that reads the clock.
        self.yield_thread = False

    def __call__(self) -> float:
        if self.yield_thread:
            time.sleep(0)
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def events(span: ReadableSpan, name: str | None = None) -> list[dict[str, Any]]:
    """The span's events (optionally only those called ``name``) as dicts with a ``name`` key."""
    return [
        {"name": e.name, **dict(e.attributes or {})} for e in span.events if name is None or e.name == name
    ]


def event_counts(signals: Signals) -> dict[tuple[str, str], int]:
    """``agentwatch.resilience.events`` totals by (event, subject) summed over other attributes."""
    totals: dict[tuple[str, str], int] = {}
    for point in signals.points("agentwatch.resilience.events"):
        attributes = dict(point.attributes)
        subject = attributes.get("gen_ai.tool.name", attributes.get("gen_ai.request.model"))
        key = (attributes["agentwatch.resilience.event"], subject)
        totals[key] = totals.get(key, 0) + point.value
    return totals
