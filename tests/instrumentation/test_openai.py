"""OpenAI instrumentation: spans, metrics and cost for every instrumented method, over real HTTP."""

from __future__ import annotations

import inspect

import openai
import pydantic
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from opentelemetry.trace import SpanKind, StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import OPENAI_KEY, OPENAI_MODEL, Signals, needs_chat_parse, needs_responses, parse_api, user

pytestmark = pytest.mark.usefixtures("instrumented")

# The advisory bucket boundaries of semconv v1.41 gen-ai-metrics.md, written out here rather than
# imported from the source so that a change to the source's constants cannot go unnoticed.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip


def test_chat_span_follows_the_conventions(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("Hi there", input_tokens=30, output_tokens=5, response_id="chatcmpl-1"))
    result = openai_client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=user(),
        temperature=0.3,
        top_p=0.9,
        max_tokens=50,
        stop=["END"],
        seed=7,
        frequency_penalty=0.1,
        presence_penalty=0.2,
        n=1,
    )

    assert result.choices[0].message.content == "Hi there"
    span = instrumented.only_span()
    assert span.name == f"chat {OPENAI_MODEL}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    port = int(fake_llm.url.rsplit(":", 1)[1])
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": OPENAI_MODEL,
        "server.address": "127.0.0.1",
        "server.port": port,
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.request.seed": 7,
        "gen_ai.request.frequency_penalty": 0.1,
        "gen_ai.request.presence_penalty": 0.2,
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.response.model": OPENAI_MODEL,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 0,
        "gen_ai.usage.reasoning.output_tokens": 0,
        "gen_ai.usage.cost.amount": pytest.approx(30 * 0.15e-6 + 5 * 0.6e-6),
        "gen_ai.usage.cost.currency": "USD",
        "openai.response.service_tier": attrs["openai.response.service_tier"],
        "openai.response.system_fingerprint": attrs["openai.response.system_fingerprint"],
    }
    # n=1 is the default: the choice count is conditionally required only when it is not 1.
    assert "gen_ai.request.choice.count" not in attrs


def test_metrics_have_units_buckets_and_attributes(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text(input_tokens=100, output_tokens=20))
    openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())

    port = int(fake_llm.url.rsplit(":", 1)[1])
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": OPENAI_MODEL,
        "gen_ai.response.model": OPENAI_MODEL,
        "server.address": "127.0.0.1",
        "server.port": port,
    }
    # v1.41 openai.md recommends the response's service tier and system fingerprint on these two
    # metrics (and only these).
    openai_attrs = {
        "openai.response.service_tier": "default",
        "openai.response.system_fingerprint": "fp_fakellm",
    }
    duration = instrumented.metric("gen_ai.client.operation.duration")
    assert duration.unit == "s"
    (point,) = duration.data.data_points
    assert dict(point.attributes) == {**base, **openai_attrs}
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    assert point.count == 1

    tokens = instrumented.metric("gen_ai.client.token.usage")
    assert tokens.unit == "{token}"
    by_type = {p.attributes["gen_ai.token.type"]: p for p in tokens.data.data_points}
    assert by_type["input"].sum == 100 and by_type["output"].sum == 20
    assert dict(by_type["input"].attributes) == {**base, **openai_attrs, "gen_ai.token.type": "input"}
    assert dict(by_type["output"].attributes) == {**base, **openai_attrs, "gen_ai.token.type": "output"}
    assert tuple(by_type["input"].explicit_bounds) == TOKEN_BUCKETS

    cost = instrumented.metric("gen_ai.client.operation.cost")
    assert cost.unit == "USD"
    (cost_point,) = cost.data.data_points
    assert dict(cost_point.attributes) == base
    # No convention advises cost buckets; the README promises 0.00001 ... 10 USD with sub-cent
    # resolution (most calls cost well under a cent).
    bounds = tuple(cost_point.explicit_bounds)
    assert bounds[0] == 0.00001 and bounds[-1] == 10.0
    assert list(bounds) == sorted(set(bounds))
    assert len([b for b in bounds if b < 0.01]) >= 5
    assert cost_point.sum == pytest.approx(100 * 0.15e-6 + 20 * 0.6e-6)


def test_cost_counts_cached_and_reasoning_tokens_at_their_prices(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        Reply.text(input_tokens=1000, cached_tokens=600, output_tokens=300, reasoning_tokens=200)
    )
    openai_client.chat.completions.create(model="o4-mini", messages=user())

    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.usage.input_tokens"] == 1000
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 600
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 200
    expected = calc_price(
        GPUsage(input_tokens=1000, cache_read_tokens=600, output_tokens=300, output_reasoning_tokens=200),
        "o4-mini",
        provider_id="openai",
    ).total_price
    assert attrs["gen_ai.usage.cost.amount"] == pytest.approx(float(expected))
    # The cached share is cheaper than full-price input: the discount is really applied.
    assert attrs["gen_ai.usage.cost.amount"] < (1000 * 1.1 + 300 * 4.4) / 1e6


