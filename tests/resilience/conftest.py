"""Fixtures of the resilience tests: a fake clock, in-memory telemetry, a fresh registry."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.resilience import Pipeline, Policy, ResilienceTelemetry, reset_registry
from resilience._support import FakeClock
from support import Signals


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def telemetry(signals: Signals) -> ResilienceTelemetry:
    return ResilienceTelemetry(meter_provider=signals.meter_provider)


@pytest.fixture
def make(clock: FakeClock, telemetry: ResilienceTelemetry) -> Any:
    """Build a pipeline on the fake clock, with sleeps recorded instead of slept."""

    def build(policy: Policy, name: str = "search", **kwargs: Any) -> Pipeline:
        options: dict[str, Any] = {
            "clock": clock,
            "sleep": clock.sleep,
            "async_sleep": clock.async_sleep,
            "telemetry": telemetry,
        }
        options.update(kwargs)
        return Pipeline(policy, name=name, **options)

    return build
