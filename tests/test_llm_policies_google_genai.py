"""Resilience policies on google-genai calls: one span per call, exactly one retry layer, streams
opened through the policy, fallbacks, breaker and timeouts."""

from __future__ import annotations

from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from opentelemetry.trace import StatusCode

import agentwatch
from agentwatch import CircuitBreaker, CircuitOpenError, Policy, Retry, ToolTimeoutError
from agentwatch._fakellm import FakeLLMServer, Reply
from support import Signals

KEY = "AIzaSyTESTKEYgemini0123456789abcdefXYZ"
MODEL = "gemini-2.5-flash"
HAS_RETRY_OPTIONS = hasattr(types, "HttpRetryOptions")
needs_retry_options = pytest.mark.skipif(not HAS_RETRY_OPTIONS, reason="this google-genai does not retry")
FAST = Retry(attempts=3, backoff=0.0, max_delay=0.0)


def sdk_retrying(server: FakeLLMServer, attempts: int = 5) -> genai.Client:
    """A client whose SDK retries on its own (HttpRetryOptions)."""
    http: dict[str, Any] = {"base_url": server.url}
    if HAS_RETRY_OPTIONS:
        http["retry_options"] = types.HttpRetryOptions(
            attempts=attempts, initial_delay=0.0, max_delay=0.0, jitter=0.0
        )
    return genai.Client(api_key=KEY, http_options=http)


def retries(signals: Signals) -> int:
    return [e.name for e in signals.only_span().events].count("retry")


@needs_retry_options
def test_the_policy_retries_and_the_sdk_does_not(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{MODEL: Policy(retry=FAST)})
    fake_llm.enqueue(*[Reply.error(503)] * 10)
    gemini = sdk_retrying(fake_llm)
    with pytest.raises(errors.ServerError):
        gemini.models.generate_content(model=MODEL, contents="hi")
    assert len(fake_llm.requests) == 3  # 3 attempts of 1 request, never 3 × 5
    assert retries(signals) == 2
    span = signals.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "UNAVAILABLE"

    # Without a policy for the model, the SDK's own retries stay as configured.
    fake_llm.reset()
    fake_llm.enqueue(*[Reply.error(503)] * 10)
    with pytest.raises(errors.ServerError):
        gemini.models.generate_content(model="gemini-2.0-flash", contents="hi")
    assert len(fake_llm.requests) == 5


@needs_retry_options
def test_a_policy_without_retry_leaves_the_sdk_retrying(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{MODEL: Policy(breaker=CircuitBreaker(failure_threshold=50))})
    fake_llm.enqueue(Reply.error(503), Reply.error(503), Reply.text("third time"))
    gemini = sdk_retrying(fake_llm)
    assert gemini.models.generate_content(model=MODEL, contents="hi").text == "third time"
    assert len(fake_llm.requests) == 3
    assert len(signals.finished()) == 1


