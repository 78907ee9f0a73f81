"""LiteLLM calls through resilience policies: exactly one retry layer, LiteLLM's errors classified."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import test_llm_policies as llm_policies
from agentwatch import (
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    Retry,
    ToolTimeoutError,
)
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch.resilience import ErrorCategory, default_classifier
from instrumentation._litellm_support import (
    ANTHROPIC,
    GROQ,
    OPENAI,
    ROUTE_IDS,
    ROUTES,
    Route,
    complete,
    litellm,
    run,
)

pytestmark = pytest.mark.usefixtures("litellm_setup")

FAST = Retry(attempts=3, backoff=0.01, max_delay=0.02)


# The span's event names, as for the SDKs (the with_policies fixture is conftest's).
_events = llm_policies._events


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_retrying_policy_is_the_only_retry_layer(
    route: Route, with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    """LiteLLM would retry twice (num_retries) and, on the openai SDK path, the SDK twice more for
    each: with a policy that retries, 3 attempts are 3 requests."""
    signals = with_policies(**{route.model: Policy(retry=FAST)})
    fake_llm.enqueue(*[Reply.error(429)] * 9)
    with pytest.raises(litellm.RateLimitError):
        complete(route, fake_llm, num_retries=2)
    assert len(fake_llm.requests) == 3
    span = signals.only_span()
    assert span.name == f"chat {route.name}"
    assert _events(signals) == ["retry", "retry"]
    assert span.attributes is not None
    assert span.attributes["agentwatch.resilience.attempts"] == 3
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize(
    ("route", "kwargs", "requests"),
    [
        (OPENAI, {}, 3),  # the openai SDK's own two retries
        (ANTHROPIC, {"num_retries": 2}, 3),  # LiteLLM's own
        (GROQ, {}, 1),  # LiteLLM's handlers do not retry by default
    ],
    ids=["openai", "anthropic", "groq"],
)
def test_without_a_retrying_policy_litellm_retries_as_configured(
    route: Route, kwargs: dict[str, Any], requests: int, with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    signals = with_policies(**{route.model: Policy(timeout=30)})
    fake_llm.enqueue(*[Reply.error(500)] * 9)
    with pytest.raises(litellm.InternalServerError):
        complete(route, fake_llm, **kwargs)
    assert len(fake_llm.requests) == requests
    assert signals.only_span().status.status_code is StatusCode.ERROR


def test_a_validation_error_is_not_retried(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    with_policies(**{ANTHROPIC.model: Policy(retry=FAST)})
    fake_llm.enqueue(Reply.error(400, message="bad request"), Reply.text("never"))
    with pytest.raises(litellm.BadRequestError):
        complete(ANTHROPIC, fake_llm)
    assert len(fake_llm.requests) == 1


def test_retry_after_from_litellms_own_handler_is_honoured(
    with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    """LiteLLM raises with an HTTP response of its own (no headers) and keeps the provider's apart."""
    with_policies(**{GROQ.model: Policy(retry=FAST)})
    fake_llm.enqueue(Reply.error(429, headers={"retry-after-ms": "300"}), Reply.text("finally"))
    result = complete(GROQ, fake_llm)
    assert result.choices[0].message.content == "finally"
    first, second = fake_llm.requests
    assert second.received_at - first.received_at >= 0.28


