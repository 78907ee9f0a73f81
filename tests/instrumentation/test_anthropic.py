"""Anthropic instrumentation, including anthropic 2.x's own tracing (exactly one span per call)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from support import ANTHROPIC_KEY, ANTHROPIC_MODEL, ANTHROPIC_NATIVE_TRACING, Signals, user

pytestmark = pytest.mark.usefixtures("instrumented")


def test_messages_span_sums_cached_input_tokens(
    anthropic_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    # The turn's prompt is 1000 tokens: 600 read from cache, 100 written to it, 300 fresh.
    fake_llm.enqueue(
        Reply.text("ok", input_tokens=1000, cached_tokens=600, cache_creation_tokens=100, output_tokens=50)
    )
    sampling = {"temperature": 0.5, "top_k": 40, "top_p": 0.8}
    accepted = inspect.signature(anthropic.resources.messages.Messages.create).parameters
    # anthropic 2.x dropped the sampling parameters from messages.create.
    sampling = {k: v for k, v in sampling.items() if k in accepted}
    message = anthropic_client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=128,
        stop_sequences=["###"],
        system="Be brief.",
        messages=user(),
        **sampling,
    )
    assert message.usage.input_tokens == 300

    span = instrumented.only_span()
    assert span.name == f"chat {ANTHROPIC_MODEL}"
    assert span.kind is SpanKind.CLIENT
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.max_tokens"] == 128
    if "top_k" in sampling:
        assert attrs["gen_ai.request.top_k"] == 40.0 and isinstance(attrs["gen_ai.request.top_k"], float)
        assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.stop_sequences"] == ("###",)
    assert attrs["gen_ai.usage.input_tokens"] == 1000
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 600
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 100
    assert attrs["gen_ai.usage.output_tokens"] == 50
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    # claude-haiku-4-5: $1 input, $0.10 cache read, $1.25 cache write, $5 output per MTok.
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(
        (300 * 1 + 600 * 0.1 + 100 * 1.25 + 50 * 5) / 1e6
    )
    assert "gen_ai.system_instructions" not in attrs  # content capture is off


def test_stream_helper_and_tool_use(
    anthropic_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Lyon"})], output_tokens=21))
    with anthropic_client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.finish_reasons"] == ("tool_use",)
    assert attrs["gen_ai.usage.output_tokens"] == 21
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0


def test_streams_sum_cached_input_tokens_and_cost_like_a_plain_call(
    anthropic_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    # Same usage as above, streamed: message_start carries the prompt's split (fresh, cache read,
    # cache write) and message_delta only the final output count, so the two must be combined.
    usage = {"input_tokens": 1000, "cached_tokens": 600, "cache_creation_tokens": 100, "output_tokens": 50}
    fake_llm.enqueue(Reply.text(**usage), Reply.text(**usage), Reply.text(**usage))
    request: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": user()}
    anthropic_client.messages.create(**request)
    for _ in anthropic_client.messages.create(**request, stream=True):
        pass
    with anthropic_client.messages.stream(**request) as stream:
        stream.get_final_message()

    plain, created, helper = (dict(s.attributes or {}) for s in instrumented.finished())
    for attrs in (created, helper):
        assert attrs["gen_ai.request.stream"] is True
        # semconv: input includes the cached tokens, which Anthropic reports apart.
        assert attrs["gen_ai.usage.input_tokens"] == 1000
        assert attrs["gen_ai.usage.cache_read.input_tokens"] == 600
        assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 100
        assert attrs["gen_ai.usage.output_tokens"] == 50
        assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(plain["gen_ai.usage.cost.amount"])
    assert plain["gen_ai.usage.cost.amount"] == pytest.approx(
        (300 * 1 + 600 * 0.1 + 100 * 1.25 + 50 * 5) / 1e6
    )


@pytest.mark.anyio
async def test_async_create_and_helper(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    kwargs: dict[str, Any] = {"open_telemetry": False} if ANTHROPIC_NATIVE_TRACING else {}
    async with anthropic.AsyncAnthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **kwargs
    ) as client:
        await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
        async with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()) as stream:
            text = [t async for t in stream.text_stream]
    assert text
    spans = instrumented.finished()
    assert [s.name for s in spans] == [f"chat {ANTHROPIC_MODEL}"] * 2
    assert dict(spans[1].attributes or {})["agentwatch.stream.outcome"] == "completed"


def test_overloaded_error(
    anthropic_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.error(529, error_type="overloaded_error"))
    with pytest.raises(anthropic.APIStatusError) as raised:
        anthropic_client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    # Newer SDKs raise OverloadedError for 529 (an InternalServerError subclass only since 2.x).
    assert span.attributes is not None
    assert span.attributes["error.type"] == f"anthropic.{type(raised.value).__name__}"


# -- anthropic 2.x native tracing ---------------------------------------------------------------

native_only = pytest.mark.skipif(
    not ANTHROPIC_NATIVE_TRACING, reason="this anthropic version has no tracing of its own"
)


@pytest.fixture
def native_client(fake_llm: FakeLLMServer, instrumented: Signals) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        open_telemetry={"tracer_provider": instrumented.tracer_provider},
    ) as client:
        yield client


def _calls(client: anthropic.Anthropic) -> None:
    client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
    for _ in client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True):
        pass
    with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()) as stream:
        stream.get_final_message()


@native_only
def test_native_tracing_on_gives_one_enriched_span_per_call(
    native_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        Reply.text(input_tokens=100, output_tokens=10),
        Reply.text(output_tokens=11),
        Reply.text(output_tokens=12),
    )
    _calls(native_client)

    spans = instrumented.finished()
    assert len(spans) == 3
    for span, output_tokens in zip(spans, (10, 11, 12), strict=True):
        # The SDK's span, not a second one of agentwatch's ...
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name.startswith("com.anthropic")
        # ... renamed to the convention and carrying what agentwatch adds.
        assert span.name == f"chat {ANTHROPIC_MODEL}"
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.request.max_tokens"] == 64
        assert attrs["gen_ai.usage.output_tokens"] == output_tokens
        assert attrs["gen_ai.usage.cost.amount"] > 0
        assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    # agentwatch's metrics are recorded once per call in this mode too.
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.count == 3
    # Every request carried the trace context of its (one) span.
    for request, span in zip(fake_llm.requests, spans, strict=True):
        assert span.context is not None
        assert request.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


@native_only
def test_native_tracing_error_type_matches_between_span_and_metric(
    native_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.error(429))
    with pytest.raises(anthropic.RateLimitError):
        native_client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
    span = instrumented.only_span()
    (point,) = instrumented.points("gen_ai.client.operation.duration")
    assert span.attributes is not None
    assert point.attributes["error.type"] == span.attributes["error.type"]


@native_only
def test_native_tracing_off_gives_agentwatchs_span(
    anthropic_client: anthropic.Anthropic, instrumented: Signals
) -> None:
    _calls(anthropic_client)
    spans = instrumented.finished()
    assert len(spans) == 3
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "agentwatch.instrumentation.anthropic"
    }


@native_only
def test_native_tracing_env_switch(
    instrumented: Signals, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the environment variable off, the SDK makes no span even with a provider set."""
    monkeypatch.setenv("ANTHROPIC_OPEN_TELEMETRY", "false")
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0
    ) as client:
        client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
    span = instrumented.only_span()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "agentwatch.instrumentation.anthropic"
