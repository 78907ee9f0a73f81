"""Every exit path of a stream ends its span exactly once, for each provider, sync and async, and
for each way of observing a stream (a proxy, or in place: see agentwatch._telemetry._stream)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    needs_chat_parse,
    needs_responses,
    observed_in_place,
    parse_api,
    user,
)

pytestmark = pytest.mark.usefixtures("instrumented")

Opener = Callable[[FakeLLMServer], AbstractContextManager[Any]]
AsyncOpener = Callable[[FakeLLMServer], AbstractAsyncContextManager[Any]]


@contextmanager
def openai_chat(server: FakeLLMServer) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        yield client.chat.completions.create(
            model=OPENAI_MODEL, messages=user(), stream=True, stream_options={"include_usage": True}
        )


@contextmanager
def openai_chat_in_place(server: FakeLLMServer) -> Iterator[Any]:
    """The stream observed in place (anthropic 0.x's way), with whatever SDK versions are installed."""
    with observed_in_place(openai.Stream), openai_chat(server) as stream:
        assert type(stream) is openai.Stream
        yield stream


@contextmanager
def openai_responses(server: FakeLLMServer) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        yield client.responses.create(model=OPENAI_MODEL, input="hi", stream=True)


@contextmanager
def anthropic_create(server: FakeLLMServer) -> Iterator[Any]:
    with anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        yield client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True)


