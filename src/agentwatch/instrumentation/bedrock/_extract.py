"""Bedrock Runtime request/response/event shapes -> :class:`InferenceCall` fields.

Converse and ConverseStream share one shape for every model. InvokeModel bodies are the model's
own: Anthropic's Messages API (read with the Anthropic extractors), Amazon Nova's (the Converse
shape inside a body) and Meta Llama's (a prompt and a generation); other families get what every
InvokeModel response carries, the token counts in the ``x-amzn-bedrock-*-token-count`` headers.
InvokeModelWithResponseStream ends with ``amazon-bedrock-invocationMetrics`` in its last chunk,
which holds the token counts for families whose chunks carry none.

Bedrock counts ``inputTokens`` without the cache reads and writes (as Anthropic does); semconv's
``gen_ai.usage.input_tokens`` includes them, so they are added back.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from opentelemetry.semconv._incubating.attributes.aws_attributes import (
    AWS_BEDROCK_GUARDRAIL_ID,
    AWS_REQUEST_ID,
)
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._telemetry._errors import error_type as default_error_type
from agentwatch._telemetry._errors import is_code
from agentwatch._telemetry._inference import InferenceCall
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
    server_of_url,
)
from agentwatch.instrumentation.anthropic import _extract as anthropic

__all__ = [
    "client_info",
    "converse_content",
    "converse_request",
    "converse_response",
    "converse_stream_handler",
    "error_code",
    "error_metadata",
    "error_type",
    "family",
    "invoke_content",
    "invoke_request",
    "invoke_response",
    "invoke_stream_handler",
    "is_embeddings_model",
    "request_body",
    "response_body",
    "response_metadata",
]

PROVIDER = "aws.bedrock"

# Output messages use semconv's finish reasons; gen_ai.response.finish_reasons keeps Bedrock's own.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "stop": "stop",
    "max_tokens": "length",
    "length": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_call",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
    "malformed_model_output": "error",
    "malformed_tool_use": "error",
}
_METRICS_KEY = "amazon-bedrock-invocationMetrics"


def _finish(reason: str | None) -> str:
    return _FINISH.get(reason or "", reason or "error")


# -- the client ----------------------------------------------------------------------------------


def client_info(client: Any) -> tuple[str, str | None, int | None]:
    return PROVIDER, *server_of_url(get(get(client, "meta"), "endpoint_url"))


# -- model families (InvokeModel) ----------------------------------------------------------------


def family(model_id: object, body: object) -> str | None:
    """``anthropic``, ``nova`` or ``llama``: from the model id (inference profiles such as ``us.`` and
    ARNs included), else from the request body's shape (a provisioned-throughput ARN names no model)."""
    name = model_id.rsplit("/", 1)[-1] if isinstance(model_id, str) else ""
    if "anthropic." in name:
        return "anthropic"
    if "amazon.nova" in name:
        return "nova"
    if "meta.llama" in name:
        return "llama"
    if isinstance(body, Mapping):
        if "anthropic_version" in body:
            return "anthropic"
        if body.get("schemaVersion") == "messages-v1" or (
            isinstance(body.get("messages"), list) and isinstance(body.get("inferenceConfig"), Mapping)
        ):
            return "nova"
        if isinstance(body.get("prompt"), str) and "max_gen_len" in body:
            return "llama"
    return None


def is_embeddings_model(model_id: object) -> bool:
    return isinstance(model_id, str) and "embed" in model_id.rsplit("/", 1)[-1]


def request_body(params: Mapping[str, Any]) -> Any:
    """The parsed JSON body of an InvokeModel request; None for a file-like body (reading it would
    consume what botocore is about to send) or a body that is not JSON."""
    body = params.get("body")
    if isinstance(body, (bytes, bytearray, str)):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return None


def response_body(data: bytes | None) -> object:
    """The parsed JSON of an InvokeModel response body, or None."""
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


# -- requests ------------------------------------------------------------------------------------


def _guardrail(attrs: dict[str, AttributeValue], identifier: object) -> None:
    put(attrs, AWS_BEDROCK_GUARDRAIL_ID, as_str(identifier))


