"""LangChain chat-model calls -> :class:`InferenceCall` fields, from what LangChain itself reports
to its callbacks and tracers: the standard ``_get_ls_params`` (provider, model, temperature, max
tokens, stop), and the ``usage_metadata``/``response_metadata`` of the returned message."""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._telemetry._inference import Content, InferenceCall
from agentwatch._telemetry._usage import Usage
from agentwatch.instrumentation._common import as_float, as_int, as_str, as_str_list, get, put

__all__ = [
    "StreamState",
    "input_content",
    "ls_params",
    "provider_name",
    "read_message",
    "request_attributes",
]

# LangChain's ls_provider -> gen_ai.provider.name (v1.41 well-known values); others pass through.
_PROVIDERS = {
    "azure": "azure.ai.openai",
    "azure_openai": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "amazon_bedrock": "aws.bedrock",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "vertexai": "gcp.vertex_ai",
    "mistral": "mistral_ai",
    "mistralai": "mistral_ai",
    "xai": "x_ai",
    "ibm": "ibm.watsonx.ai",
    "watsonx": "ibm.watsonx.ai",
}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool", "function": "tool"}
_FINISH_KEYS = ("finish_reason", "stop_reason", "done_reason")
_MODEL_KEYS = ("model_name", "model", "model_id")


def ls_params(model: Any, stop: object, kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """The parameters every LangChain chat model reports for tracing (``ls_provider``...)."""
    params = model._get_ls_params(stop=stop, **kwargs)
    return params if isinstance(params, Mapping) else {}


def provider_name(params: Mapping[str, Any]) -> str:
    provider = as_str(params.get("ls_provider"))
    if not provider:
        return "_OTHER"
    return _PROVIDERS.get(provider, provider)


def request_attributes(params: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    put(attrs, sc.REQUEST_TEMPERATURE, as_float(params.get("ls_temperature")))
    put(attrs, sc.REQUEST_MAX_TOKENS, as_int(params.get("ls_max_tokens")))
    put(attrs, sc.REQUEST_STOP_SEQUENCES, as_str_list(params.get("ls_stop")))
    return attrs


def _usage(metadata: object) -> Usage | None:
    """``usage_metadata`` (input tokens include cached ones, output tokens reasoning ones: the
    semconv v1.41 definitions)."""
    if not isinstance(metadata, Mapping):
        return None
    inputs = get(metadata, "input_token_details")
    outputs = get(metadata, "output_token_details")
    return Usage(
        input_tokens=as_int(metadata.get("input_tokens")),
        output_tokens=as_int(metadata.get("output_tokens")),
        cache_read_tokens=as_int(get(inputs, "cache_read")),
        cache_creation_tokens=as_int(get(inputs, "cache_creation")),
        reasoning_tokens=as_int(get(outputs, "reasoning")),
    )


def _first(metadata: object, keys: tuple[str, ...]) -> str | None:
    if not isinstance(metadata, Mapping):
        return None
    for key in keys:
        value = as_str(metadata.get(key))
        if value:
            return value
    return None


def read_message(call: InferenceCall, message: object, capture: bool) -> None:
    """The response fields of an ``AIMessage`` (or a merged stream of chunks)."""
    metadata = get(message, "response_metadata")
    usage = _usage(get(message, "usage_metadata"))
    if usage is not None:
        call.usage = usage
    call.response_model = _first(metadata, _MODEL_KEYS)
    call.response_id = _first(metadata, ("id",))
    finish = _first(metadata, _FINISH_KEYS)
    if finish:
        call.finish_reasons = [finish]
    if capture:
        out = _message(message)
        out["finish_reason"] = "tool_call" if get(message, "tool_calls") else (finish or "stop")
        call.output_messages = [out]


# -- content (only with capture on) ------------------------------------------------------------


def _parts(content: object) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    if isinstance(content, Sequence):
        for block in content:
            if isinstance(block, str):
                parts.append({"type": "text", "content": block})
                continue
            kind = get(block, "type")
            if kind == "text":
                parts.append({"type": "text", "content": get(block, "text")})
            elif kind in ("reasoning", "thinking"):
                parts.append(
                    {"type": "reasoning", "content": get(block, "reasoning") or get(block, "thinking")}
                )
            elif kind is not None and kind not in ("tool_call", "tool_use"):
                parts.append({"type": str(kind)})
    return parts


def _message(message: object) -> dict[str, Any]:
    role = _ROLES.get(str(get(message, "type")), str(get(message, "type")))
    if role == "tool":
        response = {"type": "tool_call_response", "id": get(message, "tool_call_id")}
        response["response"] = get(message, "content")
        return {"role": "tool", "parts": [response]}
    parts = _parts(get(message, "content"))
    for tool_call in get(message, "tool_calls") or ():
        parts.append(
            {
                "type": "tool_call",
                "id": get(tool_call, "id"),
                "name": get(tool_call, "name"),
                "arguments": get(tool_call, "args"),
            }
        )
    entry: dict[str, Any] = {"role": role, "parts": parts}
    name = as_str(get(message, "name"))
    if name:
        entry["name"] = name
    return entry


def input_content(call: InferenceCall, messages: object) -> None:
    """System messages become ``gen_ai.system_instructions``, the others input messages."""
    instructions: Content = []
    inputs: Content = []
    for message in messages if isinstance(messages, Sequence) else ():
        if get(message, "type") == "system":
            instructions.extend(_parts(get(message, "content")))
        else:
            inputs.append(_message(message))
    call.input_messages = inputs
    if instructions:
        call.system_instructions = instructions


class StreamState:
    """The chunks of a streamed call, merged (only) when its span is made."""

    __slots__ = ("chunks", "times")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.times: list[float] = []

    def add(self, chunk: Any, at: float) -> None:
        self.chunks.append(chunk)
        self.times.append(at)

    def merged(self) -> Any:
        # AIMessageChunk + AIMessageChunk is LangChain's own merge: usage added, metadata merged.
        return functools.reduce(operator.add, self.chunks) if self.chunks else None

    def timing(self, call: InferenceCall) -> None:
        times = self.times
        if times:
            call.first_chunk_at, call.last_chunk_at = times[0], times[-1]
            call.chunk_gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
