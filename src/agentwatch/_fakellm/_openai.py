"""OpenAI's wire format: chat completions, Responses and embeddings (also Azure OpenAI's paths)."""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from typing import Any

from agentwatch._fakellm._render import (
    Ids,
    PreparedCall,
    error_message,
    fake_vector,
    openai_finish_reason,
    prepare_calls,
    request_field,
    split_text,
)
from agentwatch._fakellm._replies import CompletionSpec, EmbeddingsSpec, ErrorSpec
from agentwatch._fakellm._wire import (
    Body,
    Context,
    Event,
    RecordedRequest,
    Route,
    Stream,
    WireFormat,
    encode_sse,
)

__all__ = ["OpenAIFormat"]

_FINGERPRINT = "fp_fakellm"
# Optional "/openai[/deployments/X]" covers Azure (the SDK rewrites deployment endpoints to
# "/openai/deployments/{model}/..." and leaves others on "/openai/..."); optional "/v1" covers both
# the OpenAI base URL and Azure's v1 surface.
_PATH = re.compile(
    r"^(?:/openai(?:/deployments/(?P<deployment>[^/]+))?)?(?:/v1)?"
    r"/(?P<endpoint>chat/completions|responses|embeddings)/?$"
)
_ENDPOINTS = {"chat/completions": "chat", "responses": "responses", "embeddings": "embeddings"}


class OpenAIFormat(WireFormat):
    name = "openai"
    request_id_header = "x-request-id"

    def route(self, request: RecordedRequest) -> Route | None:
        match = _PATH.match(request.path)
        if match is None:
            return None
        endpoint = _ENDPOINTS[match.group("endpoint")]
        deployment = match.group("deployment")
        return Route(
            provider="openai",
            # Only the create calls are served: e.g. GET /v1/chat/completions lists stored
            # completions and must not consume a scripted reply meant for a POST.
            endpoint=endpoint if request.method == "POST" else None,
            answers="embeddings" if endpoint == "embeddings" else "completion",
            model=deployment,
            params={"deployment": deployment} if deployment is not None else {},
        )

    def error(self, spec: ErrorSpec, request: RecordedRequest, ctx: Context) -> Body:
        status = spec.status
        if status == 429:
            default_type, default_code = "requests", "rate_limit_exceeded"
        elif status >= 500:
            default_type, default_code = "server_error", None
        else:
            default_type, default_code = "invalid_request_error", None
        error = {
            "message": error_message(spec),
            "type": spec.error_type or default_type,
            "param": None,
            "code": spec.code or default_code,
        }
        return Body(status, {"error": error})

    def completion(self, spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
        if request.endpoint == "responses":
            return _render_responses(spec, request, ctx.ids)
        return _render_chat(spec, request, ctx.ids)

    def embeddings(self, spec: EmbeddingsSpec, request: RecordedRequest, ctx: Context) -> Body:
        return _render_embeddings(spec, request)


# --- Chat completions -----------------------------------------------------------------------------


def _chat_usage(spec: CompletionSpec) -> dict[str, Any]:
    prompt_details: dict[str, Any] = {"cached_tokens": spec.cached_tokens, "audio_tokens": 0}
    if spec.cache_creation_tokens:
        prompt_details["cache_write_tokens"] = spec.cache_creation_tokens
    return {
        "prompt_tokens": spec.input_tokens,
        "completion_tokens": spec.output_tokens,
        "total_tokens": spec.input_tokens + spec.output_tokens,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": spec.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _render_chat(spec: CompletionSpec, request: RecordedRequest, ids: Ids) -> Body | Stream:
    model = spec.model or request.model or "fake-model"
    completion_id = spec.response_id or f"chatcmpl-fake{ids.object()}"
    created = int(time.time())
    finish = openai_finish_reason(spec.finish_reason)
    calls = prepare_calls(spec, ids, "call_")

    if not request.stream:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": spec.content,
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in calls
            ]
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
        }
        if spec.usage:
            body["usage"] = _chat_usage(spec)
        return Body(200, body)

    # Like the real API: with include_usage every chunk carries "usage": null and one extra chunk
    # with no choices carries the totals; without it the key is absent altogether.
    include_usage = request.wants_usage and spec.usage

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": _FINGERPRINT,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            data["usage"] = None
        return data

    role_delta = {"role": "assistant", "content": "" if spec.content is not None else None, "refusal": None}
    events = [Event(None, chunk(role_delta))]
    for piece in split_text(spec.content or "", spec.chunks):
        events.append(Event(None, chunk({"content": piece}), content=True))
    for index, call in enumerate(calls):
        header = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        events.append(Event(None, chunk({"tool_calls": [header]})))
        for piece in call.pieces:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            events.append(Event(None, chunk(delta), content=True))
    events.append(Event(None, chunk({}, finish), terminal=True))
    if include_usage:
        usage_chunk = chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _chat_usage(spec)
        events.append(Event(None, usage_chunk, terminal=True))

    events.append(Event(None, "[DONE]", terminal=True))
    # The openai SDK turns a data line with an "error" object into APIError; no [DONE] follows.
    error = {"message": "The server had an error while processing your request.", "type": "server_error"}
    return Stream(events, [Event(None, {"error": {**error, "param": None, "code": None}})])


