"""Anthropic's wire format: the Messages API."""

from __future__ import annotations

import json
import re
from typing import Any

from agentwatch._fakellm._render import Ids, error_message, prepare_calls, split_text
from agentwatch._fakellm._replies import CompletionSpec, ErrorSpec
from agentwatch._fakellm._wire import Body, Context, Event, RecordedRequest, Route, Stream, WireFormat

__all__ = ["AnthropicFormat", "render_messages"]

_PATH = re.compile(r"^/v1/messages/?$")
_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class AnthropicFormat(WireFormat):
    name = "anthropic"
    request_id_header = "request-id"

    def route(self, request: RecordedRequest) -> Route | None:
        if _PATH.match(request.path) is None:
            return None
        return Route(provider="anthropic", endpoint="messages" if request.method == "POST" else None)

    def claims(self, request: RecordedRequest) -> bool:
        return "anthropic-version" in request.headers or "x-api-key" in request.headers

    def error(self, spec: ErrorSpec, request: RecordedRequest, ctx: Context) -> Body:
        default_type = _ERROR_TYPES.get(
            spec.status, "api_error" if spec.status >= 500 else "invalid_request_error"
        )
        body = {
            "type": "error",
            "error": {"type": spec.error_type or default_type, "message": error_message(spec)},
            "request_id": ctx.request_id,
        }
        return Body(spec.status, body)

    def completion(self, spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
        return render_messages(spec, request, ctx.ids)


def _anthropic_usage(spec: CompletionSpec, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "input_tokens": spec.input_tokens - spec.cached_tokens - spec.cache_creation_tokens,
        "cache_creation_input_tokens": spec.cache_creation_tokens,
        "cache_read_input_tokens": spec.cached_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": spec.cache_creation_tokens,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    if spec.reasoning_tokens:
        usage["output_tokens_details"] = {"thinking_tokens": spec.reasoning_tokens}
    return usage


def render_messages(
    spec: CompletionSpec, request: RecordedRequest, ids: Ids, id_prefix: str = "msg_fake"
) -> Body | Stream:
    """A Messages API answer; Bedrock's InvokeModel serves the same body for Anthropic models."""
    model = spec.model or request.model or "fake-model"
    message_id = spec.response_id or f"{id_prefix}{ids.object()}"
    stop_reason = _TO_ANTHROPIC.get(spec.finish_reason, spec.finish_reason)
    calls = prepare_calls(spec, ids, "toolu_")
    inputs: list[Any] = []
    for call in calls:
        parsed = json.loads(call.arguments)
        if not isinstance(parsed, dict):
            raise ValueError(f"Anthropic tool_use input must be a JSON object, got {call.arguments!r}")
        inputs.append(parsed)

    blocks: list[dict[str, Any]] = []
    if spec.content is not None or not calls:
        blocks.append({"type": "text", "text": spec.content or ""})
    blocks.extend(
        {"type": "tool_use", "id": c.id, "name": c.name, "input": arguments}
        for c, arguments in zip(calls, inputs, strict=True)
    )

    def message(content: list[dict[str, Any]], reason: str | None, output_tokens: int) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": None,
        }
        if spec.usage:
            data["usage"] = _anthropic_usage(spec, output_tokens)
        return data

    if not request.stream:
        return Body(200, message(blocks, stop_reason, spec.output_tokens))

    # message_start reports the prompt and a token or so of output; message_delta the final count.
    events = [
        Event(
            "message_start",
            {"type": "message_start", "message": message([], None, min(1, spec.output_tokens))},
        ),
        Event("ping", {"type": "ping"}),
    ]
    index = 0
    if blocks[0]["type"] == "text":
        start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        events.append(Event("content_block_start", start))
        for piece in split_text(blocks[0]["text"], spec.chunks):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            events.append(Event("content_block_delta", delta, content=True))
        events.append(Event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    for call in calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append(
            Event(
                "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        # The live API opens every tool_use block with an empty partial_json before the real slices.
        for piece in ["", *call.pieces]:
            delta = {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            events.append(Event("content_block_delta", delta, content=bool(piece)))
        events.append(Event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
    }
    if spec.usage:
        message_delta["usage"] = {"output_tokens": spec.output_tokens}
    events.append(Event("message_delta", message_delta, terminal=True))
    events.append(Event("message_stop", {"type": "message_stop"}, terminal=True))

    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    return Stream(events, [Event("error", error)])
