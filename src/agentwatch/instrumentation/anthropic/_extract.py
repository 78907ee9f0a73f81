"""Anthropic request/response/event shapes -> :class:`InferenceCall` fields."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._telemetry._inference import InferenceCall
from agentwatch._telemetry._usage import Usage
from agentwatch.instrumentation._common import (
    as_float,
    as_int,
    as_str,
    as_str_list,
    function_definition,
    get,
    put,
)

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_call",
    "refusal": "content_filter",
}


def request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    put(attrs, sc.REQUEST_MAX_TOKENS, as_int(kwargs.get("max_tokens")))
    put(attrs, sc.REQUEST_TEMPERATURE, as_float(kwargs.get("temperature")))
    put(attrs, sc.REQUEST_TOP_P, as_float(kwargs.get("top_p")))
    # v1.41 types top_k as a double.
    put(attrs, sc.REQUEST_TOP_K, as_float(kwargs.get("top_k")))
    put(attrs, sc.REQUEST_STOP_SEQUENCES, as_str_list(kwargs.get("stop_sequences")))
    formats = (
        get(get(kwargs.get("output_config"), "format"), "type"),
        get(kwargs.get("output_format"), "type"),
    )
    if "json_schema" in formats or isinstance(kwargs.get("output_format"), type):
        attrs[sc.OUTPUT_TYPE] = "json"
    return attrs


# -- content (only called when capture is on) --------------------------------------------------


def _blocks(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, Sequence):
        for block in content:
            kind = get(block, "type")
            if kind == "text":
                parts.append({"type": "text", "content": get(block, "text")})
            elif kind == "thinking":
                parts.append({"type": "reasoning", "content": get(block, "thinking")})
            elif kind in ("tool_use", "server_tool_use"):
                parts.append(
                    {
                        "type": "tool_call" if kind == "tool_use" else "server_tool_call",
                        "id": get(block, "id"),
                        "name": get(block, "name"),
                        "arguments": get(block, "input"),
                    }
                )
            elif kind == "tool_result":
                parts.append(
                    {
                        "type": "tool_call_response",
                        "id": get(block, "tool_use_id"),
                        "response": get(block, "content"),
                    }
                )
            elif kind == "image":
                source = get(block, "source")
                parts.append(
                    {
                        "type": "blob",
                        "modality": "image",
                        "mime_type": get(source, "media_type"),
                        "content": get(source, "data"),
                    }
                    if get(source, "type") == "base64"
                    else {"type": "uri", "modality": "image", "uri": get(source, "url")}
                )
            elif kind is not None:
                parts.append({"type": str(kind)})
    return parts


def _tool_definitions(tools: object) -> list[dict[str, Any]] | None:
    """Request tools in the shape of v1.41 ``gen_ai.tool.definitions``.

    Custom tools (``name``, ``description``, ``input_schema``, type ``custom`` or none) are
    functions: ``{type: function, name, description, parameters}``. Anthropic-defined tools (web
    search, bash, text editor, MCP toolsets ...) keep their versioned type and their name. The beta
    resource also takes tool objects (``@beta_tool``), which give their parameters by ``to_dict()``.
    """
    if not isinstance(tools, Sequence) or isinstance(tools, str) or not tools:
        return None
    definitions: list[dict[str, Any]] = []
    for tool in tools:
        to_dict = getattr(tool, "to_dict", None)
        if callable(to_dict) and not isinstance(tool, Mapping):
            tool = to_dict()
        kind = get(tool, "type")
        name = get(tool, "name") or get(tool, "mcp_server_name")
        if kind in (None, "custom"):
            definitions.append(function_definition(name, get(tool, "description"), get(tool, "input_schema")))
        else:
            definitions.append({"type": kind, "name": name or kind})
    return definitions or None


def content(call: InferenceCall, kwargs: Mapping[str, Any]) -> None:
    call.tool_definitions = _tool_definitions(kwargs.get("tools"))
    call.input_messages = [
        {"role": get(m, "role"), "parts": _blocks(get(m, "content"))} for m in kwargs.get("messages") or ()
    ]
    system = kwargs.get("system")
    if isinstance(system, (str, Sequence)) and system:
        call.system_instructions = _blocks(system)


# -- responses ---------------------------------------------------------------------------------


def _usage(usage: object, previous: Usage | None = None) -> Usage:
    """Anthropic reports input tokens without the cached ones; semconv's input includes them."""
    previous = previous or Usage()

    def pick(name: str, old: int | None) -> int | None:
        value = as_int(get(usage, name))
        return old if value is None else value

    fresh = pick("input_tokens", None)
    cache_read = pick("cache_read_input_tokens", previous.cache_read_tokens)
    cache_creation = pick("cache_creation_input_tokens", previous.cache_creation_tokens)
    if fresh is not None:
        input_tokens: int | None = fresh + (cache_read or 0) + (cache_creation or 0)
    else:
        input_tokens = previous.input_tokens
    details = get(usage, "output_tokens_details")
    return Usage(
        input_tokens=input_tokens,
        output_tokens=pick("output_tokens", previous.output_tokens),
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_creation,
        reasoning_tokens=as_int(get(details, "thinking_tokens")) or previous.reasoning_tokens,
    )


