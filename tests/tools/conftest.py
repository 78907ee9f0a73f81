"""Fixtures of the tool tests: tools report to in-memory providers; agentwatch faults fail the test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from agentwatch import _internal
from agentwatch._config import ContentCapture, Settings
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import reset_registry
from support import Signals, internal_faults


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
def _no_internal_faults(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_internal, "_reported", set())
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    yield
    assert internal_faults(caplog) == []


@pytest.fixture(autouse=True)
def _fresh_circuits() -> Iterator[None]:
    reset_registry()
    yield
    reset_registry()
