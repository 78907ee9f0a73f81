"""Resilience policies on Bedrock calls, and exactly one retry layer next to botocore's own retries."""

from __future__ import annotations

import io
import json
from contextlib import closing
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.trace import StatusCode

from _bedrock import CLAUDE, LLAMA, NOVA, converse_user
from agentwatch import CircuitBreaker, CircuitOpenError, Policy, Retry, ToolTimeoutError
from agentwatch._fakellm import FakeLLMServer, Reply
from support import Signals

FAST_RETRY = Retry(attempts=3, backoff=0.0, max_delay=0.0)


def _attempts(signals: Signals) -> Any:
    return dict(signals.only_span().attributes or {})["agentwatch.resilience.attempts"]


@pytest.mark.parametrize("mode", ["legacy", "standard", "adaptive"])
def test_three_policy_attempts_are_three_requests_whatever_botocores_retry_mode(
    with_policies: Any, fake_llm: FakeLLMServer, bedrock_clients: Any, mode: str
) -> None:
    signals = with_policies(**{CLAUDE: Policy(retry=FAST_RETRY)})
    fake_llm.enqueue(*[Reply.error(503)] * 20)
    # botocore would try 5 times per policy attempt on its own: 15 requests without the rule.
    client = bedrock_clients(fake_llm, retries={"mode": mode, "total_max_attempts": 5})
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=CLAUDE, messages=converse_user())

    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert len(fake_llm.requests) == 3
    assert _attempts(signals) == 3
    assert signals.only_span().status.status_code is StatusCode.ERROR
    # The application's client is not changed: without a policy it retries as configured.
    fake_llm.reset()
    fake_llm.enqueue(Reply.error(503), Reply.text("ok"))
    assert client.converse(modelId=NOVA, messages=converse_user())["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(fake_llm.requests) == 2


def test_without_a_policy_botocore_retries_under_one_span(
    with_policies: Any, fake_llm: FakeLLMServer, bedrock_clients: Any
) -> None:
    signals = with_policies()
    fake_llm.enqueue(Reply.error(429), Reply.error(429), Reply.text("ok"))
    client = bedrock_clients(fake_llm, retries={"mode": "standard", "max_attempts": 3})
    response = client.converse(modelId=CLAUDE, messages=converse_user())
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(fake_llm.requests) == 3
    span = signals.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert [p.count for p in signals.points("gen_ai.client.operation.duration")] == [1]


def test_a_policy_that_does_not_retry_leaves_botocores_retries_on(
    with_policies: Any, fake_llm: FakeLLMServer, bedrock_clients: Any
) -> None:
    with_policies(**{CLAUDE: Policy(breaker=CircuitBreaker(failure_threshold=50))})
    fake_llm.enqueue(Reply.error(503), Reply.text("ok"))
    client = bedrock_clients(fake_llm, retries={"mode": "standard", "max_attempts": 3})
    client.converse(modelId=CLAUDE, messages=converse_user())
    assert len(fake_llm.requests) == 2


def test_throttling_is_retried_and_validation_is_not(
    with_policies: Any, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    signals = with_policies(**{CLAUDE: Policy(retry=FAST_RETRY)})
    fake_llm.enqueue(
        Reply.error(429), Reply.error(429, error_type="ModelNotReadyException"), Reply.text("ok")
    )
    assert bedrock.converse(modelId=CLAUDE, messages=converse_user())["stopReason"] == "end_turn"
    assert len(fake_llm.requests) == 3
    retries = [e for e in signals.only_span().events if e.name == "retry"]
    assert [dict(e.attributes or {})["error.type"] for e in retries] == [
        "botocore.ThrottlingException",
        "botocore.ModelNotReadyException",
    ]

    fake_llm.reset()
    fake_llm.enqueue(Reply.error(400), Reply.text("never"))
    with pytest.raises(ClientError):
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    assert len(fake_llm.requests) == 1


def test_a_fallback_chain_of_bedrock_models(
    with_policies: Any, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    signals = with_policies(**{CLAUDE: Policy(fallback_models=(NOVA,))})
    fake_llm.enqueue(Reply.error(503), Reply.text("from nova"))
    response = bedrock.converse(modelId=CLAUDE, messages=converse_user())
    assert response["output"]["message"]["content"] == [{"text": "from nova"}]
    assert [r.path for r in fake_llm.requests] == [
        "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        "/model/us.amazon.nova-pro-v1%3A0/converse",
    ]
    span = signals.only_span()
    assert span.name == f"chat {CLAUDE}"
    assert [e.name for e in span.events] == ["fallback"]


def test_an_open_circuit_sends_nothing(with_policies: Any, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    with_policies(**{CLAUDE: Policy(breaker=CircuitBreaker(failure_threshold=2))})
    fake_llm.enqueue(*[Reply.error(500)] * 2)
    for _ in range(2):
        with pytest.raises(ClientError):
            bedrock.converse(modelId=CLAUDE, messages=converse_user())
    with pytest.raises(CircuitOpenError):
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    assert len(fake_llm.requests) == 2


def test_the_attempt_timeout(with_policies: Any, fake_llm: FakeLLMServer, bedrock_clients: Any) -> None:
    signals = with_policies(**{CLAUDE: Policy(attempt_timeout=0.3, timeout=5)})
    fake_llm.enqueue(Reply.hang(2))
    # botocore has no per-request timeout: the abandoned attempt ends at the client's read_timeout.
    client = bedrock_clients(fake_llm, read_timeout=1)
    with pytest.raises(ToolTimeoutError):
        client.converse(modelId=CLAUDE, messages=converse_user())
    assert dict(signals.only_span().attributes or {})["error.type"] == "timeout"


def test_a_stream_idle_timeout(with_policies: Any, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    signals = with_policies(**{NOVA: Policy(idle_timeout=0.2)})
    fake_llm.enqueue(Reply.text("one two three", chunk_delay=0.6))
    stream = bedrock.converse_stream(modelId=NOVA, messages=converse_user())["stream"]
    with closing(stream), pytest.raises(ToolTimeoutError) as caught:
        list(stream)
    assert caught.value.scope == "idle"
    span = signals.only_span()
    assert dict(span.attributes or {})["error.type"] == "timeout"


def test_a_file_like_body_is_sent_whole_on_every_attempt(
    with_policies: Any, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    with_policies(**{LLAMA: Policy(retry=FAST_RETRY)})
    fake_llm.enqueue(Reply.error(500), Reply.text("ok"))
    payload = json.dumps({"prompt": "hi", "max_gen_len": 5}).encode()
    source = io.BytesIO(payload)
    bedrock.invoke_model(modelId=LLAMA, body=source)["body"].read()
    assert [r.body for r in fake_llm.requests] == [payload, payload]


def test_only_the_bedrock_requests_retries_are_switched_off() -> None:
    # A client used on the way (STS refreshing credentials while botocore signs) keeps its retries.
    from types import SimpleNamespace

    from agentwatch.instrumentation.bedrock import _patch

    seen: list[int] = []

    def needs_retry(attempts: int, operation_model: Any, *rest: Any) -> bool:
        seen.append(attempts)
        return False

    def operation(service: str) -> Any:
        return SimpleNamespace(service_model=SimpleNamespace(service_name=service))

    token = _patch._sdk_retries_off.set(True)
    try:
        _patch.needs_retry_wrapper(needs_retry, None, (2, operation("sts"), {}), {})
        _patch.needs_retry_wrapper(needs_retry, None, (2, operation("bedrock-runtime"), {}), {})
    finally:
        _patch._sdk_retries_off.reset(token)
    _patch.needs_retry_wrapper(needs_retry, None, (2, operation("bedrock-runtime"), {}), {})
    assert seen == [2, _patch._SPENT_ATTEMPTS, 2]