def response(call: InferenceCall, message: object) -> None:
    if get(message, "type") != "message":
        return  # a raw or streaming-response object: nothing to read without consuming it
    call.response_id = as_str(get(message, "id"))
    call.response_model = as_str(get(message, "model"))
    reason = as_str(get(message, "stop_reason"))
    call.finish_reasons = [reason] if reason else None
    if (usage := get(message, "usage")) is not None:
        call.usage = _usage(usage)
    if call.capture_content:
        call.output_messages = [
            {
                "role": "assistant",
                "parts": _blocks(get(message, "content")),
                "finish_reason": _FINISH.get(reason or "", reason or "error"),
            }
        ]


class _StreamState:
    __slots__ = ("blocks",)

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}


def event_handler(capture: bool) -> Any:
    """Reads raw stream events.

    Where the SDK owns the span (native tracing) it ends the span as soon as the body is read,
    before the stream reports its end to agentwatch, so the final usage and stop reason of
    ``message_delta`` are written through to the span at once.
    """
    state = _StreamState()

    def build_outputs(call: InferenceCall) -> None:
        parts: list[dict[str, Any]] = []
        for _, block in sorted(state.blocks.items()):
            if block["type"] == "text":
                parts.append({"type": "text", "content": "".join(block["text"])})
            elif block["type"] == "thinking":
                parts.append({"type": "reasoning", "content": "".join(block["text"])})
            elif block["type"] == "tool_use":
                raw = "".join(block["text"])
                try:
                    arguments: object = json.loads(raw) if raw else block.get("input")
                except ValueError:
                    arguments = raw
                parts.append(
                    {
                        "type": "tool_call",
                        "id": block.get("id"),
                        "name": block.get("name"),
                        "arguments": arguments,
                    }
                )
        reason = (call.finish_reasons or ["error"])[0]
        call.output_messages = [
            {"role": "assistant", "parts": parts, "finish_reason": _FINISH.get(reason, reason)}
        ]

    def on_event(call: InferenceCall, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            message = event.message
            call.response_id = as_str(get(message, "id"))
            call.response_model = as_str(get(message, "model"))
            if (usage := get(message, "usage")) is not None:
                call.usage = _usage(usage)
        elif kind == "message_delta":
            reason = as_str(get(event.delta, "stop_reason"))
            if reason:
                call.finish_reasons = [reason]
            if (usage := getattr(event, "usage", None)) is not None:
                call.usage = _usage(usage, call.usage)
            if not call.owns_span:
                call.write_response_to_span()
        elif capture:
            if kind == "content_block_start":
                block = event.content_block
                call.before_end = build_outputs
                state.blocks[event.index] = {
                    "type": get(block, "type"),
                    "id": get(block, "id"),
                    "name": get(block, "name"),
                    "input": get(block, "input"),
                    "text": [get(block, "text")] if get(block, "text") else [],
                }
            elif kind == "content_block_delta":
                delta = event.delta
                entry = state.blocks.get(event.index)
                if entry is not None:
                    piece = get(delta, "text") or get(delta, "partial_json") or get(delta, "thinking")
                    if piece:
                        entry["text"].append(piece)

    return on_event
