"""What the request carries reaches the span: ``extra_body`` parameters and tool definitions.

``gen_ai.tool.definitions`` (v1.41, Opt-In) is content: recorded only with content capture on,
as a JSON string on the span and structured on the details event, in the shape of the
conventions' tool-definitions schema (``type``, ``name``, ``description``, ``parameters``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import agentwatch
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    HAS_RESPONSES,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    needs_responses,
    user,
)

WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {"location": {"type": "string", "description": "The city and state"}},
    "required": ["location"],
}
WEATHER = {
    "type": "function",
    "name": "get_current_weather",
    "description": "Get the current weather in a given location",
    "parameters": WEATHER_PARAMETERS,
}


@pytest.fixture
def capture(signals: Signals, request: pytest.FixtureRequest) -> Iterator[Signals]:
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content=request.param)
    yield signals
    agentwatch.uninstrument()
    set_default_telemetry()


def _event_attributes(signals: Signals) -> dict[str, Any]:
    (log,) = signals.logs.get_finished_logs()
    record = getattr(log, "log_record", log)
    return dict(record.attributes or {})


# -- gen_ai.tool.definitions ---------------------------------------------------------------------

OPENAI_CHAT_TOOLS = [
    {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}},
    # Only a name: description and parameters are optional in the schema and stay absent.
    {"type": "function", "function": {"name": "get_time"}},
    {
        "type": "custom",
        "custom": {"name": "run_sql", "description": "Run one SQL query", "format": {"type": "text"}},
    },
]
OPENAI_CHAT_DEFINITIONS = [
    WEATHER,
    {"type": "function", "name": "get_time"},
    {"type": "custom", "name": "run_sql", "description": "Run one SQL query"},
]
RESPONSES_TOOLS = [
    {**WEATHER, "strict": False},
    {"type": "web_search"},
    {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.deepwiki.com/mcp"},
]
RESPONSES_DEFINITIONS = [
    WEATHER,
    {"type": "web_search", "name": "web_search"},
    {"type": "mcp", "name": "deepwiki"},
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_current_weather",
        "description": WEATHER["description"],
        "input_schema": WEATHER_PARAMETERS,
    },
    {"type": "custom", "name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
]
ANTHROPIC_DEFINITIONS = [
    WEATHER,
    {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
    {"type": "web_search_20250305", "name": "web_search"},
]


def _anthropic(fake_llm: FakeLLMServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    )


def _messages_create(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    # anthropic < 0.28 takes tools only in the body: extra_body sends the same request.
    if "tools" not in inspect.signature(client.messages.create).parameters:
        kwargs["extra_body"] = {"tools": kwargs.pop("tools")}
    return client.messages.create(**kwargs)


def _calls(fake_llm: FakeLLMServer) -> list[tuple[str, list[dict[str, Any]]]]:
    """Make one call per API with tools; return (span name, expected definitions) for each."""
    made = []
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=user(), tools=OPENAI_CHAT_TOOLS)  # type: ignore[arg-type]
        made.append(OPENAI_CHAT_DEFINITIONS)
        if HAS_RESPONSES:
            client.responses.create(model=OPENAI_MODEL, input="hi", tools=RESPONSES_TOOLS)  # type: ignore[arg-type]
            made.append(RESPONSES_DEFINITIONS)
    with _anthropic(fake_llm) as client:
        _messages_create(client, model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), tools=ANTHROPIC_TOOLS)
        made.append(ANTHROPIC_DEFINITIONS)
    return made


@pytest.mark.parametrize("capture", ["SPAN_ONLY"], indirect=True)
def test_tool_definitions_on_the_span_as_json(capture: Signals, fake_llm: FakeLLMServer) -> None:
    expected = _calls(fake_llm)
    spans = capture.finished()
    assert len(spans) == len(expected)
    for span, definitions in zip(spans, expected, strict=True):
        value = dict(span.attributes or {})["gen_ai.tool.definitions"]
        assert isinstance(value, str)
        assert json.loads(value) == definitions


@pytest.mark.parametrize("capture", ["EVENT_ONLY"], indirect=True)
def test_tool_definitions_structured_on_the_event(capture: Signals, fake_llm: FakeLLMServer) -> None:
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=user(), tools=OPENAI_CHAT_TOOLS)  # type: ignore[arg-type]

    event = _event_attributes(capture)
    assert _plain(event["gen_ai.tool.definitions"]) == OPENAI_CHAT_DEFINITIONS
    # The span is not where EVENT_ONLY puts content.
    assert "gen_ai.tool.definitions" not in (capture.only_span().attributes or {})


def _plain(value: Any) -> Any:
    """Log attribute values come back as tuples and mappings; compare them as JSON would."""
    return json.loads(json.dumps(value, default=dict))


@pytest.mark.usefixtures("instrumented")
def test_no_tool_definitions_without_content_capture(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    _calls(fake_llm)
    for span in instrumented.finished():
        assert "gen_ai.tool.definitions" not in (span.attributes or {})
        assert "get_current_weather" not in span.to_json()


def _beta_create_takes_tool_objects() -> bool:
    try:
        from anthropic.resources.beta.messages import messages
    except ImportError:
        return False
    return hasattr(messages, "_to_tool_params")


@pytest.mark.skipif(
    not _beta_create_takes_tool_objects(), reason="this anthropic version's beta create takes no tool objects"
)
@pytest.mark.parametrize("capture", ["SPAN_ONLY"], indirect=True)
def test_anthropic_beta_tool_objects(capture: Signals, fake_llm: FakeLLMServer) -> None:
    @anthropic.beta_tool  # type: ignore[attr-defined, misc]
    def get_time(timezone: str) -> str:
        """Get the time in a time zone.

        Args:
            timezone: An IANA time zone name.
        """
        return "12:00"

    with _anthropic(fake_llm) as client:
        client.beta.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), tools=[get_time])

    (definition,) = json.loads(dict(capture.only_span().attributes or {})["gen_ai.tool.definitions"])
    assert definition["type"] == "function"
    assert definition["name"] == "get_time"
    assert definition["description"] == "Get the time in a time zone."
    assert definition["parameters"]["properties"]["timezone"]["description"] == "An IANA time zone name."
    assert json.loads(fake_llm.requests[-1].body)["tools"][0]["input_schema"] == definition["parameters"]


# -- extra_body ----------------------------------------------------------------------------------


@pytest.mark.usefixtures("instrumented")
def test_openai_extra_body_parameters_are_on_the_span(
    openai_client: openai.OpenAI, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    # The shape OpenAI-compatible servers (vLLM, ...) take sampling parameters OpenAI lacks in.
    openai_client.chat.completions.create(
        model=OPENAI_MODEL,
        messages=user(),
        temperature=0.1,
        extra_body={"top_k": 40, "seed": 7, "service_tier": "flex", "temperature": 0.9, "n": 3},
    )

    sent = fake_llm.requests[-1].json
    assert sent is not None and (sent["top_k"], sent["temperature"]) == (40, 0.9)
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.request.top_k"] == 40.0 and isinstance(attrs["gen_ai.request.top_k"], float)
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["openai.request.service_tier"] == "flex"
    assert attrs["gen_ai.request.choice.count"] == 3
    # extra_body wins over the named argument in the request sent, and so on the span.
    assert attrs["gen_ai.request.temperature"] == 0.9


@pytest.mark.usefixtures("instrumented")
def test_openai_embeddings_extra_body(openai_client: openai.OpenAI, instrumented: Signals) -> None:
    openai_client.embeddings.create(
        model="text-embedding-3-small", input="x", extra_body={"dimensions": 8, "encoding_format": "float"}
    )
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.request.encoding_formats"] == ("float",)
    assert attrs["gen_ai.embeddings.dimension.count"] == 8


@pytest.mark.usefixtures("instrumented")
def test_anthropic_extra_body_parameters_are_on_the_span(
    anthropic_client: anthropic.Anthropic, instrumented: Signals
) -> None:
    # anthropic 2.x dropped the sampling parameters from messages.create: extra_body is the way.
    anthropic_client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=64,
        messages=user(),
        extra_body={"top_k": 5, "temperature": 0.2, "top_p": 0.7, "stop_sequences": ["###"]},
    )
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.request.top_k"] == 5.0
    assert attrs["gen_ai.request.temperature"] == 0.2
    assert attrs["gen_ai.request.top_p"] == 0.7
    assert attrs["gen_ai.request.stop_sequences"] == ("###",)


@needs_responses
@pytest.mark.usefixtures("instrumented")
def test_responses_extra_body(openai_client: openai.OpenAI, instrumented: Signals) -> None:
    openai_client.responses.create(
        model=OPENAI_MODEL, input="x", extra_body={"max_output_tokens": 99, "service_tier": "priority"}
    )
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.request.max_tokens"] == 99
    assert attrs["openai.request.service_tier"] == "priority"
