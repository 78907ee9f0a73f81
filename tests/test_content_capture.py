"""Content is opt-in; API keys never appear in any signal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    ANTHROPIC_NATIVE_TRACING,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    make_signals,
)

PROMPT = "my secret diagnosis is ZEBRA-7781"
SYSTEM = "system rules QUOKKA-1234"
COMPLETION = "the answer is PLATYPUS-5566"
TOOL_ARG = "WOMBAT-9911"


def _workload(server: FakeLLMServer) -> None:
    server.enqueue(
        Reply.text(COMPLETION),
        Reply.text(COMPLETION),
        Reply.tool_calls([("lookup", {"id": TOOL_ARG})]),
        Reply.text(COMPLETION),
        Reply.text(COMPLETION),
        Reply.error(401, message="Incorrect API key provided: sk-proj-TESTKE***********XYZ"),
    )
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": PROMPT},
    ]
    with openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=messages)
        list(client.chat.completions.create(model=OPENAI_MODEL, messages=messages, stream=True))
        client.chat.completions.create(model=OPENAI_MODEL, messages=messages)
        client.responses.create(model=OPENAI_MODEL, instructions=SYSTEM, input=PROMPT)
    with anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as ac:
        ac.messages.create(
            model=ANTHROPIC_MODEL,
            max_tokens=64,
            system=SYSTEM,
            messages=[{"role": "user", "content": PROMPT}],
        )
        with pytest.raises(anthropic.AuthenticationError):
            ac.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
            )


@pytest.fixture
def run_with(fake_llm: FakeLLMServer) -> Iterator[Any]:
    def run(capture: str | None) -> Signals:
        signals = make_signals()
        agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content=capture)
        try:
            _workload(fake_llm)
        finally:
            agentwatch.uninstrument()
        return signals

    yield run
    set_default_telemetry()


@pytest.mark.parametrize("capture", [None, "NO_CONTENT", "false"])
def test_no_content_anywhere_by_default(run_with: Any, capture: str | None) -> None:
    signals = run_with(capture)
    dump = signals.dump()
    assert len(signals.finished()) == 6
    for secret in (PROMPT, SYSTEM, COMPLETION, TOOL_ARG, "ZEBRA", "PLATYPUS", "QUOKKA", "WOMBAT"):
        assert secret not in dump
    assert signals.logs.get_finished_logs() == ()


@pytest.mark.parametrize("capture", [None, "SPAN_AND_EVENT"])
def test_api_keys_never_appear(run_with: Any, capture: str | None) -> None:
    dump = run_with(capture).dump()
    for fragment in (OPENAI_KEY, ANTHROPIC_KEY, OPENAI_KEY[8:20], ANTHROPIC_KEY[10:24], "TESTKE"):
        assert fragment not in dump


def test_span_only_records_messages_in_the_v141_schema(run_with: Any) -> None:
    signals = run_with("SPAN_ONLY")
    chat, streamed, tools, responses, messages, _failed = signals.finished()

    attrs = dict(chat.attributes or {})
    assert json.loads(str(attrs["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": SYSTEM}]},
        {"role": "user", "parts": [{"type": "text", "content": PROMPT}]},
    ]
    assert json.loads(str(attrs["gen_ai.output.messages"])) == [
        {"role": "assistant", "parts": [{"type": "text", "content": COMPLETION}], "finish_reason": "stop"}
    ]
    # Streams accumulate the same output message from their chunks.
    assert json.loads(str(dict(streamed.attributes or {})["gen_ai.output.messages"])) == json.loads(
        str(attrs["gen_ai.output.messages"])
    )
    (tool_output,) = json.loads(str(dict(tools.attributes or {})["gen_ai.output.messages"]))
    assert tool_output["finish_reason"] == "tool_call"
    (part,) = tool_output["parts"]
    assert part["type"] == "tool_call" and part["name"] == "lookup" and part["arguments"] == {"id": TOOL_ARG}
    assert json.loads(str(dict(responses.attributes or {})["gen_ai.system_instructions"])) == [
        {"type": "text", "content": SYSTEM}
    ]
    anth = dict(messages.attributes or {})
    assert json.loads(str(anth["gen_ai.system_instructions"])) == [{"type": "text", "content": SYSTEM}]
    assert json.loads(str(anth["gen_ai.output.messages"]))[0]["finish_reason"] == "stop"
    assert signals.logs.get_finished_logs() == ()


def test_event_only_emits_structured_details_events(run_with: Any) -> None:
    signals = run_with("EVENT_ONLY")
    for span in signals.finished():
        assert "gen_ai.input.messages" not in (span.attributes or {})
    events = [log.log_record for log in signals.logs.get_finished_logs()]
    assert {e.event_name for e in events} == {"gen_ai.client.inference.operation.details"}
    assert len(events) == 6
    first = events[0]
    attributes = dict(first.attributes or {})
    # Structured values on events, not JSON strings.
    assert attributes["gen_ai.input.messages"][1]["parts"][0]["content"] == PROMPT
    assert attributes["gen_ai.operation.name"] == "chat"
    span = signals.finished()[0]
    assert (
        span.context is not None
        and first.trace_id == span.context.trace_id
        and first.span_id == span.context.span_id
    )


def test_span_and_event(run_with: Any) -> None:
    signals = run_with("span_and_event")
    assert "gen_ai.output.messages" in (signals.finished()[0].attributes or {})
    # The event is the span's attributes plus the content (the conventions' definition).
    for span, log in zip(signals.finished(), signals.logs.get_finished_logs(), strict=True):
        event = dict(log.log_record.attributes or {})
        for key, value in (span.attributes or {}).items():
            if key not in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"):
                assert event[key] == value, key
    assert len(signals.logs.get_finished_logs()) == 6


def test_invalid_capture_value_is_refused(signals: Signals) -> None:
    before = vars(openai.resources.chat.completions.Completions)["create"]
    with pytest.raises(
        ValueError, match=r"capture_message_content.*NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT"
    ):
        agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="everything")
    # Refused before anything was patched (the wrapper keeps the name: compare the objects).
    assert vars(openai.resources.chat.completions.Completions)["create"] is before


@pytest.mark.skipif(not ANTHROPIC_NATIVE_TRACING, reason="this anthropic version has no tracing of its own")
def test_one_details_event_per_call_when_the_sdk_makes_the_span(fake_llm: FakeLLMServer) -> None:
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_AND_EVENT")
    try:
        with anthropic.Anthropic(
            base_url=fake_llm.anthropic_base_url,
            api_key=ANTHROPIC_KEY,
            max_retries=0,
            open_telemetry={"tracer_provider": signals.tracer_provider},
        ) as client:
            client.messages.create(
                model=ANTHROPIC_MODEL, max_tokens=16, messages=[{"role": "user", "content": PROMPT}]
            )
            for _ in client.messages.create(
                model=ANTHROPIC_MODEL,
                max_tokens=16,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            ):
                pass
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()

    spans = signals.finished()
    assert [
        s.instrumentation_scope.name.startswith("com.anthropic") for s in spans if s.instrumentation_scope
    ] == [
        True,
        True,
    ]
    events = [log.log_record for log in signals.logs.get_finished_logs()]
    assert [e.trace_id for e in events] == [s.context.trace_id for s in spans if s.context]
    for event in events:
        assert dict(event.attributes or {})["gen_ai.input.messages"][0]["parts"][0]["content"] == PROMPT
