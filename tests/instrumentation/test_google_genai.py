"""Google Gen AI (google-genai) over real HTTP to the fake server: spans, metrics, content, streams,
trace context on every transport, errors, and one span per request to the model."""

from __future__ import annotations

import asyncio
import gc
import inspect
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google import genai
from google.genai import errors, types
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply, ToolCall
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import ErrorCategory, default_classifier
from support import Signals

GEMINI_KEY = "AIzaSyTESTKEYgemini0123456789abcdefXYZ"
MODEL = "gemini-2.5-flash"
HAS_AIOHTTP = hasattr(genai._api_client, "has_aiohttp") and genai._api_client.has_aiohttp
HAS_RETRY_OPTIONS = hasattr(types, "HttpRetryOptions")
# Older SDKs end a stream quietly at an in-band error event instead of raising it.
RAISES_IN_BAND_ERRORS = '{"error":' in inspect.getsource(genai._api_client.BaseApiClient.request_streamed)


def client(server: FakeLLMServer, **http: Any) -> genai.Client:
    return genai.Client(api_key=GEMINI_KEY, http_options={"base_url": server.url, **http})


async def aclose(gemini: genai.Client) -> None:
    """Closes the async client's sessions (aiohttp's warn when collected open); older SDKs have no aclose."""
    close = getattr(gemini.aio, "aclose", None)
    if close is not None:
        await close()


def vertex_client(server: FakeLLMServer) -> genai.Client:
    from google.oauth2.credentials import Credentials

    return genai.Client(
        vertexai=True,
        project="demo-project",
        location="us-central1",
        credentials=Credentials(token="ya29.TESTTOKENvertex0123456789"),
        http_options={"base_url": server.url},
    )


@pytest.fixture
def gemini(fake_llm: FakeLLMServer) -> genai.Client:
    return client(fake_llm)


@pytest.fixture
def capture(signals: Signals) -> Iterator[Signals]:
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_AND_EVENT")
    try:
        yield signals
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        gc.collect()


def attributes(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def _traceparent_span(headers: dict[str, str]) -> str:
    return headers["traceparent"].split("-")[2]


def _span_id(span: Any) -> str:
    return format(span.context.span_id, "016x")


# -- generate_content ---------------------------------------------------------------------------


def test_generate_content_span_metrics_and_cost(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    # A 1000-token prompt, 600 of them from the cache; 80 output tokens, 30 of them thoughts.
    fake_llm.enqueue(
        Reply.text("Sunny.", input_tokens=1000, cached_tokens=600, output_tokens=80, reasoning_tokens=30)
    )
    config = types.GenerateContentConfig(
        temperature=0.4,
        top_p=0.9,
        top_k=32,
        max_output_tokens=256,
        stop_sequences=["###"],
        seed=7,
        candidate_count=1,
        response_mime_type="application/json",
        system_instruction="Be brief.",
    )
    response = gemini.models.generate_content(model=MODEL, contents="Weather in Paris?", config=config)
    assert response.usage_metadata is not None and response.usage_metadata.candidates_token_count == 50

    span = instrumented.only_span()
    assert (span.name, span.kind) == (f"generate_content {MODEL}", SpanKind.CLIENT)
    attrs = attributes(span)
    cost = attrs.pop("gen_ai.usage.cost.amount")
    # Older SDKs do not read responseId.
    assert attrs.pop("gen_ai.response.id", None) == response.response_id
    assert attrs == {
        "gen_ai.operation.name": "generate_content",
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": fake_llm.port,
        "gen_ai.request.temperature": 0.4,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.top_k": 32.0,
        "gen_ai.request.max_tokens": 256,
        "gen_ai.request.stop_sequences": ("###",),
        "gen_ai.request.seed": 7,
        "gen_ai.output.type": "json",
        "gen_ai.response.model": MODEL,
        "gen_ai.response.finish_reasons": ("stop",),
        # The conventions' input includes the cached tokens, their output the thoughts.
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 80,
        "gen_ai.usage.cache_read.input_tokens": 600,
        "gen_ai.usage.reasoning.output_tokens": 30,
        "gen_ai.usage.cost.currency": "USD",
    }
    # gemini-2.5-flash: $0.30 input, $0.03 cached input, $2.50 output (thoughts included) per MTok.
    assert cost == pytest.approx((400 * 0.30 + 600 * 0.03 + 80 * 2.50) / 1e6)
    assert span.status.status_code is StatusCode.UNSET
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum for p in instrumented.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 1000, "output": 80}
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.attributes == {
        "gen_ai.operation.name": "generate_content",
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": MODEL,
        "server.address": "127.0.0.1",
        "server.port": fake_llm.port,
        "gen_ai.response.model": MODEL,
    }
    # No content without opting in.
    assert "Weather in Paris" not in instrumented.dump() and "Sunny." not in instrumented.dump()


def test_tool_use_prompt_tokens_are_input(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    body = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Found it."}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {
            "promptTokenCount": 20,
            "toolUsePromptTokenCount": 300,
            "candidatesTokenCount": 5,
            "totalTokenCount": 325,
        },
        "modelVersion": MODEL,
        "responseId": "r1",
    }
    fake_llm.enqueue(Reply.json(body))
    gemini.models.generate_content(model=MODEL, contents="Search it")
    attrs = attributes(instrumented.only_span())
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (320, 5)
    assert "gen_ai.usage.reasoning.output_tokens" not in attrs


