"""Fixtures of the tool tests: tools report to in-memory providers; agentwatch faults fail the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentwatch._config import ContentCapture, Settings
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import reset_registry
from support import Signals


@pytest.fixture
def tele(signals: Signals) -> Iterator[Signals]:
    """Tools and sessions report to ``signals``; content capture off (the default)."""
    set_default_telemetry(**signals.providers)
    yield signals
    set_default_telemetry()


@pytest.fixture
def tele_capture(signals: Signals) -> Iterator[Signals]:
    """Like ``tele``, with content capture on spans and in the log record."""
    set_default_telemetry(
        **signals.providers, settings=Settings(capture=ContentCapture(span=True, event=True))
    )
    yield signals
    set_default_telemetry()


@pytest.fixture(autouse=True)
def _no_internal_faults(no_internal_faults: None) -> None:
    """Every tool test: agentwatch reports no fault of its own (tests/conftest.py)."""


@pytest.fixture(autouse=True)
def _fresh_circuits() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()