def test_fallback_chain_to_another_provider_is_one_span_named_after_who_answered(
    with_policies: Any, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each provider's base URL and key from the environment, as LiteLLM reads them, so that each
    # model of the chain goes to its own.
    monkeypatch.setenv("GROQ_API_BASE", GROQ.base(fake_llm))
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("ANTHROPIC_API_BASE", ANTHROPIC.base(fake_llm))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    signals = with_policies(**{GROQ.model: Policy(fallback_models=(ANTHROPIC.model,))})
    fake_llm.enqueue(Reply.error(503), Reply.text("from claude", input_tokens=9, output_tokens=2))
    result = litellm.completion(model=GROQ.model, messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "from claude"
    assert [r.provider for r in fake_llm.requests] == ["openai", "anthropic"]
    span = signals.only_span()
    assert span.name == f"chat {GROQ.name}"
    assert "fallback" in _events(signals)
    found = dict(span.attributes or {})
    assert found["gen_ai.provider.name"] == "anthropic"
    assert found["gen_ai.response.model"] == ANTHROPIC.name
    assert found["gen_ai.usage.input_tokens"] == 9
    (duration,) = signals.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.provider.name"] == "anthropic"


def test_open_circuit_short_circuits_without_a_request(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    breaker = CircuitBreaker(failure_threshold=2, break_duration=60)
    with_policies(**{ANTHROPIC.model: Policy(breaker=breaker)})
    fake_llm.enqueue(Reply.error(500), Reply.error(500))
    for _ in range(2):
        with pytest.raises(litellm.InternalServerError):
            complete(ANTHROPIC, fake_llm)
    with pytest.raises(CircuitOpenError):
        complete(ANTHROPIC, fake_llm)
    assert len(fake_llm.requests) == 2


def test_an_attempt_timeout_bounds_a_hanging_call(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    """The policy's limit goes to LiteLLM as its ``timeout`` too: whichever notices first, the
    call fails as a timeout and no second request is made."""
    signals = with_policies(**{GROQ.model: Policy(attempt_timeout=0.3, timeout=2)})
    fake_llm.enqueue(Reply.hang(5))
    with pytest.raises((ToolTimeoutError, litellm.Timeout)) as raised:
        complete(GROQ, fake_llm)
    assert default_classifier(raised.value).category is ErrorCategory.TIMEOUT or isinstance(
        raised.value, ToolTimeoutError
    )
    span = signals.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] in ("timeout", "litellm.Timeout")
    assert len(fake_llm.requests) == 1


def test_a_full_bulkhead_rejects_without_a_request(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    with_policies(**{GROQ.model: Policy(bulkhead=Bulkhead(max_concurrent=1, max_queue=0))})
    fake_llm.enqueue(Reply.delay(0.5, Reply.text("slow")), Reply.text("never"))

    async def both() -> list[Any]:
        first = asyncio.ensure_future(litellm.acompletion(**GROQ.kwargs(fake_llm)))
        await asyncio.sleep(0.1)
        second = litellm.acompletion(**GROQ.kwargs(fake_llm))
        return list(await asyncio.gather(first, second, return_exceptions=True))

    first, second = run(both())
    assert first.choices[0].message.content == "slow"
    assert isinstance(second, BulkheadFullError)
    assert len(fake_llm.requests) == 1


# -- LiteLLM's errors, classified ----------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    ("reply", "error", "category", "retryable", "fallback"),
    [
        (Reply.error(429), litellm.RateLimitError, ErrorCategory.RATE_LIMIT, True, True),
        (Reply.error(503), litellm.ServiceUnavailableError, ErrorCategory.DEPENDENCY, True, True),
        (Reply.error(500), litellm.InternalServerError, ErrorCategory.DEPENDENCY, True, True),
        (Reply.reset(), litellm.InternalServerError, ErrorCategory.DEPENDENCY, True, True),
        (Reply.hang(3), litellm.Timeout, ErrorCategory.TIMEOUT, True, True),
        (Reply.error(400, message="bad"), litellm.BadRequestError, ErrorCategory.VALIDATION, False, False),
        # Older LiteLLM raises its BadRequestError for a 401 of the providers it calls with httpx.
        (
            Reply.error(401),
            (litellm.AuthenticationError, litellm.BadRequestError),
            ErrorCategory.VALIDATION,
            False,
            False,
        ),
        (
            Reply.error(400, message="This model's maximum context length is 8192 tokens"),
            litellm.ContextWindowExceededError,
            ErrorCategory.VALIDATION,
            False,
            True,
        ),
    ],
    ids=["429", "503", "500", "reset", "timeout", "400", "401", "context window"],
)
def test_litellms_errors_are_classified(
    route: Route,
    reply: Reply,
    error: type[BaseException] | tuple[type[BaseException], ...],
    category: ErrorCategory,
    retryable: bool,
    fallback: bool,
    fake_llm: FakeLLMServer,
) -> None:
    fake_llm.enqueue(reply)
    with pytest.raises(error) as raised:
        complete(route, fake_llm, max_retries=0, timeout=1)
    found = default_classifier(raised.value)
    assert (found.category, found.retryable, found.fallback) == (category, retryable, fallback)


def test_a_content_policy_rejection_may_fall_back() -> None:
    error = litellm.ContentPolicyViolationError(message="rejected", model="m", llm_provider="groq")
    found = default_classifier(error)
    assert (found.category, found.retryable, found.fallback) == (ErrorCategory.VALIDATION, False, True)
