"""LiteLLM: one span per call named after the provider LiteLLM called, over real HTTP.

LiteLLM reaches OpenAI through the openai SDK and Anthropic and Groq through its own httpx
handlers; every test here runs the real LiteLLM against the fake server on 127.0.0.1.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply, ToolCall
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.instrumentation.litellm._patch import PROVIDERS, UNKNOWN_PROVIDER, target
from instrumentation._litellm_support import (
    ANTHROPIC,
    GROQ,
    KEY,
    OPENAI,
    ROUTE_IDS,
    ROUTES,
    Route,
    acomplete,
    complete,
    litellm,
    needs_stream_close,
    run,
)
from support import Signals, make_signals, user

# The conventions' provider values (v1.41 registry), plus main's moonshot_ai.
SEMCONV_PROVIDERS = {
    "openai",
    "anthropic",
    "aws.bedrock",
    "azure.ai.openai",
    "azure.ai.inference",
    "gcp.gemini",
    "gcp.vertex_ai",
    "gcp.gen_ai",
    "cohere",
    "ibm.watsonx.ai",
    "perplexity",
    "x_ai",
    "deepseek",
    "groq",
    "mistral_ai",
    "moonshot_ai",
}
T = TypeVar("T")
GENAI_PRICES_IDS = {"openai": "openai", "anthropic": "anthropic", "groq": "groq"}


pytestmark = pytest.mark.usefixtures("litellm_setup")


def bare_and_instrumented(signals: Signals, scenario: Callable[[FakeLLMServer], T]) -> tuple[T, T]:
    """``scenario`` run bare, then instrumented, each against a fresh server (whose ids repeat)."""
    with FakeLLMServer() as server:
        bare = scenario(server)
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        with FakeLLMServer() as server:
            return bare, scenario(server)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def port_of(server: FakeLLMServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


# -- spans, metrics, cost ----------------------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_chat_span_names_the_provider_litellm_called(
    route: Route, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        Reply.text(
            "Hi there",
            input_tokens=30,
            output_tokens=5,
            cached_tokens=10,
            cache_creation_tokens=4,
            reasoning_tokens=2,
        )
    )
    result = complete(route, fake_llm, temperature=0.3, top_p=0.9, max_tokens=50, stop=["END"])

    assert result.choices[0].message.content == "Hi there"
    span = instrumented.only_span()
    assert span.name == f"chat {route.name}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "agentwatch.instrumentation.litellm"
    found = attrs(span)
    # genai-prices' input_tokens include the cached ones, as the conventions' do.
    usage = GPUsage(input_tokens=30, cache_read_tokens=10, cache_write_tokens=4, output_tokens=5)
    price = calc_price(usage, model_ref=route.name, provider_id=GENAI_PRICES_IDS[route.provider])
    expected: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": route.provider,
        "gen_ai.request.model": route.name,
        "server.address": "127.0.0.1",
        "server.port": port_of(fake_llm),
        "gen_ai.request.temperature": 0.3,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.stop_sequences": ("END",),
        "gen_ai.response.id": result.id,
        "gen_ai.response.model": route.name,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cache_read.input_tokens": 10,
        "gen_ai.usage.cache_creation.input_tokens": 4,
        "gen_ai.usage.reasoning.output_tokens": 2,
        "gen_ai.usage.cost.amount": pytest.approx(float(price.total_price), rel=1e-9),
        "gen_ai.usage.cost.currency": "USD",
    }
    if route.provider == "openai":
        # The openai.* attributes belong to OpenAI's calls only.
        expected["openai.response.service_tier"] = found["openai.response.service_tier"]
        expected["openai.response.system_fingerprint"] = "fp_fakellm"
    assert found == expected

    metric_attrs = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": route.provider,
        "gen_ai.request.model": route.name,
        "gen_ai.response.model": route.name,
        "server.address": "127.0.0.1",
        "server.port": port_of(fake_llm),
    }
    if route.provider == "openai":
        # On the metrics too, as for the openai SDK's own calls; never for other providers'.
        metric_attrs["openai.response.service_tier"] = found["openai.response.service_tier"]
        metric_attrs["openai.response.system_fingerprint"] = "fp_fakellm"
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == metric_attrs
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum for p in instrumented.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 30, "output": 5}
    (cost,) = instrumented.points("gen_ai.client.operation.cost")
    assert cost.sum == pytest.approx(float(price.total_price), rel=1e-9)


def test_request_and_response_models_are_the_providers(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    """The model passed positionally, the response naming a snapshot: both as the provider says them."""
    fake_llm.enqueue(Reply.text("Hi", response_model="llama-3.1-8b-instant-0125"))
    litellm.completion(GROQ.model, user(), api_base=GROQ.base(fake_llm), api_key=KEY)
    found = attrs(instrumented.only_span())
    assert found["gen_ai.request.model"] == "llama-3.1-8b-instant"
    assert found["gen_ai.response.model"] == "llama-3.1-8b-instant-0125"
    assert found["gen_ai.provider.name"] == "groq"


def test_cost_is_agentwatchs_price_not_litellms(fake_llm: FakeLLMServer) -> None:
    """One price list for every path: the user's own prices apply to LiteLLM's calls too."""
    signals = make_signals()
    agentwatch.instrument(
        **signals.providers,
        configure_sdk=False,
        prices={GROQ.name: {"input_mtok": 1_000_000.0, "output_mtok": 2_000_000.0}},
    )
    try:
        fake_llm.enqueue(Reply.text("Hi", input_tokens=3, output_tokens=2))
        result = complete(GROQ, fake_llm)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert attrs(signals.only_span())["gen_ai.usage.cost.amount"] == 3 * 1.0 + 2 * 2.0
    assert result._hidden_params.get("response_cost") != 7.0


def test_unresolvable_model_fails_as_without_agentwatch(instrumented: Signals) -> None:
    with pytest.raises(litellm.BadRequestError) as bare:
        litellm.completion(model="no-such-model-anywhere", messages=user(), api_key=KEY)
    span = instrumented.only_span()
    assert attrs(span)["gen_ai.provider.name"] == UNKNOWN_PROVIDER
    assert attrs(span)["error.type"] == "litellm.BadRequestError"
    assert type(bare.value) is litellm.BadRequestError


def test_embeddings(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.embeddings(dimensions=16, input_tokens=4))
    result = litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["a", "b"],
        api_base=fake_llm.openai_base_url,
        api_key=KEY,
    )
    assert len(result.data) == 2
    span = instrumented.only_span()
    assert span.name == "embeddings text-embedding-3-small"
    found = attrs(span)
    assert found["gen_ai.operation.name"] == "embeddings"
    assert found["gen_ai.provider.name"] == "openai"
    assert found["gen_ai.usage.input_tokens"] == 4
    assert found["gen_ai.embeddings.dimension.count"] == 16


@pytest.mark.anyio
@pytest.mark.usefixtures("litellm_async_clients")
async def test_async_chat_and_embeddings(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("Hi", input_tokens=9, output_tokens=3), Reply.embeddings())
    await acomplete(ANTHROPIC, fake_llm)
    await litellm.aembedding(
        model="openai/text-embedding-3-small", input=["a"], api_base=fake_llm.openai_base_url, api_key=KEY
    )
    chat, embeddings = sorted(instrumented.finished(), key=lambda s: s.start_time or 0)
    assert chat.name == "chat claude-haiku-4-5"
    assert attrs(chat)["gen_ai.usage.input_tokens"] == 9
    assert attrs(chat)["gen_ai.provider.name"] == "anthropic"
    assert embeddings.name == "embeddings text-embedding-3-small"


# -- one span per call ---------------------------------------------------------------------------


def test_one_span_when_litellm_goes_through_the_openai_sdk(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    """With encoding_format LiteLLM calls ``embeddings.with_raw_response.create`` of the openai SDK,
    which the openai instrumentation wraps too; chat goes through the SDK's ``post``."""
    fake_llm.enqueue(Reply.embeddings(), Reply.text("Hi"))
    litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["a"],
        api_base=fake_llm.openai_base_url,
        api_key=KEY,
        encoding_format="float",
    )
    complete(OPENAI, fake_llm)
    assert all(r.headers["user-agent"].startswith("OpenAI/") for r in fake_llm.requests)
    spans = instrumented.finished()
    assert [s.name for s in spans] == ["embeddings text-embedding-3-small", "chat gpt-4o-mini"]
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "agentwatch.instrumentation.litellm"
    }
    durations = instrumented.points("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == 2


def test_litellm_retries_are_one_call(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    """LiteLLM retries by calling ``completion`` again (``num_retries``): still one span, one set
    of metrics, and every attempt's request carries that span's context."""
    fake_llm.enqueue(Reply.error(500), Reply.error(500), Reply.text("finally"))
    result = complete(ANTHROPIC, fake_llm, num_retries=2)
    assert result.choices[0].message.content == "finally"
    assert len(fake_llm.requests) == 3
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.UNSET
    trace_id = format(span.context.trace_id, "032x")
    assert [r.headers["traceparent"].split("-")[1] for r in fake_llm.requests] == [trace_id] * 3
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.count == 1


def test_a_session_counts_a_litellm_call_once(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("Hi", input_tokens=30, output_tokens=5))
    with agentwatch.session("s-1") as run:
        complete(OPENAI, fake_llm)
    llm = instrumented.only_span("chat")
    assert run.iterations == 1
    assert (run.input_tokens, run.output_tokens) == (30, 5)
    assert run.cost == pytest.approx(attrs(llm)["gen_ai.usage.cost.amount"])
    assert attrs(llm)["gen_ai.conversation.id"] == "s-1"


# -- streams ---------------------------------------------------------------------------------------


def _chunks(stream: Any) -> list[Any]:
    return [{k: v for k, v in c.model_dump().items() if k not in ("id", "created")} for c in stream]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_stream_yields_the_same_chunks_and_ends_its_span(route: Route, signals: Signals) -> None:
    def scenario(server: FakeLLMServer) -> tuple[bool, list[Any]]:
        server.enqueue(Reply.text("one two three", input_tokens=8, output_tokens=3))
        stream = complete(route, server, stream=True)
        return isinstance(stream, litellm.CustomStreamWrapper), _chunks(stream)

    bare, instrumented = bare_and_instrumented(signals, scenario)
    assert instrumented == bare
    assert bare[0]
    span = signals.only_span()
    found = attrs(span)
    assert found["gen_ai.request.stream"] is True
    assert found["agentwatch.stream.outcome"] == "completed"
    assert found["gen_ai.response.finish_reasons"] == ("stop",)
    assert found["gen_ai.response.time_to_first_chunk"] > 0
    if route is ANTHROPIC:
        # Anthropic reports usage in every stream; LiteLLM attaches it to the last chunk.
        assert (found["gen_ai.usage.input_tokens"], found["gen_ai.usage.output_tokens"]) == (8, 3)
        assert "gen_ai.usage.cost.amount" in found
    else:
        # No stream_options.include_usage: the provider reported nothing, and LiteLLM's own
        # token-count estimate is not usage.
        assert "gen_ai.usage.input_tokens" not in found
        assert "gen_ai.usage.cost.amount" not in found


@pytest.mark.parametrize("route", [OPENAI, GROQ], ids=["openai", "groq"])
def test_stream_with_include_usage_reports_the_providers_usage(
    route: Route, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("one two", input_tokens=8, output_tokens=2, cached_tokens=3))
    chunks = list(complete(route, fake_llm, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.prompt_tokens == 8
    found = attrs(instrumented.only_span())
    assert (found["gen_ai.usage.input_tokens"], found["gen_ai.usage.output_tokens"]) == (8, 2)
    assert found["gen_ai.usage.cache_read.input_tokens"] == 3
    assert found["gen_ai.usage.cost.amount"] > 0


@pytest.mark.anyio
@pytest.mark.usefixtures("litellm_async_clients")
@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_async_stream(route: Route, instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("one two three", input_tokens=8, output_tokens=3))
    stream = await acomplete(route, fake_llm, stream=True)
    assert isinstance(stream, litellm.CustomStreamWrapper)
    text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == "one two three"
    found = attrs(instrumented.only_span())
    assert found["agentwatch.stream.outcome"] == "completed"
    assert found["gen_ai.request.stream"] is True
    assert "traceparent" in fake_llm.requests[-1].headers


def _drop(stream: Any) -> None:
    next(stream)
    del stream
    gc.collect()


def _close(stream: Any) -> None:
    next(stream)
    stream.close()


def _leave_with(stream: Any) -> None:
    with stream as entered:
        next(entered)


def _raise_in_loop(stream: Any) -> None:
    with pytest.raises(KeyError), stream:
        for _ in stream:
            raise KeyError("the caller's own error")


EXITS = {
    "completed": (lambda stream: list(stream), "completed", StatusCode.UNSET),
    "close": (_close, "closed", StatusCode.UNSET),
    "with": (_leave_with, "closed", StatusCode.UNSET),
    "caller raises": (_raise_in_loop, "closed", StatusCode.UNSET),
    "dropped": (_drop, "abandoned", StatusCode.UNSET),
}
CLOSING = {"close", "with", "caller raises"}


@pytest.mark.parametrize("route", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
@pytest.mark.parametrize(
    "exit_path", [pytest.param(e, marks=needs_stream_close) if e in CLOSING else e for e in sorted(EXITS)]
)
def test_every_sync_stream_exit_ends_the_span_once(
    route: Route, exit_path: str, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    consume, outcome, status = EXITS[exit_path]
    fake_llm.enqueue(Reply.text("one two three four"))
    consume(complete(route, fake_llm, stream=True))
    gc.collect()
    span = instrumented.only_span()
    assert attrs(span)["agentwatch.stream.outcome"] == outcome
    assert span.status.status_code is status


@pytest.mark.parametrize("route", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
@pytest.mark.parametrize("fault", ["error_after_chunks", "disconnect_after_chunks"])
def test_a_stream_that_fails_midway_raises_as_without_agentwatch(
    route: Route, fault: str, signals: Signals
) -> None:
    def scenario(server: FakeLLMServer) -> tuple[list[str], type[BaseException], str]:
        server.enqueue(Reply.text("one two three four", **{fault: 2}))
        seen: list[str] = []
        with pytest.raises(Exception) as raised:
            for chunk in complete(route, server, stream=True):
                seen.append(chunk.choices[0].delta.content or "")
        return seen, type(raised.value), str(raised.value)

    bare, instrumented = bare_and_instrumented(signals, scenario)
    assert instrumented == bare
    span = signals.only_span()
    assert attrs(span)["agentwatch.stream.outcome"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"litellm.{bare[1].__qualname__}"
    assert bare[0]  # the stream had started


@pytest.mark.anyio
@pytest.mark.usefixtures("litellm_async_clients")
@pytest.mark.parametrize(
    "exit_path",
    ["completed", "break"]
    + [pytest.param(e, marks=needs_stream_close) for e in ("aclose", "async with", "close")],
)
async def test_every_async_stream_exit_ends_the_span_once(
    exit_path: str, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("one two three four"))
    stream = await acomplete(ANTHROPIC, fake_llm, stream=True)
    if exit_path == "completed":
        _ = [c async for c in stream]
    elif exit_path == "aclose":
        await stream.__anext__()
        await stream.aclose()
    elif exit_path == "async with":
        async with stream as entered:
            await entered.__anext__()
    elif exit_path == "close":
        # LiteLLM's close() is synchronous even on an async stream: it stays so.
        await stream.__anext__()
        assert stream.close() is None
    else:
        async for _ in stream:
            break
        del stream
        gc.collect()
    span = instrumented.only_span()
    expected = {"completed": "completed", "break": "abandoned"}.get(exit_path, "closed")
    assert attrs(span)["agentwatch.stream.outcome"] == expected


# -- errors ------------------------------------------------------------------------------------


def test_errors_are_raised_unchanged_and_recorded(signals: Signals) -> None:
    def scenario(server: FakeLLMServer) -> tuple[type[BaseException], str]:
        server.enqueue(Reply.error(429, message="slow down"))
        with pytest.raises(litellm.RateLimitError) as raised:
            complete(ANTHROPIC, server)
        return type(raised.value), str(raised.value)

    bare, instrumented = bare_and_instrumented(signals, scenario)
    assert instrumented == bare
    span = signals.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "litellm.RateLimitError"
    # No server text with capture off: the class, the status and the error's type (LiteLLM's).
    assert span.status.description == "litellm.RateLimitError: 429 throttling_error"
    (duration,) = signals.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "litellm.RateLimitError"


def test_the_api_key_never_reaches_an_error_description(fake_llm: FakeLLMServer) -> None:
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content=True)
    odd_key = "plain-key-of-no-known-shape-42"
    try:
        fake_llm.enqueue(Reply.error(401, message=f"Incorrect API key provided: {odd_key}"))
        with pytest.raises(litellm.AuthenticationError):
            litellm.completion(**{**ANTHROPIC.kwargs(fake_llm), "api_key": odd_key})
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert odd_key not in signals.dump()
    assert "[REDACTED]" in (signals.only_span().status.description or "")


# -- trace context ----------------------------------------------------------------------------------


def _parent(request_headers: dict[str, str]) -> tuple[str, str]:
    _, trace_id, span_id, _ = request_headers["traceparent"].split("-")
    return trace_id, span_id


def _ids(span: ReadableSpan) -> tuple[str, str]:
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("mode", ["sync", "stream", "async", "async stream"])
def test_traceparent_on_every_request(
    route: Route, mode: str, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("one two"))
    stream = "stream" in mode
    if mode.startswith("async"):

        async def call() -> None:
            result = await acomplete(route, fake_llm, stream=stream)
            if stream:
                _ = [c async for c in result]

        run(call())
    else:
        result = complete(route, fake_llm, stream=stream)
        if stream:
            list(result)
    (request,) = fake_llm.requests
    assert _parent(request.headers) == _ids(instrumented.only_span())


@pytest.mark.parametrize("aiohttp", [True, False], ids=["aiohttp transport", "httpx transport"])
def test_traceparent_through_either_async_transport(
    aiohttp: bool, instrumented: Signals, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport

    monkeypatch.setattr(litellm, "disable_aiohttp_transport", not aiohttp)
    # LiteLLM caches its HTTP clients: a fresh cache, so the setting takes effect.
    monkeypatch.setattr(litellm, "in_memory_llm_clients_cache", type(litellm.in_memory_llm_clients_cache)())
    sent: list[object] = []
    original = LiteLLMAiohttpTransport.handle_async_request

    async def spy(self: Any, request: Any) -> Any:
        sent.append(request)
        return await original(self, request)

    monkeypatch.setattr(LiteLLMAiohttpTransport, "handle_async_request", spy)
    fake_llm.enqueue(Reply.text("Hi"))
    run(acomplete(GROQ, fake_llm))
    assert len(sent) == (1 if aiohttp else 0)
    (request,) = fake_llm.requests
    assert _parent(request.headers) == _ids(instrumented.only_span())


def test_traceparent_through_litellms_plain_aiohttp_handler(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("Hi"))
    run(
        litellm.acompletion(
            model="aiohttp_openai/gpt-4o-mini",
            messages=user(),
            api_base=fake_llm.openai_base_url + "/chat/completions",
            api_key=KEY,
        )
    )
    (request,) = fake_llm.requests
    assert "aiohttp" in request.headers.get("user-agent", "")
    assert _parent(request.headers) == _ids(instrumented.only_span())


def test_trace_context_honours_the_propagation_hosts(fake_llm: FakeLLMServer) -> None:
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False, propagate_hosts=["api.example.com"])
    try:
        fake_llm.enqueue(Reply.text("Hi"), Reply.text("Hi"))
        complete(ANTHROPIC, fake_llm)
        complete(OPENAI, fake_llm)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert ["traceparent" in r.headers for r in fake_llm.requests] == [False, False]


def test_requests_outside_a_call_are_left_alone(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    from litellm.llms.custom_httpx.http_handler import HTTPHandler

    handler = HTTPHandler()
    fake_llm.enqueue(Reply.text("Hi"))
    handler.post(fake_llm.openai_base_url + "/chat/completions", json={"model": "m"}, headers={"x-a": "1"})
    assert "traceparent" not in fake_llm.requests[0].headers
    assert instrumented.finished() == []


# -- content -----------------------------------------------------------------------------------


@pytest.mark.parametrize("capture", [None, "SPAN_ONLY"])
def test_content_only_when_asked(capture: str | None, fake_llm: FakeLLMServer) -> None:
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content=capture)
    try:
        fake_llm.enqueue(Reply.tool_calls([ToolCall("get_weather", {"city": "Paris"}, id="call_1")]))
        complete(ANTHROPIC, fake_llm, messages=user("secret question"))
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    found = attrs(signals.only_span())
    if capture is None:
        assert "secret question" not in signals.dump()
        assert "gen_ai.input.messages" not in found
    else:
        assert json.loads(found["gen_ai.input.messages"]) == [
            {"role": "user", "parts": [{"type": "text", "content": "secret question"}]}
        ]
        (output,) = json.loads(found["gen_ai.output.messages"])
        assert output["finish_reason"] == "tool_call"
        assert output["parts"][-1] == {
            "type": "tool_call",
            "id": output["parts"][-1]["id"],
            "name": "get_weather",
            "arguments": {"city": "Paris"},
        }


# -- provider names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "provider", "model"),
    [
        ({"model": "gpt-4o-mini"}, "openai", "gpt-4o-mini"),
        ({"model": "claude-haiku-4-5"}, "anthropic", "claude-haiku-4-5"),
        ({"model": "gemini/gemini-2.0-flash"}, "gcp.gemini", "gemini-2.0-flash"),
        ({"model": "vertex_ai/gemini-2.0-flash"}, "gcp.vertex_ai", "gemini-2.0-flash"),
        (
            {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0"},
            "aws.bedrock",
            "anthropic.claude-3-haiku-20240307-v1:0",
        ),
        ({"model": "azure/my-deployment"}, "azure.ai.openai", "my-deployment"),
        ({"model": "azure_ai/mistral-large"}, "azure.ai.inference", "mistral-large"),
        ({"model": "mistral/mistral-small-latest"}, "mistral_ai", "mistral-small-latest"),
        ({"model": "xai/grok-3-mini"}, "x_ai", "grok-3-mini"),
        ({"model": "deepseek/deepseek-chat"}, "deepseek", "deepseek-chat"),
        ({"model": "perplexity/sonar"}, "perplexity", "sonar"),
        ({"model": "cohere_chat/command-r"}, "cohere", "command-r"),
        ({"model": "watsonx/ibm/granite-13b"}, "ibm.watsonx.ai", "ibm/granite-13b"),
        ({"model": "groq/llama-3.1-8b-instant"}, "groq", "llama-3.1-8b-instant"),
        ({"model": "llama-3.1-8b-instant", "custom_llm_provider": "groq"}, "groq", "llama-3.1-8b-instant"),
        # Providers the conventions do not list keep LiteLLM's name.
        ({"model": "together_ai/meta-llama/Llama-3-70b"}, "together_ai", "meta-llama/Llama-3-70b"),
        ({"model": "ollama/llama3"}, "ollama", "llama3"),
        # The openai provider pointed at another provider's OpenAI-compatible API is that provider.
        (
            {"model": "openai/llama-3.1-8b-instant", "api_base": "https://api.groq.com/openai/v1"},
            "groq",
            None,
        ),
        ({"model": "openai/my-model", "api_base": "http://localhost:8000/v1"}, "openai", None),
    ],
)
def test_provider_and_model_as_litellm_resolves_them(
    kwargs: dict[str, Any], provider: str, model: str | None
) -> None:
    found_provider, found_model, _, _ = target(None, kwargs)
    assert found_provider == provider
    assert found_model == (model or kwargs["model"].split("/", 1)[1])


def test_server_of_providers_litellm_calls_directly() -> None:
    assert target(None, {"model": "groq/llama-3.1-8b-instant"})[2:] == ("api.groq.com", 443)
    assert target(None, {"model": "anthropic/claude-haiku-4-5"})[2:] == ("api.anthropic.com", 443)
    assert target(None, {"model": "ollama/llama3"})[2:] == ("localhost", 11434)


def test_provider_names_are_the_conventions_where_they_have_one() -> None:
    assert set(PROVIDERS.values()) <= SEMCONV_PROVIDERS


# -- instrumenting -----------------------------------------------------------------------------


def test_uninstrument_restores_litellm(signals: Signals) -> None:
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler, HTTPHandler

    originals = (litellm.completion, litellm.acompletion, litellm.embedding, litellm.aembedding)
    # By identity: a wrapt wrapper compares equal to what it wraps.
    handlers = (vars(HTTPHandler)["post"], vars(AsyncHTTPHandler)["post"])
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.instrument(**signals.providers, configure_sdk=False)  # twice: harmless
    try:
        assert litellm.completion is not originals[0]
        assert litellm.completion.__wrapped__ is originals[0]  # type: ignore[attr-defined]
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    restored = (litellm.completion, litellm.acompletion, litellm.embedding, litellm.aembedding)
    assert all(now is before for now, before in zip(restored, originals, strict=True))
    assert vars(HTTPHandler)["post"] is handlers[0]
    assert vars(AsyncHTTPHandler)["post"] is handlers[1]
