"""Raw responses (``with_raw_response``, ``with_streaming_response``): one parse, every exit path.

LiteLLM and other libraries call the SDKs this way. The replays (test_replay.py) show that such
calls get the span of a plain call; these tests pin down how: the caller's objects are the SDK's
own and are parsed once, a streamed raw response keeps its span open until the stream that
``parse()`` hands out ends (however it ends), and a body agentwatch must not read early is read
from what the caller did when the response is closed.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    ANTHROPIC_NATIVE_TRACING,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    user,
)

# Real SDK behaviour must not trip agentwatch's own fault handler anywhere.
pytestmark = pytest.mark.usefixtures("instrumented", "no_internal_faults")

OPENAI_CHAT: dict[str, Any] = {"model": OPENAI_MODEL, "messages": user()}
ANTHROPIC_CHAT: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": user()}


def _raw_create(provider: str, client: Any) -> Callable[..., Any]:
    if provider == "openai":
        return lambda **kw: client.chat.completions.with_raw_response.create(**OPENAI_CHAT, **kw)
    return lambda **kw: client.messages.with_raw_response.create(**ANTHROPIC_CHAT, **kw)


@pytest.fixture(params=["openai", "anthropic"])
def provider_client(request: pytest.FixtureRequest, fake_llm: FakeLLMServer) -> Iterator[tuple[str, Any]]:
    if request.param == "openai":
        client: Any = openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0)
    else:
        client = anthropic.Anthropic(
            base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
        )
    with client:
        yield request.param, client


# -- the caller's objects ---------------------------------------------------------------------


def test_raw_response_is_the_sdks_own_and_parsed_once(
    openai_client: openai.OpenAI, instrumented: Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    from openai._legacy_response import LegacyAPIResponse

    parses = 0
    original = openai_client._process_response_data

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal parses
        parses += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(openai_client, "_process_response_data", counting)
    raw = openai_client.chat.completions.with_raw_response.create(**OPENAI_CHAT)

    # The span has ended with the response read, before the caller parsed anything ...
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.response.id"] == "chatcmpl-fake1"
    # ... and the caller still gets the SDK's own object, whose parse() is the one agentwatch did.
    assert type(raw) is LegacyAPIResponse
    completion = raw.parse()
    assert raw.parse() is completion
    assert parses == 1
    assert completion.id == "chatcmpl-fake1"


def test_unparseable_body_is_the_callers_error_not_agentwatchs(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.malformed(), Reply.malformed())
    with agentwatch_off():
        bare = openai_client.chat.completions.with_raw_response.create(**OPENAI_CHAT)
        with pytest.raises(Exception) as expected:
            bare.parse()
    raw = openai_client.chat.completions.with_raw_response.create(**OPENAI_CHAT)
    with pytest.raises(type(expected.value)) as raised:
        raw.parse()
    assert str(raised.value) == str(expected.value)
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.UNSET
    assert "gen_ai.response.id" not in (span.attributes or {})


class agentwatch_off:
    """Run a block bare (the ``instrumented`` fixture's providers stay in place)."""

    def __enter__(self) -> None:
        from opentelemetry import context
        from opentelemetry.instrumentation.utils import _SUPPRESS_INSTRUMENTATION_KEY

        self._token = context.attach(context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))

    def __exit__(self, *exc: object) -> None:
        from opentelemetry import context

        context.detach(self._token)


# -- streamed raw responses: the span lasts as long as the stream -----------------------------


