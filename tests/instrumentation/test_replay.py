"""Real provider traffic replayed: same results with and without agentwatch, one span, exact attributes.

Each case serves one recorded response (tests/fixtures/replay, see SOURCES.md there) to the real
SDK twice, bare and instrumented, and compares the results (or the exceptions) in full; then the
instrumented run's one span, attribute by attribute, and its duration metric. Arguments a given
SDK version does not take go through ``extra_body``, which puts them in the same request body,
so one expectation holds for every supported version; APIs a version lacks are skipped.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import anthropic
import openai
import pydantic
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from opentelemetry.trace import StatusCode

import agentwatch
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from replay import replay
from support import ANTHROPIC_KEY, HAS_CHAT_PARSE, HAS_RESPONSES, NO_NATIVE, OPENAI_KEY, Signals, parse_api

# Real traffic must not trip agentwatch's own fault handler anywhere.
pytestmark = pytest.mark.usefixtures("no_internal_faults")

Provider = Literal["openai", "anthropic"]


def has(module: str, path: str) -> bool:
    """Whether this SDK version has ``module.path`` (APIs come and go across versions)."""
    try:
        owner: Any = importlib.import_module(module)
    except ImportError:
        return False
    for name in path.split("."):
        owner = getattr(owner, name, None)
        if owner is None:
            return False
    return True


HAS_ANTHROPIC_PARSE = has("anthropic.resources.messages", "Messages.parse")
HAS_BETA_MESSAGES = has("anthropic.resources.beta.messages", "Messages.create")
HAS_BETA_PARSE = has("anthropic.resources.beta.messages", "Messages.parse")


def adapt(method: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs``, with the arguments this SDK version's ``method`` does not take moved to ``extra_body``."""
    accepted = inspect.signature(method).parameters
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in accepted}
    if extra:
        kwargs["extra_body"] = {**kwargs.get("extra_body", {}), **extra}
    return kwargs


def normalise(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return (value.__class__, normalise(value.model_dump(warnings=False)))
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalise(v) for v in value]
    return value


# -- requests, as recorded ------------------------------------------------------------------

SAY = [{"role": "user", "content": "Say this is a test"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. Boston, MA"}
            },
            "required": ["location"],
            "additionalProperties": False,
        },
    },
}
WEATHER_MESSAGES = [
    {"role": "system", "content": "You're a helpful assistant."},
    {"role": "user", "content": "What's the weather in Seattle and San Francisco today?"},
]
ANTHROPIC_TOOLS = [
    {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
    {
        "name": "get_time",
        "description": "Get the current time in a given time zone",
        "input_schema": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "description": "The IANA time zone name"}},
            "required": ["timezone"],
        },
    },
]
STRAWBERRY = [
    {"role": "user", "content": "How many times does the letter 'r' appear in the word strawberry?"}
]
THINKING = {"type": "enabled", "budget_tokens": 1024}


class Location(pydantic.BaseModel):
    city: str
    temperature: float
    units: Literal["c", "f"]


class OrderItem(pydantic.BaseModel):
    product_name: str
    price: float
    quantity: int


class User(pydantic.BaseModel):
    name: str
    age: int


# -- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    provider: Provider
    fixture: str
    method: str
    """The SDK method, from the client: ``chat.completions.create`` ..."""
    kwargs: dict[str, Any]
    attributes: dict[str, Any]
    """Every span attribute but server.*, cost and time to first chunk."""
    available: bool = True
    metric_extra: dict[str, Any] = field(default_factory=dict)
    """What the duration metric carries beyond the common attributes (v1.41 openai.md)."""


def _openai(model: str, **attrs: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": attrs.pop("operation", "chat"),
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        **attrs,
    }


def _anthropic(model: str, **attrs: Any) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": model,
        **attrs,
    }


def _usage(
    inp: int,
    out: int,
    *,
    cache_read: int | None = None,
    cache_creation: int | None = None,
    reasoning: int | None = None,
) -> dict[str, int]:
    usage = {"gen_ai.usage.input_tokens": inp, "gen_ai.usage.output_tokens": out}
    for key, value in (
        ("gen_ai.usage.cache_read.input_tokens", cache_read),
        ("gen_ai.usage.cache_creation.input_tokens", cache_creation),
        ("gen_ai.usage.reasoning.output_tokens", reasoning),
    ):
        if value is not None:
            usage[key] = value
    return usage


def _tier(tier: str | None = None, fingerprint: str | None = None) -> dict[str, str]:
    out = {}
    if tier is not None:
        out["openai.response.service_tier"] = tier
    if fingerprint is not None:
        out["openai.response.system_fingerprint"] = fingerprint
    return out


