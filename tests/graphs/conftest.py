"""Fixtures of the LangChain/LangGraph tests: real frameworks whose model calls go over HTTP to the
fake LLM server; every signal goes to in-memory providers; an agentwatch fault fails the test."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

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


@pytest.fixture
def chat_openai(fake_llm: FakeLLMServer) -> ChatOpenAI:
    return ChatOpenAI(
        model=OPENAI_MODEL, base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0
    )
