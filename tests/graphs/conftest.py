"""Fixtures of the LangChain/LangGraph tests: real frameworks whose model calls go over HTTP to the
fake LLM server; every signal goes to in-memory providers; an agentwatch fault fails the test."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI

import agentwatch
from agentwatch import _internal
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from support import OPENAI_KEY, OPENAI_MODEL, Signals
from tools.conftest import _fresh_circuits  # noqa: F401 - autouse fixture

Instrument = Callable[..., Signals]


def _fault_sites(records: list[logging.LogRecord]) -> list[str]:
    """The sites of the agentwatch faults logged (first report of each: a WARNING)."""
    return [
        r.getMessage().split("internal error in ", 1)[1].split(";", 1)[0]
        for r in records
        if r.name == "agentwatch" and r.levelno == logging.WARNING and "internal error in " in r.getMessage()
    ]


@pytest.fixture
def internal_faults(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """For a test that provokes agentwatch faults on purpose: the sites reported so far."""
    return lambda: _fault_sites(caplog.records)


@pytest.fixture(autouse=True)
def _no_internal_faults(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    """An agentwatch fault fails the test (unless it asked for ``internal_faults``)."""
    monkeypatch.setattr(_internal, "_reported", set())
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    yield
    if "internal_faults" not in request.fixturenames:
        # caplog.records here would hold the teardown's records only: read the test's own.
        assert _fault_sites([r for when in ("setup", "call") for r in caplog.get_records(when)]) == []


@pytest.fixture
def instrument(signals: Signals) -> Iterator[Instrument]:
    """``instrument(**settings)``: ``agentwatch.instrument()`` to ``signals``, undone after the test."""

    def start(**settings: Any) -> Signals:
        agentwatch.instrument(**signals.providers, configure_sdk=False, **settings)
        return signals

    yield start
    agentwatch.uninstrument()
    set_default_telemetry()
    gc.collect()


@pytest.fixture
def lg(instrument: Instrument) -> Signals:
    """Instrumented with the default settings."""
    return instrument()


def openai_model(base_url: str) -> ChatOpenAI:
    """``ChatOpenAI`` with an async HTTP client of its own, for :func:`graphs._support.run_async`
    to close before its loop ends (langchain-openai 0.2 makes one per model and drops it open)."""
    return ChatOpenAI(
        model=OPENAI_MODEL,
        base_url=base_url,
        api_key=OPENAI_KEY,
        max_retries=0,
        http_async_client=httpx.AsyncClient(),
    )


@pytest.fixture
def chat_openai(fake_llm: FakeLLMServer) -> ChatOpenAI:
    return openai_model(fake_llm.openai_base_url)