def test_unknown_model_is_flagged_not_priced_at_zero(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text(model="my-private-finetune"))
    openai_client.chat.completions.create(model="my-private-finetune", messages=user())

    attrs = dict(instrumented.only_span().attributes or {})
    assert "gen_ai.usage.cost.amount" not in attrs
    assert attrs["agentwatch.usage.cost.unpriced"] is True
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert instrumented.points("gen_ai.client.operation.cost") == []


@needs_chat_parse
def test_parse_is_instrumented_and_returns_the_parsed_model(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    class Answer(pydantic.BaseModel):
        city: str

    fake_llm.enqueue(Reply.text('{"city": "Paris"}'))
    parsed = parse_api(openai_client).parse(model=OPENAI_MODEL, messages=user(), response_format=Answer)

    assert parsed.choices[0].message.parsed == Answer(city="Paris")
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.output.type"] == "json"
    assert attrs["gen_ai.usage.output_tokens"] == 7


@needs_responses
def test_responses_create_and_stream(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        Reply.text("one", input_tokens=40, cached_tokens=10, output_tokens=3),
        Reply.text("two three", output_tokens=4),
    )
    # Conversations came to the Responses API in openai 1.101.
    has_conversation = (
        # The client's resource: ``openai.resources.responses`` is loaded on first use.
        "conversation" in inspect.signature(type(openai_client.responses).create).parameters
    )
    conversation = {"conversation": "conv_123"} if has_conversation else {}
    response = openai_client.responses.create(
        model=OPENAI_MODEL, input="hello", max_output_tokens=64, **conversation
    )
    assert response.output_text == "one"
    with openai_client.responses.create(model=OPENAI_MODEL, input="hello", stream=True) as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.completed"

    first, second = instrumented.finished()
    a1, a2 = dict(first.attributes or {}), dict(second.attributes or {})
    assert first.name == second.name == f"chat {OPENAI_MODEL}"
    assert a1["gen_ai.request.max_tokens"] == 64
    assert a1.get("gen_ai.conversation.id") == conversation.get("conversation")
    assert (a1["gen_ai.usage.input_tokens"], a1["gen_ai.usage.cache_read.input_tokens"]) == (40, 10)
    assert a1["gen_ai.response.finish_reasons"] == ("stop",)
    assert a2["gen_ai.request.stream"] is True
    assert a2["gen_ai.usage.output_tokens"] == 4
    assert a2["agentwatch.stream.outcome"] == "completed"
    assert a2["gen_ai.response.time_to_first_chunk"] > 0


def test_embeddings(openai_client: openai.OpenAI, instrumented: Signals) -> None:
    result = openai_client.embeddings.create(
        model="text-embedding-3-small", input=["a", "b"], encoding_format="float"
    )
    assert len(result.data) == 2

    span = instrumented.only_span()
    attrs = dict(span.attributes or {})
    assert span.name == "embeddings text-embedding-3-small"
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.request.encoding_formats"] == ("float",)
    assert attrs["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert "gen_ai.usage.output_tokens" not in attrs
    assert attrs["gen_ai.embeddings.dimension.count"] == len(result.data[0].embedding)


def test_azure_client_reports_azure_provider(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=fake_llm.url, api_version="2024-10-21", api_key=OPENAI_KEY, max_retries=0
    ) as client:
        client.chat.completions.create(model="my-deployment", messages=user())
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"
    assert attrs["gen_ai.request.model"] == "my-deployment"


@pytest.mark.anyio
async def test_async_chat_and_stream(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0
    ) as client:
        result = await client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        stream = await client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
        chunks = [chunk async for chunk in stream]
        embedded = await client.embeddings.create(model="text-embedding-3-small", input="x")
    assert result.choices[0].message.content
    assert chunks and embedded.data

    names = [s.name for s in instrumented.finished()]
    assert names == [f"chat {OPENAI_MODEL}", f"chat {OPENAI_MODEL}", "embeddings text-embedding-3-small"]
    streamed = dict(instrumented.finished()[1].attributes or {})
    assert streamed["agentwatch.stream.outcome"] == "completed"
    assert streamed["gen_ai.response.finish_reasons"] == ("stop",)


@pytest.mark.parametrize(
    ("reply", "error", "error_type"),
    [
        (Reply.error(429, headers={"retry-after": "3"}), openai.RateLimitError, "openai.RateLimitError"),
        (Reply.error(500), openai.InternalServerError, "openai.InternalServerError"),
        (Reply.error(400, message="bad request"), openai.BadRequestError, "openai.BadRequestError"),
        (Reply.reset(), openai.APIConnectionError, "openai.APIConnectionError"),
    ],
)
def test_errors_set_status_and_error_type_on_span_and_metric(
    openai_client: openai.OpenAI,
    instrumented: Signals,
    fake_llm: FakeLLMServer,
    reply: Reply,
    error: type[Exception],
    error_type: str,
) -> None:
    fake_llm.enqueue(reply)
    with pytest.raises(error):
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())

    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description
    assert span.attributes is not None and span.attributes["error.type"] == error_type
    (point,) = instrumented.points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == error_type
    assert instrumented.points("gen_ai.client.token.usage") == []


def test_timeout_is_an_error(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.hang(5))
    with (
        openai.OpenAI(
            base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0, timeout=0.3
        ) as client,
        pytest.raises(openai.APITimeoutError),
    ):
        client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    span = instrumented.only_span()
    assert span.attributes is not None and span.attributes["error.type"] == "openai.APITimeoutError"


def test_stream_without_usage_records_no_tokens(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    stream = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
    for _ in stream:
        pass

    assert fake_llm.requests[-1].wants_usage is False
    attrs = dict(instrumented.only_span().attributes or {})
    assert "gen_ai.usage.input_tokens" not in attrs
    assert "gen_ai.usage.cost.amount" not in attrs
    assert "agentwatch.usage.cost.unpriced" not in attrs
    assert instrumented.points("gen_ai.client.token.usage") == []


def test_include_usage_setting_requests_usage_for_streams(signals: Signals, fake_llm: FakeLLMServer) -> None:
    import agentwatch

    agentwatch.uninstrument()
    agentwatch.instrument(**signals.providers, configure_sdk=False, openai_include_usage=True)
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        chunks = list(client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True))
        # An explicit stream_options from the caller is left exactly as given.
        list(
            client.chat.completions.create(
                model=OPENAI_MODEL, messages=user(), stream=True, stream_options={"include_usage": False}
            )
        )

    first, second = fake_llm.requests
    assert first.wants_usage is True
    assert first.json is not None and first.json["stream_options"] == {"include_usage": True}
    assert second.json is not None and second.json["stream_options"] == {"include_usage": False}
    # The extra usage chunk reaches the application like any other chunk.
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    spans = signals.finished()
    assert dict(spans[0].attributes or {})["gen_ai.usage.output_tokens"] == 7
    assert "gen_ai.usage.output_tokens" not in dict(spans[1].attributes or {})


def test_streamed_per_chunk_metrics(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("a b c d e", chunks=5, chunk_delay=0.02))
    chunks = list(openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True))

    (ttfc,) = instrumented.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1
    (per_chunk,) = instrumented.points("gen_ai.client.operation.time_per_output_chunk")
    # One value per chunk after the first ...
    assert per_chunk.count == len(chunks) - 1
    # ... measured between chunks: the server sleeps 20 ms between events. One gap can shrink when
    # two events arrive in one read, but together they span the whole stream.
    assert per_chunk.sum >= 0.5 * 0.02 * (len(chunks) - 1)
    # Both are durations: seconds, with the duration buckets the conventions advise for them.
    for name in (
        "gen_ai.client.operation.time_to_first_chunk",
        "gen_ai.client.operation.time_per_output_chunk",
    ):
        metric = instrumented.metric(name)
        assert metric.unit == "s", name
        (point,) = metric.data.data_points
        assert tuple(point.explicit_bounds) == DURATION_BUCKETS, name