STREAM = {"gen_ai.request.stream": True, "agentwatch.stream.outcome": "completed"}

OPENAI_CASES = [
    Case(
        # The service tier and seed go in extra_body: the span reads them from there.
        "chat, parameters in extra_body",
        "openai",
        "chat_extra_params.json",
        "chat.completions.create",
        {
            "model": "gpt-4o-mini",
            "messages": SAY,
            "max_tokens": 50,
            "temperature": 0.5,
            "response_format": {"type": "text"},
            "extra_body": {"seed": 42, "service_tier": "default", "stream": False},
        },
        _openai(
            "gpt-4o-mini",
            **{
                "gen_ai.request.max_tokens": 50,
                "gen_ai.request.temperature": 0.5,
                "gen_ai.request.seed": 42,
                "gen_ai.output.type": "text",
                "openai.request.service_tier": "default",
                "gen_ai.response.id": "chatcmpl-AbMH70fQA9lMPIClvBPyBSjqJBm9F",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(12, 12, cache_read=0, reasoning=0),
                **_tier("default", "fp_0705bf87c0"),
            },
        ),
        metric_extra=_tier("default", "fp_0705bf87c0"),
    ),
    Case(
        "chat, two tool calls",
        "openai",
        "chat_tool_calls.json",
        "chat.completions.create",
        {
            "model": "gpt-4o-mini",
            "messages": WEATHER_MESSAGES,
            "tools": [WEATHER_TOOL],
            "tool_choice": "auto",
        },
        _openai(
            "gpt-4o-mini",
            **{
                "gen_ai.response.id": "chatcmpl-ASYMU9Ntix7ePttk0MSuerJstef6U",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("tool_calls",),
                **_usage(75, 51, cache_read=0, reasoning=0),
                **_tier(fingerprint="fp_0ba0d124f1"),
            },
        ),
        metric_extra=_tier(fingerprint="fp_0ba0d124f1"),
    ),
    Case(
        "chat stream, two tool calls",
        "openai",
        "chat_tool_calls_stream.sse",
        "chat.completions.create",
        {
            "model": "gpt-4o-mini",
            "messages": WEATHER_MESSAGES,
            "tools": [WEATHER_TOOL],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        _openai(
            "gpt-4o-mini",
            **STREAM,
            **{
                "gen_ai.response.id": "chatcmpl-ASYMbACebDoWcuraMEWQhU48q4dAp",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("tool_calls",),
                **_usage(75, 51, cache_read=0, reasoning=0),
                **_tier(fingerprint="fp_9b78b61c52"),
            },
        ),
        metric_extra=_tier(fingerprint="fp_9b78b61c52"),
    ),
    Case(
        "chat, n=2",
        "openai",
        "chat_n2.json",
        "chat.completions.create",
        {"model": "gpt-4o-mini", "messages": SAY, "n": 2, "stream": False},
        _openai(
            "gpt-4o-mini",
            **{
                "gen_ai.request.choice.count": 2,
                "gen_ai.response.id": "chatcmpl-ASYMUBq69UHDarAz2fsd0O50rv0r1",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("stop", "stop"),
                **_usage(12, 24, cache_read=0, reasoning=0),
                **_tier(fingerprint="fp_0ba0d124f1"),
            },
        ),
        metric_extra=_tier(fingerprint="fp_0ba0d124f1"),
    ),
    Case(
        "chat stream, n=2",
        "openai",
        "chat_n2_stream.sse",
        "chat.completions.create",
        {
            "model": "gpt-4o-mini",
            "messages": [{"role": "system", "content": "You're a helpful assistant."}, SAY[0]],
            "n": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        _openai(
            "gpt-4o-mini",
            **STREAM,
            **{
                "gen_ai.request.choice.count": 2,
                "gen_ai.response.id": "chatcmpl-ASYMaNc7XmbGRUNREnmvhyyISBHsv",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("stop", "stop"),
                **_usage(26, 104, cache_read=0, reasoning=0),
                **_tier(fingerprint="fp_0ba0d124f1"),
            },
        ),
        metric_extra=_tier(fingerprint="fp_0ba0d124f1"),
    ),
    Case(
        "chat stream",
        "openai",
        "chat_stream.sse",
        "chat.completions.create",
        {"model": "gpt-4", "messages": SAY, "stream": True, "stream_options": {"include_usage": True}},
        _openai(
            "gpt-4",
            **STREAM,
            **{
                "gen_ai.response.id": "chatcmpl-ASYMZ4oSykiIFK4lXLReDiKyAjsQl",
                "gen_ai.response.model": "gpt-4-0613",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(12, 5, cache_read=0, reasoning=0),
            },
        ),
    ),
    Case(
        "chat parse, structured output",
        "openai",
        "chat_structured.json",
        "chat.completions.parse",
        {
            "model": "gpt-4o-2024-08-06",
            "messages": [{"role": "user", "content": "What's the weather like in SF?"}],
            "response_format": Location,
        },
        _openai(
            "gpt-4o-2024-08-06",
            **{
                "gen_ai.output.type": "json",
                "gen_ai.response.id": "chatcmpl-ABfvbtVnTu5DeC4EFnRYj8mtfOM99",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(79, 14, reasoning=0),
                **_tier(fingerprint="fp_5050236cbd"),
            },
        ),
        available=HAS_CHAT_PARSE,
        metric_extra=_tier(fingerprint="fp_5050236cbd"),
    ),
    Case(
        "chat, cached prompt",
        "openai",
        "chat_cached.json",
        "chat.completions.create",
        {"model": "gpt-4o-mini", "messages": SAY},
        _openai(
            "gpt-4o-mini",
            **{
                "gen_ai.response.id": "chatcmpl-BNi420iFNtIOHzy8Gq2fVS5utTus7",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(1149, 353, cache_read=1024, reasoning=0),
                **_tier("default", "fp_0392822090"),
            },
        ),
        metric_extra=_tier("default", "fp_0392822090"),
    ),
    Case(
        "chat, 404 model not found",
        "openai",
        "chat_error_404.json",
        "chat.completions.create",
        {"model": "this-model-does-not-exist", "messages": SAY},
        _openai("this-model-does-not-exist", **{"error.type": "openai.NotFoundError"}),
        metric_extra={"error.type": "openai.NotFoundError"},
    ),
    Case(
        "responses, reasoning, cached input, web search",
        "openai",
        "responses_reasoning_cached.json",
        "responses.create",
        {
            "model": "gpt-5",
            "instructions": "You are a helpful assistant.",
            "input": [{"role": "user", "content": "What is the weather in San Francisco today?"}],
            "tools": [{"type": "web_search", "search_context_size": "medium"}],
            "include": ["reasoning.encrypted_content"],
        },
        _openai(
            "gpt-5",
            **{
                "gen_ai.response.id": "resp_028829e50fbcad090068c9c82e1e0081958ddc581008b39428",
                "gen_ai.response.model": "gpt-5-2025-08-07",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(9299, 577, cache_read=8448, reasoning=512),
                **_tier("default"),
            },
        ),
        available=HAS_RESPONSES,
        metric_extra=_tier("default"),
    ),
    Case(
        "responses, reasoning summary",
        "openai",
        "responses_reasoning_summary.json",
        "responses.create",
        {
            "model": "gpt-5-nano",
            "input": "Explain why the sky is blue",
            "reasoning": {"effort": "medium", "summary": "auto"},
        },
        _openai(
            "gpt-5-nano",
            **{
                "gen_ai.response.id": "resp_68b1b5d493e881a3bc414b08788a419d05d8b4c5de88d929",
                "gen_ai.response.model": "gpt-5-nano-2025-08-07",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(12, 1014, cache_read=0, reasoning=832),
                **_tier("default"),
            },
        ),
        available=HAS_RESPONSES,
        metric_extra=_tier("default"),
    ),
    Case(
        "responses, function call",
        "openai",
        "responses_function_call.json",
        "responses.create",
        {
            "model": "gpt-4o-mini",
            "input": "What's the weather in Seattle right now?",
            "tools": [{"type": "function", **WEATHER_TOOL["function"]}],
            "tool_choice": {"type": "function", "name": "get_current_weather"},
        },
        _openai(
            "gpt-4o-mini",
            **{
                "gen_ai.response.id": "resp_0bedf6e1ffba28050069e2f401ae1c8196be360fd5993c96de",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                # The Responses API has no finish reason: agentwatch derives the conventions' one.
                "gen_ai.response.finish_reasons": ("tool_call",),
                **_usage(72, 8, cache_read=0, reasoning=0),
                **_tier("default"),
            },
        ),
        available=HAS_RESPONSES,
        metric_extra=_tier("default"),
    ),
    Case(
        "responses stream",
        "openai",
        "responses_stream.sse",
        "responses.create",
        {
            "model": "gpt-4o-mini",
            "instructions": "You are a helpful assistant.",
            "input": "Say this is a test",
            "service_tier": "default",
            "stream": True,
        },
        _openai(
            "gpt-4o-mini",
            **STREAM,
            **{
                "openai.request.service_tier": "default",
                "gen_ai.response.id": "resp_0415a3de5d3015560069e2f3f4b3088192949253e91aff1eb3",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.response.finish_reasons": ("stop",),
                **_usage(22, 6, cache_read=0, reasoning=0),
                **_tier("default"),
            },
        ),
        available=HAS_RESPONSES,
        metric_extra=_tier("default"),
    ),
    Case(
        "responses, 400 model not found",
        "openai",
        "responses_error_400.json",
        "responses.create",
        {"model": "this-model-does-not-exist", "input": "Hello"},
        _openai("this-model-does-not-exist", **{"error.type": "openai.BadRequestError"}),
        available=HAS_RESPONSES,
        metric_extra={"error.type": "openai.BadRequestError"},
    ),
    Case(
        "embeddings, 512 dimensions",
        "openai",
        "embeddings_dimensions.json",
        "embeddings.create",
        {
            "model": "text-embedding-3-small",
            "input": "This is a test for embeddings with dimensions",
            "dimensions": 512,
        },
        _openai(
            "text-embedding-3-small",
            operation="embeddings",
            **{
                "gen_ai.embeddings.dimension.count": 512,
                "gen_ai.response.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 8,
            },
        ),
    ),
    Case(
        # A base64 vector is a string: no dimension count is made up from it.
        "embeddings, base64",
        "openai",
        "embeddings_base64.json",
        "embeddings.create",
        {
            "model": "text-embedding-3-small",
            "input": "This is a test for embeddings with encoding format",
            "encoding_format": "base64",
        },
        _openai(
            "text-embedding-3-small",
            operation="embeddings",
            **{
                "gen_ai.request.encoding_formats": ("base64",),
                "gen_ai.response.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 9,
            },
        ),
    ),
]

ANTHROPIC_CASES = [
    Case(
        "messages",
        "anthropic",
        "message_plain.json",
        "messages.create",
        {
            "model": "claude-3-opus-20240229",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Tell me a joke about OpenTelemetry"}],
        },
        _anthropic(
            "claude-3-opus-20240229",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_01TPXhkPo8jy6yQMrMhjpiAE",
                "gen_ai.response.model": "claude-3-opus-20240229",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(17, 220),
            },
        ),
    ),
    Case(
        "messages stream",
        "anthropic",
        "message_plain_stream.sse",
        "messages.create",
        {
            "model": "claude-3-haiku-20240307",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Tell me a joke about OpenTelemetry"}],
            "stream": True,
        },
        _anthropic(
            "claude-3-haiku-20240307",
            **STREAM,
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_01MXWxhWoPSgrYhjTuMDM6F1",
                "gen_ai.response.model": "claude-3-haiku-20240307",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(17, 171),
            },
        ),
    ),
    Case(
        "messages, two tool uses",
        "anthropic",
        "message_tool_use.json",
        "messages.create",
        {
            "model": "claude-3-5-sonnet-20240620",
            "max_tokens": 1024,
            "tools": ANTHROPIC_TOOLS,
            "messages": [{"role": "user", "content": "What is the weather and current time in New York?"}],
        },
        _anthropic(
            "claude-3-5-sonnet-20240620",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_01RBkXFe9TmDNNWThMz2HmGt",
                "gen_ai.response.model": "claude-3-5-sonnet-20240620",
                "gen_ai.response.finish_reasons": ("tool_use",),
                **_usage(514, 152),
            },
        ),
    ),
    Case(
        "messages stream, two tool uses",
        "anthropic",
        "message_tool_use_stream.sse",
        "messages.create",
        {
            "model": "claude-3-5-sonnet-20240620",
            "max_tokens": 1024,
            "tools": ANTHROPIC_TOOLS,
            "messages": [{"role": "user", "content": "What is the weather and current time in New York?"}],
            "stream": True,
        },
        _anthropic(
            "claude-3-5-sonnet-20240620",
            **STREAM,
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_0138UNF3YbNp49KkqZtUBWqz",
                "gen_ai.response.model": "claude-3-5-sonnet-20240620",
                "gen_ai.response.finish_reasons": ("tool_use",),
                **_usage(506, 153, cache_read=0, cache_creation=0),
            },
        ),
    ),
    Case(
        "messages, extended thinking",
        "anthropic",
        "message_thinking.json",
        "messages.create",
        {
            "model": "claude-3-7-sonnet-20250219",
            "max_tokens": 2048,
            "thinking": THINKING,
            "messages": STRAWBERRY,
        },
        _anthropic(
            "claude-3-7-sonnet-20250219",
            **{
                "gen_ai.request.max_tokens": 2048,
                "gen_ai.response.id": "msg_01Ayp2LhrapBJLPf22sskg4c",
                "gen_ai.response.model": "claude-3-7-sonnet-20250219",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(52, 215, cache_read=0, cache_creation=0),
            },
        ),
    ),
    Case(
        "messages stream, extended thinking",
        "anthropic",
        "message_thinking_stream.sse",
        "messages.create",
        {
            "model": "claude-3-7-sonnet-20250219",
            "max_tokens": 2048,
            "thinking": THINKING,
            "messages": STRAWBERRY,
            "stream": True,
        },
        _anthropic(
            "claude-3-7-sonnet-20250219",
            **STREAM,
            **{
                "gen_ai.request.max_tokens": 2048,
                "gen_ai.response.id": "msg_01SZKz6DEhWnfZcxPQDQz49Y",
                "gen_ai.response.model": "claude-3-7-sonnet-20250219",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(52, 216, cache_read=0, cache_creation=0),
            },
        ),
    ),
    Case(
        # semconv's input tokens include the cached ones, which Anthropic reports apart.
        "messages, prompt cache write",
        "anthropic",
        "message_cache_write.json",
        "messages.create",
        {"model": "claude-3-5-sonnet-20240620", "max_tokens": 1024, "messages": SAY},
        _anthropic(
            "claude-3-5-sonnet-20240620",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_01EF3r8zYyZntM4Sg9a5kc6k",
                "gen_ai.response.model": "claude-3-5-sonnet-20240620",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(4 + 1163, 187, cache_read=0, cache_creation=1163),
            },
        ),
    ),
    Case(
        "messages, prompt cache read",
        "anthropic",
        "message_cache_read.json",
        "messages.create",
        {"model": "claude-3-5-sonnet-20240620", "max_tokens": 1024, "messages": SAY},
        _anthropic(
            "claude-3-5-sonnet-20240620",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_01YGB3PuEANUSkLuzemhtNVF",
                "gen_ai.response.model": "claude-3-5-sonnet-20240620",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(4 + 1163, 202, cache_read=1163, cache_creation=0),
            },
        ),
    ),
    Case(
        "messages stream, prompt cache write",
        "anthropic",
        "message_cache_write_stream.sse",
        "messages.create",
        {"model": "claude-3-5-sonnet-20240620", "max_tokens": 1024, "messages": SAY, "stream": True},
        _anthropic(
            "claude-3-5-sonnet-20240620",
            **STREAM,
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_017FfRkh9PCC8YbjnhDMrPuK",
                "gen_ai.response.model": "claude-3-5-sonnet-20240620",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(4 + 1165, 201, cache_read=0, cache_creation=1165),
            },
        ),
    ),
    Case(
        "messages parse, structured output",
        "anthropic",
        "message_structured.json",
        "messages.parse",
        {
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Extract: I want to order 2 Green Tea at $5.50 each"}],
            "output_format": OrderItem,
            "max_tokens": 1024,
        },
        _anthropic(
            "claude-sonnet-4-5",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.output.type": "json",
                "gen_ai.response.id": "msg_01Egs18hRzhru3uGon3qesbA",
                "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(249, 26, cache_read=0, cache_creation=0),
            },
        ),
        available=HAS_ANTHROPIC_PARSE,
    ),
    Case(
        "beta messages parse, structured output",
        "anthropic",
        "beta_message_structured.json",
        "beta.messages.parse",
        {
            "model": "claude-sonnet-4-5",
            "messages": [
                {
                    "role": "user",
                    "content": "Extract the user's name and age from the following text:\n\n"
                    "My name is John Doe and I am 30 years old.",
                }
            ],
            "output_format": User,
            "max_tokens": 1024,
        },
        _anthropic(
            "claude-sonnet-4-5",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.output.type": "json",
                "gen_ai.response.id": "msg_01EojSKby3oqoP7mb4PHsMJ7",
                "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(222, 14, cache_read=0, cache_creation=0),
            },
        ),
        available=HAS_BETA_PARSE,
    ),
    Case(
        "beta messages stream, JSON schema output",
        "anthropic",
        "beta_message_structured_stream.sse",
        "beta.messages.stream",
        {
            "model": "claude-sonnet-4-5",
            "messages": [
                {
                    "role": "user",
                    "content": "Extract order IDs from the following text:\n\nOrder 12345\nOrder 67890",
                }
            ],
            "schema": {"type": "array", "items": {"type": "integer"}},
            "betas": ["structured-outputs-2025-12-15"],
            "max_tokens": 1024,
        },
        _anthropic(
            "claude-sonnet-4-5",
            **STREAM,
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.output.type": "json",
                "gen_ai.response.id": "msg_01LtFpmR8SbmiK2kRA5sWXNi",
                "gen_ai.response.model": "claude-sonnet-4-5-20250929",
                "gen_ai.response.finish_reasons": ("end_turn",),
                **_usage(135, 10, cache_read=0, cache_creation=0),
            },
        ),
        available=HAS_BETA_PARSE,
    ),
    Case(
        "beta messages, tool use",
        "anthropic",
        "beta_message_tool_use.json",
        "beta.messages.create",
        {
            "model": "claude-haiku-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "What is the weather in SF?"}],
            "tools": [
                {
                    "name": "get_weather",
                    "description": "Lookup the weather for a given city in either celsius or fahrenheit",
                    "input_schema": {
                        "type": "object",
                        "properties": {
                            "location": {"type": "string"},
                            "units": {"type": "string", "enum": ["c", "f"]},
                        },
                        "required": ["location", "units"],
                    },
                }
            ],
        },
        _anthropic(
            "claude-haiku-4-5",
            **{
                "gen_ai.request.max_tokens": 1024,
                "gen_ai.response.id": "msg_018yE33RyaCdsMnr8kGYUQ5Y",
                "gen_ai.response.model": "claude-haiku-4-5-20251001",
                "gen_ai.response.finish_reasons": ("tool_use",),
                **_usage(656, 74, cache_read=0, cache_creation=0),
            },
        ),
        available=HAS_BETA_MESSAGES,
    ),
    Case(
        "messages, 429 rate limited",
        "anthropic",
        "error_429.json",
        "messages.create",
        {"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": SAY},
        _anthropic(
            "claude-sonnet-4-5",
            **{"gen_ai.request.max_tokens": 1024, "error.type": "anthropic.RateLimitError"},
        ),
        metric_extra={"error.type": "anthropic.RateLimitError"},
    ),
    Case(
        "messages, 400 invalid request",
        "anthropic",
        "error_400.json",
        "messages.create",
        {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": SAY},
        _anthropic(
            "claude-haiku-4-5",
            **{"gen_ai.request.max_tokens": 1024, "error.type": "anthropic.BadRequestError"},
        ),
        metric_extra={"error.type": "anthropic.BadRequestError"},
    ),
]

