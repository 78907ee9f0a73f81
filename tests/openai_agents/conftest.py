"""Fixtures of the OpenAI Agents SDK tests: the real SDK, its model calls over HTTP to the fake
LLM server, agentwatch reporting to in-memory providers. Nothing here may reach api.openai.com."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agents import tracing

import agentwatch
from agentwatch import _internal
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import reset_registry
from support import Signals, internal_faults

_SDK_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_AGENTS_DISABLE_TRACING")


@pytest.fixture(autouse=True)
def _offline_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No trace processor of the SDK's own (its default one exports to OpenAI), no key in the
    environment; the test's processors are dropped and the originals restored afterwards."""
    for name in _SDK_ENV:
        monkeypatch.delenv(name, raising=False)
    provider = tracing.get_trace_provider()
    saved = list(provider._multi_processor._processors)  # type: ignore[attr-defined]
    tracing.set_trace_processors([])
    yield
    tracing.set_trace_processors(saved)


@pytest.fixture(autouse=True)
def _no_internal_faults(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(_internal, "_reported", set())
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    reset_registry()
    yield
    reset_registry()
    assert internal_faults(caplog) == []


@pytest.fixture
def watch(signals: Signals) -> Iterator[Callable[..., Signals]]:
    """``watch(**instrument_kwargs)`` instruments everything agentwatch supports (the OpenAI
    instrumentor makes the model spans) with in-memory providers; undone at teardown."""
    used = False

    def instrument(**kwargs: Any) -> Signals:
        nonlocal used
        used = True
        agentwatch.instrument(**signals.providers, configure_sdk=False, **kwargs)
        return signals

    yield instrument
    if used:
        agentwatch.uninstrument()
        set_default_telemetry()
        gc.collect()
