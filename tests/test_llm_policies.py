"""LLM calls through resilience policies: one span per call, exactly one retry layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

import agentwatch
from agentwatch import CircuitBreaker, CircuitOpenError, Policy, Retry, ToolTimeoutError
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import reset_registry
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    ANTHROPIC_NATIVE_TRACING,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    user,
)


def _events(signals: Signals) -> list[str]:
    return [event.name for event in signals.only_span().events]


def test_retry_after_from_a_real_429_is_honoured(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(retry=Retry(attempts=3, backoff=0.01, max_delay=0.02))})
    fake_llm.enqueue(Reply.error(429, headers={"retry-after-ms": "300"}), Reply.text("finally"))
    # The SDK would retry on its own twice: with a policy it must not.
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=2) as client:
        result = client.chat.completions.create(model=OPENAI_MODEL, messages=user())

    assert result.choices[0].message.content == "finally"
    first, second = fake_llm.requests
    # The policy's own backoff is 10-20 ms: only the server's Retry-After explains the wait.
    assert second.received_at - first.received_at >= 0.28
    span = signals.only_span()
    assert span.status.status_code is StatusCode.UNSET
    (retry,) = [e for e in span.events if e.name == "retry"]
    assert retry.attributes is not None
    assert retry.attributes["agentwatch.retry.delay"] == pytest.approx(0.3, abs=0.01)
    assert retry.attributes["error.type"] == "openai.RateLimitError"
    assert dict(span.attributes or {})["agentwatch.resilience.attempts"] == 2
    assert [p.count for p in signals.points("gen_ai.client.operation.duration")] == [1]


def test_attempts_never_multiply_with_the_sdks_retries(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(retry=Retry(attempts=3, backoff=0.0, max_delay=0.0))})
    fake_llm.enqueue(*[Reply.error(500)] * 10)
    with (
        openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=5) as client,
        pytest.raises(openai.InternalServerError),
    ):
        client.chat.completions.create(model=OPENAI_MODEL, messages=user())

    assert len(fake_llm.requests) == 3
    span = signals.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "openai.InternalServerError"
    assert _events(signals).count("retry") == 2
    # The caller's client is untouched: its own retries still apply outside agentwatch's policy.
    agentwatch.uninstrument()
    fake_llm.reset()
    fake_llm.enqueue(*[Reply.error(500)] * 10)
    with (
        openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=5) as client,
        pytest.raises(openai.InternalServerError),
    ):
        client.with_options(timeout=5).chat.completions.create(model=OPENAI_MODEL, messages=user())
    assert len(fake_llm.requests) == 6


def test_fallback_model_chain(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{"gpt-4o": Policy(fallback_models=[OPENAI_MODEL])})
    fake_llm.enqueue(Reply.error(503), Reply.text("from the fallback"))
    # No retry in this policy, so the SDK's own retries stay on unless the client turns them off.
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        result = client.chat.completions.create(model="gpt-4o", messages=user())

    assert result.model == OPENAI_MODEL
    assert [r.model for r in fake_llm.requests] == ["gpt-4o", OPENAI_MODEL]
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    assert span.name == "chat gpt-4o"
    assert attrs["gen_ai.response.model"] == OPENAI_MODEL
    # Priced as the model that answered.
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx((12 * 0.15 + 7 * 0.6) / 1e6)
    (fallback,) = [e for e in span.events if e.name == "fallback"]
    assert fallback.attributes is not None and fallback.attributes["gen_ai.request.model"] == OPENAI_MODEL


def test_open_circuit_short_circuits_with_its_own_span(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{"*": Policy(breaker=CircuitBreaker(failure_threshold=2, break_duration=60.0))})
    fake_llm.enqueue(Reply.error(500), Reply.error(500))
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        with pytest.raises(CircuitOpenError) as raised:
            client.chat.completions.create(model=OPENAI_MODEL, messages=user())

    assert raised.value.name == OPENAI_MODEL
    assert len(fake_llm.requests) == 2
    rejected = signals.finished()[-1]
    assert rejected.attributes is not None and rejected.attributes["error.type"] == "circuit_open"
    assert "circuit_rejected" in [e.name for e in rejected.events]
    assert "circuit_opened" in [e.name for e in signals.finished()[1].events]
    error_types = sorted(
        p.attributes["error.type"] for p in signals.points("gen_ai.client.operation.duration")
    )
    assert error_types == ["circuit_open", "openai.InternalServerError"]
    assert {c.key: c.state.value for c in agentwatch.circuits()}[f"openai:{OPENAI_MODEL}"] == "open"


@pytest.mark.anyio
async def test_async_retry(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(retry=Retry(attempts=2, backoff=0.0, max_delay=0.0))})
    fake_llm.enqueue(Reply.error(500), Reply.text("ok"))
    async with openai.AsyncOpenAI(
        base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=3
    ) as client:
        result = await client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    assert result.choices[0].message.content == "ok"
    assert len(fake_llm.requests) == 2
    assert _events(signals) == ["retry"]


@pytest.mark.anyio
async def test_async_stream_idle_timeout(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(first_chunk_timeout=2.0, idle_timeout=0.2)})
    fake_llm.enqueue(Reply.text("one two three", chunk_delay=1.5))
    async with openai.AsyncOpenAI(
        base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0
    ) as client:
        stream = await client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
        received = []
        with pytest.raises(ToolTimeoutError) as raised:
            async for chunk in stream:
                received.append(chunk)
    assert raised.value.scope == "idle"
    assert raised.value.timeout == 0.2
    assert len(received) == 1
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    assert (attrs["error.type"], attrs["agentwatch.stream.outcome"]) == ("timeout", "error")
    _assert_one_timeout_decision(signals, "idle", 0.2)


def _assert_one_timeout_decision(signals: Signals, scope: str, seconds: float) -> None:
    """A stream timeout is a policy decision: a span event and a point of the events counter."""
    (event,) = [e for e in signals.only_span().events if e.name == "timeout"]
    assert dict(event.attributes or {}) == {
        "agentwatch.timeout.scope": scope,
        "agentwatch.timeout.seconds": seconds,
        "error.type": "timeout",
    }
    counted = [
        p.value
        for p in signals.points("agentwatch.resilience.events")
        if p.attributes["agentwatch.resilience.event"] == "timeout"
    ]
    assert counted == [1]


def test_sync_stream_idle_timeout(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(idle_timeout=0.3)})
    # The server sends the headers at once, then waits 2 s between events.
    fake_llm.enqueue(Reply.text("a b", chunk_delay=2.0))
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
        received = []
        with pytest.raises(ToolTimeoutError) as raised:
            for chunk in stream:
                received.append(chunk)
    assert (raised.value.scope, raised.value.timeout, len(received)) == ("idle", 0.3, 1)
    assert isinstance(raised.value, TimeoutError)
    assert dict(signals.only_span().attributes or {})["error.type"] == "timeout"
    _assert_one_timeout_decision(signals, "idle", 0.3)


def test_sync_stream_timeout_reports_the_read_timeout_actually_enforced(
    with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    with_policies(**{OPENAI_MODEL: Policy(first_chunk_timeout=0.5, idle_timeout=0.2)})
    fake_llm.enqueue(Reply.text("a b", chunk_delay=2.0))
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        stream = client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
        with pytest.raises(ToolTimeoutError) as raised:
            for _ in stream:
                pass
    # A sync stream's reads all share the SDK's read timeout, the larger of the two limits.
    assert (raised.value.scope, raised.value.timeout) == ("idle", 0.5)


def test_an_empty_model_goes_to_the_sdk_unchanged(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    with_policies(**{"*": Policy()})
    fake_llm.enqueue(Reply.text("as without agentwatch"))
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        result = client.chat.completions.create(model="", messages=user())
    assert result.choices[0].message.content == "as without agentwatch"
    assert [r.model for r in fake_llm.requests] == [""]


@pytest.mark.anyio
async def test_an_empty_model_goes_to_the_sdk_unchanged_async(
    with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    with_policies(**{"*": Policy()})
    fake_llm.enqueue(Reply.text("as without agentwatch"))
    async with openai.AsyncOpenAI(
        base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0
    ) as client:
        result = await client.chat.completions.create(model="", messages=user())
    assert result.choices[0].message.content == "as without agentwatch"
    assert [r.model for r in fake_llm.requests] == [""]


def test_policies_from_agentwatch_config(
    signals: Signals, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text(
        f'[llm."{OPENAI_MODEL}"]\nretry = {{ attempts = 2, backoff = 0.0, max_delay = 0.0 }}\n\n[tools.flaky]\nretry = {{ attempts = 3, backoff = 0.0, max_delay = 0.0 }}\n'
    )
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(config))
    reset_registry()
    calls = []

    @agentwatch.tool
    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("backend down")
        return "up"

    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        fake_llm.enqueue(Reply.error(500), Reply.text("ok"))
        with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
            client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        assert flaky() == "up"
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        reset_registry()
    assert len(fake_llm.requests) == 2
    assert len(calls) == 3
    tool_span = signals.only_span("execute_tool")
    assert [e.name for e in tool_span.events] == ["retry", "retry"]


def test_tool_policies_in_code_win_over_agentwatch_config(
    signals: Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text(
        '[tools."*"]\ncritical = false\n[tools.flaky]\nretry = { attempts = 5, backoff = 0.0, max_delay = 0.0 }\n'
    )
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(config))
    reset_registry()
    calls = []

    @agentwatch.tool
    def flaky() -> str:
        calls.append(1)
        raise ConnectionError("backend down")

    retry_twice = Policy(retry=Retry(attempts=2, backoff=0.0, max_delay=0.0))
    agentwatch.instrument(**signals.providers, configure_sdk=False, tool_policies={"flaky": retry_twice})
    try:
        with pytest.raises(ConnectionError):  # the code's critical policy, not the file's "*"
            flaky()
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        reset_registry()
    assert len(calls) == 2
    assert [e.name for e in signals.only_span("execute_tool").events] == ["retry"]


def test_invalid_policy_settings_stop_start_up(
    signals: Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text('[llm."gpt-4o"]\nretry = { attempts = 0 }\n')
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(config))
    with pytest.raises(ValueError, match=r"llm\.gpt-4o\.retry\.attempts"):
        agentwatch.instrument(**signals.providers, configure_sdk=False)
    monkeypatch.delenv("AGENTWATCH_CONFIG")
    with pytest.raises(ValueError, match=r"llm_policies\['gpt-4o'\].*agentwatch\.Policy"):
        agentwatch.instrument(**signals.providers, configure_sdk=False, llm_policies={"gpt-4o": {"retry": 3}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"llm_policies\['gpt-4o'\]\.critical.*True for an LLM policy"):
        agentwatch.instrument(
            **signals.providers, configure_sdk=False, llm_policies={"gpt-4o": Policy(critical=False)}
        )
    with pytest.raises(ValueError, match=r"tool_policies.*mapping of tool name"):
        agentwatch.instrument(**signals.providers, configure_sdk=False, tool_policies=[Policy()])  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"tool_policies\['search'\]\.fallback_models.*nothing for a tool policy"
    ):
        agentwatch.instrument(
            **signals.providers, configure_sdk=False, tool_policies={"search": Policy(fallback_models=["x"])}
        )


@pytest.mark.skipif(not ANTHROPIC_NATIVE_TRACING, reason="this anthropic version has no tracing of its own")
def test_policy_span_covers_all_attempts_even_with_anthropic_native_tracing(
    with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    signals = with_policies(**{ANTHROPIC_MODEL: Policy(retry=Retry(attempts=3, backoff=0.0, max_delay=0.0))})
    fake_llm.enqueue(Reply.error(529, error_type="overloaded_error"), Reply.text())
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=ANTHROPIC_KEY,
        open_telemetry={"tracer_provider": signals.tracer_provider},
    ) as client:
        client.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=user())
    span = signals.only_span()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "agentwatch.instrumentation.anthropic"
    assert _events(signals) == ["retry"]
    assert len(fake_llm.requests) == 2
    assert all("traceparent" in r.headers for r in fake_llm.requests)