ALL_CASES = OPENAI_CASES + ANTHROPIC_CASES


def _available(case: Case) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not case.available, reason="not in this SDK version")


CASES = [pytest.param(c, id=c.id, marks=_available(c)) for c in ALL_CASES]


# -- running -------------------------------------------------------------------------------------


Mode = Literal["plain", "raw", "streaming"]
"""How the method is called: directly, ``with_raw_response``, ``with_streaming_response``."""


def client_for(provider: Provider, server: FakeLLMServer, *, asynchronous: bool = False) -> Any:
    if provider == "openai":
        cls: Any = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return cls(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0)
    cls = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
    return cls(base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE)


def skip_unless_variant(case: Case, mode: Mode, server: FakeLLMServer) -> None:
    """Skip a raw variant this SDK version does not offer (anthropic has no raw ``messages.parse``)."""
    if mode == "plain":
        return
    with client_for(case.provider, server) as client:
        resource, name, _ = _target(client, case)
        variant = "with_raw_response" if mode == "raw" else "with_streaming_response"
        if not hasattr(getattr(resource, variant), name):
            pytest.skip(f"this SDK version has no {variant}.{name} for {case.method}")


def _target(client: Any, case: Case) -> tuple[Any, str, dict[str, Any]]:
    """(resource, method name, arguments) of the case for this client and SDK version."""
    path, _, name = case.method.rpartition(".")
    resource = parse_api(client) if case.method == "chat.completions.parse" else client
    if case.method != "chat.completions.parse":
        for attribute in path.split("."):
            resource = getattr(resource, attribute)
    kwargs = dict(case.kwargs)
    if case.method == "beta.messages.stream":
        # Recorded with output_format={type: json_schema, schema}; newer SDKs call it output_config.
        schema = {"type": "json_schema", "schema": kwargs.pop("schema")}
        params = inspect.signature(resource.stream).parameters
        kwargs["output_config" if "output_config" in params else "output_format"] = (
            {"format": schema} if "output_config" in params else schema
        )
    return resource, name, adapt(getattr(resource, name), kwargs)


