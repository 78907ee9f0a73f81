"""Bedrock streams (ConverseStream, InvokeModelWithResponseStream): every exit path ends the span once.

botocore's ``EventStream`` is an iterable: each ``for`` loop gets a new generator over one shared
source of events. The caller must get exactly the events it gets without agentwatch, and the span
must end however the stream ends: read to the end, ``close()``, an exception event mid-stream, a
connection cut, or the stream dropped (garbage-collected) after a ``break``.
"""

from __future__ import annotations

import gc
import json
from contextlib import closing
from typing import Any

import pytest
from botocore.eventstream import EventStream
from botocore.exceptions import EventStreamError
from opentelemetry.trace import StatusCode

from _bedrock import CLAUDE, LLAMA, NOVA, converse_user, has_member
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._fakellm._bedrock import EVENT_STREAM_CONTENT_TYPE, event_message, exception_message
from agentwatch._telemetry._errors import error_type
from agentwatch.resilience import ErrorCategory, default_classifier
from support import Signals


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def converse_stream(client: Any, model: str = NOVA) -> Any:
    return client.converse_stream(modelId=model, messages=converse_user())["stream"]


def test_a_stream_read_to_the_end(instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    fake_llm.enqueue(Reply.tool_calls([("search", {"q": "otel"})], content="Looking", cached_tokens=4))
    stream = converse_stream(bedrock)
    assert isinstance(stream, EventStream)  # a transparent proxy
    events = list(stream)

    assert next(next(iter(e)) for e in events) == "messageStart"
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.UNSET
    a = attrs(span)
    assert a["agentwatch.stream.outcome"] == "completed"
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.finish_reasons"] == ("tool_use",)
    # The usage of the metadata event, which the peers' stream wrappers miss.
    if has_member("TokenUsage", "cacheReadInputTokens"):
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (12, 7)
        assert a["gen_ai.usage.cache_read.input_tokens"] == 4
    else:  # botocore before prompt caching drops the cache reads: only the fresh input is known
        assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (8, 7)
    assert a["gen_ai.response.time_to_first_chunk"] > 0
    assert a["aws.request_id"] == "req_fake1"
    (first_chunk,) = instrumented.points("gen_ai.client.operation.time_to_first_chunk")
    assert first_chunk.count == 1
    (per_chunk,) = instrumented.points("gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk.count == len(events) - 1


@pytest.mark.parametrize(
    ("model", "finish"),
    [(CLAUDE, ("end_turn",)), (NOVA, ("end_turn",)), (LLAMA, ("stop",))],
)
def test_invoke_model_streams_of_each_family_carry_their_usage(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any, model: str, finish: tuple[str, ...]
) -> None:
    fake_llm.enqueue(Reply.text("one two three", input_tokens=40, output_tokens=3, cached_tokens=10))
    body = json.dumps({"prompt": "x", "max_gen_len": 5, "messages": [{"role": "user", "content": "x"}]})
    response = bedrock.invoke_model_with_response_stream(modelId=model, body=body)
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    assert "amazon-bedrock-invocationMetrics" in chunks[-1]

    a = attrs(instrumented.only_span())
    assert a["agentwatch.stream.outcome"] == "completed"
    assert a["gen_ai.response.finish_reasons"] == finish
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (40, 3)
    if model != LLAMA:  # Llama's chunks count the prompt as one number, cached or not
        assert a["gen_ai.usage.cache_read.input_tokens"] == 10


def test_close_ends_the_span(instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    stream = converse_stream(bedrock)
    for _event in stream:
        break
    assert instrumented.finished() == []  # a break alone may be followed by more reading
    stream.close()
    assert attrs(instrumented.only_span())["agentwatch.stream.outcome"] == "closed"


def test_break_then_drop_ends_the_span_at_its_last_event(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    fake_llm.enqueue(Reply.text("one two three four", chunk_delay=0.05))
    response = bedrock.converse_stream(modelId=NOVA, messages=converse_user())
    for _event in response["stream"]:
        break
    response["stream"]._self_call  # noqa: B018 - still open until the stream is dropped
    assert instrumented.finished() == []
    raw = response["stream"].__wrapped__
    del response, _event
    gc.collect()
    span = instrumented.only_span()
    assert attrs(span)["agentwatch.stream.outcome"] == "abandoned"
    assert span.status.status_code is StatusCode.UNSET
    raw.close()


def test_a_later_loop_over_the_same_stream_is_the_same_call(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    fake_llm.enqueue(Reply.text("one two three"))
    stream = converse_stream(bedrock)
    first = next(iter(stream))
    rest = list(stream)
    assert "messageStart" in first and "metadata" in rest[-1]
    a = attrs(instrumented.only_span())
    assert a["agentwatch.stream.outcome"] == "completed"
    assert a["gen_ai.usage.output_tokens"] == 7


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (exception_message("throttlingException", "Too many tokens, please wait"), "ThrottlingException"),
        (exception_message("modelStreamErrorException", "The model stopped"), "ModelStreamErrorException"),
        (exception_message("internalServerException", "Oops"), "InternalServerException"),
    ],
)
def test_an_exception_event_mid_stream(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any, frame: bytes, code: str
) -> None:
    frames = [
        event_message("messageStart", {"role": "assistant"}),
        event_message("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        frame,
    ]
    fake_llm.enqueue(Reply.frames(frames, content_type=EVENT_STREAM_CONTENT_TYPE))
    received: list[Any] = []
    stream = converse_stream(bedrock)
    with closing(stream), pytest.raises(EventStreamError) as caught:
        for event in stream:
            received.append(event)

    assert len(received) == 2
    assert caught.value.response["Error"]["Code"] == code[0].lower() + code[1:]
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    # No HTTP status mid-stream; the code is error.type's, so not repeated.
    assert span.status.description == f"botocore.{code}"
    assert attrs(span)["error.type"] == f"botocore.{code}"
    assert attrs(span)["agentwatch.stream.outcome"] == "error"
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == f"botocore.{code}"
    # Classified by its code although an exception event carries no HTTP status.
    expected = ErrorCategory.RATE_LIMIT if code == "ThrottlingException" else ErrorCategory.DEPENDENCY
    assert default_classifier(caught.value).category is expected


def test_the_scripted_stream_error_of_the_fake_server(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    fake_llm.enqueue(Reply.text("one two three", error_after_chunks=1))
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []})
    response = bedrock.invoke_model_with_response_stream(modelId=CLAUDE, body=body)
    with closing(response["body"]), pytest.raises(EventStreamError):
        list(response["body"])
    assert attrs(instrumented.only_span())["error.type"] == "botocore.ModelStreamErrorException"


def test_a_connection_cut_mid_stream(instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    fake_llm.enqueue(Reply.text("one two three", disconnect_after_chunks=1))
    stream = converse_stream(bedrock)
    with closing(stream), pytest.raises(Exception) as caught:
        list(stream)
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    # botocore lets urllib3's ProtocolError through from a stream; its class names it.
    assert attrs(span)["error.type"] == error_type(caught.value) == "urllib3.ProtocolError"
    assert attrs(span)["agentwatch.stream.outcome"] == "error"


def test_an_exception_in_the_callers_loop(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    stream = converse_stream(bedrock)
    with pytest.raises(KeyError), closing(stream):
        for event in stream:
            event["no such key"]
    # The caller's own error is not the call's: the stream was closed, not failed.
    span = instrumented.only_span()
    assert attrs(span)["agentwatch.stream.outcome"] == "closed"
    assert span.status.status_code is StatusCode.UNSET
