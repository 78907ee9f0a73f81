"""Fixtures of the LangChain/LangGraph tests: real frameworks whose model calls go over HTTP to the
fake LLM server; every signal goes to in-memory providers; an agentwatch fault fails the test."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from langchain_openai import ChatOpenAI

import agentwatch
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from support import OPENAI_KEY, OPENAI_MODEL, Signals
from tools.conftest import _fresh_circuits, _no_internal_faults  # noqa: F401 - autouse fixtures

Instrument = Callable[..., Signals]


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