def test_streamed_raw_response_keeps_its_span_open_until_the_stream_ends(
    provider_client: tuple[str, Any], instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    provider, client = provider_client
    fake_llm.enqueue(Reply.text("a b c", chunks=3, output_tokens=9))
    raw = _raw_create(provider, client)(stream=True)
    assert instrumented.finished() == []
    stream = raw.parse()
    assert raw.parse() is stream  # the SDK's cache hands out the one observed stream
    items = list(stream)
    assert items

    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["agentwatch.stream.outcome"] == "completed"
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.time_to_first_chunk"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == (("stop",) if provider == "openai" else ("end_turn",))
    if provider == "anthropic":  # OpenAI streams carry usage only when asked to
        assert attrs["gen_ai.usage.output_tokens"] == 9
    (per_chunk,) = instrumented.points("gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk.count == len(items) - 1


def _break_in_with(raw: Any) -> None:
    with raw.parse() as stream:
        for _ in stream:
            break


def _close(raw: Any) -> None:
    stream = raw.parse()
    next(iter(stream))
    stream.close()


def _raise_in_loop(raw: Any) -> None:
    with pytest.raises(KeyError), raw.parse() as stream:
        for _ in stream:
            raise KeyError("the caller's own error")


EXITS: dict[str, tuple[Callable[[Any], None], str]] = {
    "break inside with": (_break_in_with, "closed"),
    "close()": (_close, "closed"),
    "exception in the caller's loop": (_raise_in_loop, "closed"),
}


@pytest.mark.parametrize("exit_path", list(EXITS))
def test_streamed_raw_response_ends_its_span_on_every_exit(
    exit_path: str, provider_client: tuple[str, Any], instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    provider, client = provider_client
    leave, outcome = EXITS[exit_path]
    fake_llm.enqueue(Reply.text("a b c d e f", chunks=6))
    leave(_raw_create(provider, client)(stream=True))

    span = instrumented.only_span()
    assert dict(span.attributes or {})["agentwatch.stream.outcome"] == outcome
    assert span.status.status_code is StatusCode.UNSET


def test_streamed_raw_response_dropped_unread_is_abandoned(
    provider_client: tuple[str, Any], instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    provider, client = provider_client
    fake_llm.enqueue(Reply.text("a b c d", chunks=4))
    raw = _raw_create(provider, client)(stream=True)
    stream = raw.parse()
    next(iter(stream))
    del raw, stream
    gc.collect()

    assert dict(instrumented.only_span().attributes or {})["agentwatch.stream.outcome"] == "abandoned"


def test_streamed_raw_response_error_mid_stream(
    provider_client: tuple[str, Any], instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    provider, client = provider_client
    fake_llm.enqueue(Reply.text("a b c d", chunks=4, error_after_chunks=2))
    stream = _raw_create(provider, client)(stream=True).parse()
    with pytest.raises(Exception) as raised:
        for _ in stream:
            pass

    span = instrumented.only_span()
    assert dict(span.attributes or {})["agentwatch.stream.outcome"] == "error"
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"].endswith(type(raised.value).__name__)


# -- with_streaming_response: the response's own close ends the span -----------------------------


def test_streaming_response_closed_mid_stream_ends_the_span(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("a b c d e", chunks=5))
    with openai_client.chat.completions.with_streaming_response.create(
        **OPENAI_CHAT, stream=True
    ) as response:
        stream = response.parse()
        next(iter(stream))
        assert instrumented.finished() == []
    # The caller left the stream unfinished and unclosed; the response's close ended the span.
    assert dict(instrumented.only_span().attributes or {})["agentwatch.stream.outcome"] == "closed"


def test_streaming_response_body_is_not_read_early(
    provider_client: tuple[str, Any], instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    provider, client = provider_client
    resource = client.chat.completions if provider == "openai" else client.messages
    request = OPENAI_CHAT if provider == "openai" else ANTHROPIC_CHAT
    fake_llm.enqueue(Reply.text("hello", output_tokens=5))
    with resource.with_streaming_response.create(**request) as response:
        # Headers first, body still unread: agentwatch read nothing and the call is not over.
        assert response.headers["content-type"].startswith("application/json")
        assert response.is_closed is False
        assert instrumented.finished() == []
        parsed = response.parse()
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.response.id"] == parsed.id
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert "gen_ai.request.stream" not in attrs


def test_streaming_response_read_as_bytes_or_never_read(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("bytes", output_tokens=3), Reply.text("unread"))
    create = openai_client.chat.completions.with_streaming_response.create
    with create(**OPENAI_CHAT) as response:
        body = response.read()  # the JSON bytes, never parse()d by anyone
    with create(**OPENAI_CHAT) as response:
        pass

    read, unread = instrumented.finished()
    assert b'"completion_tokens": 3' in body or b'"completion_tokens":3' in body
    assert dict(read.attributes or {})["gen_ai.usage.output_tokens"] == 3
    assert "gen_ai.response.id" not in (unread.attributes or {})


def test_streaming_response_dropped_unclosed_still_ends(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    manager = openai_client.chat.completions.with_streaming_response.create(**OPENAI_CHAT)
    response = manager.__enter__()
    assert instrumented.finished() == []
    del manager, response
    gc.collect()
    assert len(instrumented.finished()) == 1


# -- async ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_async_raw_stream_exit_paths(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(*(Reply.text("a b c d", chunks=4) for _ in range(4)))
    async with openai.AsyncOpenAI(
        base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0
    ) as client:
        create = client.chat.completions.with_raw_response.create
        # Consumed.
        raw = await create(**OPENAI_CHAT, stream=True)
        assert instrumented.finished() == []
        _ = [chunk async for chunk in raw.parse()]
        # Broken out of inside ``async with``.
        raw = await create(**OPENAI_CHAT, stream=True)
        async with raw.parse() as stream:
            async for _chunk in stream:
                break
        # with_streaming_response: consumed, then left half-read.
        async with client.chat.completions.with_streaming_response.create(
            **OPENAI_CHAT, stream=True
        ) as response:
            _ = [chunk async for chunk in await response.parse()]
        async with client.chat.completions.with_streaming_response.create(
            **OPENAI_CHAT, stream=True
        ) as response:
            stream = await response.parse()
            await stream.__anext__()

    outcomes = [dict(s.attributes or {})["agentwatch.stream.outcome"] for s in instrumented.finished()]
    assert outcomes == ["completed", "closed", "completed", "closed"]


@pytest.mark.anyio
async def test_async_anthropic_raw_responses(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("x", output_tokens=4), Reply.text("y z", output_tokens=5))
    async with anthropic.AsyncAnthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        raw = await client.messages.with_raw_response.create(**ANTHROPIC_CHAT)
        parsed = raw.parse()
        message = await parsed if asyncio.iscoroutine(parsed) else parsed
        raw = await client.messages.with_raw_response.create(**ANTHROPIC_CHAT, stream=True)
        stream = raw.parse()
        stream = await stream if asyncio.iscoroutine(stream) else stream
        _ = [event async for event in stream]

    plain, streamed = (dict(s.attributes or {}) for s in instrumented.finished())
    assert plain["gen_ai.response.id"] == message.id
    assert plain["gen_ai.usage.output_tokens"] == 4
    assert streamed["gen_ai.usage.output_tokens"] == 5
    assert streamed["agentwatch.stream.outcome"] == "completed"


# -- anthropic's own tracing ------------------------------------------------------------------------

native_only = pytest.mark.skipif(
    not ANTHROPIC_NATIVE_TRACING, reason="this anthropic version has no tracing of its own"
)


@native_only
def test_native_tracing_raw_responses_get_one_enriched_span_each(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(*(Reply.text("hi", output_tokens=n) for n in (1, 2, 3, 4)))
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url,
        api_key=ANTHROPIC_KEY,
        max_retries=0,
        open_telemetry={"tracer_provider": instrumented.tracer_provider},
    ) as client:
        client.messages.with_raw_response.create(**ANTHROPIC_CHAT).parse()
        for _ in client.messages.with_raw_response.create(**ANTHROPIC_CHAT, stream=True).parse():
            pass
        with client.messages.with_streaming_response.create(**ANTHROPIC_CHAT) as response:
            response.parse()
        with client.messages.with_streaming_response.create(**ANTHROPIC_CHAT, stream=True) as response:
            for _ in response.parse():
                pass

    spans = instrumented.finished()
    assert [dict(s.attributes or {})["gen_ai.usage.output_tokens"] for s in spans] == [1, 2, 3, 4]
    for span in spans:
        assert span.name == f"chat {ANTHROPIC_MODEL}"
        assert dict(span.attributes or {})["gen_ai.usage.cost.amount"] > 0
    scopes = [s.instrumentation_scope.name if s.instrumentation_scope else "" for s in spans]
    # The SDK ends the span of an unread body when the caller reads it, before the completion can
    # be read from it: agentwatch keeps that one call's span itself (and stops the SDK's).
    assert [scope.startswith("com.anthropic") for scope in scopes] == [True, True, False, True]
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.count == 4
