"""Shared fixtures: explicit in-memory OTel providers (never global), the fake LLM server, SDK clients."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import openai
import pytest
from hypothesis import settings

import agentwatch
from _bedrock import aws_environment, bedrock, bedrock_clients
from _redis import redis_server, redis_url
from agentwatch import _internal
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import Policy, reset_registry
from support import ANTHROPIC_KEY, NO_NATIVE, OPENAI_KEY, Signals, internal_faults, make_signals

# Nothing in the tests may reach the internet: LiteLLM fetches its model cost map from GitHub when
# imported unless told not to, and may fetch tokenizers. Set here, before anything imports it, and
# inherited by every subprocess the tests start.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"
os.environ["HF_HUB_OFFLINE"] = "1"

# Fixtures of tests/_redis.py and tests/_bedrock.py, for every test module.
__all__ = ["aws_environment", "bedrock", "bedrock_clients", "redis_server", "redis_url"]
# Property tests (tests/instrumentation/test_properties.py): the same examples on every run, no
# example database in the working tree; HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("agentwatch", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "agentwatch"))

_AGENTWATCH_ENV = (
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "AGENTWATCH_PROPAGATE_HOSTS",
    "AGENTWATCH_OPENAI_INCLUDE_USAGE",
    "AGENTWATCH_TIME_PER_OUTPUT_CHUNK",
    "AGENTWATCH_PRICES_FILE",
    "AGENTWATCH_CONFIG",
    "AGENTWATCH_ADMIN_TOKEN",
    "AGENTWATCH_CACHE_REDIS_URL",
    "AGENTWATCH_STATE_REDIS_URL",
    "ANTHROPIC_OPEN_TELEMETRY",
    "OTEL_PROPAGATORS",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's shell settings must not change what the tests see.
    for name in _AGENTWATCH_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def signals() -> Iterator[Signals]:
    s = make_signals()
    yield s
    s.tracer_provider.shutdown()
    s.meter_provider.shutdown()
    s.logger_provider.shutdown()


@pytest.fixture
def instrumented(signals: Signals) -> Iterator[Signals]:
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        yield signals
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        # Streams that tests drop on purpose end their spans in a finalizer: run it while the
        # providers are still alive.
        gc.collect()


@pytest.fixture
def with_policies(signals: Signals) -> Iterator[Any]:
    """``with_policies(model=Policy(...))`` instruments with those LLM policies (a fresh registry)."""
    reset_registry()

    def instrument(**policies: Policy) -> Signals:
        agentwatch.instrument(**signals.providers, configure_sdk=False, llm_policies=policies)
        return signals

    yield instrument
    agentwatch.uninstrument()
    set_default_telemetry()
    reset_registry()


@pytest.fixture
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server
        assert server.errors == []


@pytest.fixture
def openai_client(fake_llm: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        yield client


@pytest.fixture
def anthropic_client(fake_llm: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    # The SDK's own tracing is off here; test_anthropic_native covers it.
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        yield client


@pytest.fixture
def no_internal_faults(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test if agentwatch reported a fault of its own (``report_internal_error``) during it."""
    monkeypatch.setattr(_internal, "_reported", set())
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    yield
    assert internal_faults(caplog) == []


@pytest.fixture
def litellm_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """LiteLLM as a test needs it: quiet, and with an event loop the test closes.

    LiteLLM prints help text to stdout on every error unless told not to. Its sync paths call
    ``asyncio.get_event_loop()`` on the calling thread (service logging), which creates and sets a
    loop that nobody closes: left to the garbage collector it would warn during a later test.
    """
    litellm = pytest.importorskip("litellm")
    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
async def litellm_async_clients() -> AsyncIterator[None]:
    """For async tests: LiteLLM's cached async clients closed before the test's loop ends."""
    from instrumentation._litellm_support import close_clients

    yield
    await close_clients()


@pytest.fixture(scope="session", autouse=True)
def _close_litellm_clients() -> Iterator[None]:
    """LiteLLM keeps its sync HTTP clients for the life of the process: close them at the end of
    the session, rather than leave their sockets to the interpreter's exit."""
    yield
    cache = getattr(sys.modules.get("litellm"), "in_memory_llm_clients_cache", None)
    for client in list(getattr(cache, "cache_dict", {}).values()):
        close = getattr(client, "close", None)
        if callable(close) and not inspect.iscoroutinefunction(close):
            try:
                close()
            except Exception:  # a client that cannot close is the process's to reap
                pass