def converse_request(params: Mapping[str, Any]) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    config = params.get("inferenceConfig")
    put(attrs, sc.REQUEST_MAX_TOKENS, as_int(get(config, "maxTokens")))
    put(attrs, sc.REQUEST_TEMPERATURE, as_float(get(config, "temperature")))
    put(attrs, sc.REQUEST_TOP_P, as_float(get(config, "topP")))
    put(attrs, sc.REQUEST_STOP_SEQUENCES, as_str_list(get(config, "stopSequences")))
    extra = params.get("additionalModelRequestFields")
    top_k = as_float(get(extra, "top_k"))
    put(
        attrs,
        sc.REQUEST_TOP_K,
        top_k if top_k is not None else as_float(get(get(extra, "inferenceConfig"), "topK")),
    )
    if get(get(params.get("outputConfig"), "textFormat"), "type") == "json_schema":
        attrs[sc.OUTPUT_TYPE] = "json"
    _guardrail(attrs, get(params.get("guardrailConfig"), "guardrailIdentifier"))
    return attrs


def invoke_request(view: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """``view``: the InvokeModel parameters with ``body`` already parsed (see ``_patch``)."""
    body = view.get("body")
    kind = family(view.get("modelId"), body)
    attrs: dict[str, AttributeValue] = {}
    if kind == "anthropic" and isinstance(body, Mapping):
        attrs = anthropic.request(body)
    elif kind == "nova":
        config = get(body, "inferenceConfig")
        max_tokens = as_int(get(config, "maxTokens"))
        put(
            attrs,
            sc.REQUEST_MAX_TOKENS,
            max_tokens if max_tokens is not None else as_int(get(config, "max_new_tokens")),
        )
        put(attrs, sc.REQUEST_TEMPERATURE, as_float(get(config, "temperature")))
        put(attrs, sc.REQUEST_TOP_P, as_float(get(config, "topP")))
        put(attrs, sc.REQUEST_TOP_K, as_float(get(config, "topK")))
        put(attrs, sc.REQUEST_STOP_SEQUENCES, as_str_list(get(config, "stopSequences")))
    elif kind == "llama":
        put(attrs, sc.REQUEST_MAX_TOKENS, as_int(get(body, "max_gen_len")))
        put(attrs, sc.REQUEST_TEMPERATURE, as_float(get(body, "temperature")))
        put(attrs, sc.REQUEST_TOP_P, as_float(get(body, "top_p")))
    _guardrail(attrs, view.get("guardrailIdentifier"))
    return attrs


# -- content (only called when capture is on) ----------------------------------------------------


def _tool_result(content: object) -> object:
    """A ``toolResult``'s content blocks as the response the tool gave: its text, its JSON, or both."""
    values: list[object] = []
    for block in content if isinstance(content, Sequence) and not isinstance(content, str) else ():
        if not isinstance(block, Mapping):
            continue
        if "json" in block:
            values.append(get(block, "json"))
        elif "text" in block:
            values.append(get(block, "text"))
        else:
            values.append({"type": next(iter(block), "unknown")})
    if len(values) == 1:
        return values[0]
    if values and all(isinstance(v, str) for v in values):
        return "".join(v for v in values if isinstance(v, str))
    return values


def _image(block: object) -> dict[str, Any]:
    source = get(block, "source")
    data = get(source, "bytes")
    if isinstance(data, (bytes, bytearray)):
        return {
            "type": "blob",
            "modality": "image",
            "mime_type": f"image/{get(block, 'format')}",
            "content": base64.b64encode(data).decode(),
        }
    return {"type": "uri", "modality": "image", "uri": get(get(source, "s3Location"), "uri")}


def parts(content: object) -> list[dict[str, Any]]:
    """Converse (and Nova) content blocks -> semconv message parts."""
    out: list[dict[str, Any]] = []
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    for block in content if isinstance(content, Sequence) else ():
        if not isinstance(block, Mapping):
            continue
        if "text" in block:
            out.append({"type": "text", "content": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            out.append(
                {
                    "type": "tool_call",
                    "id": get(use, "toolUseId"),
                    "name": get(use, "name"),
                    "arguments": get(use, "input"),
                }
            )
        elif "toolResult" in block:
            result = block["toolResult"]
            out.append(
                {
                    "type": "tool_call_response",
                    "id": get(result, "toolUseId"),
                    "response": _tool_result(get(result, "content")),
                }
            )
        elif "reasoningContent" in block:
            text = get(get(block["reasoningContent"], "reasoningText"), "text")
            if text is not None:
                out.append({"type": "reasoning", "content": text})
        elif "image" in block:
            out.append(_image(block["image"]))
        elif "guardContent" in block:
            out.append({"type": "text", "content": get(get(block["guardContent"], "text"), "text")})
        elif "cachePoint" not in block and block:
            out.append({"type": next(iter(block))})
    return out


def _tool_definitions(config: object) -> list[dict[str, Any]] | None:
    """``toolConfig.tools`` (Converse, and Nova's InvokeModel body) in the shape of v1.41
    ``gen_ai.tool.definitions``: a ``toolSpec`` is a function whose parameters are its
    ``inputSchema.json``; a ``systemTool`` (a tool Bedrock runs) keeps that kind and its name;
    ``cachePoint`` entries mark a cache boundary and are no tools."""
    tools = get(config, "tools")
    if not isinstance(tools, Sequence) or isinstance(tools, str) or not tools:
        return None
    definitions: list[dict[str, Any]] = []
    for tool in tools:
        spec = get(tool, "toolSpec")
        system_tool = get(tool, "systemTool")
        if spec is not None:
            definitions.append(
                function_definition(
                    get(spec, "name"), get(spec, "description"), get(get(spec, "inputSchema"), "json")
                )
            )
        elif system_tool is not None:
            definitions.append({"type": "systemTool", "name": get(system_tool, "name") or "systemTool"})
    return definitions or None


def _messages(call: InferenceCall, messages: object, system: object, tool_config: object) -> None:
    call.tool_definitions = _tool_definitions(tool_config)
    call.input_messages = [
        {"role": get(m, "role"), "parts": parts(get(m, "content"))}
        for m in (messages if isinstance(messages, Sequence) else ())
    ]
    system_parts = parts(system)
    if system_parts:
        call.system_instructions = system_parts


def converse_content(call: InferenceCall, params: Mapping[str, Any]) -> None:
    _messages(call, params.get("messages"), params.get("system"), params.get("toolConfig"))


def invoke_content(call: InferenceCall, view: Mapping[str, Any]) -> None:
    body = view.get("body")
    if not isinstance(body, Mapping):
        return
    kind = family(view.get("modelId"), body)
    if kind == "anthropic":
        anthropic.content(call, body)
    elif kind == "nova":
        _messages(call, body.get("messages"), body.get("system"), body.get("toolConfig"))
    elif kind == "llama":
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            call.input_messages = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]


# -- responses -----------------------------------------------------------------------------------


def _count(usage: object, *names: str) -> int | None:
    for name in names:
        value = as_int(get(usage, name))
        if value is not None:
            return value
    return None


def _usage(fresh: int | None, output: int | None, cache_read: int | None, cache_write: int | None) -> Usage:
    total = None if fresh is None else fresh + (cache_read or 0) + (cache_write or 0)
    return Usage(
        input_tokens=total,
        output_tokens=output,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_write,
    )


def _converse_usage(usage: object) -> Usage | None:
    if usage is None:
        return None
    return _usage(
        _count(usage, "inputTokens"),
        _count(usage, "outputTokens"),
        # Converse says cache...InputTokens; Nova's InvokeModel body cache...InputTokenCount.
        _count(usage, "cacheReadInputTokens", "cacheReadInputTokenCount"),
        _count(usage, "cacheWriteInputTokens", "cacheWriteInputTokenCount"),
    )


def _metrics_usage(metrics: object) -> Usage:
    return _usage(
        _count(metrics, "inputTokenCount"),
        _count(metrics, "outputTokenCount"),
        _count(metrics, "cacheReadInputTokenCount"),
        _count(metrics, "cacheWriteInputTokenCount"),
    )


def _header_usage(headers: Mapping[str, Any]) -> Usage:
    def count(kind: str) -> int | None:
        raw = headers.get(f"x-amzn-bedrock-{kind}-token-count")
        return int(raw) if isinstance(raw, str) and raw.isdigit() else None

    return _usage(count("input"), count("output"), count("cache-read-input"), count("cache-write-input"))


def response_metadata(call: InferenceCall, result: Mapping[str, Any]) -> Mapping[str, Any]:
    """The AWS request id (``aws.request_id``) of any operation; returns the HTTP headers."""
    metadata = get(result, "ResponseMetadata")
    request_id = as_str(get(metadata, "RequestId"))
    if request_id:
        call.response_attributes = {**(call.response_attributes or {}), AWS_REQUEST_ID: request_id}
    headers = get(metadata, "HTTPHeaders")
    return headers if isinstance(headers, Mapping) else {}


def _converse_shape(call: InferenceCall, body: Mapping[str, Any]) -> None:
    """A Converse response, or a Nova InvokeModel body (the same shape)."""
    reason = as_str(body.get("stopReason"))
    call.finish_reasons = [reason] if reason else None
    if (usage := _converse_usage(body.get("usage"))) is not None:
        call.usage = usage
    if call.capture_content:
        message = get(body.get("output"), "message")
        call.output_messages = [
            {
                "role": get(message, "role") or "assistant",
                "parts": parts(get(message, "content")),
                "finish_reason": _finish(reason),
            }
        ]


def converse_response(call: InferenceCall, result: Any) -> None:
    if isinstance(result, Mapping):
        response_metadata(call, result)
        _converse_shape(call, result)


def invoke_response(call: InferenceCall, result: Mapping[str, Any], body: object) -> None:
    """``body``: the parsed response body (None when it was not read: unknown family, embeddings)."""
    headers = response_metadata(call, result)
    if isinstance(body, Mapping):
        if body.get("type") == "message":
            anthropic.response(call, body)
        elif isinstance(body.get("output"), Mapping):
            _converse_shape(call, body)
        elif "generation" in body:
            reason = as_str(body.get("stop_reason"))
            call.finish_reasons = [reason] if reason else None
            usage = _usage(
                _count(body, "prompt_token_count"), _count(body, "generation_token_count"), None, None
            )
            if usage.reported:
                call.usage = usage
            if call.capture_content:
                call.output_messages = [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": body.get("generation")}],
                        "finish_reason": _finish(reason),
                    }
                ]
    if not call.usage.reported:
        call.usage = _header_usage(headers)


# -- streams -------------------------------------------------------------------------------------


class _ConverseState:
    """ConverseStream events (and Nova's InvokeModel chunks, which are the same) of one stream."""

    __slots__ = ("blocks", "role")

    def __init__(self) -> None:
        self.role = "assistant"
        self.blocks: dict[int, dict[str, Any]] = {}

    def outputs(self, call: InferenceCall) -> None:
        out: list[dict[str, Any]] = []
        for _, block in sorted(self.blocks.items()):
            text = "".join(block["text"])
            if block["kind"] == "toolUse":
                out.append(
                    {
                        "type": "tool_call",
                        "id": block["id"],
                        "name": block["name"],
                        "arguments": parse_json(text),
                    }
                )
            elif block["kind"] == "reasoning":
                out.append({"type": "reasoning", "content": text})
            else:
                out.append({"type": "text", "content": text})
        reason = call.finish_reasons[0] if call.finish_reasons else None
        call.output_messages = [{"role": self.role, "parts": out, "finish_reason": _finish(reason)}]

    def on_event(self, call: InferenceCall, event: Mapping[str, Any], capture: bool) -> None:
        if "contentBlockDelta" in event:
            if capture:
                self._delta(call, event["contentBlockDelta"])
        elif "metadata" in event:
            if (usage := _converse_usage(get(event["metadata"], "usage"))) is not None:
                call.usage = usage
        elif "messageStop" in event:
            reason = as_str(get(event["messageStop"], "stopReason"))
            if reason:
                call.finish_reasons = [reason]
        elif "contentBlockStart" in event:
            if capture:
                start = event["contentBlockStart"]
                use = get(get(start, "start"), "toolUse")
                if use is not None:
                    block = self._block(call, start, "toolUse")
                    block["id"], block["name"] = get(use, "toolUseId"), get(use, "name")
        elif "messageStart" in event:
            self.role = as_str(get(event["messageStart"], "role")) or "assistant"

    def _block(self, call: InferenceCall, event: object, kind: str) -> dict[str, Any]:
        index = as_int(get(event, "contentBlockIndex")) or 0
        block = self.blocks.get(index)
        if block is None:
            block = self.blocks[index] = {"kind": kind, "text": [], "id": None, "name": None}
            call.before_end = self.outputs
        return block

    def _delta(self, call: InferenceCall, event: object) -> None:
        delta = get(event, "delta")
        if (text := as_str(get(delta, "text"))) is not None:
            self._block(call, event, "text")["text"].append(text)
        elif (use := get(delta, "toolUse")) is not None:
            self._block(call, event, "toolUse")["text"].append(as_str(get(use, "input")) or "")
        elif (reasoning := get(delta, "reasoningContent")) is not None:
            piece = as_str(get(reasoning, "text"))
            if piece:
                self._block(call, event, "reasoning")["text"].append(piece)


def converse_stream_handler(capture: bool) -> Callable[[InferenceCall, Any], None]:
    state = _ConverseState()

    def on_event(call: InferenceCall, event: Any) -> None:
        if isinstance(event, Mapping):
            state.on_event(call, event, capture)

    return on_event


class _LlamaState:
    __slots__ = ("prompt_tokens", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.prompt_tokens: int | None = None

    def on_chunk(self, call: InferenceCall, chunk: Mapping[str, Any], capture: bool) -> None:
        prompt = as_int(chunk.get("prompt_token_count"))
        if prompt is not None:
            self.prompt_tokens = prompt
        generated = as_int(chunk.get("generation_token_count"))
        if generated is not None and self.prompt_tokens is not None:
            call.usage = _usage(self.prompt_tokens, generated, None, None)
        reason = as_str(chunk.get("stop_reason"))
        if reason:
            call.finish_reasons = [reason]
        if capture:
            piece = as_str(chunk.get("generation"))
            if piece:
                self.text.append(piece)
            call.before_end = self.outputs

    def outputs(self, call: InferenceCall) -> None:
        reason = call.finish_reasons[0] if call.finish_reasons else None
        call.output_messages = [
            {
                "role": "assistant",
                "parts": [{"type": "text", "content": "".join(self.text)}],
                "finish_reason": _finish(reason),
            }
        ]


def invoke_stream_handler(capture: bool) -> Callable[[InferenceCall, Any], None]:
    """``{"chunk": {"bytes": ...}}`` events: each chunk is a model-native JSON object."""
    converse = _ConverseState()
    llama = _LlamaState()
    anthropic_events = anthropic.event_handler(capture)

    def on_event(call: InferenceCall, event: Any) -> None:
        raw = get(get(event, "chunk"), "bytes")
        if not isinstance(raw, (bytes, bytearray, str)):
            return
        chunk = json.loads(raw)
        if not isinstance(chunk, Mapping):
            return
        if isinstance(chunk.get("type"), str):
            # Anthropic's stream events, read by attribute like the SDK's event objects.
            anthropic_events(call, SimpleNamespace(**chunk))
        elif "generation" in chunk:
            llama.on_chunk(call, chunk, capture)
        else:
            converse.on_event(call, chunk, capture)
        metrics = chunk.get(_METRICS_KEY)
        if metrics is not None and not call.usage.reported:
            call.usage = _metrics_usage(metrics)

    return on_event


# -- errors --------------------------------------------------------------------------------------


def _error_response(exc: BaseException) -> Mapping[str, Any] | None:
    try:
        response = getattr(exc, "response", None)
    except Exception:  # noqa: BLE001 - an exception whose attributes fail is read as having none
        return None
    return response if isinstance(response, Mapping) else None


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (``ThrottlingException``), normalised: an
    exception event mid-stream names it in lower camel case (``throttlingException``)."""
    code = get(get(_error_response(exc), "Error"), "Code")
    if not isinstance(code, str) or not is_code(code):
        return None
    return code[0].upper() + code[1:]


def error_type(exc: BaseException) -> str:
    """``botocore.{code}`` for AWS errors: the modeled exception classes botocore generates are
    named after their code, so this is what ``error_type`` gives them anyway; an error raised
    mid-stream (``EventStreamError``) or with an unmodeled code gets the same value as its HTTP
    twin. Other exceptions (``ReadTimeoutError``...) keep their class name."""
    code = error_code(exc)
    if code is not None:
        return f"botocore.{code}"
    return default_error_type(exc)


def error_metadata(call: InferenceCall, exc: BaseException) -> None:
    """The AWS request id of a failed call (``aws.request_id``), which AWS support asks for."""
    response = _error_response(exc)
    if response is not None:
        response_metadata(call, response)
