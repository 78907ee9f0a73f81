"""A patched call returns exactly what the unpatched call returns and raises exactly the same.

Each scenario runs twice against a fresh fake server with the same script (ids are deterministic
per server): once bare, once instrumented. Results are compared by class and full content;
streams by every chunk; errors by class and message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pydantic
import pytest

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    HAS_CHAT_PARSE,
    HAS_RESPONSES,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    make_signals,
    parse_api,
    user,
)


class Answer(pydantic.BaseModel):
    city: str


def _normalise(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return (value.__class__, _normalise(value.model_dump(warnings=False)))
    if isinstance(value, dict):
        return {
            k: _normalise(v) for k, v in value.items() if k not in ("created", "created_at", "completed_at")
        }
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


@dataclass(frozen=True)
class Scenario:
    name: str
    provider: str
    replies: tuple[Reply, ...]
    call: Callable[[Any], Any]
    timeout: float | None = None


def _consume(stream: Any) -> Any:
    """A stream's class, then every chunk it yields (and how iteration ended)."""
    chunks: list[Any] = []
    try:
        for chunk in stream:
            chunks.append(_normalise(chunk))
    except Exception as exc:
        return (stream.__class__, chunks, type(exc), str(exc))
    return (stream.__class__, chunks)


def _helper(client: anthropic.Anthropic) -> Any:
    with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()) as stream:
        text = list(stream.text_stream)
        return (text, _normalise(stream.get_final_message()))


OAI = "openai"
ANT = "anthropic"
SCENARIOS = [
    Scenario(
        "chat",
        OAI,
        (Reply.text("hi"),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user()),
    ),
    Scenario(
        "chat tool calls",
        OAI,
        (Reply.tool_calls([("search", {"q": "otel"})]),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user(), tools=[]),
    ),
    Scenario(
        "chat stream",
        OAI,
        (Reply.text("a b c"),),
        lambda c: _consume(c.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)),
    ),
    Scenario(
        "chat stream usage",
        OAI,
        (Reply.tool_calls([("search", {"q": "x"})]),),
        lambda c: _consume(
            c.chat.completions.create(
                model=OPENAI_MODEL, messages=user(), stream=True, stream_options={"include_usage": True}
            )
        ),
    ),
    Scenario(
        "parse",
        OAI,
        (Reply.text('{"city": "Oslo"}'),),
        lambda c: parse_api(c).parse(model=OPENAI_MODEL, messages=user(), response_format=Answer),
    ),
    Scenario(
        "responses", OAI, (Reply.text("r"),), lambda c: c.responses.create(model=OPENAI_MODEL, input="x")
    ),
    Scenario(
        "responses stream",
        OAI,
        (Reply.text("r s t"),),
        lambda c: _consume(c.responses.create(model=OPENAI_MODEL, input="x", stream=True)),
    ),
    Scenario(
        "embeddings", OAI, (), lambda c: c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    ),
    Scenario(
        "chat 429",
        OAI,
        (Reply.error(429, headers={"retry-after": "7"}),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user()),
    ),
    Scenario(
        "chat 500",
        OAI,
        (Reply.error(500),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user()),
    ),
    Scenario(
        "chat timeout",
        OAI,
        (Reply.hang(3),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user()),
        0.3,
    ),
    Scenario(
        "chat reset",
        OAI,
        (Reply.reset(),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user()),
    ),
    Scenario(
        "chat malformed",
        OAI,
        (Reply.malformed(),),
        lambda c: c.chat.completions.create(model=OPENAI_MODEL, messages=user()),
    ),
    Scenario(
        "chat stream error",
        OAI,
        (Reply.text("a b c d", error_after_chunks=2),),
        lambda c: _consume(c.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=True)),
    ),
    Scenario(
        "messages",
        ANT,
        (Reply.text("hi"),),
        lambda c: c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()),
    ),
    Scenario(
        "messages tool use",
        ANT,
        (Reply.tool_calls([("search", {"q": "otel"})]),),
        lambda c: c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()),
    ),
    Scenario(
        "messages stream",
        ANT,
        (Reply.text("a b c"),),
        lambda c: _consume(
            c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True)
        ),
    ),
    Scenario("messages helper", ANT, (Reply.tool_calls([("f", {"x": 1})], content="thinking"),), _helper),
    Scenario(
        "messages 529",
        ANT,
        (Reply.error(529, error_type="overloaded_error"),),
        lambda c: c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()),
    ),
    Scenario(
        "messages 429",
        ANT,
        (Reply.error(429, headers={"retry-after": "2"}),),
        lambda c: c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()),
    ),
    Scenario(
        "messages malformed",
        ANT,
        (Reply.malformed(),),
        lambda c: c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()),
    ),
    Scenario(
        "messages stream error",
        ANT,
        (Reply.text("a b c d", error_after_chunks=2),),
        lambda c: _consume(
            c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=True)
        ),
    ),
    Scenario(
        "messages timeout",
        ANT,
        (Reply.hang(3),),
        lambda c: c.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user()),
        0.3,
    ),
]


def _run(scenario: Scenario) -> tuple[Any, ...]:
    with FakeLLMServer() as server:
        server.enqueue(*scenario.replies)
        client: Any
        extra: dict[str, Any] = {} if scenario.timeout is None else {"timeout": scenario.timeout}
        if scenario.provider == OAI:
            client = openai.OpenAI(
                base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0, **extra
            )
        else:
            client = anthropic.Anthropic(
                base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **extra, **NO_NATIVE
            )
        with client:
            try:
                value = scenario.call(client)
            except Exception as exc:
                return ("raised", type(exc), str(exc))
        return ("returned", _normalise(value))


@pytest.fixture
def instrumentation() -> Iterator[Callable[[bool], None]]:
    signals = make_signals()

    def switch(on: bool) -> None:
        if on:
            agentwatch.instrument(**signals.providers, configure_sdk=False)
        else:
            agentwatch.uninstrument()

    yield switch
    agentwatch.uninstrument()
    set_default_telemetry()


_UNAVAILABLE = set() if HAS_CHAT_PARSE else {"parse"}
if not HAS_RESPONSES:
    _UNAVAILABLE |= {"responses", "responses stream"}
SCENARIOS = [s for s in SCENARIOS if s.name not in _UNAVAILABLE]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_same_result_with_and_without_instrumentation(
    scenario: Scenario, instrumentation: Callable[[bool], None]
) -> None:
    bare = _run(scenario)
    instrumentation(True)
    instrumented = _run(scenario)
    assert instrumented == bare


def test_scenarios_cover_results_errors_and_streams() -> None:
    """Guard against the matrix silently losing its failure cases."""
    outcomes = [
        _run(s)[0]
        for s in SCENARIOS
        if "error" in s.name or s.name.endswith(("429", "500", "529", "timeout", "reset", "malformed"))
    ]
    assert outcomes.count("raised") >= 9
