"""suppress_instrumentation switches everything off; a dropping sampler keeps the metrics."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import agentwatch
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from support import OPENAI_KEY, OPENAI_MODEL, Signals, make_signals, user


def test_suppressed_calls_make_no_telemetry(
    instrumented: Signals, openai_client: openai.OpenAI, fake_llm: FakeLLMServer
) -> None:
    with suppress_instrumentation():
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        list(openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True))
    assert instrumented.finished() == []
    assert instrumented.points("gen_ai.client.operation.duration") == []
    assert "traceparent" not in fake_llm.requests[0].headers


@pytest.fixture
def sampled_out() -> Iterator[Signals]:
    signals = make_signals(sampler=ALWAYS_OFF)
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    yield signals
    agentwatch.uninstrument()
    set_default_telemetry()


def test_sampled_out_spans_still_record_metrics(sampled_out: Signals, fake_llm: FakeLLMServer) -> None:
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        list(
            client.chat.completions.create(
                model=OPENAI_MODEL, messages=user(), stream=True, stream_options={"include_usage": True}
            )
        )

    assert sampled_out.finished() == []
    (duration,) = sampled_out.points("gen_ai.client.operation.duration")
    assert duration.count == 2
    assert {p.attributes["gen_ai.token.type"] for p in sampled_out.points("gen_ai.client.token.usage")} == {
        "input",
        "output",
    }
    assert sampled_out.points("gen_ai.client.operation.time_to_first_chunk")[0].count == 1
    assert sampled_out.points("gen_ai.client.operation.cost")[0].count == 2
    # A sampled-out span still propagates (with the sampled flag off) so downstream agrees.
    assert int(fake_llm.requests[0].headers["traceparent"].rsplit("-", 1)[1], 16) & 0x01 == 0


def test_sampled_out_calls_still_emit_details_events(fake_llm: FakeLLMServer) -> None:
    # Events are logs, with their own pipeline: trace sampling does not drop them.
    signals = make_signals(sampler=ALWAYS_OFF)
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="EVENT_ONLY")
    try:
        with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
            client.chat.completions.create(model=OPENAI_MODEL, messages=user("hello there"))
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()

    assert signals.finished() == []
    (log,) = signals.logs.get_finished_logs()
    attributes = dict(log.log_record.attributes or {})
    assert attributes["gen_ai.input.messages"][0]["parts"][0]["content"] == "hello there"
    assert attributes["gen_ai.output.messages"][0]["parts"][0]["type"] == "text"
