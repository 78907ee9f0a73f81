"""The fake LLM server, exercised only through the real openai and anthropic SDKs over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import anthropic
import openai
import pytest
from anthropic.types import RawMessageStreamEvent
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent

from agentwatch._fakellm import FakeLLMServer, RecordedRequest, Reply, ToolCall

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
T = TypeVar("T")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv
        # Any responder/rendering fault would otherwise only show up as a puzzling 500.
        assert srv.errors == []


@pytest.fixture
def oai(server: FakeLLMServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key="test-key", max_retries=0) as client:
        yield client


@pytest.fixture
def ant(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key="test-key", max_retries=0) as client:
        yield client


def raw_post(
    server: FakeLLMServer, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# --- OpenAI chat ------------------------------------------------------------------------------------


def test_openai_chat_non_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(
        Reply.text("Hi there", input_tokens=20, output_tokens=5, cached_tokens=8, reasoning_tokens=2)
    )
    completion = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Hi there"
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (20, 5, 25)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 8
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 2

    request = server.requests[-1]
    assert (request.method, request.path, request.provider, request.endpoint) == (
        "POST",
        "/v1/chat/completions",
        "openai",
        "chat",
    )
    assert request.model == "gpt-4o-mini"
    assert request.stream is False
    assert request.json["messages"] == MESSAGES


@pytest.mark.anyio
async def test_openai_chat_async(server: FakeLLMServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as client:
        completion = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert completion.choices[0].message.content == "Hello from fake LLM (gpt-4o)"

        server.enqueue(Reply.text("a b c", output_tokens=3))
        stream = await client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        await stream.close()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "a b c"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_openai_chat_stream_without_include_usage(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.text("one two three"))
    with oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        chunks = list(stream)

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no usage-only chunk
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["one ", "two ", "three"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert server.requests[-1].stream
    assert not server.requests[-1].wants_usage


def test_openai_chat_stream_with_include_usage(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.text("one two", chunks=5, input_tokens=9, output_tokens=4, finish_reason="length"))
    with oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)

    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 5
    assert "".join(content) == "one two"
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 13
    assert chunks[-2].choices[0].finish_reason == "length"
    assert server.requests[-1].wants_usage


def test_openai_chat_stream_helper_and_usage_false(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.text("hello world", usage=False), Reply.text(usage=False))
    with oai.chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "hello world"
    assert final.usage is None
    assert oai.chat.completions.create(model="gpt-4o", messages=MESSAGES).usage is None


def test_openai_chat_tool_calls_non_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(
        Reply.tool_calls(
            [("get_weather", {"city": "Paris"}), ToolCall("lookup", {"q": "x"}, id="call_custom")]
        )
    )
    completion = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None
    assert [(c.id, c.type) for c in calls] == [("call_1", "function"), ("call_custom", "function")]
    first = calls[0]
    assert isinstance(first, openai.types.chat.ChatCompletionMessageFunctionToolCall)
    assert first.function.name == "get_weather"
    assert json.loads(first.function.arguments) == {"city": "Paris"}


def test_openai_chat_tool_calls_stream_reassembled(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(
        Reply.tool_calls(
            [("get_weather", {"city": "Paris", "unit": "celsius"}), ("get_time", {"tz": "Europe/Paris"})],
            content="Checking.",
        )
    )
    calls: dict[int, dict[str, str]] = {}
    text = ""
    finish = None
    argument_deltas = 0
    with oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        for chunk in stream:
            choice = chunk.choices[0]
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
                    argument_deltas += bool(delta.function.arguments)

    assert text == "Checking."
    assert finish == "tool_calls"
    assert [calls[i]["id"] for i in sorted(calls)] == ["call_1", "call_2"]
    assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert json.loads(calls[1]["arguments"]) == {"tz": "Europe/Paris"}
    assert argument_deltas > 2  # arguments really arrive in pieces


# --- OpenAI Responses, embeddings, Azure ------------------------------------------------------------


def test_openai_responses(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(
        Reply.text("The answer", input_tokens=30, output_tokens=10, cached_tokens=6, reasoning_tokens=4)
    )
    response = oai.responses.create(model="gpt-4.1", input="question", instructions="be brief")

    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "The answer"
    assert response.instructions == "be brief"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        30,
        10,
        40,
    )
    assert response.usage.input_tokens_details.cached_tokens == 6
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    assert server.requests[-1].endpoint == "responses"


def test_openai_responses_stream(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.text("a b c", input_tokens=5, output_tokens=3))
    with oai.responses.create(model="gpt-4.1", input="q", stream=True) as stream:
        events = list(stream)

    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["a ", "b ", "c"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, completed = events[0], events[-1]
    assert created.type == "response.created"
    assert created.response.usage is None
    assert completed.type == "response.completed"
    assert completed.response.output_text == "a b c"
    assert completed.response.usage is not None
    assert completed.response.usage.total_tokens == 8


def test_openai_responses_stream_helper_with_tool_call(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(
        Reply.tool_calls([("get_weather", {"city": "Paris"})]), Reply.text("x y", finish_reason="length")
    )
    with oai.responses.stream(model="gpt-4.1", input="q") as stream:
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call"
    assert (call.call_id, call.id, call.name) == ("call_1", "fc_1", "get_weather")
    assert json.loads(call.arguments) == {"city": "Paris"}

    response = oai.responses.create(model="gpt-4.1", input="q")
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_openai_embeddings(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    # The SDK asks for base64 unless told otherwise and decodes it itself.
    result = oai.embeddings.create(model="text-embedding-3-small", input=["hello world", "bye"])
    assert [d.index for d in result.data] == [0, 1]
    assert all(len(d.embedding) == 8 and isinstance(d.embedding[0], float) for d in result.data)
    assert result.usage.prompt_tokens == 3
    assert server.requests[-1].json["encoding_format"] == "base64"

    again = oai.embeddings.create(
        model="text-embedding-3-small", input="hello world", encoding_format="float", dimensions=4
    )
    assert len(again.data[0].embedding) == 4
    server.enqueue(Reply.embeddings([[0.5, 0.25]], input_tokens=42))
    scripted = oai.embeddings.create(model="m", input="x", encoding_format="float")
    assert scripted.data[0].embedding == [0.5, 0.25]
    assert scripted.usage.total_tokens == 42


def test_azure_openai_chat(server: FakeLLMServer) -> None:
    with openai.AzureOpenAI(
        azure_endpoint=server.url, api_version="2024-10-21", api_key="azure-key", max_retries=0
    ) as client:
        completion = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    assert completion.choices[0].message.content == "Hello from fake LLM (my-deployment)"
    request = server.requests[-1]
    assert request.path == "/openai/deployments/my-deployment/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == "azure-key"
    assert (request.provider, request.endpoint, request.deployment) == ("openai", "chat", "my-deployment")


# --- Anthropic ----------------------------------------------------------------------------------------


def test_anthropic_messages_non_stream(server: FakeLLMServer, ant: anthropic.Anthropic) -> None:
    server.enqueue(
        Reply.text("Bonjour", input_tokens=100, output_tokens=9, cached_tokens=60, cache_creation_tokens=30)
    )
    message = ant.messages.create(model="claude-fake-1", max_tokens=64, messages=MESSAGES)

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-fake-1"
    assert message.stop_reason == "end_turn"
    [block] = message.content
    assert block.type == "text"
    assert block.text == "Bonjour"
    # Anthropic reports prompt tokens disjointly from the cache reads/writes.
    assert message.usage.input_tokens == 10
    assert message.usage.cache_read_input_tokens == 60
    assert message.usage.cache_creation_input_tokens == 30
    assert message.usage.output_tokens == 9
    request = server.requests[-1]
    assert (request.path, request.provider, request.endpoint) == ("/v1/messages", "anthropic", "messages")
    # anthropic 2.x authenticates with a bearer token, not x-api-key.
    assert request.headers["authorization"] == "Bearer test-key"
    assert "anthropic-version" in request.headers


def test_anthropic_messages_raw_stream(server: FakeLLMServer, ant: anthropic.Anthropic) -> None:
    server.enqueue(Reply.text("one two three", input_tokens=11, output_tokens=6, finish_reason="length"))
    with ant.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES, stream=True) as stream:
        events = list(stream)

    types = [e.type for e in events]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == 11
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "max_tokens"  # mapped from the OpenAI vocabulary
    assert delta.usage.output_tokens == 6


def test_anthropic_stream_helper(server: FakeLLMServer, ant: anthropic.Anthropic) -> None:
    server.enqueue(Reply.text("streamed text", output_tokens=4))
    with ant.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "streamed text"
    assert final.content[0].type == "text"
    assert final.content[0].text == "streamed text"
    assert final.usage.output_tokens == 4
    assert final.usage.input_tokens == 12
    assert final.stop_reason == "end_turn"


def test_anthropic_tool_use(server: FakeLLMServer, ant: anthropic.Anthropic) -> None:
    server.enqueue(
        Reply.tool_calls([("get_weather", {"city": "Paris", "days": [1, 2]})]),
        Reply.tool_calls([("get_weather", {"city": "Rome"})], content="Let me check."),
    )
    message = ant.messages.create(model="claude-x", max_tokens=64, messages=MESSAGES)
    assert message.stop_reason == "tool_use"
    [block] = message.content
    assert block.type == "tool_use"
    assert (block.id, block.name, block.input) == (
        "toolu_1",
        "get_weather",
        {"city": "Paris", "days": [1, 2]},
    )

    with ant.messages.stream(model="claude-x", max_tokens=64, messages=MESSAGES) as stream:
        json_deltas = sum(1 for e in stream if e.type == "input_json")
        final = stream.get_final_message()
    assert json_deltas >= 2
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use"
    assert tool.id == "toolu_2"
    assert tool.input == {"city": "Rome"}
    assert final.stop_reason == "tool_use"


@pytest.mark.anyio
async def test_anthropic_async_stream(server: FakeLLMServer) -> None:
    async with (
        anthropic.AsyncAnthropic(base_url=server.anthropic_base_url, api_key="k", max_retries=0) as client,
        client.messages.stream(model="claude-x", max_tokens=8, messages=MESSAGES) as stream,
    ):
        final = await stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hello from fake LLM (claude-x)"


def test_anthropic_usage_false(server: FakeLLMServer, ant: anthropic.Anthropic) -> None:
    server.enqueue(Reply.text("x", usage=False))
    with ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES, stream=True) as stream:
        events = list(stream)
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert "usage" not in start.message.to_dict()
    assert delta.type == "message_delta"
    assert "usage" not in delta.to_dict()


# --- Faults -------------------------------------------------------------------------------------------


def test_rate_limit_with_retry_after(
    server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    server.enqueue(
        Reply.error(429, headers={"retry-after": "1"}), Reply.error(429, headers={"retry-after": "7"})
    )
    with pytest.raises(openai.RateLimitError) as openai_error:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert openai_error.value.response.headers["retry-after"] == "1"
    assert openai_error.value.code == "rate_limit_exceeded"

    with pytest.raises(anthropic.RateLimitError) as anthropic_error:
        ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert anthropic_error.value.response.headers["retry-after"] == "7"
    assert anthropic_error.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Too Many Requests (fake LLM, HTTP 429)"},
        "request_id": anthropic_error.value.request_id,
    }


def test_sdk_retry_then_success(server: FakeLLMServer) -> None:
    server.enqueue(Reply.error(503, headers={"retry-after-ms": "10"}), Reply.text("after retry"))
    with openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=1) as client:
        completion = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert completion.choices[0].message.content == "after retry"
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


def test_server_errors(server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    server.enqueue(Reply.error(500), Reply.error(500), Reply.error(529, error_type="overloaded_error"))
    with pytest.raises(openai.InternalServerError) as openai_error:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert openai_error.value.status_code == 500
    assert openai_error.value.type == "server_error"
    with pytest.raises(anthropic.InternalServerError) as internal:
        ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert internal.value.status_code == 500
    with pytest.raises(anthropic.InternalServerError) as overloaded:
        ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert type(overloaded.value) is anthropic.OverloadedError
    assert overloaded.value.status_code == 529


def test_hang_times_out(server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    server.enqueue(Reply.hang(10), Reply.hang(10))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, timeout=0.3)
    with pytest.raises(anthropic.APITimeoutError):
        ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES, timeout=0.3)
    assert time.monotonic() - started < 2


def test_connection_reset(server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    server.enqueue(Reply.reset(), Reply.reset())
    with pytest.raises(openai.APIConnectionError) as openai_error:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert type(openai_error.value) is openai.APIConnectionError
    with pytest.raises(anthropic.APIConnectionError) as anthropic_error:
        ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)
    assert type(anthropic_error.value) is anthropic.APIConnectionError
    # The server survives and the pooled clients reconnect.
    assert oai.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices


def test_malformed_json(server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    # Neither SDK wraps a body that fails to parse: the stdlib JSONDecodeError escapes as is.
    server.enqueue(Reply.malformed(), Reply.malformed())
    with pytest.raises(json.JSONDecodeError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(json.JSONDecodeError):
        ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES)


def test_malformed_body_with_other_content_type(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    # Without strict validation the openai SDK hands back the raw text instead of raising.
    server.enqueue(
        Reply.malformed("text/html", body=b"<html>bad gateway</html>"), Reply.malformed("text/html")
    )
    result: object = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert result == "<html>bad gateway</html>"
    with (
        openai.OpenAI(
            base_url=server.openai_base_url, api_key="k", max_retries=0, _strict_response_validation=True
        ) as strict,
        pytest.raises(openai.APIResponseValidationError),
    ):
        strict.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def read_until_error(stream: Iterable[T], pick: Callable[[T], str | None]) -> tuple[list[str], Exception]:
    """The content pieces a stream yields before it raises, and what it raised."""
    received: list[str] = []
    try:
        for item in stream:
            piece = pick(item)
            if piece:
                received.append(piece)
    except Exception as exc:
        return received, exc
    raise AssertionError(f"stream ended without an error after {received}")


def chat_content(chunk: ChatCompletionChunk) -> str | None:
    return chunk.choices[0].delta.content if chunk.choices else None


def responses_text(event: ResponseStreamEvent) -> str | None:
    return event.delta if event.type == "response.output_text.delta" else None


def anthropic_text(event: RawMessageStreamEvent) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return event.delta.text
    return None


def anthropic_json(event: RawMessageStreamEvent) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
        return event.delta.partial_json
    return None


@pytest.mark.parametrize("after", [0, 2])
def test_mid_stream_error_openai_chat(server: FakeLLMServer, oai: openai.OpenAI, after: int) -> None:
    server.enqueue(Reply.text("one two three four", error_after_chunks=after))
    with oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        received, error = read_until_error(stream, chat_content)
    assert type(error) is openai.APIError  # not a status error: the HTTP status was 200
    assert received == ["one ", "two "][:after]


@pytest.mark.parametrize("after", [0, 2])
def test_mid_stream_error_openai_responses(server: FakeLLMServer, oai: openai.OpenAI, after: int) -> None:
    server.enqueue(Reply.text("one two three four", error_after_chunks=after))
    with oai.responses.create(model="gpt-4.1", input="q", stream=True) as stream:
        received, error = read_until_error(stream, responses_text)
    assert type(error) is openai.APIError
    assert received == ["one ", "two "][:after]


@pytest.mark.parametrize("after", [0, 2])
def test_mid_stream_error_anthropic(server: FakeLLMServer, ant: anthropic.Anthropic, after: int) -> None:
    server.enqueue(Reply.tool_calls([("f", {"a": "long enough to be sliced"})], error_after_chunks=after))
    with ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES, stream=True) as stream:
        received, error = read_until_error(stream, anthropic_json)
    # The error event arrives on a 200 response, so the SDK raises the base status error.
    assert type(error) is anthropic.APIStatusError
    assert error.status_code == 200
    assert error.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert len(received) == after


def test_disconnect_after_chunks_cuts_the_stream(
    server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    server.enqueue(
        Reply.text("one two three four", disconnect_after_chunks=2),
        Reply.text("one two three", disconnect_after_chunks=1),
    )
    with oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
        received, error = read_until_error(stream, chat_content)
    assert received == ["one ", "two "]
    assert type(error) is openai.APIConnectionError  # no error event: the connection just ended
    with ant.messages.create(model="claude-x", max_tokens=8, messages=MESSAGES, stream=True) as raw:
        pieces, cut = read_until_error(raw, anthropic_text)
    assert pieces == ["one "]
    assert "incomplete chunked read" in str(cut)
    assert oai.chat.completions.create(model="m", messages=MESSAGES).choices  # the server carries on


# --- Scripting and recording -----------------------------------------------------------------------


def test_headers_are_recorded(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"X-Trace-Me": "abc123"})
    headers = server.requests[-1].headers
    assert headers["x-trace-me"] == "abc123"
    assert headers["authorization"] == "Bearer test-key"
    assert all(name == name.lower() for name in headers)


def test_fifo_order_then_responder_fallback(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.text("first"), Reply.text("second"))
    server.enqueue(Reply.text("third"))
    assert server.pending == 3
    contents = [
        oai.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content for _ in range(4)
    ]
    assert contents == ["first", "second", "third", "Hello from fake LLM (m)"]
    assert len(server.requests) == 4
    server.reset()
    assert server.requests == []
    assert server.pending == 0


def test_custom_responder(oai: openai.OpenAI, server: FakeLLMServer) -> None:
    seen: list[RecordedRequest] = []

    def responder(request: RecordedRequest) -> Reply:
        seen.append(request)
        return Reply.text(f"echo {request.json['messages'][-1]['content']}")

    server.responder = responder
    completion = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "ping"}])
    assert completion.choices[0].message.content == "echo ping"
    assert seen == server.requests


def test_faulty_responder_and_bad_script_become_500(oai: openai.OpenAI) -> None:
    def responder(request: RecordedRequest) -> Reply:
        raise RuntimeError("boom")

    with (
        FakeLLMServer(responder=responder) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key="k", max_retries=0) as client,
    ):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert len(srv.errors) == 1
        assert "boom" in srv.errors[0]

        srv.enqueue(Reply.embeddings())  # cannot answer a chat request
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MESSAGES)
        assert len(srv.errors) == 2
        assert "cannot answer" in srv.errors[1]


def test_unknown_path_is_404_in_provider_envelope(server: FakeLLMServer) -> None:
    server.enqueue(Reply.text("kept for later"))
    status, body = raw_post(server, "/v1/nope", {"model": "m"})
    assert status == 404
    assert set(body["error"]) == {"message", "type", "param", "code"}

    status, body = raw_post(server, "/v1/nope", {}, headers={"anthropic-version": "2023-06-01"})
    assert status == 404
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"

    assert server.pending == 1  # unknown paths do not consume the script
    assert [r.endpoint for r in server.requests] == [None, None]


def test_raw_json_and_sse_replies(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(
        Reply.json({"custom": True}, status=202, headers={"x-extra": "1"}),
        Reply.sse(
            [
                (
                    None,
                    json.dumps(
                        {
                            "id": "c",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": "m",
                            "choices": [],
                        }
                    ),
                ),
                (None, "[DONE]"),
            ]
        ),
    )
    raw = oai.chat.completions.with_raw_response.create(model="m", messages=MESSAGES)
    assert raw.status_code == 202
    assert raw.headers["x-extra"] == "1"
    assert raw.http_response.json() == {"custom": True}
    with oai.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        assert [c.id for c in stream] == ["c"]


def test_keep_alive_for_json_replies(server: FakeLLMServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        body = json.dumps({"model": "m", "messages": MESSAGES})
        conn.request("POST", "/v1/chat/completions", body=body)
        first = conn.getresponse()
        assert first.getheader("content-length") is not None
        first.read()
        sock = conn.sock
        conn.request(
            "POST",
            "/v1/chat/completions",
            body=json.dumps({"model": "m", "messages": MESSAGES, "stream": True}),
        )
        second = conn.getresponse()
        assert second.getheader("transfer-encoding") == "chunked"
        assert b"data: [DONE]" in second.read()
        conn.request("POST", "/v1/chat/completions", body=body)
        conn.getresponse().read()
        assert conn.sock is sock  # one connection for all three
    finally:
        conn.close()


def test_stream_is_incremental(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.text("alpha beta", chunks=2, chunk_delay=0.1))
    arrivals: list[float] = []
    started = time.monotonic()
    with oai.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 0.08  # spaced by the delay, not delivered in one burst


def test_client_abandoning_stream(
    server: FakeLLMServer, oai: openai.OpenAI, capfd: pytest.CaptureFixture[str]
) -> None:
    server.enqueue(Reply.text("a b c d e f g h", chunk_delay=0.02))
    with oai.chat.completions.create(model="m", messages=MESSAGES, stream=True) as stream:
        next(iter(stream))
    time.sleep(0.1)  # let the server run into the closed socket
    assert oai.chat.completions.create(model="m", messages=MESSAGES).choices
    assert capfd.readouterr().err == ""


def test_delay_reply(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.enqueue(Reply.delay(0.2, Reply.text("slow")))
    started = time.monotonic()
    completion = oai.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == "slow"
    assert time.monotonic() - started >= 0.2


def test_concurrent_requests(server: FakeLLMServer, oai: openai.OpenAI) -> None:
    server.responder = lambda request: Reply.delay(
        0.3, Reply.text(str(request.json["messages"][0]["content"]))
    )
    results: dict[int, str | None] = {}

    def call(i: int) -> None:
        message = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
        results[i] = message.choices[0].message.content

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: str(i) for i in range(8)}
    assert time.monotonic() - started < 1.5  # served in parallel, not one after another


def test_stop_with_hanging_request_is_prompt() -> None:
    server = FakeLLMServer().start()
    server.enqueue(Reply.hang(30))
    outcome: list[BaseException] = []

    def call() -> None:
        with openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0, timeout=10) as client:
            try:
                client.chat.completions.create(model="m", messages=MESSAGES)
            except openai.APIError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    thread.join(5)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], openai.APIConnectionError)


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def test_start_stop_many_servers_leaks_nothing() -> None:
    fds_before = _open_fds()
    threads_before = threading.active_count()
    for _ in range(50):
        server = FakeLLMServer().start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": "m", "messages": MESSAGES}))
        conn.getresponse().read()
        server.stop()  # with the keep-alive connection still open on the client side
        conn.close()
    assert threading.active_count() == threads_before
    if fds_before is not None:
        assert _open_fds() == fds_before


def test_reply_validation() -> None:
    with pytest.raises(ValueError, match="cannot exceed"):
        Reply.text(input_tokens=5, cached_tokens=6)
    with pytest.raises(ValueError, match="chunks"):
        Reply.text(chunks=0)
    with pytest.raises(ValueError, match="4xx or 5xx"):
        Reply.error(200)
    with pytest.raises(ValueError, match="aliases"):
        Reply.text(model="a", response_model="b")
    with pytest.raises(ValueError, match="at least one"):
        Reply.tool_calls([])
    with pytest.raises(ValueError, match="exclude each other"):
        Reply.text(error_after_chunks=1, disconnect_after_chunks=1)
    with pytest.raises(TypeError, match="bytes"):
        Reply.frames(["not bytes"])  # type: ignore[list-item]
    server = FakeLLMServer()
    with pytest.raises(TypeError, match="unpack"):
        server.enqueue([Reply.text()])  # type: ignore[arg-type]
    assert Reply.text().kind == "completion"
    assert Reply.reset().kind == "reset"


def test_response_model_and_id(server: FakeLLMServer, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    server.enqueue(
        Reply.text(response_model="gpt-4o-2024-08-06", response_id="chatcmpl-fixed"),
        Reply.text(model="claude-fake-1-20250929"),
    )
    completion = oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert (completion.model, completion.id) == ("gpt-4o-2024-08-06", "chatcmpl-fixed")
    message = ant.messages.create(model="claude-fake-1", max_tokens=8, messages=MESSAGES)
    assert message.model == "claude-fake-1-20250929"