def test_vertex_ai_client_reports_its_provider(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("ok"))
    vertex = vertex_client(fake_llm)  # kept: a dropped Client closes its HTTP client
    vertex.models.generate_content(model=MODEL, contents="hi")
    (request,) = fake_llm.requests
    assert request.path.endswith(
        f"/projects/demo-project/locations/us-central1/publishers/google/models/{MODEL}:generateContent"
    )
    assert request.provider == "vertex_ai"
    attrs = attributes(instrumented.only_span())
    assert attrs["gen_ai.provider.name"] == "gcp.vertex_ai"
    assert "gen_ai.usage.cost.amount" in attrs  # priced as Google's model
    assert _traceparent_span(request.headers) == _span_id(instrumented.only_span())


def test_finish_reasons_and_function_calls(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(
        Reply.tool_calls([ToolCall("get_weather", {"city": "Paris"}, id="fc-1")]),
        Reply.text("cut", finish_reason="length"),
    )
    first = gemini.models.generate_content(model=MODEL, contents="hi")
    assert first.function_calls is not None and first.function_calls[0].args == {"city": "Paris"}
    gemini.models.generate_content(model=MODEL, contents="hi")
    reasons = [attributes(s)["gen_ai.response.finish_reasons"] for s in instrumented.finished()]
    assert reasons == [("stop",), ("max_tokens",)]


def test_a_blocked_prompt_reports_its_block_reason(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(
        Reply.json({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}})
    )
    gemini.models.generate_content(model=MODEL, contents="hi")
    span = instrumented.only_span()
    assert attributes(span)["gen_ai.response.finish_reasons"] == ("safety",)
    assert span.status.status_code is StatusCode.UNSET  # the call returned: not an error


# -- content capture ------------------------------------------------------------------------------


def test_content_capture_in_the_message_schema(capture: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(
        Reply.tool_calls([ToolCall("get_weather", {"city": "Paris"}, id="fc-1")], content="Let me check.")
    )
    weather = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                description="The weather of a city.",
                parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
            )
        ]
    )
    contents = [
        types.Content(role="user", parts=[types.Part(text="Weather in Paris?")]),
        types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={"city": "Oslo"}))],
        ),
        types.Content(
            role="user",
            parts=[
                types.Part(
                    function_response=types.FunctionResponse(name="get_weather", response={"sky": "grey"})
                )
            ],
        ),
    ]
    config = types.GenerateContentConfig(system_instruction="Be brief.", tools=[weather])
    gemini = client(fake_llm)
    gemini.models.generate_content(model=MODEL, contents=contents, config=config)

    attrs = attributes(capture.only_span())
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": None, "name": "get_weather", "arguments": {"city": "Oslo"}}
            ],
        },
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": None, "response": {"sky": "grey"}}]},
    ]
    assert json.loads(attrs["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me check."},
                {"type": "tool_call", "id": "fc-1", "name": "get_weather", "arguments": {"city": "Paris"}},
            ],
            "finish_reason": "tool_call",
        }
    ]
    (event,) = capture.logs.get_finished_logs()
    record = getattr(event, "log_record", event)
    assert record.attributes["gen_ai.output.messages"][0]["finish_reason"] == "tool_call"
    assert json.loads(attrs["gen_ai.tool.definitions"]) == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "The weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


def test_streamed_content_is_reassembled(capture: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.tool_calls([("lookup", {"q": "otel"})], content="One two three."))
    gemini = client(fake_llm)
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="Go"))
    assert len(chunks) == 5
    attrs = attributes(capture.only_span())
    assert json.loads(attrs["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Go"}]}
    ]
    assert json.loads(attrs["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "One two three."},
                {"type": "tool_call", "id": None, "name": "lookup", "arguments": {"q": "otel"}},
            ],
            "finish_reason": "tool_call",
        }
    ]


