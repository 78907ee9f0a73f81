"""google-genai request/response/chunk shapes -> :class:`InferenceCall` fields.

Requests come as the SDK takes them: ``config`` a ``GenerateContentConfig`` or a dict (snake_case
or camelCase keys, which the SDK's models accept alike), ``contents`` a string, a part, a content
or a list of them. Nothing here imports the SDK: enums are read by their ``name``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._telemetry._inference import Content, InferenceCall
from agentwatch._telemetry._usage import Usage
from agentwatch.instrumentation._common import as_float, as_int, as_str, as_str_list, get, put

__all__ = [
    "GOOGLE_RPC_CODES",
    "content",
    "embed_request",
    "embed_response",
    "error_type",
    "generate_request",
    "generate_response",
    "stream_handler",
    "tool_definitions",
]

# Output messages carry the conventions' finish reasons; the span attribute keeps Gemini's own
# (lower-cased, as OTel's google-genai instrumentation reports them).
_FILTERED = frozenset(
    {
        "safety",
        "recitation",
        "blocklist",
        "prohibited_content",
        "spii",
        "image_safety",
        "image_prohibited_content",
        "image_recitation",
        "model_armor",
        "language",
    }
)


def field(obj: object, snake: str) -> Any:
    """``obj.snake``, or the dict's snake_case or camelCase key (the SDK accepts both)."""
    value = get(obj, snake)
    if value is None and isinstance(obj, Mapping):
        head, *rest = snake.split("_")
        value = obj.get(head + "".join(word.title() for word in rest))
    return value


def _name(value: object) -> str | None:
    """An SDK enum (``FinishReason.STOP``) or its string value, lower-cased."""
    name = getattr(value, "name", None) if not isinstance(value, str) else value
    return name.lower() if isinstance(name, str) and name else None


# -- requests ----------------------------------------------------------------------------------


def generate_request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    config = kwargs.get("config")
    attrs: dict[str, AttributeValue] = {}
    if config is None:
        return attrs
    put(attrs, sc.REQUEST_MAX_TOKENS, as_int(field(config, "max_output_tokens")))
    put(attrs, sc.REQUEST_TEMPERATURE, as_float(field(config, "temperature")))
    put(attrs, sc.REQUEST_TOP_P, as_float(field(config, "top_p")))
    put(attrs, sc.REQUEST_TOP_K, as_float(field(config, "top_k")))
    put(attrs, sc.REQUEST_FREQUENCY_PENALTY, as_float(field(config, "frequency_penalty")))
    put(attrs, sc.REQUEST_PRESENCE_PENALTY, as_float(field(config, "presence_penalty")))
    put(attrs, sc.REQUEST_STOP_SEQUENCES, as_str_list(field(config, "stop_sequences")))
    put(attrs, sc.REQUEST_SEED, as_int(field(config, "seed")))
    count = as_int(field(config, "candidate_count"))
    if count is not None and count != 1:
        attrs[sc.REQUEST_CHOICE_COUNT] = count
    mime = as_str(field(config, "response_mime_type"))
    if mime == "application/json" or field(config, "response_schema") is not None:
        attrs[sc.OUTPUT_TYPE] = "json"
    elif mime == "text/plain":
        attrs[sc.OUTPUT_TYPE] = "text"
    return attrs


def embed_request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    put(attrs, sc.EMBEDDINGS_DIMENSION_COUNT, as_int(field(kwargs.get("config"), "output_dimensionality")))
    return attrs


# -- content (only called when capture is on) --------------------------------------------------


def _modality(mime: object) -> str | None:
    kind = mime.partition("/")[0] if isinstance(mime, str) else ""
    return {"image": "image", "audio": "audio", "video": "video"}.get(kind)


def _part(part: object) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "content": part}
    text = field(part, "text")
    if isinstance(text, str):
        return {"type": "reasoning" if field(part, "thought") is True else "text", "content": text}
    if (call := field(part, "function_call")) is not None:
        return {
            "type": "tool_call",
            "id": field(call, "id"),
            "name": field(call, "name"),
            "arguments": field(call, "args"),
        }
    if (response := field(part, "function_response")) is not None:
        return {
            "type": "tool_call_response",
            "id": field(response, "id"),
            "response": field(response, "response"),
        }
    if (blob := field(part, "inline_data")) is not None:
        data = field(blob, "data")
        if isinstance(data, bytes):
            data = base64.b64encode(data).decode("ascii")
        mime = field(blob, "mime_type")
        return {"type": "blob", "modality": _modality(mime), "mime_type": mime, "content": data}
    if (file := field(part, "file_data")) is not None:
        mime = field(file, "mime_type")
        return {"type": "uri", "modality": _modality(mime), "mime_type": mime, "uri": field(file, "file_uri")}
    if (code := field(part, "executable_code")) is not None:
        return {
            "type": "executable_code",
            "language": _name(field(code, "language")),
            "code": field(code, "code"),
        }
    if (result := field(part, "code_execution_result")) is not None:
        return {
            "type": "code_execution_result",
            "outcome": _name(field(result, "outcome")),
            "output": field(result, "output"),
        }
    return {"type": type(part).__name__}


