"""Client-side rate limits (``Policy(rate_limit=RateLimit(...))``), in one process: pacing, waiting
within a bound, structured rejection, token estimates corrected from the response's usage, and
the LLM path through real SDKs against the fake LLM server. Fleet-wide budgets (Redis) are in
test_shared_state.py and test_fleet.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

import agentwatch
from agentwatch import ConfigError, Policy, RateLimit, RateLimitedError, ToolUnavailable
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch.resilience import AttemptContext, ErrorCategory, load_config
from agentwatch.resilience._ratelimit import estimate_tokens
from resilience._support import FakeClock, event_counts, events
from support import ANTHROPIC_KEY, ANTHROPIC_MODEL, NO_NATIVE, OPENAI_KEY, OPENAI_MODEL, Signals, user

PER_SECOND = RateLimit(requests=60, period=60.0)  # one request a second, one at a time


def ok(ctx: AttemptContext) -> str:
    return "ok"


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({}, "RateLimit.requests"),  # neither requests nor tokens
        ({"requests": 0}, "RateLimit.requests"),
        ({"requests": 1.5}, "RateLimit.requests"),
        ({"tokens": -1}, "RateLimit.tokens"),
        ({"requests": 1, "period": 0}, "RateLimit.period"),
        ({"requests": 1, "burst": 0}, "RateLimit.burst"),
        ({"requests": 1, "burst": 1.5}, "RateLimit.burst"),
        ({"requests": 1, "max_wait": -1}, "RateLimit.max_wait"),
        ({"requests": 1, "key": ""}, "RateLimit.key"),
    ],
)
def test_invalid_settings_name_the_setting(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RateLimit(**kwargs)
    assert caught.value.setting == setting


def test_defaults() -> None:
    limit = RateLimit(requests=600)
    assert (limit.tokens, limit.period, limit.burst, limit.max_wait, limit.key) == (
        None,
        60.0,
        1 / 60,
        10.0,
        None,
    )


def test_a_token_budget_on_a_tool_is_refused(make: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        make(Policy(rate_limit=RateLimit(tokens=100)))
    assert caught.value.setting == "Policy.rate_limit.tokens"


def test_rate_limits_come_from_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policies.toml"
    path.write_text(
        "[tools.search]\nrate_limit = { requests = 120 }\n"
        '[llm."gpt-4o"]\nrate_limit = { requests = 500, tokens = 30000, max_wait = 5 }\n'
    )
    config = load_config(path)
    assert config.tools["search"].rate_limit == RateLimit(requests=120)
    assert config.llm["gpt-4o"].rate_limit == RateLimit(requests=500, tokens=30000, max_wait=5.0)
    path.write_text("[tools.search]\nrate_limit = { requests = 120, tokens = 5 }\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.setting == "tools.search.rate_limit.tokens"
    path.write_text("[tools.search]\nrate_limit = { requests = 0 }\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.setting == "tools.search.rate_limit.requests"


# -- pacing, waiting, rejecting ------------------------------------------------------------------


def test_calls_over_the_rate_wait_their_turn_at_an_even_pace(
    make: Any, clock: FakeClock, signals: Signals
) -> None:
    pipeline = make(Policy(timeout=None, rate_limit=PER_SECOND))
    with signals.tracer_provider.get_tracer("t").start_as_current_span("execute_tool search") as span:
        results = [pipeline.call(ok, span=span) for _ in range(4)]
    assert results == ["ok"] * 4
    # The first goes at once; each next one waits the one second the budget needs to refill.
    assert clock.sleeps == [pytest.approx(1.0)] * 3
    delayed = events(signals.only_span(), "rate_limit_delayed")
    assert [e["agentwatch.rate_limit.wait"] for e in delayed] == [pytest.approx(1.0)] * 3
    assert {e["agentwatch.rate_limit.key"] for e in delayed} == {"search"}
    assert {e["agentwatch.rate_limit.scope"] for e in delayed} == {"replica"}
    assert event_counts(signals)[("rate_limit_delayed", "search")] == 3


def test_the_budget_refills_with_time(make: Any, clock: FakeClock) -> None:
    pipeline = make(Policy(timeout=None, rate_limit=RateLimit(requests=600, period=60.0, burst=0.5)))
    # A burst of half the budget (300) goes at once, then the pace is 10 a second.
    for _ in range(300):
        pipeline.call(ok)
    assert clock.sleeps == []
    pipeline.call(ok)
    assert clock.sleeps == [pytest.approx(0.1)]
    clock.advance(60)
    for _ in range(300):
        pipeline.call(ok)
    assert len(clock.sleeps) == 1


def test_a_call_that_would_wait_too_long_is_rejected_at_once(
    make: Any, clock: FakeClock, signals: Signals
) -> None:
    pipeline = make(Policy(timeout=None, rate_limit=RateLimit(requests=60, period=60.0, max_wait=0.5)))
    pipeline.call(ok)
    attempts = 0

    def counted(ctx: AttemptContext) -> str:
        nonlocal attempts
        attempts += 1
        return "ok"

    tracer = signals.tracer_provider.get_tracer("t")
    with (
        tracer.start_as_current_span("execute_tool search") as span,
        pytest.raises(RateLimitedError) as caught,
    ):
        pipeline.call(counted, span=span)
    error = caught.value
    assert (error.name, error.kind, error.key, error.limit, error.scope) == (
        "search",
        "tool",
        "search",
        "requests",
        "replica",
    )
    assert error.category is ErrorCategory.RATE_LIMIT
    assert error.error_type == "rate_limited"
    assert error.retry_in == pytest.approx(1.0)
    assert attempts == 0
    assert clock.sleeps == []  # never waits just to fail
    span = signals.only_span()
    assert span.attributes is not None and span.attributes["error.type"] == "rate_limited"
    (rejected,) = events(span, "rate_limit_rejected")
    assert rejected["agentwatch.rate_limit.limit"] == "requests"
    assert rejected["agentwatch.rate_limit.retry_in"] == pytest.approx(1.0)
    assert rejected["error.type"] == "rate_limited"
    points = [
        p
        for p in signals.points("agentwatch.resilience.events")
        if p.attributes["agentwatch.resilience.event"] == "rate_limit_rejected"
    ]
    assert [dict(p.attributes) for p in points] == [
        {
            "agentwatch.resilience.event": "rate_limit_rejected",
            "agentwatch.resilience.policy": "rate_limit",
            "gen_ai.tool.name": "search",
            "agentwatch.rate_limit.limit": "requests",
            "agentwatch.rate_limit.scope": "replica",
            "error.type": "rate_limited",
        }
    ]
    # A rejected call took nothing: after the wait it was refused, the next one goes.
    clock.advance(1.0)
    assert pipeline.call(counted) == "ok"


def test_the_deadline_bounds_the_wait(make: Any, clock: FakeClock) -> None:
    pipeline = make(Policy(timeout=0.5, rate_limit=RateLimit(requests=60, period=60.0, max_wait=30)))
    pipeline.call(ok)
    with pytest.raises(RateLimitedError):
        pipeline.call(ok)
    assert clock.sleeps == []


def test_an_optional_tool_degrades_when_rate_limited(make: Any) -> None:
    pipeline = make(Policy(timeout=None, critical=False, rate_limit=RateLimit(requests=1, max_wait=0)))
    pipeline.call(ok)
    result = pipeline.call(ok)
    assert isinstance(result, ToolUnavailable)
    assert (result.reason, result.error_type) == ("rate_limited", "rate_limited")
    assert "over its rate limit" in result.message


def test_a_rate_limited_model_falls_back_to_the_next_with_its_own_budget(make: Any) -> None:
    limit = RateLimit(requests=1, max_wait=0)
    pipeline = make(
        Policy(timeout=None, rate_limit=limit, fallback_models=["gpt-4o-mini"]),
        name="gpt-4o",
        kind="llm",
        provider="openai",
    )
    models: list[str | None] = []

    def attempt(ctx: AttemptContext) -> str:
        models.append(ctx.model)
        return "ok"

    pipeline.call(attempt)
    pipeline.call(attempt)
    assert models == ["gpt-4o", "gpt-4o-mini"]
    assert set(pipeline.rate_limiters) == {"gpt-4o", "gpt-4o-mini"}
    assert pipeline.rate_limiters["gpt-4o-mini"].key == "openai:gpt-4o-mini"
    with pytest.raises(RateLimitedError) as caught:
        pipeline.call(attempt)
    assert caught.value.name == "gpt-4o-mini"  # the last model's error


def test_tools_with_one_key_share_one_budget(make: Any) -> None:
    shared = RateLimit(requests=1, max_wait=0, key="weather-api")
    forecast = make(Policy(timeout=None, rate_limit=shared), name="forecast")
    current = make(Policy(timeout=None, rate_limit=shared), name="current")
    forecast.call(ok)
    with pytest.raises(RateLimitedError) as caught:
        current.call(ok)
    assert caught.value.key == "weather-api"


def test_retries_take_a_permit_each(make: Any, clock: FakeClock) -> None:
    pipeline = make(
        Policy(
            timeout=None,
            retry=agentwatch.Retry(attempts=3, backoff=0.0, max_delay=0.0, budget=None),
            rate_limit=PER_SECOND,
        )
    )
    calls = 0

    def flaky(ctx: AttemptContext) -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return "ok"

    assert pipeline.call(flaky) == "ok"
    # Three requests reached the dependency: each was paced (backoff is zero).
    assert [s for s in clock.sleeps if s] == [pytest.approx(1.0)] * 2


# -- tokens --------------------------------------------------------------------------------------


def test_a_token_estimate_is_corrected_from_the_usage(make: Any, clock: FakeClock) -> None:
    # 10 tokens a second; a burst of 10.
    pipeline = make(
        Policy(timeout=None, rate_limit=RateLimit(tokens=600, period=60.0, max_wait=5)),
        name="gpt-4o",
        kind="llm",
    )
    grants = []

    def attempt(ctx: AttemptContext) -> str:
        grants.append(ctx.rate_limit)
        return "ok"

    # A request larger than the burst goes once the budget is full (it is never starved)...
    pipeline.call(attempt, tokens=100)
    # ...and, estimated at 100 tokens, would hold the next one back for 10 s, past max_wait.
    with pytest.raises(RateLimitedError) as caught:
        pipeline.call(attempt, tokens=10)
    assert caught.value.limit == "tokens"
    assert caught.value.retry_in == pytest.approx(10.0)
    # The response said 20 tokens: the budget is 8 s fuller, and the next call waits 2 s.
    grants[0].settle(20)
    pipeline.call(attempt, tokens=10)
    assert clock.sleeps == [pytest.approx(2.0)]


@pytest.mark.anyio
async def test_a_call_cancelled_while_waiting_gives_its_permit_back(make: Any) -> None:
    pipeline = make(
        Policy(timeout=None, rate_limit=RateLimit(requests=60, period=60.0, max_wait=5)),
        async_sleep=asyncio.sleep,
        clock=FakeClock(),
    )
    clock = pipeline._clock

    async def attempt(ctx: AttemptContext) -> str:
        return "ok"

    await pipeline.acall(attempt)
    waiting = asyncio.ensure_future(pipeline.acall(attempt))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    clock.advance(1.0)
    # Without the refund the next permit would wait another second (max_wait 0 refuses it).
    limiter = pipeline.rate_limiters["search"]
    assert limiter.acquire(0, 0.0).wait == 0.0


def test_estimates_read_any_providers_request() -> None:
    openai_style = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    # (400 + len("user")) / 4 + max_tokens: every string counts, except the model's name.
    assert estimate_tokens(openai_style) == 101 + 50
    anthropic_style = {
        "model": "claude",
        "system": "s" * 40,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "t" * 80}]}],
        "max_tokens": 1000,
    }
    assert estimate_tokens(anthropic_style) == (40 + 4 + 4 + 80) // 4 + 1000
    gemini_style = {"contents": "hello world!", "config": {"max_output_tokens": 64}}
    assert estimate_tokens(gemini_style) == 3 + 64
    bedrock_style = {"messages": [], "inferenceConfig": {"maxTokens": 256}}
    assert estimate_tokens(bedrock_style) == 256
    image = {
        "messages": [
            {
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 10_000}}
                ]
            }
        ]
    }
    assert estimate_tokens(image) < 10


# -- the LLM path, through the real SDKs ---------------------------------------------------------


# 100 tokens a second, a burst of 100; a request asking for up to 500 output tokens is estimated
# at ~505 (5 s of budget) while the fake server reports 12 + 7 tokens used.
TOKENS = RateLimit(tokens=6000, period=60.0, max_wait=1.0)


def test_openai_calls_settle_their_estimate_with_the_reported_usage(
    with_policies: Any, fake_llm: FakeLLMServer
) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(rate_limit=TOKENS)})
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=user(), max_tokens=500)
        # Estimated, the first call left 5 s of debt (past max_wait); used, 0.19 s.
        client.chat.completions.create(model=OPENAI_MODEL, messages=user(), max_tokens=500)
        stream = client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=user(),
            max_tokens=500,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        # Settled when the stream ended, from its usage chunk.
        client.chat.completions.create(model=OPENAI_MODEL, messages=user(), max_tokens=500)
        fake_llm.enqueue(Reply.text(usage=False))
        client.chat.completions.create(model=OPENAI_MODEL, messages=user(), max_tokens=500)
        # No usage reported: the estimate stands, and the next call is over the limit.
        with pytest.raises(RateLimitedError) as caught:
            client.chat.completions.create(model=OPENAI_MODEL, messages=user(), max_tokens=500)
    assert caught.value.key == f"openai:{OPENAI_MODEL}"
    assert len(fake_llm.requests) == 5
    spans = signals.finished("chat")
    assert len(spans) == 6
    assert spans[-1].attributes is not None and spans[-1].attributes["error.type"] == "rate_limited"


def test_anthropic_calls_settle_their_estimate_too(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    with_policies(**{ANTHROPIC_MODEL: Policy(rate_limit=TOKENS)})
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        for _ in range(3):
            client.messages.create(model=ANTHROPIC_MODEL, messages=user(), max_tokens=500)
    assert len(fake_llm.requests) == 3