def invoke(client: Any, case: Case, mode: Mode) -> Any:
    resource, name, kwargs = _target(client, case)
    if name == "stream":  # a stream helper (no raw variant)
        with resource.stream(**kwargs) as helper:
            return [normalise(e) for e in helper], normalise(helper.get_final_message())
    if mode == "streaming":
        with getattr(resource.with_streaming_response, name)(**kwargs) as response:
            return response.status_code, _read(response.parse(), kwargs)
    result = getattr(resource.with_raw_response if mode == "raw" else resource, name)(**kwargs)
    if mode == "raw":
        return result.status_code, _read(result.parse(), kwargs)
    return _read(result, kwargs)


def _read(result: Any, kwargs: dict[str, Any]) -> Any:
    if kwargs.get("stream") is True:
        with result:  # closed at the end, as a ``with`` would
            return [normalise(chunk) for chunk in result]
    return normalise(result)


async def ainvoke(client: Any, case: Case, mode: Mode) -> Any:
    resource, name, kwargs = _target(client, case)
    if name == "stream":
        async with resource.stream(**kwargs) as helper:
            return [normalise(e) async for e in helper], normalise(await helper.get_final_message())
    if mode == "streaming":
        async with getattr(resource.with_streaming_response, name)(**kwargs) as response:
            return response.status_code, await _aread(await _value(response.parse()), kwargs)
    result = await getattr(resource.with_raw_response if mode == "raw" else resource, name)(**kwargs)
    if mode == "raw":
        # LegacyAPIResponse.parse() is synchronous even for the async client.
        return result.status_code, await _aread(await _value(result.parse()), kwargs)
    return await _aread(result, kwargs)


