"""The real openai SDK through the pipeline against the fake LLM server: one retry layer, Retry-After."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch.resilience import AttemptContext, Policy, Retry
from resilience._support import FakeClock
from support import OPENAI_KEY, user


def chat(client: openai.OpenAI) -> Any:
    """The attempt function an LLM integrator would write: the pipeline's model, timeout and retry flag."""

    def attempt(ctx: AttemptContext) -> str:
        sdk = client.with_options(max_retries=0) if ctx.disable_sdk_retries else client
        completion = sdk.chat.completions.create(
            model=ctx.model or "",
            messages=user(),
            timeout=ctx.attempt_timeout,  # type: ignore[arg-type]
        )
        return completion.choices[0].message.content or ""

    return attempt


@pytest.fixture
def sdk_client(fake_llm: FakeLLMServer) -> Any:
    # max_retries=2 is the SDK's default: the pipeline must switch it off per call, not rely on it.
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=2) as client:
        yield client


def test_retry_after_of_a_real_429_is_honoured(
    fake_llm: FakeLLMServer, sdk_client: Any, make: Any, clock: FakeClock
) -> None:
    fake_llm.enqueue(Reply.error(429, headers={"retry-after": "7"}), Reply.text("hi"))
    pipeline = make(
        Policy(timeout=None, retry=Retry(attempts=3)), name="gpt-4o-mini", kind="llm", provider="openai"
    )
    assert pipeline.call(chat(sdk_client)) == "hi"
    assert clock.sleeps == [7.0]
    assert len(fake_llm.requests) == 2


def test_retry_after_of_a_real_429_is_capped(
    fake_llm: FakeLLMServer, sdk_client: Any, make: Any, clock: FakeClock
) -> None:
    fake_llm.enqueue(Reply.error(429, headers={"retry-after-ms": "90000"}), Reply.text("hi"))
    policy = Policy(timeout=None, retry=Retry(attempts=2, retry_after_cap=5.0))
    assert make(policy, name="gpt-4o-mini", kind="llm").call(chat(sdk_client)) == "hi"
    assert clock.sleeps == [5.0]


def test_three_attempts_are_three_requests(
    fake_llm: FakeLLMServer, sdk_client: Any, make: Any, clock: FakeClock
) -> None:
    # retry-after-ms makes the SDK's own retries (if they were on) instant, so a regression shows as 9.
    fake_llm.enqueue(*(Reply.error(503, headers={"retry-after-ms": "1"}) for _ in range(9)))
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3)), name="gpt-4o-mini", kind="llm")
    assert pipeline.disable_sdk_retries is True
    with pytest.raises(openai.InternalServerError):
        pipeline.call(chat(sdk_client))
    assert len(fake_llm.requests) == 3
    assert len(clock.sleeps) == 2


def test_an_attempt_ignoring_the_flag_would_multiply_requests(
    fake_llm: FakeLLMServer, sdk_client: Any, make: Any
) -> None:
    """Shows what ``disable_sdk_retries`` prevents: 3 attempts × 3 SDK tries."""
    fake_llm.enqueue(*(Reply.error(503, headers={"retry-after-ms": "1"}) for _ in range(9)))
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3)), name="gpt-4o-mini", kind="llm")

    def careless(ctx: AttemptContext) -> Any:
        return sdk_client.chat.completions.create(model="gpt-4o-mini", messages=user())

    with pytest.raises(openai.InternalServerError):
        pipeline.call(careless)
    assert len(fake_llm.requests) == 9


@pytest.mark.anyio
async def test_async_client_three_attempts_then_fallback_model(
    fake_llm: FakeLLMServer, make: Any, clock: FakeClock
) -> None:
    fake_llm.enqueue(
        *(Reply.error(503) for _ in range(3)),
        Reply.text("from the fallback"),
    )
    policy = Policy(timeout=None, retry=Retry(attempts=3), fallback_models=["gpt-4o-mini"])
    pipeline = make(policy, name="gpt-4o", kind="llm", provider="openai")
    async with openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY) as client:

        async def attempt(ctx: AttemptContext) -> str:
            sdk = client.with_options(max_retries=0) if ctx.disable_sdk_retries else client
            completion = await sdk.chat.completions.create(model=ctx.model or "", messages=user())  # type: ignore[arg-type]
            return completion.choices[0].message.content or ""

        assert await pipeline.acall(attempt) == "from the fallback"
    assert [r.model for r in fake_llm.requests] == ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini"]


def test_context_length_error_goes_to_the_fallback_model(
    fake_llm: FakeLLMServer, sdk_client: Any, make: Any, clock: FakeClock
) -> None:
    fake_llm.enqueue(Reply.error(400, code="context_length_exceeded"), Reply.text("bigger window"))
    policy = Policy(timeout=None, retry=Retry(attempts=3), fallback_models=["gpt-4.1"])
    assert make(policy, name="gpt-4o", kind="llm").call(chat(sdk_client)) == "bigger window"
    assert [r.model for r in fake_llm.requests] == ["gpt-4o", "gpt-4.1"]
    assert clock.sleeps == []