def _is_content(item: object) -> bool:
    return field(item, "parts") is not None or field(item, "role") is not None


def _message(content: object) -> dict[str, Any]:
    parts = [_part(p) for p in field(content, "parts") or ()]
    role = field(content, "role")
    if role == "model":
        role = "assistant"
    elif parts and all(p["type"] == "tool_call_response" for p in parts):
        role = "tool"
    elif role is None:
        role = "user"
    return {"role": role, "parts": parts}


def _messages(contents: object) -> Content:
    """The SDK's ``t_contents``: contents become messages; loose parts and strings in a row form
    one user message."""
    if contents is None:
        return []
    items = (
        contents if isinstance(contents, Sequence) and not isinstance(contents, (str, bytes)) else [contents]
    )
    messages: Content = []
    loose: list[dict[str, Any]] = []
    for item in items:
        if _is_content(item):
            if loose:
                messages.append({"role": "user", "parts": loose})
                loose = []
            messages.append(_message(item))
        else:
            loose.append(_part(item))
    if loose:
        messages.append({"role": "user", "parts": loose})
    return messages


def tool_definitions(config: object) -> Content | None:
    """``config.tools`` in the shape of v1.41 ``gen_ai.tool.definitions``: function declarations
    (and Python functions, for automatic function calling) as ``{type: function, name,
    description, parameters}``, Gemini's built-in tools (``google_search``, ``code_execution``...)
    by their type."""
    tools = field(config, "tools")
    if not isinstance(tools, Sequence) or isinstance(tools, str) or not tools:
        return None
    definitions: Content = []
    for tool in tools:
        if callable(tool) and not isinstance(tool, Mapping) and field(tool, "function_declarations") is None:
            definition: dict[str, Any] = {
                "type": "function",
                "name": getattr(tool, "__name__", type(tool).__name__),
            }
            if doc := (getattr(tool, "__doc__", None) or "").strip():
                definition["description"] = doc
            definitions.append(definition)
            continue
        for declaration in field(tool, "function_declarations") or ():
            definition = {"type": "function", "name": field(declaration, "name")}
            if (description := field(declaration, "description")) is not None:
                definition["description"] = description
            parameters = field(declaration, "parameters_json_schema") or field(declaration, "parameters")
            if parameters is not None:
                dump = getattr(parameters, "model_dump", None)
                definition["parameters"] = (
                    dump(exclude_none=True, mode="json") if callable(dump) else parameters
                )
            definitions.append(definition)
        dump = getattr(tool, "model_dump", None)
        others = dump(exclude_none=True) if callable(dump) else tool if isinstance(tool, Mapping) else {}
        definitions.extend(
            {"type": key, "name": key}
            for key in others
            if key not in ("function_declarations", "functionDeclarations")
        )
    return definitions or None


def content(call: InferenceCall, kwargs: Mapping[str, Any]) -> None:
    contents = kwargs.get("contents")
    if contents is None:  # embed_content of Vertex AI's single-content form
        contents = kwargs.get("content") or kwargs.get("batch_contents")
    call.input_messages = _messages(contents)
    config = kwargs.get("config")
    system = field(config, "system_instruction")
    if system is not None:
        call.system_instructions = [p for m in _messages(system) for p in m["parts"]]
    call.tool_definitions = tool_definitions(config)


# -- responses ---------------------------------------------------------------------------------


def usage_of(metadata: object) -> Usage | None:
    """Gemini counts thoughts apart from the candidates, and tool-use prompts (search results fed
    back) apart from the prompt; the conventions' input includes the cached tokens (which the
    prompt count already does) and their output the reasoning tokens."""
    if metadata is None:
        return None
    prompt = as_int(field(metadata, "prompt_token_count"))
    tool_prompt = as_int(field(metadata, "tool_use_prompt_token_count"))
    candidates = as_int(field(metadata, "candidates_token_count"))
    thoughts = as_int(field(metadata, "thoughts_token_count"))
    input_tokens = None if prompt is None and tool_prompt is None else (prompt or 0) + (tool_prompt or 0)
    output_tokens = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=as_int(field(metadata, "cached_content_token_count")),
        reasoning_tokens=thoughts,
    )


def _finish(reason: str, parts: list[dict[str, Any]]) -> str:
    """Gemini's finish reason in the conventions' vocabulary, for output messages."""
    if reason == "stop":
        return "tool_call" if any(p["type"] == "tool_call" for p in parts) else "stop"
    if reason == "max_tokens":
        return "length"
    return "content_filter" if reason in _FILTERED else "error"