@pytest.mark.parametrize(
    ("argument", "variable", "recorded"),
    [
        (None, None, True),  # on by default, as the conventions define the metric
        (None, "", True),  # an empty variable is unset
        (None, "false", False),
        (False, None, False),
        (True, "false", True),  # the argument wins over the variable
        (None, "TRUE", True),
    ],
)
def test_time_per_output_chunk_is_on_by_default_and_can_be_switched_off(
    signals: Signals,
    fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    argument: bool | None,
    variable: str | None,
    recorded: bool,
) -> None:
    import agentwatch

    if variable is not None:
        monkeypatch.setenv("AGENTWATCH_TIME_PER_OUTPUT_CHUNK", variable)
    agentwatch.uninstrument()
    agentwatch.instrument(**signals.providers, configure_sdk=False, time_per_output_chunk=argument)
    try:
        fake_llm.enqueue(Reply.text("a b c d e", chunks=5, usage=True))
        with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
            chunks = list(
                client.chat.completions.create(
                    model=OPENAI_MODEL, messages=user(), stream=True, stream_options={"include_usage": True}
                )
            )
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    per_chunk = signals.points("gen_ai.client.operation.time_per_output_chunk")
    if recorded:
        assert [point.count for point in per_chunk] == [len(chunks) - 1]
    else:
        assert per_chunk == []
    # Everything else a stream records is there either way.
    (ttfc,) = signals.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1
    (duration,) = signals.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert len(signals.points("gen_ai.client.token.usage")) == 2


def test_chat_stream_response_id_comes_from_the_chunks(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("a b c", response_id="chatcmpl-streamed-42"))
    chunks = list(openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True))

    assert {chunk.id for chunk in chunks} == {"chatcmpl-streamed-42"}
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.response.id"] == "chatcmpl-streamed-42"


@needs_responses
def test_responses_stream_response_id_comes_from_the_events(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("a b c", response_id="resp_streamed_42"))
    with openai_client.responses.create(model=OPENAI_MODEL, input="hello", stream=True) as stream:
        events = list(stream)

    assert events[-1].type == "response.completed"
    assert events[-1].response.id == "resp_streamed_42"
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.response.id"] == "resp_streamed_42"
