"""anthropic's own tracing and streams: every way a stream ends is on the SDK's span (issue 11, item 13).

The SDK ends its span from the stream's body, inside ``close()`` or as an error leaves the
iterator, before agentwatch's stream proxy hears of it. agentwatch ends its call just before, so
``agentwatch.stream.outcome`` (and what the events said) lands on a span that still records, and
nothing writes to an ended span (the SDK would log a warning, an error under pytest).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    ANTHROPIC_NATIVE_TRACING,
    Signals,
    anthropic_stream_error,
    user,
)

pytestmark = pytest.mark.skipif(
    not ANTHROPIC_NATIVE_TRACING, reason="this anthropic version has no tracing of its own"
)


@pytest.fixture
def client(fake_llm: FakeLLMServer, instrumented: Signals) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        open_telemetry={"tracer_provider": instrumented.tracer_provider},
    ) as c:
        yield c


@pytest.fixture
async def aclient(fake_llm: FakeLLMServer, instrumented: Signals) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        open_telemetry={"tracer_provider": instrumented.tracer_provider},
    ) as c:
        yield c


def _create(client: anthropic.Anthropic) -> Any:
    return client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True)


def read_to_the_end(client: anthropic.Anthropic) -> None:
    for _ in _create(client):
        pass


def close_after_one(client: anthropic.Anthropic) -> None:
    stream = _create(client)
    next(iter(stream))
    stream.close()


def leave_the_with_block(client: anthropic.Anthropic) -> None:
    with _create(client) as stream:
        for _ in stream:
            break


def leave_the_helper(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()) as stream:
        for _ in stream:
            break


def fail_mid_stream(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError):
        read_to_the_end(client)


@pytest.mark.parametrize(
    ("consume", "reply", "outcome", "status"),
    [
        (read_to_the_end, Reply.text(), "completed", StatusCode.OK),
        (close_after_one, Reply.text(), "closed", StatusCode.UNSET),
        (leave_the_with_block, Reply.text(), "closed", StatusCode.UNSET),
        (leave_the_helper, Reply.text(), "closed", StatusCode.UNSET),
        (
            fail_mid_stream,
            anthropic_stream_error("overloaded_error", "Overloaded"),
            "error",
            StatusCode.ERROR,
        ),
    ],
)
def test_the_outcome_is_on_the_sdks_span(
    client: anthropic.Anthropic,
    instrumented: Signals,
    fake_llm: FakeLLMServer,
    caplog: pytest.LogCaptureFixture,
    consume: Callable[[anthropic.Anthropic], None],
    reply: Reply,
    outcome: str,
    status: StatusCode,
) -> None:
    fake_llm.enqueue(reply)
    with caplog.at_level(logging.WARNING):
        consume(client)
    span = instrumented.only_span()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name.startswith("com.anthropic")  # the SDK's span, adopted
    attributes = dict(span.attributes or {})
    assert attributes["agentwatch.stream.outcome"] == outcome
    assert attributes["gen_ai.response.model"] == ANTHROPIC_MODEL
    assert span.status.status_code is status
    # Nothing wrote to an ended span (the SDK logs that as a warning).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    (point,) = instrumented.points("gen_ai.client.operation.duration")
    assert point.count == 1
    assert ("error.type" in point.attributes) is (outcome == "error")


@pytest.mark.anyio
async def test_async_streams_too(
    aclient: anthropic.AsyncAnthropic,
    instrumented: Signals,
    fake_llm: FakeLLMServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_llm.enqueue(Reply.text(), Reply.text(), anthropic_stream_error("overloaded_error", "Overloaded"))
    with caplog.at_level(logging.WARNING):
        async for _ in await aclient.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True
        ):
            pass
        stream = await aclient.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True
        )
        await stream.__anext__()
        await stream.close()
        with pytest.raises(anthropic.APIStatusError):
            async for _ in await aclient.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True
            ):
                pass
    outcomes = [dict(s.attributes or {}).get("agentwatch.stream.outcome") for s in instrumented.finished()]
    assert outcomes == ["completed", "closed", "error"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_server_chosen_error_type_that_is_not_a_token_never_becomes_a_metric_attribute(
    client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    # anthropic's convention takes error.type from the error envelope, which the server writes.
    fake_llm.enqueue(Reply.error(400, error_type="input 'my secret diagnosis' rejected"), Reply.error(429))
    for error in (anthropic.BadRequestError, anthropic.RateLimitError):
        with pytest.raises(error):
            client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
    types = sorted(
        p.attributes["error.type"] for p in instrumented.points("gen_ai.client.operation.duration")
    )
    assert types == ["anthropic.BadRequestError", "rate_limit_error"]