class _HelperAsStream:
    """Presents ``messages.stream()`` (a manager) like the raw streams: iterate, close, ``with``."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.stream = manager.__enter__()

    def __iter__(self) -> Any:
        return iter(self.stream)

    def close(self) -> None:
        self.manager.__exit__(None, None, None)

    def __enter__(self) -> Any:
        return self.stream

    def __exit__(self, *exc: Any) -> Any:
        return self.manager.__exit__(*exc)


@contextmanager
def anthropic_helper(server: FakeLLMServer) -> Iterator[Any]:
    with anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        yield _HelperAsStream(client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()))


OPENERS = [
    openai_chat,
    openai_chat_in_place,
    pytest.param(openai_responses, marks=needs_responses),
    anthropic_create,
    anthropic_helper,
]


def _outcome(signals: Signals) -> tuple[str, StatusCode]:
    span = signals.only_span()
    assert span.end_time is not None
    attrs = dict(span.attributes or {})
    # Exactly once: one duration sample, whatever else happened to the stream afterwards.
    assert [p.count for p in signals.points("gen_ai.client.operation.duration")] == [1]
    return str(attrs["agentwatch.stream.outcome"]), span.status.status_code


@pytest.mark.parametrize("opener", OPENERS)
def test_consumed_to_the_end(opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    with opener(fake_llm) as stream:
        items = list(stream)
        assert items
        assert _outcome(instrumented) == ("completed", StatusCode.UNSET)
        stream.close()  # a later close changes nothing
    assert _outcome(instrumented) == ("completed", StatusCode.UNSET)
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.response.finish_reasons"] in (("stop",), ("end_turn",))


@pytest.mark.parametrize("opener", OPENERS)
def test_break_inside_with(opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six"))
    with opener(fake_llm) as stream, stream as s:
        for _ in s:
            break
    assert _outcome(instrumented) == ("closed", StatusCode.UNSET)


@pytest.mark.parametrize("opener", OPENERS)
def test_close(opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six"))
    with opener(fake_llm) as stream:
        next(iter(stream))
        stream.close()
        assert _outcome(instrumented) == ("closed", StatusCode.UNSET)


@pytest.mark.parametrize("opener", OPENERS)
def test_exception_in_the_callers_loop(
    opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    boom = RuntimeError("caller failed")
    fake_llm.enqueue(Reply.text("one two three four five six"))
    with opener(fake_llm) as stream:
        with pytest.raises(RuntimeError) as raised, stream as s:
            for _ in s:
                raise boom
        assert raised.value is boom
    # The call itself did not fail: the caller stopped reading.
    assert _outcome(instrumented) == ("closed", StatusCode.UNSET)


@pytest.mark.parametrize("opener", OPENERS)
def test_mid_stream_server_error(opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six", error_after_chunks=2))
    with opener(fake_llm) as stream, pytest.raises(Exception) as raised:
        for _ in stream:
            pass
    assert _outcome(instrumented) == ("error", StatusCode.ERROR)
    span = instrumented.only_span()
    assert span.attributes is not None
    assert span.attributes["error.type"].endswith(type(raised.value).__name__)


@pytest.mark.parametrize("opener", OPENERS)
def test_dropped_stream_ends_when_collected(
    opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six"))
    with opener(fake_llm) as stream:
        next(iter(stream))
        last_chunk_seen = time.time_ns()
        time.sleep(0.05)
        assert instrumented.finished() == []
    del stream
    gc.collect()
    assert _outcome(instrumented) == ("abandoned", StatusCode.UNSET)
    span = instrumented.only_span()
    # Ended at its last chunk, not when the collector happened to run.
    assert span.end_time is not None and span.end_time <= last_chunk_seen


# -- async -------------------------------------------------------------------------------------


@asynccontextmanager
async def async_openai_chat(server: FakeLLMServer) -> AsyncIterator[Any]:
    async with openai.AsyncOpenAI(
        base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0
    ) as client:
        yield await client.chat.completions.create(
            model=OPENAI_MODEL, messages=user(), stream=True, stream_options={"include_usage": True}
        )


@asynccontextmanager
async def async_openai_chat_in_place(server: FakeLLMServer) -> AsyncIterator[Any]:
    with observed_in_place(openai.AsyncStream):
        async with async_openai_chat(server) as stream:
            assert type(stream) is openai.AsyncStream
            yield stream


@asynccontextmanager
async def async_anthropic_create(server: FakeLLMServer) -> AsyncIterator[Any]:
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        yield await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True)


class _AsyncHelperAsStream:
    def __init__(self, manager: Any, stream: Any) -> None:
        self.manager, self.stream = manager, stream

    def __aiter__(self) -> Any:
        return self.stream.__aiter__()

    async def close(self) -> None:
        await self.manager.__aexit__(None, None, None)

    async def __aenter__(self) -> Any:
        return self.stream

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.manager.__aexit__(*exc)


@asynccontextmanager
async def async_anthropic_helper(server: FakeLLMServer) -> AsyncIterator[Any]:
    async with anthropic.AsyncAnthropic(
        base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        manager = client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user())
        yield _AsyncHelperAsStream(manager, await manager.__aenter__())


ASYNC_OPENERS = [
    async_openai_chat,
    async_openai_chat_in_place,
    async_anthropic_create,
    async_anthropic_helper,
]


@pytest.mark.anyio
@pytest.mark.parametrize("opener", ASYNC_OPENERS)
async def test_async_consumed(opener: AsyncOpener, fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    async with opener(fake_llm) as stream:
        assert [item async for item in stream]
        await stream.close()
    assert _outcome(instrumented) == ("completed", StatusCode.UNSET)


@pytest.mark.anyio
@pytest.mark.parametrize("opener", ASYNC_OPENERS)
async def test_async_break_inside_async_with(
    opener: AsyncOpener, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six"))
    async with opener(fake_llm) as stream, stream as s:
        async for _ in s:
            break
    assert _outcome(instrumented) == ("closed", StatusCode.UNSET)


@pytest.mark.anyio
@pytest.mark.parametrize("opener", ASYNC_OPENERS)
async def test_async_mid_stream_error(
    opener: AsyncOpener, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six", error_after_chunks=2))
    async with opener(fake_llm) as stream:
        with pytest.raises(Exception):
            async for _ in stream:
                pass
    assert _outcome(instrumented) == ("error", StatusCode.ERROR)


@pytest.mark.anyio
@pytest.mark.parametrize("opener", ASYNC_OPENERS)
async def test_async_dropped_stream(
    opener: AsyncOpener, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six"))
    async with opener(fake_llm) as stream:
        await stream.__aiter__().__anext__()
    del stream
    # asyncio keeps an unfinished async generator alive until the loop has run its aclose().
    for _ in range(5):
        gc.collect()
        await asyncio.sleep(0)
    assert _outcome(instrumented) == ("abandoned", StatusCode.UNSET)


# -- openai .stream() helpers: they close the HTTP response themselves -------------------------


@contextmanager
def openai_chat_helper(server: FakeLLMServer) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        yield parse_api(client).stream(model=OPENAI_MODEL, messages=user())


@contextmanager
def openai_responses_helper(server: FakeLLMServer) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        yield client.responses.stream(model=OPENAI_MODEL, input="hi")


HELPERS = [
    pytest.param(openai_chat_helper, marks=needs_chat_parse),
    pytest.param(openai_responses_helper, marks=needs_responses),
]


@pytest.mark.parametrize("opener", HELPERS)
def test_openai_helper_break_ends_the_span_at_exit(
    opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals
) -> None:
    fake_llm.enqueue(Reply.text("one two three four five six"))
    with opener(fake_llm) as manager, manager as stream:
        for _ in stream:
            break
        assert instrumented.finished() == []
    assert _outcome(instrumented) == ("closed", StatusCode.UNSET)


@pytest.mark.parametrize("opener", HELPERS)
def test_openai_helper_consumed(opener: Opener, fake_llm: FakeLLMServer, instrumented: Signals) -> None:
    with opener(fake_llm) as manager, manager as stream:
        stream.until_done()
    assert _outcome(instrumented) == ("completed", StatusCode.UNSET)