async def _value(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _aread(result: Any, kwargs: dict[str, Any]) -> Any:
    if kwargs.get("stream") is True:
        async with result:
            return [normalise(chunk) async for chunk in result]
    return normalise(result)


def run(
    case: Case, server: FakeLLMServer, mode: Mode = "plain", *, asynchronous: bool = False
) -> tuple[Any, ...]:
    server.enqueue(replay(case.provider, case.fixture))
    with warnings.catch_warnings():
        # The recordings name models the SDK now warns are deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            if asynchronous:
                return ("returned", asyncio.run(_arun(case, server, mode)))
            with client_for(case.provider, server) as client:
                return ("returned", invoke(client, case, mode))
        except Exception as exc:
            body = getattr(exc, "body", None)
            return ("raised", type(exc), str(exc), getattr(exc, "status_code", None), body)


async def _arun(case: Case, server: FakeLLMServer, mode: Mode) -> Any:
    async with client_for(case.provider, server, asynchronous=True) as client:
        return await ainvoke(client, case, mode)


def expected_cost(provider: Provider, attrs: dict[str, Any]) -> dict[str, Any]:
    """The cost attributes for the span's usage, from genai-prices directly."""
    if "gen_ai.usage.input_tokens" not in attrs:
        return {}
    usage = GPUsage(
        input_tokens=attrs["gen_ai.usage.input_tokens"],
        output_tokens=attrs.get("gen_ai.usage.output_tokens"),
        cache_read_tokens=attrs.get("gen_ai.usage.cache_read.input_tokens") or None,
        cache_write_tokens=attrs.get("gen_ai.usage.cache_creation.input_tokens") or None,
        output_reasoning_tokens=attrs.get("gen_ai.usage.reasoning.output_tokens") or None,
    )
    for model in (attrs.get("gen_ai.response.model"), attrs["gen_ai.request.model"]):
        try:
            price = calc_price(usage, model, provider_id=provider)
        except LookupError:
            continue
        return {
            "gen_ai.usage.cost.amount": pytest.approx(float(price.total_price)),
            "gen_ai.usage.cost.currency": "USD",
        }
    return {"agentwatch.usage.cost.unpriced": True}


@pytest.fixture
def instrumenting(signals: Signals) -> Iterator[Callable[[], None]]:
    yield lambda: agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.uninstrument()
    set_default_telemetry()


def check(case: Case, signals: Signals, server: FakeLLMServer, bare: tuple[Any, ...]) -> None:
    """The one span of ``case`` and its duration point, attribute by attribute."""
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    model = case.attributes["gen_ai.request.model"]
    assert span.name == f"{case.attributes['gen_ai.operation.name']} {model}"
    if case.attributes.get("gen_ai.request.stream"):
        assert attrs.pop("gen_ai.response.time_to_first_chunk") > 0
    port = int(server.url.rsplit(":", 1)[1])
    endpoint = {"server.address": "127.0.0.1", "server.port": port}
    assert attrs == {**case.attributes, **endpoint, **expected_cost(case.provider, case.attributes)}
    if "error.type" in attrs:
        assert bare[0] == "raised"
        assert span.status.status_code is StatusCode.ERROR
    else:
        assert span.status.status_code is StatusCode.UNSET

    (duration,) = signals.points("gen_ai.client.operation.duration")
    base = {
        k: case.attributes[k]
        for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
    }
    if "gen_ai.response.model" in case.attributes:
        base["gen_ai.response.model"] = case.attributes["gen_ai.response.model"]
    assert dict(duration.attributes) == {**base, **endpoint, **case.metric_extra}


@pytest.mark.parametrize("case", CASES)
def test_replay(
    case: Case, fake_llm: FakeLLMServer, signals: Signals, instrumenting: Callable[[], None]
) -> None:
    bare = run(case, fake_llm)
    instrumenting()
    observed = run(case, fake_llm)

    assert observed == bare
    check(case, signals, fake_llm, bare)


# Stream helpers (messages.stream) have no raw variant.
RAW_CASES = [
    pytest.param(c, mode, id=f"{c.id} [{mode}]", marks=_available(c))
    for c in ALL_CASES
    if not c.method.endswith(".stream")
    for mode in ("raw", "streaming")
]


@pytest.mark.parametrize(("case", "mode"), RAW_CASES)
def test_replay_raw_response(
    case: Case, mode: Mode, fake_llm: FakeLLMServer, signals: Signals, instrumenting: Callable[[], None]
) -> None:
    """with_raw_response / with_streaming_response: the same response, span and metric as a plain call."""
    skip_unless_variant(case, mode, fake_llm)
    bare = run(case, fake_llm, mode)
    instrumenting()
    observed = run(case, fake_llm, mode)

    assert observed == bare
    check(case, signals, fake_llm, bare)


# The async clients: one case per API and shape, plain and raw.
ASYNC_IDS = (
    "chat, two tool calls",
    "chat stream, two tool calls",
    "chat, 404 model not found",
    "responses, reasoning, cached input, web search",
    "responses stream",
    "embeddings, 512 dimensions",
    "messages, two tool uses",
    "messages stream, extended thinking",
    "beta messages parse, structured output",
    "beta messages stream, JSON schema output",
)
ASYNC_CASES = [
    pytest.param(c, mode, id=f"{c.id} [async {mode}]", marks=_available(c))
    for c in ALL_CASES
    if c.id in ASYNC_IDS
    for mode in ("plain", "raw", "streaming")
    if mode == "plain" or not c.method.endswith(".stream")
]


@pytest.mark.parametrize(("case", "mode"), ASYNC_CASES)
def test_replay_async(
    case: Case, mode: Mode, fake_llm: FakeLLMServer, signals: Signals, instrumenting: Callable[[], None]
) -> None:
    skip_unless_variant(case, mode, fake_llm)
    bare = run(case, fake_llm, mode, asynchronous=True)
    instrumenting()
    observed = run(case, fake_llm, mode, asynchronous=True)

    assert observed == bare
    check(case, signals, fake_llm, bare)


def test_every_fixture_source_has_its_licence_file_and_sources_md_links_it() -> None:
    """Apache-2.0 (section 4) and MIT both require the licence (MIT: the copyright and permission
    notice) to accompany redistributed copies: LICENSES/ holds each source repository's own file."""
    from replay import FIXTURES

    licences = FIXTURES / "LICENSES"
    sources_md = (FIXTURES / "SOURCES.md").read_text(encoding="utf-8")
    licence_of: dict[str, str] = {}
    for provider in ("openai", "anthropic"):
        for entry in json.loads((FIXTURES / provider / "manifest.json").read_text()).values():
            repository = entry["source"].split("@", 1)[0]
            assert licence_of.setdefault(repository, entry["licence"]) == entry["licence"], repository
    assert len(licence_of) == 5
    for repository, licence in licence_of.items():
        name = f"LICENSES/{repository.replace('/', '-')}.txt"
        text = (FIXTURES / name).read_text(encoding="utf-8")
        if licence == "Apache-2.0":
            assert "Apache License\n                           Version 2.0, January 2004" in text, name
            assert "4. Redistribution." in text, name
        else:
            assert licence == "MIT"
            assert re.search(r"^(The MIT License \(MIT\)\n\n)?Copyright .*\d{4}", text), name
            assert "The above copyright notice and this permission notice shall be included" in text, name
        assert f"]({name})" in sources_md, f"SOURCES.md does not link {name}"
    assert {p.name for p in licences.iterdir()} == {
        f"{repository.replace('/', '-')}.txt" for repository in licence_of
    }


def test_fixture_manifests_name_every_file_and_its_source() -> None:
    from replay import FIXTURES

    for provider in ("openai", "anthropic"):
        folder = FIXTURES / provider
        manifest = json.loads((folder / "manifest.json").read_text())
        bodies = {
            p.name for p in folder.iterdir() if p.suffix in (".json", ".sse") and p.name != "manifest.json"
        }
        assert set(manifest) == bodies
        for entry in manifest.values():
            assert entry["source"] and entry["licence"] in ("MIT", "Apache-2.0")
        used = {c.fixture for c in ALL_CASES if c.provider == provider}
        assert used == bodies, bodies - used