# --- Responses ------------------------------------------------------------------------------------


def _responses_usage(spec: CompletionSpec) -> dict[str, Any]:
    return {
        "input_tokens": spec.input_tokens,
        "input_tokens_details": {
            "cached_tokens": spec.cached_tokens,
            "cache_write_tokens": spec.cache_creation_tokens,
        },
        "output_tokens": spec.output_tokens,
        "output_tokens_details": {"reasoning_tokens": spec.reasoning_tokens},
        "total_tokens": spec.input_tokens + spec.output_tokens,
    }


def _render_responses(spec: CompletionSpec, request: RecordedRequest, ids: Ids) -> Body | Stream:
    model = spec.model or request.model or "fake-model"
    number = ids.object()
    response_id = spec.response_id or f"resp_fake{number}"
    message_id = f"msg_fake{number}"
    created = int(time.time())
    finish = openai_finish_reason(spec.finish_reason)
    if finish == "length":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    elif finish == "content_filter":
        status, incomplete = "incomplete", {"reason": "content_filter"}
    else:
        status, incomplete = "completed", None
    calls = prepare_calls(spec, ids, "call_")

    def text_part(text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def message_item(text: str, item_status: str) -> dict[str, Any]:
        content = [text_part(text)] if item_status != "in_progress" else []
        return {
            "id": message_id,
            "type": "message",
            "status": item_status,
            "role": "assistant",
            "content": content,
        }

    def call_item(call: PreparedCall, arguments: str, item_status: str) -> dict[str, Any]:
        # Item ids follow the call number so a test that knows "call_3" also knows "fc_3".
        item_id = "fc_" + call.id.removeprefix("call_")
        return {
            "id": item_id,
            "type": "function_call",
            "status": item_status,
            "call_id": call.id,
            "name": call.name,
            "arguments": arguments,
        }

    output: list[dict[str, Any]] = []
    if spec.content is not None:
        output.append(message_item(spec.content, status))
    output.extend(call_item(c, c.arguments, "completed") for c in calls)

    def response(resp_status: str, resp_output: list[dict[str, Any]], final: bool) -> dict[str, Any]:
        return {
            "id": response_id,
            "object": "response",
            "created_at": created,
            "completed_at": created if final and resp_status == "completed" else None,
            "status": resp_status,
            "error": None,
            "incomplete_details": incomplete if final else None,
            "instructions": request_field(request, "instructions", None),
            "max_output_tokens": request_field(request, "max_output_tokens", None),
            "model": model,
            "output": resp_output,
            "parallel_tool_calls": request_field(request, "parallel_tool_calls", True),
            "previous_response_id": request_field(request, "previous_response_id", None),
            "reasoning": {"effort": None, "summary": None},
            "store": request_field(request, "store", True),
            "temperature": request_field(request, "temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": request_field(request, "tool_choice", "auto"),
            "tools": request_field(request, "tools", []),
            "top_p": request_field(request, "top_p", 1.0),
            "truncation": "disabled",
            "usage": _responses_usage(spec) if final and spec.usage else None,
            "user": None,
            "metadata": request_field(request, "metadata", {}),
        }

    if not request.stream:
        return Body(200, response(status, output, final=True))

    events = [
        Event(
            "response.created", {"type": "response.created", "response": response("in_progress", [], False)}
        ),
        Event(
            "response.in_progress",
            {"type": "response.in_progress", "response": response("in_progress", [], False)},
        ),
    ]
    index = 0
    if spec.content is not None:
        where = {"item_id": message_id, "output_index": index}
        events.append(
            Event(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": message_item("", "in_progress"),
                },
            )
        )
        events.append(
            Event(
                "response.content_part.added",
                {"type": "response.content_part.added", **where, "content_index": 0, "part": text_part("")},
            )
        )
        for piece in split_text(spec.content, spec.chunks):
            delta = {
                "type": "response.output_text.delta",
                **where,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
            events.append(Event("response.output_text.delta", delta, content=True))
        done = {
            "type": "response.output_text.done",
            **where,
            "content_index": 0,
            "text": spec.content,
            "logprobs": [],
        }
        events.append(Event("response.output_text.done", done))
        part_done = {
            "type": "response.content_part.done",
            **where,
            "content_index": 0,
            "part": text_part(spec.content),
        }
        events.append(Event("response.content_part.done", part_done))
        item_done = {"type": "response.output_item.done", "output_index": index, "item": output[index]}
        events.append(Event("response.output_item.done", item_done))
        index += 1
    for call in calls:
        item = call_item(call, "", "in_progress")
        where = {"item_id": item["id"], "output_index": index}
        added = {"type": "response.output_item.added", "output_index": index, "item": item}
        events.append(Event("response.output_item.added", added))
        for piece in call.pieces:
            delta = {"type": "response.function_call_arguments.delta", **where, "delta": piece}
            events.append(Event("response.function_call_arguments.delta", delta, content=True))
        args_done = {
            "type": "response.function_call_arguments.done",
            **where,
            "name": call.name,
            "arguments": call.arguments,
        }
        events.append(Event("response.function_call_arguments.done", args_done))
        item_done = {"type": "response.output_item.done", "output_index": index, "item": output[index]}
        events.append(Event("response.output_item.done", item_done))
        index += 1
    terminal = "response.completed" if status == "completed" else "response.incomplete"
    final_response = response(status, output, final=True)
    events.append(Event(terminal, {"type": terminal, "response": final_response}, terminal=True))

    # The documented ResponseErrorEvent has code/message/param at the top level, but the live API
    # has been seen nesting them under "error" (openai/openai-dotnet#881); sending both keeps the
    # event parseable as documented while making the openai SDK raise APIError as it does live.
    message = "The server had an error while processing your request."
    error = {"type": "server_error", "code": "server_error", "message": message, "param": None}
    error_event = Event(
        "error", {"type": "error", "code": "server_error", "message": message, "param": None, "error": error}
    )
    return Stream(events, [error_event], encode=_encode_numbered)


def _encode_numbered(events: list[Event]) -> list[bytes]:
    # Numbered as sent, so that the error event of a broken stream follows the last delta's number.
    for sequence_number, ev in enumerate(events):
        if isinstance(ev.data, dict):
            ev.data["sequence_number"] = sequence_number
    return encode_sse(events)


# --- Embeddings -----------------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(key to derive a vector from, token count) for each input the request embeds."""
    if isinstance(value, str):
        return [(value, max(1, len(value.split())))]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [(json.dumps(value), len(value))]  # a single pre-tokenised input
        return [_embedding_inputs(v)[0] if isinstance(v, (str, list)) else (json.dumps(v), 1) for v in value]
    return [(json.dumps(value), 1)]


def _render_embeddings(spec: EmbeddingsSpec, request: RecordedRequest) -> Body:
    inputs = _embedding_inputs(request_field(request, "input", ""))
    requested = request_field(request, "dimensions", None)
    dimensions = requested if isinstance(requested, int) and requested > 0 else spec.dimensions
    vectors = (
        [list(v) for v in spec.vectors]
        if spec.vectors is not None
        else [fake_vector(k, dimensions) for k, _ in inputs]
    )
    as_base64 = request_field(request, "encoding_format", "float") == "base64"
    data = []
    for index, vector in enumerate(vectors):
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = spec.input_tokens if spec.input_tokens is not None else sum(n for _, n in inputs)
    body = {
        "object": "list",
        "data": data,
        "model": spec.model or request.model or "fake-embedding-model",
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return Body(200, body)
