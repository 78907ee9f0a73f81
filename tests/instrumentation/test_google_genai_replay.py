"""Real Gemini API and Vertex AI responses (``tests/fixtures/replay/gemini``, sources in its
SOURCES.md) replayed through the fake server: the same call bare and instrumented gives identical
results, exactly one span, and the usage the conventions ask for."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import pytest
from google import genai

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import make_signals

FIXTURES = Path(__file__).parent.parent / "fixtures" / "replay" / "gemini"
KEY = "AIzaSyTESTKEYgemini0123456789abcdefXYZ"


@dataclass(frozen=True)
class Case:
    fixture: str
    model: str
    expected: dict[str, Any]  # span attributes, beyond the request's
    vertex: bool = False


CASES = [
    Case(
        "generate_thinking.json",
        "gemini-2.5-flash",
        {
            "gen_ai.response.id": "Bho4aenTIZKq4-EPkd-w8QU",
            "gen_ai.response.model": "gemini-2.5-flash",
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.usage.input_tokens": 5,
            # 711 candidate tokens + 1096 thoughts: billed as output, as the conventions count it.
            "gen_ai.usage.output_tokens": 1807,
            "gen_ai.usage.reasoning.output_tokens": 1096,
        },
    ),
    Case(
        "generate_function_call.json",
        "gemini-2.0-flash",
        {
            "gen_ai.response.id": "LlteaIDvD9m7nvgPz5Sb0Aw",
            "gen_ai.response.model": "gemini-2.0-flash",
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.usage.input_tokens": 33,
            "gen_ai.usage.output_tokens": 5,
        },
    ),
    Case(
        "generate_tool_use_prompt.json",
        "gemini-2.5-flash",
        {
            "gen_ai.response.id": "qgqkaI-iDLrTjMcP0bP24A4",
            "gen_ai.response.model": "gemini-2.5-flash",
            "gen_ai.response.finish_reasons": ("stop",),
            # 32 prompt tokens + 2395 of fetched pages fed back to the model (tool-use prompt).
            "gen_ai.usage.input_tokens": 2427,
            "gen_ai.usage.output_tokens": 88,
            "gen_ai.usage.reasoning.output_tokens": 47,
        },
    ),
    Case(
        "generate_cached_video.json",
        "gemini-2.5-flash",
        {
            "gen_ai.response.model": "gemini-2.5-flash",
            "gen_ai.response.finish_reasons": ("stop",),
            # The prompt count already includes the 17379 cached tokens: not added twice.
            "gen_ai.usage.input_tokens": 17713,
            "gen_ai.usage.cache_read.input_tokens": 17379,
            "gen_ai.usage.output_tokens": 889,
            "gen_ai.usage.reasoning.output_tokens": 821,
        },
    ),
    Case(
        "vertex_generate.json",
        "gemini-2.0-flash",
        {
            "gen_ai.response.id": "1VpeaKq4CfH_2PgPh_z--AY",
            "gen_ai.response.model": "gemini-2.0-flash",
            "gen_ai.response.finish_reasons": ("stop",),
            "gen_ai.usage.input_tokens": 13,
            "gen_ai.usage.output_tokens": 8,
        },
        vertex=True,
    ),
    Case(
        "stream_text.sse",
        "gemini-2.0-flash-exp",
        {
            "gen_ai.response.id": "w1peaMz6INOvnvgPgYfPiQY",
            "gen_ai.response.model": "gemini-2.0-flash-exp",
            "gen_ai.response.finish_reasons": ("stop",),
            # The last chunk's usage is the call's (the prompt count even changes on the way).
            "gen_ai.usage.input_tokens": 13,
            "gen_ai.usage.output_tokens": 8,
            "agentwatch.stream.outcome": "completed",
        },
    ),
    Case(
        "stream_thinking.sse",
        "gemini-2.5-pro",
        {
            "gen_ai.response.model": "gemini-2.5-pro",
            "gen_ai.response.finish_reasons": ("stop",),
            "agentwatch.stream.outcome": "completed",
        },
    ),
]


def _reply(case: Case) -> Reply:
    raw = (FIXTURES / case.fixture).read_bytes()
    if case.fixture.endswith(".sse"):
        return Reply.frames([raw], content_type="text/event-stream")
    return Reply.json(__import__("json").loads(raw))


def bare_id(result: Any) -> Any:
    first = result[0] if isinstance(result, list) else result
    return first[1].get("response_id")


def _normalise(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return (type(value), value.model_dump(exclude={"sdk_http_response"}))
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _call(case: Case) -> Any:
    with FakeLLMServer() as server:
        server.enqueue(_reply(case))
        if case.vertex:
            from google.oauth2.credentials import Credentials

            gemini = genai.Client(
                vertexai=True,
                project="demo-project",
                location="global",
                credentials=Credentials(token="ya29.TESTTOKENvertex0123456789"),
                http_options={"base_url": server.url},
            )
        else:
            gemini = genai.Client(api_key=KEY, http_options={"base_url": server.url})
        if case.fixture.endswith(".sse"):
            return _normalise(list(gemini.models.generate_content_stream(model=case.model, contents="Hi")))
        return _normalise(gemini.models.generate_content(model=case.model, contents="Hi"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.fixture)
def test_replayed_response(case: Case) -> None:
    bare = _call(case)
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        instrumented = _call(case)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        gc.collect()
    assert instrumented == bare
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == ("gcp.vertex_ai" if case.vertex else "gcp.gemini")
    expected = dict(case.expected)
    if bare_id(bare) is None:  # older SDKs do not read responseId
        expected.pop("gen_ai.response.id", None)
    assert {k: attrs.get(k) for k in expected} == expected
    if "gen_ai.usage.input_tokens" in case.expected:
        assert attrs["gen_ai.usage.cost.currency"] == "USD" and attrs["gen_ai.usage.cost.amount"] > 0


def test_a_streamed_thinking_response_counts_its_thoughts() -> None:
    """The stream's usage grows chunk by chunk; the span has the final count, thoughts in the output."""
    import json

    chunks = [
        json.loads(line[len("data: ") :])
        for line in (FIXTURES / "stream_thinking.sse").read_text().splitlines()
        if line.startswith("data: ")
    ]
    final = chunks[-1]["usageMetadata"]
    (case,) = [c for c in CASES if c.fixture == "stream_thinking.sse"]
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        _call(case)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    attrs = dict(signals.only_span().attributes or {})
    assert attrs["gen_ai.usage.input_tokens"] == final["promptTokenCount"]
    assert attrs["gen_ai.usage.output_tokens"] == final["candidatesTokenCount"] + final["thoughtsTokenCount"]
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == final["thoughtsTokenCount"]
