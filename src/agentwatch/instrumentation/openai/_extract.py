"""OpenAI request/response/chunk shapes -> :class:`InferenceCall` fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._telemetry._inference import Content, InferenceCall
from agentwatch._telemetry._usage import Usage
from agentwatch.instrumentation._common import (
    as_float,
    as_int,
    as_str,
    as_str_list,
    function_definition,
    get,
    parse_json,
    put,
)

# Output-message finish reasons are normalised in the message schema; the span attribute keeps
# the provider's own values.
_FINISH = {"tool_calls": "tool_call", "function_call": "tool_call"}


# -- requests ----------------------------------------------------------------------------------


def _output_type(response_format: object) -> str | None:
    if isinstance(response_format, type):  # a pydantic model given to parse()
        return "json"
    kind = get(response_format, "type")
    if kind in ("json_object", "json_schema"):
        return "json"
    if kind == "text":
        return "text"
    return None


_Reader = Callable[[dict[str, AttributeValue], object], None]


def _put(key: str, convert: Callable[[object], AttributeValue | None]) -> _Reader:
    def read(attrs: dict[str, AttributeValue], value: object) -> None:
        put(attrs, key, convert(value))

    return read


def _max_tokens(attrs: dict[str, AttributeValue], value: object) -> None:
    # max_completion_tokens (the current name) wins over max_tokens, whichever comes first.
    number = as_int(value)
    if number is not None:
        attrs.setdefault(sc.REQUEST_MAX_TOKENS, number)


def _choice_count(attrs: dict[str, AttributeValue], value: object) -> None:
    n = as_int(value)
    if n is not None and n != 1:
        attrs[sc.REQUEST_CHOICE_COUNT] = n


def _request_tier(attrs: dict[str, AttributeValue], value: object) -> None:
    tier = as_str(value)
    if tier and tier != "auto":
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier


# The request parameters that become attributes, by name: a request is read by walking the
# parameters it has (a handful) rather than every one known.
_CHAT_PARAMETERS: dict[str, _Reader] = {
    "max_completion_tokens": _put(sc.REQUEST_MAX_TOKENS, as_int),
    "max_tokens": _max_tokens,
    "temperature": _put(sc.REQUEST_TEMPERATURE, as_float),
    "top_p": _put(sc.REQUEST_TOP_P, as_float),
    # Not an OpenAI parameter, but OpenAI-compatible servers (vLLM, ...) take it in extra_body.
    "top_k": _put(sc.REQUEST_TOP_K, as_float),
    "frequency_penalty": _put(sc.REQUEST_FREQUENCY_PENALTY, as_float),
    "presence_penalty": _put(sc.REQUEST_PRESENCE_PENALTY, as_float),
    "stop": _put(sc.REQUEST_STOP_SEQUENCES, as_str_list),
    "seed": _put(sc.REQUEST_SEED, as_int),
    "n": _choice_count,
    "response_format": _put(sc.OUTPUT_TYPE, _output_type),
    "service_tier": _request_tier,
}


def chat_request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    readers = _CHAT_PARAMETERS
    for name, value in kwargs.items():
        read = readers.get(name)
        if read is not None:
            read(attrs, value)
    return attrs


def responses_request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    put(attrs, sc.REQUEST_MAX_TOKENS, as_int(kwargs.get("max_output_tokens")))
    put(attrs, sc.REQUEST_TEMPERATURE, as_float(kwargs.get("temperature")))
    put(attrs, sc.REQUEST_TOP_P, as_float(kwargs.get("top_p")))
    put(attrs, sc.OUTPUT_TYPE, _output_type(get(kwargs.get("text"), "format")))
    tier = as_str(kwargs.get("service_tier"))
    if tier and tier != "auto":
        attrs[sc.OPENAI_REQUEST_SERVICE_TIER] = tier
    conversation = kwargs.get("conversation")
    conversation_id = as_str(conversation) or as_str(get(conversation, "id"))
    put(attrs, sc.CONVERSATION_ID, conversation_id)
    return attrs


def embeddings_request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    fmt = as_str(kwargs.get("encoding_format"))
    if fmt:
        attrs[sc.REQUEST_ENCODING_FORMATS] = [fmt]
    put(attrs, sc.EMBEDDINGS_DIMENSION_COUNT, as_int(kwargs.get("dimensions")))
    return attrs


# -- content (only called when capture is on) --------------------------------------------------


def _parts(content: object) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts: list[dict[str, Any]] = []
    if isinstance(content, Sequence):
        for part in content:
            kind = get(part, "type")
            if kind in ("text", "input_text", "output_text"):
                parts.append({"type": "text", "content": get(part, "text")})
            elif kind == "refusal":
                parts.append({"type": "text", "content": get(part, "refusal")})
            elif kind in ("image_url", "input_image"):
                url = get(get(part, "image_url"), "url") or get(part, "image_url")
                parts.append({"type": "uri", "modality": "image", "uri": url})
            elif kind is not None:
                parts.append({"type": str(kind)})
    return parts


def _tool_call_parts(tool_calls: object) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for call in tool_calls or ():  # type: ignore[attr-defined]
        function = get(call, "function")
        parts.append(
            {
                "type": "tool_call",
                "id": get(call, "id"),
                "name": get(function, "name"),
                "arguments": parse_json(get(function, "arguments")),
            }
        )
    return parts


def _tool_definitions(tools: object) -> Content | None:
    """Request tools in the shape of v1.41 ``gen_ai.tool.definitions`` (chat and Responses).

    Function tools become ``{type: function, name, description, parameters}``: nested under
    ``function`` in Chat Completions, flat in Responses. Other tools (Responses' built-ins, custom
    and MCP tools) keep their type and a name: their own, the MCP server label, or the type.
    """
    if not isinstance(tools, Sequence) or isinstance(tools, str) or not tools:
        return None
    definitions: Content = []
    for tool in tools:
        kind = get(tool, "type")
        function = get(tool, "function")
        if kind == "function" and function is not None:
            definitions.append(
                function_definition(
                    get(function, "name"), get(function, "description"), get(function, "parameters")
                )
            )
        elif kind == "function":
            definitions.append(
                function_definition(get(tool, "name"), get(tool, "description"), get(tool, "parameters"))
            )
        elif kind is not None:
            custom = get(tool, "custom")
            name = get(custom, "name") or get(tool, "name") or get(tool, "server_label") or kind
            definition: dict[str, Any] = {"type": kind, "name": name}
            description = get(custom, "description") or get(tool, "description")
            if description is not None:
                definition["description"] = description
            definitions.append(definition)
    return definitions or None


def chat_input(call: InferenceCall, kwargs: Mapping[str, Any]) -> None:
    call.tool_definitions = _tool_definitions(kwargs.get("tools"))
    messages: Content = []
    for message in kwargs.get("messages") or ():
        role = get(message, "role")
        if role == "tool":
            messages.append(
                {
                    "role": "tool",
                    "parts": [
                        {
                            "type": "tool_call_response",
                            "id": get(message, "tool_call_id"),
                            "response": get(message, "content"),
                        }
                    ],
                }
            )
            continue
        parts = _parts(get(message, "content")) + _tool_call_parts(get(message, "tool_calls"))
        entry: dict[str, Any] = {"role": "system" if role == "developer" else role, "parts": parts}
        if name := get(message, "name"):
            entry["name"] = name
        messages.append(entry)
    call.input_messages = messages


def responses_input(call: InferenceCall, kwargs: Mapping[str, Any]) -> None:
    call.tool_definitions = _tool_definitions(kwargs.get("tools"))
    raw = kwargs.get("input")
    messages: Content = []
    if isinstance(raw, str):
        messages.append({"role": "user", "parts": [{"type": "text", "content": raw}]})
    elif isinstance(raw, Sequence):
        for item in raw:
            kind = get(item, "type")
            if kind == "function_call_output":
                messages.append(
                    {
                        "role": "tool",
                        "parts": [
                            {
                                "type": "tool_call_response",
                                "id": get(item, "call_id"),
                                "response": get(item, "output"),
                            }
                        ],
                    }
                )
            elif kind == "function_call":
                messages.append(
                    {
                        "role": "assistant",
                        "parts": [
                            {
                                "type": "tool_call",
                                "id": get(item, "call_id"),
                                "name": get(item, "name"),
                                "arguments": parse_json(get(item, "arguments")),
                            }
                        ],
                    }
                )
            else:
                role = get(item, "role") or "user"
                messages.append(
                    {"role": "system" if role == "developer" else role, "parts": _parts(get(item, "content"))}
                )
    call.input_messages = messages
    instructions = as_str(kwargs.get("instructions"))
    if instructions:
        call.system_instructions = [{"type": "text", "content": instructions}]


# -- responses ---------------------------------------------------------------------------------


def chat_usage(usage: object) -> Usage | None:
    """A Chat Completions ``usage`` (an object or its dict) -> :class:`Usage`."""
    if usage is None:
        return None
    if isinstance(usage, Mapping):
        prompt_tokens, completion_tokens = usage.get("prompt_tokens"), usage.get("completion_tokens")
        prompt, completion = usage.get("prompt_tokens_details"), usage.get("completion_tokens_details")
    else:
        # The SDK's pydantic model: plain attribute reads (a field an older SDK lacks is None).
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        prompt = getattr(usage, "prompt_tokens_details", None)
        completion = getattr(usage, "completion_tokens_details", None)
    return Usage(
        input_tokens=as_int(prompt_tokens),
        output_tokens=as_int(completion_tokens),
        cache_read_tokens=None if prompt is None else as_int(get(prompt, "cached_tokens")),
        cache_creation_tokens=None if prompt is None else as_int(get(prompt, "cache_write_tokens")),
        reasoning_tokens=None if completion is None else as_int(get(completion, "reasoning_tokens")),
    )


def _common_response(call: InferenceCall, obj: object) -> None:
    if isinstance(obj, Mapping):
        response_id, model = obj.get("id"), obj.get("model")
        tier, fingerprint = obj.get("service_tier"), obj.get("system_fingerprint")
    else:
        response_id, model = getattr(obj, "id", None), getattr(obj, "model", None)
        tier, fingerprint = getattr(obj, "service_tier", None), getattr(obj, "system_fingerprint", None)
    call.response_id = response_id if isinstance(response_id, str) else None
    call.response_model = model if isinstance(model, str) else None
    if (tier and isinstance(tier, str)) or (fingerprint and isinstance(fingerprint, str)):
        extra: dict[str, AttributeValue] = {}
        if tier and isinstance(tier, str):
            extra[sc.OPENAI_RESPONSE_SERVICE_TIER] = tier
        if fingerprint and isinstance(fingerprint, str):
            extra[sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] = fingerprint
        # v1.41 openai.md: both on the span and on the duration and token-usage metrics.
        call.response_attributes = call.metric_attributes = extra


def chat_response(call: InferenceCall, completion: object) -> None:
    _common_response(call, completion)
    choices = get(completion, "choices") or ()
    reasons = []
    for choice in choices:
        reason = (
            choice.get("finish_reason")
            if isinstance(choice, Mapping)
            else getattr(choice, "finish_reason", None)
        )
        reasons.append(str(reason or "error"))
    call.finish_reasons = reasons or None
    if (usage := chat_usage(get(completion, "usage"))) is not None:
        call.usage = usage
    if call.capture_content:
        outputs: Content = []
        for choice in choices:
            message = get(choice, "message")
            parts = _parts(get(message, "content")) + _tool_call_parts(get(message, "tool_calls"))
            reason = str(get(choice, "finish_reason") or "error")
            outputs.append(
                {"role": "assistant", "parts": parts, "finish_reason": _FINISH.get(reason, reason)}
            )
        call.output_messages = outputs


class ChatStreamState:
    """Per-stream accumulation for chat chunks (content only when capture is on)."""

    __slots__ = ("finish", "text", "tool_calls")

    def __init__(self) -> None:
        self.finish: dict[int, str] = {}
        self.text: dict[int, list[str]] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}


def chat_chunk_handler(capture: bool) -> Any:
    state = ChatStreamState()

    def build_outputs(call: InferenceCall) -> None:
        call.output_messages = _stream_outputs(state)

    def on_chunk(call: InferenceCall, chunk: Any) -> None:
        if call.response_id is None:
            # Every chunk repeats these; the first one's are read.
            _common_response(call, chunk)
        for choice in chunk.choices or ():
            reason = choice.finish_reason
            if reason is not None:
                state.finish[choice.index] = reason
                call.finish_reasons = [state.finish[i] for i in sorted(state.finish)]
            if capture:
                _accumulate(state, choice)
                call.before_end = build_outputs
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            call.usage = chat_usage(usage) or call.usage

    return on_chunk


def _accumulate(state: ChatStreamState, choice: Any) -> None:
    delta = choice.delta
    if delta is None:
        return
    if delta.content:
        state.text.setdefault(choice.index, []).append(delta.content)
    for tool_delta in delta.tool_calls or ():
        calls = state.tool_calls.setdefault(choice.index, {})
        entry = calls.setdefault(tool_delta.index, {"id": None, "name": None, "arguments": ""})
        if tool_delta.id:
            entry["id"] = tool_delta.id
        function = tool_delta.function
        if function is not None:
            if function.name:
                entry["name"] = function.name
            if function.arguments:
                entry["arguments"] += function.arguments


def _stream_outputs(state: ChatStreamState) -> Content:
    outputs: Content = []
    for index in sorted(set(state.text) | set(state.tool_calls) | set(state.finish)):
        parts: list[dict[str, Any]] = []
        if index in state.text:
            parts.append({"type": "text", "content": "".join(state.text[index])})
        for _, tc in sorted(state.tool_calls.get(index, {}).items()):
            parts.append(
                {
                    "type": "tool_call",
                    "id": tc["id"],
                    "name": tc["name"],
                    "arguments": parse_json(tc["arguments"]),
                }
            )
        reason = state.finish.get(index, "error")
        outputs.append({"role": "assistant", "parts": parts, "finish_reason": _FINISH.get(reason, reason)})
    return outputs


def _responses_usage(usage: object) -> Usage | None:
    if usage is None:
        return None
    details = get(usage, "input_tokens_details")
    out_details = get(usage, "output_tokens_details")
    return Usage(
        input_tokens=as_int(get(usage, "input_tokens")),
        output_tokens=as_int(get(usage, "output_tokens")),
        cache_read_tokens=as_int(get(details, "cached_tokens")),
        cache_creation_tokens=as_int(get(details, "cache_write_tokens")),
        reasoning_tokens=as_int(get(out_details, "reasoning_tokens")),
    )


def _responses_finish(response: object) -> str:
    status = get(response, "status")
    if status == "incomplete":
        reason = get(get(response, "incomplete_details"), "reason")
        return {"max_output_tokens": "length", "content_filter": "content_filter"}.get(
            str(reason), str(reason)
        )
    if status == "failed":
        return "error"
    if any(get(item, "type") == "function_call" for item in get(response, "output") or ()):
        return "tool_call"
    return "stop"


def responses_response(call: InferenceCall, response: object) -> None:
    _common_response(call, response)
    call.finish_reasons = [_responses_finish(response)]
    if (usage := _responses_usage(get(response, "usage"))) is not None:
        call.usage = usage
    if call.capture_content:
        parts: list[dict[str, Any]] = []
        for item in get(response, "output") or ():
            kind = get(item, "type")
            if kind == "message":
                parts.extend(_parts(get(item, "content")))
            elif kind == "function_call":
                parts.append(
                    {
                        "type": "tool_call",
                        "id": get(item, "call_id"),
                        "name": get(item, "name"),
                        "arguments": parse_json(get(item, "arguments")),
                    }
                )
            elif kind == "reasoning":
                for summary in get(item, "summary") or ():
                    parts.append({"type": "reasoning", "content": get(summary, "text")})
        call.output_messages = [
            {"role": "assistant", "parts": parts, "finish_reason": call.finish_reasons[0]}
        ]


def responses_event_handler(capture: bool) -> Any:
    def on_event(call: InferenceCall, event: Any) -> None:
        kind = getattr(event, "type", None)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            responses_response(call, event.response)
        elif kind == "response.created":
            _common_response(call, event.response)

    return on_event


def embeddings_response(call: InferenceCall, response: object) -> None:
    call.response_model = as_str(get(response, "model"))
    usage = get(response, "usage")
    tokens = as_int(get(usage, "prompt_tokens"))
    if tokens is not None:
        call.usage = Usage(input_tokens=tokens)
    data = get(response, "data")
    if data:
        vector = get(data[0], "embedding")
        if isinstance(vector, list):
            call.response_attributes = {sc.EMBEDDINGS_DIMENSION_COUNT: len(vector)}