def generate_response(call: InferenceCall, response: object) -> None:
    call.response_id = as_str(field(response, "response_id"))
    call.response_model = as_str(field(response, "model_version"))
    candidates = field(response, "candidates") or ()
    reasons = [_name(field(c, "finish_reason")) or "error" for c in candidates]
    if not reasons:
        # A prompt blocked before any candidate: the block reason is why nothing came back.
        blocked = _name(field(field(response, "prompt_feedback"), "block_reason"))
        reasons = [blocked] if blocked else []
    call.finish_reasons = reasons or None
    if (usage := usage_of(field(response, "usage_metadata"))) is not None:
        call.usage = usage
    if call.capture_content:
        outputs: Content = []
        for candidate, reason in zip(candidates, reasons, strict=False):
            parts = [_part(p) for p in field(field(candidate, "content"), "parts") or ()]
            outputs.append({"role": "assistant", "parts": parts, "finish_reason": _finish(reason, parts)})
        if not candidates and reasons:
            outputs.append({"role": "assistant", "parts": [], "finish_reason": "content_filter"})
        call.output_messages = outputs


def stream_handler(capture: bool) -> Any:
    """Reads the chunks of a stream: each a partial ``GenerateContentResponse``. The finish reason
    arrives on a candidate's last chunk; the usage grows chunk by chunk, the last is complete."""
    parts: dict[int, list[dict[str, Any]]] = {}
    finish: dict[int, str] = {}

    def build_outputs(call: InferenceCall) -> None:
        outputs: Content = []
        for index in sorted(set(parts) | set(finish)):
            merged: list[dict[str, Any]] = []
            for part in parts.get(index, ()):
                last = merged[-1] if merged else None
                if (
                    last is not None
                    and part["type"] in ("text", "reasoning")
                    and last["type"] == part["type"]
                ):
                    last["content"] += part["content"]
                else:
                    merged.append(dict(part))
            merged = [p for p in merged if p["type"] not in ("text", "reasoning") or p["content"]]
            reason = finish.get(index, "error")
            outputs.append({"role": "assistant", "parts": merged, "finish_reason": _finish(reason, merged)})
        call.output_messages = outputs

    def on_chunk(call: InferenceCall, chunk: Any) -> None:
        if call.response_id is None:
            call.response_id = as_str(field(chunk, "response_id"))
        model = as_str(field(chunk, "model_version"))
        if model:
            call.response_model = model
        for position, candidate in enumerate(field(chunk, "candidates") or ()):
            index = as_int(field(candidate, "index")) or position
            reason = _name(field(candidate, "finish_reason"))
            if reason:
                finish[index] = reason
                call.finish_reasons = [finish[i] for i in sorted(finish)]
            if capture:
                parts.setdefault(index, []).extend(
                    _part(p) for p in field(field(candidate, "content"), "parts") or ()
                )
                call.before_end = build_outputs
        if (usage := usage_of(field(chunk, "usage_metadata"))) is not None:
            call.usage = usage

    return on_chunk


def _whole(value: object) -> int | None:
    """A count the SDK types as a float (Vertex AI's ``statistics.token_count``)."""
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return as_int(value)


def embed_response(call: InferenceCall, response: object) -> None:
    embeddings = field(response, "embeddings") or ()
    tokens = as_int(field(field(response, "usage_metadata"), "prompt_token_count"))
    if tokens is None:
        # Vertex AI's predict reports each input's token count with its vector.
        counts = [_whole(field(field(e, "statistics"), "token_count")) for e in embeddings]
        tokens = sum(c for c in counts if c is not None) if counts and None not in counts else None
    if tokens is not None:
        call.usage = Usage(input_tokens=tokens)
    if embeddings:
        values = field(embeddings[0], "values")
        if isinstance(values, list):
            call.response_attributes = {sc.EMBEDDINGS_DIMENSION_COUNT: len(values)}


# -- errors ------------------------------------------------------------------------------------

# google.rpc.Code: the whole vocabulary of an APIError's ``status``, so error.type stays bounded
# whatever a server sends.
GOOGLE_RPC_CODES = frozenset(
    {
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


def error_type(exc: BaseException) -> str:
    """An ``APIError``'s canonical status (``RESOURCE_EXHAUSTED``, ``UNAVAILABLE``...), the
    provider error code the conventions prefer: the SDK has one class for every 4xx and one for
    every 5xx. The SDK's other exceptions: ``google.genai.{class}``; anything else by class."""
    from agentwatch._telemetry._errors import error_type as by_class

    status = getattr(exc, "status", None)
    if isinstance(status, str) and status in GOOGLE_RPC_CODES and isinstance(getattr(exc, "code", None), int):
        return status
    if type(exc).__module__.startswith("google.genai."):
        # "google" is a namespace package shared by many distributions: name this one.
        return f"google.genai.{type(exc).__qualname__}"
    return by_class(exc)
