"""A streamed call returns the SDK's stream: ``isinstance`` holds, whatever the SDK version.

anthropic 0.x's ``Stream``/``AsyncStream`` answer ``isinstance`` through a metaclass that is False
for anything but exactly a ``Stream``: a proxy fails it, so agentwatch observes those streams in
place and hands out the SDK's very object (see agentwatch._telemetry._stream). The exit paths of
both ways are in test_streams.py; here: the caller's object, and a policy's chunk timeouts on a
stream observed in place, and a stream that cannot be observed either way.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import patch

import anthropic
import openai
import pytest

from agentwatch import Policy, ToolTimeoutError, _internal
from agentwatch._fakellm import FakeLLMServer, Reply
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    internal_faults,
    observed_in_place,
    user,
)

# agentwatch must not trip its own fault handler on either path (but where it has to give up).
faultless = pytest.mark.usefixtures("no_internal_faults")

ANTHROPIC_CHAT: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": user()}


@pytest.fixture
async def async_anthropic_client(fake_llm: FakeLLMServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        yield client


def _read_whole(signals: Signals, items: list[Any]) -> None:
    """The stream was observed: its span ended when it was read to the end, with its usage."""
    assert items
    attrs = dict(signals.only_span().attributes or {})
    assert attrs["agentwatch.stream.outcome"] == "completed"
    assert attrs["gen_ai.usage.output_tokens"] == 7


@faultless
def test_create_stream_is_an_anthropic_stream(
    instrumented: Signals, anthropic_client: anthropic.Anthropic
) -> None:
    stream = anthropic_client.messages.create(**ANTHROPIC_CHAT, stream=True)
    assert isinstance(stream, anthropic.Stream)
    _read_whole(instrumented, list(stream))


@faultless
@pytest.mark.anyio
async def test_async_create_stream_is_an_anthropic_async_stream(
    instrumented: Signals, async_anthropic_client: anthropic.AsyncAnthropic
) -> None:
    stream = await async_anthropic_client.messages.create(**ANTHROPIC_CHAT, stream=True)
    assert isinstance(stream, anthropic.AsyncStream)
    _read_whole(instrumented, [event async for event in stream])


@faultless
def test_raw_response_stream_is_an_anthropic_stream(
    instrumented: Signals, anthropic_client: anthropic.Anthropic
) -> None:
    raw = anthropic_client.messages.with_raw_response.create(**ANTHROPIC_CHAT, stream=True)
    stream = raw.parse()
    assert isinstance(stream, anthropic.Stream)
    assert raw.parse() is stream
    _read_whole(instrumented, list(stream))


@faultless
@pytest.mark.anyio
async def test_async_raw_response_stream_is_an_anthropic_async_stream(
    instrumented: Signals, async_anthropic_client: anthropic.AsyncAnthropic
) -> None:
    raw = await async_anthropic_client.messages.with_raw_response.create(**ANTHROPIC_CHAT, stream=True)
    parsed = raw.parse()  # a coroutine where with_raw_response gives an AsyncAPIResponse
    stream = await parsed if inspect.isawaitable(parsed) else parsed
    assert isinstance(stream, anthropic.AsyncStream)
    _read_whole(instrumented, [event async for event in stream])


@faultless
def test_helper_reads_an_anthropic_stream(
    instrumented: Signals, anthropic_client: anthropic.Anthropic
) -> None:
    # The helper's own stream is the SDK's; the raw stream under it stays one too.
    with anthropic_client.messages.stream(**ANTHROPIC_CHAT) as stream:
        assert isinstance(stream._raw_stream, anthropic.Stream)
        _read_whole(instrumented, list(stream))


@faultless
def test_a_stream_observed_in_place_is_the_sdks_own_object(
    instrumented: Signals, openai_client: openai.OpenAI
) -> None:
    with observed_in_place(openai.Stream):
        stream = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
    assert type(stream) is openai.Stream
    # What the stream's __exit__ calls, named as the SDK names it.
    assert stream.close.__name__ == "close"
    with stream:
        assert len(list(stream)) > 1
    assert dict(instrumented.only_span().attributes or {})["agentwatch.stream.outcome"] == "completed"


# -- a policy's chunk timeouts, on a stream observed in place ----------------------------------------


@faultless
def test_sync_idle_timeout_in_place(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(idle_timeout=0.3)})
    fake_llm.enqueue(Reply.text("a b", chunk_delay=2.0))
    with (
        observed_in_place(openai.Stream),
        openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client,
    ):
        stream = client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
        assert type(stream) is openai.Stream
        received = []
        with pytest.raises(ToolTimeoutError) as raised:
            for chunk in stream:
                received.append(chunk)
    assert (raised.value.scope, raised.value.timeout, len(received)) == ("idle", 0.3, 1)
    attrs = dict(signals.only_span().attributes or {})
    assert (attrs["error.type"], attrs["agentwatch.stream.outcome"]) == ("timeout", "error")


@faultless
@pytest.mark.anyio
async def test_async_idle_timeout_in_place(with_policies: Any, fake_llm: FakeLLMServer) -> None:
    signals = with_policies(**{OPENAI_MODEL: Policy(first_chunk_timeout=2.0, idle_timeout=0.2)})
    fake_llm.enqueue(Reply.text("one two three", chunk_delay=1.5))
    with observed_in_place(openai.AsyncStream):
        async with openai.AsyncOpenAI(
            base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0
        ) as client:
            stream = await client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
            assert type(stream) is openai.AsyncStream
            received = []
            with pytest.raises(ToolTimeoutError) as raised:
                async for chunk in stream:
                    received.append(chunk)
            # The timed-out stream's HTTP response was closed, not left for the pool to reuse.
            assert stream.response.is_closed
    assert (raised.value.scope, raised.value.timeout, len(received)) == ("idle", 0.2, 1)
    attrs = dict(signals.only_span().attributes or {})
    assert (attrs["error.type"], attrs["agentwatch.stream.outcome"]) == ("timeout", "error")


@pytest.mark.skipif(
    not hasattr(anthropic.Stream, "_iterator"),
    reason="this anthropic makes its stream's iterator in __init__",
)
def test_a_stream_observed_neither_way_is_handed_out_unobserved(
    instrumented: Signals, anthropic_client: anthropic.Anthropic, caplog: pytest.LogCaptureFixture
) -> None:
    # Were anthropic 2.x's Stream to turn proxies away, it has no iterator of its own to observe
    # in place before it is first read: never a proxy that changes isinstance, then.
    caplog.set_level(logging.DEBUG, logger="agentwatch")
    with observed_in_place(anthropic.Stream), patch.object(_internal, "_reported", set()):
        stream = anthropic_client.messages.create(**ANTHROPIC_CHAT, stream=True)
    assert type(stream) is anthropic.Stream
    assert len(internal_faults(caplog)) == 1
    # The call is measured and its span ended at once, without the stream's outcome.
    assert "agentwatch.stream.outcome" not in dict(instrumented.only_span().attributes or {})
    with stream:
        assert [event.type for event in stream][-1] == "message_stop"
