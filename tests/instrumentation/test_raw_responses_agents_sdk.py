"""``with_raw_response`` / ``with_streaming_response`` as the OpenAI Agents SDK uses them: the SDK hands back the HTTP response and the
caller parses it later (the OpenAI Agents SDK streams Responses this way). The call's one span
ends with what ``parse()`` returns: a stream with its last chunk, a response when read."""

from __future__ import annotations

import openai
import pytest
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from support import OPENAI_KEY, OPENAI_MODEL, Signals, needs_responses, user

pytestmark = pytest.mark.usefixtures("instrumented")

CHAT = f"chat {OPENAI_MODEL}"


def _chat_stream() -> dict[str, object]:
    return {
        "model": OPENAI_MODEL,
        "messages": user(),
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_streaming_response_ends_with_the_last_chunk(
    openai_client: openai.OpenAI, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("one two three", input_tokens=5, output_tokens=3))
    with openai_client.chat.completions.with_streaming_response.create(**_chat_stream()) as response:
        assert isinstance(response, openai._response.APIResponse)
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = response.parse()
        assert instrumented.finished() == []  # still open: the chunks have not been read
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three"
    span = instrumented.only_span(CHAT)
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 5 and attributes["gen_ai.usage.output_tokens"] == 3
    assert attributes["agentwatch.stream.outcome"] == "completed"
    assert attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert sum(p.count for p in instrumented.points("gen_ai.client.token.usage")) == 2


@needs_responses
@pytest.mark.anyio
async def test_async_streaming_response_of_responses(fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    fake_llm.enqueue(Reply.text("hi there", input_tokens=9, output_tokens=2))
    async with (
        openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client,
        client.responses.with_streaming_response.create(
            model=OPENAI_MODEL, input="hi", stream=True
        ) as response,
    ):
        stream = await response.parse()
        assert await response.parse() is stream  # parsed once, as the SDK caches it
        kinds = [event.type async for event in stream]
    assert kinds[-1] == "response.completed"
    attributes = dict(instrumented.only_span(CHAT).attributes or {})
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["agentwatch.stream.outcome"] == "completed"


def test_raw_response_is_read_when_parsed(
    openai_client: openai.OpenAI, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("raw", response_id="chatcmpl-raw1", input_tokens=4, output_tokens=1))
    raw = openai_client.chat.completions.with_raw_response.create(model=OPENAI_MODEL, messages=user())
    assert raw.headers.get("x-request-id")
    completion = raw.parse()
    assert completion.choices[0].message.content == "raw"
    assert raw.parse() is completion
    attributes = dict(instrumented.only_span(CHAT).attributes or {})
    assert attributes["gen_ai.response.id"] == "chatcmpl-raw1"
    assert attributes["gen_ai.usage.input_tokens"] == 4
    assert "agentwatch.stream.outcome" not in attributes


def test_a_response_closed_unparsed_ends_its_span(
    openai_client: openai.OpenAI, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("never read"))
    with openai_client.chat.completions.with_streaming_response.create(**_chat_stream()):
        pass
    span = instrumented.only_span(CHAT)
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["agentwatch.stream.outcome"] == "closed"


# A raw response whose body was read is read and ended at once, and a body that does not parse is
# the caller's error rather than the call's: test_raw_responses.py covers both.
