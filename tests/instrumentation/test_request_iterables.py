"""Requests given as one-shot iterators reach the server unchanged, whatever agentwatch reads first.

Both SDKs accept any iterable of messages (and of content blocks, tool calls, system blocks).
Content capture reads the request before the SDK does, and a policy sends it again on a retry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import agentwatch
from agentwatch import Policy, Retry
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import reset_registry
from support import ANTHROPIC_KEY, ANTHROPIC_MODEL, NO_NATIVE, OPENAI_KEY, OPENAI_MODEL, Signals

OPENAI_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "look it up"},
    {
        "role": "assistant",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "found"},
]
ANTHROPIC_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": "look it up"}]},
]
SYSTEM_BLOCKS: list[dict[str, Any]] = [{"type": "text", "text": "be brief"}]


def _one_shot_openai() -> Iterator[dict[str, Any]]:
    for message in OPENAI_MESSAGES:
        if "tool_calls" in message:
            yield {**message, "tool_calls": iter(message["tool_calls"])}
        else:
            yield message


def _one_shot_anthropic() -> Iterator[dict[str, Any]]:
    for message in ANTHROPIC_MESSAGES:
        yield {**message, "content": iter(message["content"])}


@pytest.fixture
def instrument(signals: Signals) -> Iterator[Any]:
    reset_registry()

    def run(**options: Any) -> Signals:
        agentwatch.instrument(**signals.providers, configure_sdk=False, **options)
        return signals

    yield run
    agentwatch.uninstrument()
    set_default_telemetry()
    reset_registry()


def test_content_capture_leaves_the_sdk_the_whole_request(instrument: Any, fake_llm: FakeLLMServer) -> None:
    signals = instrument(capture_message_content="SPAN_ONLY")
    fake_llm.enqueue(Reply.text("ok"), Reply.text("ok"))
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=_one_shot_openai())
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as ac:
        ac.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=16, system=iter(SYSTEM_BLOCKS), messages=_one_shot_anthropic()
        )

    sent_openai, sent_anthropic = (r.json for r in fake_llm.requests)
    assert sent_openai["messages"] == OPENAI_MESSAGES
    assert sent_anthropic["messages"] == ANTHROPIC_MESSAGES
    assert sent_anthropic["system"] == SYSTEM_BLOCKS
    # ...and the span still got the content.
    chat, messages = signals.finished()
    recorded = json.loads(str(dict(chat.attributes or {})["gen_ai.input.messages"]))
    assert recorded[2]["parts"][0]["name"] == "lookup"
    recorded = json.loads(str(dict(messages.attributes or {})["gen_ai.input.messages"]))
    assert recorded[0]["parts"] == [{"type": "text", "content": "look it up"}]


def test_a_policy_retry_sends_the_same_request(instrument: Any, fake_llm: FakeLLMServer) -> None:
    instrument(llm_policies={"*": Policy(retry=Retry(attempts=2, backoff=0.0, max_delay=0.0))})
    fake_llm.enqueue(Reply.error(500), Reply.text("ok"), Reply.error(500), Reply.text("ok"))
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        result = client.chat.completions.create(model=OPENAI_MODEL, messages=_one_shot_openai())
    assert result.choices[0].message.content == "ok"
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as ac:
        ac.messages.create(model=ANTHROPIC_MODEL, max_tokens=16, messages=_one_shot_anthropic())

    first, second, third, fourth = (r.json for r in fake_llm.requests)
    assert first["messages"] == second["messages"] == OPENAI_MESSAGES
    assert third["messages"] == fourth["messages"] == ANTHROPIC_MESSAGES
