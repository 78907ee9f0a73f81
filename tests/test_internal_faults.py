"""A fault inside agentwatch is logged once and swallowed; the application sees nothing."""

from __future__ import annotations

import json
import logging

import openai
import pytest
from opentelemetry.sdk.trace import SpanProcessor

import agentwatch
from agentwatch import _internal
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import OPENAI_MODEL, Signals, user

# The SDK builds responses without validating them, so these reach the application as they
# are, with or without agentwatch; agentwatch's own parser trips on them.
WEIRD_COMPLETION = {"id": "x", "object": "chat.completion", "model": OPENAI_MODEL, "created": 1, "choices": 5}


def _weird_stream() -> Reply:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "model": OPENAI_MODEL,
        "created": 1,
        "choices": [
            {"index": "a", "delta": {"content": "x"}, "finish_reason": "stop"},
            {"index": 0, "delta": {"content": "y"}, "finish_reason": "stop"},
        ],
    }
    return Reply.sse([(None, json.dumps(chunk)), (None, json.dumps(chunk)), (None, "[DONE]")])


@pytest.fixture(autouse=True)
def _fresh_fault_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_internal, "_reported", set())


def test_parser_fault_is_logged_once_and_swallowed(
    instrumented: Signals,
    openai_client: openai.OpenAI,
    fake_llm: FakeLLMServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_llm.enqueue(
        Reply.json(WEIRD_COMPLETION), Reply.json(WEIRD_COMPLETION), _weird_stream(), _weird_stream()
    )
    with caplog.at_level(logging.DEBUG, logger="agentwatch"):
        first = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        second = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        chunks = [
            list(openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True))
            for _ in range(2)
        ]

    assert first.choices == 5 and second.choices == 5
    assert [len(c) for c in chunks] == [2, 2]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "agentwatch"]
    assert [r.getMessage().split(" in ")[1].split(";")[0] for r in warnings] == [
        "reading a chat response",
        "reading a stream chunk",
    ]
    # The stack of the fault, its class, never its message (capture is off).
    assert all("Traceback (most recent call last)" in r.getMessage() for r in warnings)
    assert all("(message withheld: content capture is off)" in r.getMessage() for r in warnings)
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and "internal error" in r.getMessage()]
    assert len(debug) >= 2
    # Every call still has its span, ended.
    assert len(instrumented.finished()) == 4


def test_a_fault_reading_request_content_still_ends_the_span(
    signals: Signals, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The SDK sends a malformed message as it is; agentwatch's content reader trips on it.
    fake_llm.enqueue(Reply.text("ok"))
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_ONLY")
    try:
        with (
            openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0) as client,
            caplog.at_level(logging.WARNING, logger="agentwatch"),
        ):
            result = client.chat.completions.create(
                model=OPENAI_MODEL,
                messages=[{"role": "assistant", "tool_calls": 5}],  # type: ignore[list-item]
            )
    finally:
        agentwatch.uninstrument()

    assert result.choices[0].message.content == "ok"
    assert fake_llm.requests[0].json["messages"] == [{"role": "assistant", "tool_calls": 5}]
    (span,) = signals.finished()
    assert dict(span.attributes or {})["gen_ai.response.id"]
    assert [p.count for p in signals.points("gen_ai.client.operation.duration")] == [1]
    assert any("reading chat request content" in r.getMessage() for r in caplog.records)


class ExplodingProcessor(SpanProcessor):
    def on_start(self, span, parent_context=None):  # type: ignore[no-untyped-def]
        if span.name.startswith("chat") and span.attributes.get("gen_ai.request.seed") == 1:
            raise RuntimeError("processor on_start failed")

    def on_end(self, span):  # type: ignore[no-untyped-def]
        raise RuntimeError("processor on_end failed")


def test_a_failing_span_processor_does_not_reach_the_app(
    signals: Signals, openai_client: openai.OpenAI
) -> None:
    signals.tracer_provider.add_span_processor(ExplodingProcessor())
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        started = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), seed=1)
        ended = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), seed=2)
        streamed = list(
            openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)
        )
    finally:
        agentwatch.uninstrument()
    assert started.choices[0].message.content and ended.choices[0].message.content and streamed
    # Metrics are recorded before the span is ended, so the failing processor loses no numbers.
    (duration,) = signals.points("gen_ai.client.operation.duration")
    assert duration.count == 3  # the call whose span could not start is still measured


@pytest.mark.parametrize("capture", [None, "SPAN_ONLY"])
def test_an_internal_error_report_withholds_the_faults_message_unless_capture_is_on(
    signals: Signals, caplog: pytest.LogCaptureFixture, capture: str | None
) -> None:
    """A fault reading a response can quote the response: with capture off the report has the
    exception's class and stack, not its text."""
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content=capture)
    try:
        with caplog.at_level(logging.DEBUG, logger="agentwatch"):
            response_text = "PROMPT-QUOTED-" + "IN-A-FAULT"  # not in the source lines of the stack
            try:
                int(response_text)
            except ValueError:
                _internal.report_internal_error("a test site")
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    (record,) = [r for r in caplog.records if r.name == "agentwatch"]
    logged = caplog.text
    assert "builtins.ValueError" in logged or "ValueError" in logged
    assert ("PROMPT-QUOTED-IN-A-FAULT" in logged) is (capture is not None)
    assert record.levelno == logging.WARNING