# -- streams ------------------------------------------------------------------------------------


def test_sync_stream_yields_every_chunk_and_ends_the_span(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(Reply.text("a b c d", cached_tokens=2, reasoning_tokens=2))
    stream = gemini.models.generate_content_stream(model=MODEL, contents="hi")
    # Nothing is sent before the caller iterates, as without agentwatch.
    assert fake_llm.requests == [] and instrumented.finished() == []
    texts = [chunk.text for chunk in stream]
    assert texts == ["a ", "b ", "c ", "d", ""]
    span = instrumented.only_span()
    attrs = attributes(span)
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["agentwatch.stream.outcome"] == "completed"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (12, 7)
    assert (attrs["gen_ai.usage.cache_read.input_tokens"], attrs["gen_ai.usage.reasoning.output_tokens"]) == (
        2,
        2,
    )
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert _traceparent_span(fake_llm.requests[0].headers) == _span_id(span)
    assert len(instrumented.points("gen_ai.client.operation.time_per_output_chunk")) == 1


@pytest.mark.skipif(
    not RAISES_IN_BAND_ERRORS, reason="this google-genai does not raise in-band stream errors"
)
def test_sync_stream_error_mid_way(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(Reply.text("a b c d", error_after_chunks=2))
    received = []
    with pytest.raises(errors.ServerError):
        for chunk in gemini.models.generate_content_stream(model=MODEL, contents="hi"):
            received.append(chunk.text)
    assert received == ["a ", "b "]
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span)["error.type"] == "UNAVAILABLE"
    assert attributes(span)["agentwatch.stream.outcome"] == "error"


def test_sync_stream_broken_off_ends_the_span(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(Reply.text("a b c d"))
    for _chunk in gemini.models.generate_content_stream(model=MODEL, contents="hi"):
        break
    gc.collect()
    attrs = attributes(instrumented.only_span())
    # The SDK's own generator drops agentwatch's stream unclosed when the caller breaks off.
    assert attrs["agentwatch.stream.outcome"] == "abandoned"


@pytest.mark.anyio
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_async_calls_on_each_transport(
    transport: str, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    if transport == "aiohttp" and not HAS_AIOHTTP:
        pytest.skip("this google-genai has no aiohttp transport")
    http: dict[str, Any] = {}
    if transport == "httpx":
        # The SDK's own switch: an httpx client of the caller's makes it skip aiohttp.
        import httpx

        http = {"async_client_args": {"transport": httpx.AsyncHTTPTransport()}}
    gemini = client(fake_llm, **http)
    fake_llm.enqueue(Reply.text("hello"), Reply.text("x y"), Reply.embeddings())
    await gemini.aio.models.generate_content(model=MODEL, contents="hi")
    stream = await gemini.aio.models.generate_content_stream(model=MODEL, contents="hi")
    assert [c.text async for c in stream] == ["x ", "y", ""]
    await gemini.aio.models.embed_content(model="gemini-embedding-001", contents=["a"])
    await aclose(gemini)
    spans = instrumented.finished()
    assert [s.name for s in spans] == [
        f"generate_content {MODEL}",
        f"generate_content {MODEL}",
        "embeddings gemini-embedding-001",
    ]
    assert attributes(spans[1])["agentwatch.stream.outcome"] == "completed"
    assert [_traceparent_span(r.headers) for r in fake_llm.requests] == [_span_id(s) for s in spans]


@pytest.mark.anyio
# older google-genai opens an aiohttp session per stream and closes it only at the stream's end.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_async_stream_closed_early(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(Reply.text("a b c d", chunk_delay=0.05))
    stream = await gemini.aio.models._generate_content_stream(model=MODEL, contents="hi")
    async for _chunk in stream:
        break
    await stream.aclose()
    await aclose(gemini)
    attrs = attributes(instrumented.only_span())
    assert attrs["agentwatch.stream.outcome"] == "closed"


# -- embeddings ---------------------------------------------------------------------------------


def test_embed_content(instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client) -> None:
    response = gemini.models.embed_content(
        model="gemini-embedding-001", contents=["one two", "three"], config={"output_dimensionality": 16}
    )
    assert response.embeddings is not None and len(response.embeddings[0].values or ()) == 16
    span = instrumented.only_span()
    assert span.name == "embeddings gemini-embedding-001"
    attrs = attributes(span)
    assert attrs["gen_ai.operation.name"] == "embeddings"
    assert attrs["gen_ai.embeddings.dimension.count"] == 16


def test_vertex_embeddings_report_their_tokens(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    vertex = vertex_client(fake_llm)
    vertex.models.embed_content(model="text-embedding-005", contents=["one two", "three"])
    assert fake_llm.requests[0].path.endswith(":predict")
    attrs = attributes(instrumented.only_span())
    assert (attrs["gen_ai.provider.name"], attrs["gen_ai.usage.input_tokens"]) == ("gcp.vertex_ai", 3)


# -- one span per request to the model ------------------------------------------------------------


def test_chats_make_one_span_per_message(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    fake_llm.enqueue(Reply.text("one"), Reply.text("two"), Reply.text("three"))
    chat = gemini.chats.create(model=MODEL)
    chat.send_message("first")
    chat.send_message("second")
    list(chat.send_message_stream("third"))
    spans = instrumented.finished()
    assert len(spans) == len(fake_llm.requests) == 3
    assert [attributes(s).get("gen_ai.request.stream", False) for s in spans] == [False, False, True]


def test_automatic_function_calling_is_one_span_per_model_request(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    calls = []

    def get_weather(city: str) -> str:
        """The weather of a city."""
        calls.append(city)
        return "sunny"

    fake_llm.enqueue(
        Reply.tool_calls([("get_weather", {"city": "Paris"})], input_tokens=30, output_tokens=5),
        Reply.text("It is sunny.", input_tokens=50, output_tokens=6),
    )
    response = gemini.models.generate_content(
        model=MODEL, contents="Weather in Paris?", config=types.GenerateContentConfig(tools=[get_weather])
    )
    assert response.text == "It is sunny."
    spans = instrumented.finished()
    assert len(spans) == len(fake_llm.requests) == 2
    # Two requests, two spans, each with its own usage: none lost, none counted twice.
    assert [attributes(s)["gen_ai.usage.input_tokens"] for s in spans] == [30, 50]
    assert sum(p.sum for p in instrumented.points("gen_ai.client.token.usage")) == 30 + 5 + 50 + 6


# -- trace context ------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_RETRY_OPTIONS, reason="this google-genai does not retry")
def test_every_sdk_retry_carries_the_span(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.error(503), Reply.error(500), Reply.text("ok"))
    headers = {"x-caller": "kept"}
    retrying = client(
        fake_llm,
        headers=headers,
        retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02),
    )
    retrying.models.generate_content(model=MODEL, contents="hi")
    span = instrumented.only_span()
    assert [_traceparent_span(r.headers) for r in fake_llm.requests] == [_span_id(span)] * 3
    assert all(r.headers["x-caller"] == "kept" for r in fake_llm.requests)
    assert headers == {"x-caller": "kept"}  # the caller's dict is not changed


def test_requests_outside_instrumented_calls_are_left_alone(
    instrumented: Signals, fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    with pytest.raises(errors.ClientError):
        gemini.models.count_tokens(model=MODEL, contents="hi")
    gemini.models.generate_content(model=MODEL, contents="hi")
    assert "traceparent" not in fake_llm.requests[0].headers
    assert "traceparent" in fake_llm.requests[1].headers


def test_the_host_policy_applies(
    signals: Signals, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_PROPAGATE_HOSTS", "none")
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        gemini = client(fake_llm)
        gemini.models.generate_content(model=MODEL, contents="hi")
    finally:
        agentwatch.uninstrument()
    assert "traceparent" not in fake_llm.requests[0].headers
    assert len(signals.finished()) == 1


# -- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "category", "error_class"),
    [
        (429, "RESOURCE_EXHAUSTED", ErrorCategory.RATE_LIMIT, errors.ClientError),
        (503, "UNAVAILABLE", ErrorCategory.DEPENDENCY, errors.ServerError),
        (504, "DEADLINE_EXCEEDED", ErrorCategory.TIMEOUT, errors.ServerError),
        (400, "INVALID_ARGUMENT", ErrorCategory.VALIDATION, errors.ClientError),
    ],
)
def test_api_errors_are_classified(
    status: int,
    error_type: str,
    category: ErrorCategory,
    error_class: type[Exception],
    instrumented: Signals,
    fake_llm: FakeLLMServer,
    gemini: genai.Client,
) -> None:
    fake_llm.enqueue(Reply.error(status, message="ZEBRA-7781 quoted from the prompt"))
    with pytest.raises(error_class) as raised:
        gemini.models.generate_content(model=MODEL, contents="ZEBRA-7781")
    assert default_classifier(raised.value).category is category
    span = instrumented.only_span()
    assert attributes(span)["error.type"] == error_type
    # No server text with content capture off: the status and the provider's code only.
    assert span.status.description == f"{error_type}: {status}"
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == error_type
    assert "ZEBRA" not in instrumented.dump()


# An API key of a shape no pattern knows: only the client that holds it can name it.
ODD_KEY = "acme.gateway.TOKEN.QmFzZTY0LWxvb2tpbmc"


@pytest.mark.parametrize(
    ("make", "secret", "status"),
    [
        (lambda server: genai.Client(api_key=ODD_KEY, http_options={"base_url": server.url}), ODD_KEY, 400),
        (vertex_client, "ya29.TESTTOKENvertex0123456789", 401),
    ],
    ids=["api-key", "vertex-token"],
)
def test_the_credential_the_client_holds_never_appears(
    capture: Signals,
    fake_llm: FakeLLMServer,
    make: Callable[[FakeLLMServer], genai.Client],
    secret: str,
    status: int,
) -> None:
    # Servers echo the credential in their error text, which content capture keeps (scrubbed).
    fake_llm.enqueue(Reply.error(status, message=f"API key not valid: {secret}. Pass a valid key."))
    gemini = make(fake_llm)  # held: a collected client closes its connection pool
    with pytest.raises(errors.ClientError):
        gemini.models.generate_content(model=MODEL, contents="hi")
    description = capture.only_span().status.description or ""
    assert "API key not valid: [REDACTED]" in description, description
    assert secret not in capture.dump() and secret[-12:] not in capture.dump()


@pytest.mark.anyio
@pytest.mark.skipif(not HAS_AIOHTTP, reason="this google-genai has no aiohttp transport")
async def test_aiohttp_errors_are_classified_too(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.error(429))
    gemini = client(fake_llm)
    with pytest.raises(errors.ClientError) as raised:
        await gemini.aio.models.generate_content(model=MODEL, contents="hi")
    await aclose(gemini)
    assert type(raised.value.response).__module__.startswith("aiohttp")
    assert default_classifier(raised.value).category is ErrorCategory.RATE_LIMIT


def test_google_retry_info_is_the_retry_delay(fake_llm: FakeLLMServer, gemini: genai.Client) -> None:
    body = {
        "error": {
            "code": 429,
            "message": "Quota exceeded.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}],
        }
    }
    fake_llm.enqueue(Reply.json(body, status=429))
    with pytest.raises(errors.ClientError) as raised:
        gemini.models.generate_content(model=MODEL, contents="hi")
    assert default_classifier(raised.value).retry_after == 7.0


def test_model_function_calls_run_through_the_tool_registry(
    fake_llm: FakeLLMServer, gemini: genai.Client
) -> None:
    registry = agentwatch.ToolRegistry()

    @registry.register
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    fake_llm.enqueue(Reply.tool_calls([ToolCall("get_weather", {"city": "Paris"}, id="fc-9")]))
    response = gemini.models.generate_content(model=MODEL, contents="hi")
    assert response.function_calls is not None
    (call,) = response.function_calls
    assert registry.call_tool_call(call) == "sunny in Paris"
    part = response.candidates[0].content.parts[0]  # type: ignore[index, union-attr]
    assert registry.call_tool_call(part) == "sunny in Paris"
    assert registry.call_tool_call(call.model_dump(exclude_none=True)) == "sunny in Paris"


def test_uninstrument_restores_every_method(signals: Signals) -> None:
    from google.genai import _api_client, models

    originals = {
        (owner, name): vars(owner)[name]
        for owner in (models.Models, models.AsyncModels)
        for name in ("_generate_content", "_generate_content_stream", "_embed_content", "embed_content")
        if name in vars(owner)  # older SDKs have no _embed_content
    }
    originals[(_api_client.BaseApiClient, "_build_request")] = vars(_api_client.BaseApiClient)[
        "_build_request"
    ]
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.instrument(**signals.providers, configure_sdk=False)  # harmless
    assert all(vars(owner)[name] is not fn for (owner, name), fn in originals.items())
    agentwatch.uninstrument()
    set_default_telemetry()
    assert all(vars(owner)[name] is fn for (owner, name), fn in originals.items())


def test_event_loop_left_clean() -> None:
    # The async tests above run on anyio's loop; nothing of theirs may leak into a new one.
    asyncio.run(asyncio.sleep(0))