@pytest.mark.anyio
@needs_retry_options
async def test_async_the_policy_retries_and_the_sdk_does_not(
    with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    signals = with_policies(**{MODEL: Policy(retry=FAST)})
    fake_llm.enqueue(Reply.error(429), Reply.error(500), Reply.text("ok"))
    gemini = sdk_retrying(fake_llm)
    result = await gemini.aio.models.generate_content(model=MODEL, contents="hi")
    aclose = getattr(gemini.aio, "aclose", None)
    if aclose is not None:
        await aclose()
    assert result.text == "ok"
    assert len(fake_llm.requests) == 3
    assert retries(signals) == 2
    span = signals.only_span()
    assert len({r.headers["traceparent"] for r in fake_llm.requests}) == 1  # every attempt in the span
    assert dict(span.attributes or {})["agentwatch.resilience.attempts"] == 3


def test_a_stream_is_opened_through_the_policy(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{MODEL: Policy(retry=FAST)})
    fake_llm.enqueue(Reply.error(503), Reply.text("a b"))
    gemini = sdk_retrying(fake_llm)
    stream = gemini.models.generate_content_stream(model=MODEL, contents="hi")
    assert fake_llm.requests == []  # still lazy: nothing sent before the caller iterates
    assert [c.text for c in stream] == ["a ", "b", ""]
    assert len(fake_llm.requests) == 2
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    assert (attrs["agentwatch.stream.outcome"], attrs["gen_ai.usage.output_tokens"]) == ("completed", 7)
    assert retries(signals) == 1
    assert {r.headers["traceparent"].split("-")[2] for r in fake_llm.requests} == {
        format(span.context.span_id, "016x")  # type: ignore[union-attr]
    }


def test_an_empty_stream_through_a_policy(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{MODEL: Policy(retry=FAST)})
    fake_llm.enqueue(Reply.sse([]))
    gemini = sdk_retrying(fake_llm)
    assert list(gemini.models.generate_content_stream(model=MODEL, contents="hi")) == []
    assert dict(signals.only_span().attributes or {})["agentwatch.stream.outcome"] == "completed"


def test_fallback_model_chain(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{"gemini-2.5-pro": Policy(fallback_models=[MODEL])})
    fake_llm.enqueue(Reply.error(429), Reply.text("from the fallback"))
    gemini = sdk_retrying(fake_llm, attempts=1)
    result = gemini.models.generate_content(model="gemini-2.5-pro", contents="hi")
    assert result.text == "from the fallback"
    assert [r.model for r in fake_llm.requests] == ["gemini-2.5-pro", MODEL]
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    assert (span.name, attrs["gen_ai.response.model"]) == ("generate_content gemini-2.5-pro", MODEL)
    assert "fallback" in [e.name for e in span.events]


def test_open_circuit(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{"*": Policy(breaker=CircuitBreaker(failure_threshold=2, break_duration=60.0))})
    fake_llm.enqueue(Reply.error(500), Reply.error(500))
    gemini = sdk_retrying(fake_llm, attempts=1)
    for _ in range(2):
        with pytest.raises(errors.ServerError):
            gemini.models.generate_content(model=MODEL, contents="hi")
    with pytest.raises(CircuitOpenError):
        gemini.models.generate_content(model=MODEL, contents="hi")
    assert len(fake_llm.requests) == 2
    assert {c.key: c.state.value for c in agentwatch.circuits()}[f"gcp.gemini:{MODEL}"] == "open"
    assert dict(signals.finished()[-1].attributes or {})["error.type"] == "circuit_open"


def test_validation_errors_are_not_retried(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    with_policies(**{MODEL: Policy(retry=FAST)})
    fake_llm.enqueue(Reply.error(400), Reply.text("never"))
    gemini = sdk_retrying(fake_llm, attempts=1)
    with pytest.raises(errors.ClientError):
        gemini.models.generate_content(model=MODEL, contents="hi")
    assert len(fake_llm.requests) == 1


def test_the_attempt_timeout_reaches_the_sdk(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(
        **{MODEL: Policy(timeout=5.0, attempt_timeout=0.3, retry=Retry(attempts=2, backoff=0.0))}
    )
    fake_llm.enqueue(Reply.hang(3), Reply.text("second attempt"))
    config = types.GenerateContentConfig(http_options=types.HttpOptions(timeout=60_000))
    gemini = sdk_retrying(fake_llm, attempts=1)
    result = gemini.models.generate_content(model=MODEL, contents="hi", config=config)
    assert result.text == "second attempt"
    assert (
        config.http_options is not None and config.http_options.timeout == 60_000
    )  # the caller's, unchanged
    assert retries(signals) == 1


def test_a_stream_idle_timeout(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{MODEL: Policy(idle_timeout=0.3)})
    fake_llm.enqueue(Reply.text("a b", chunk_delay=2.0))
    gemini = sdk_retrying(fake_llm, attempts=1)
    received = []
    with pytest.raises(ToolTimeoutError) as raised:
        for chunk in gemini.models.generate_content_stream(model=MODEL, contents="hi"):
            received.append(chunk)
    assert (raised.value.scope, len(received)) == ("idle", 1)
    assert dict(signals.only_span().attributes or {})["error.type"] == "timeout"
