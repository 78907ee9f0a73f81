"""AWS Bedrock Runtime's wire format: Converse, ConverseStream, InvokeModel and
InvokeModelWithResponseStream, with SigV4 signatures checked on every request.

Paths are ``POST /model/{modelId}/converse`` (``converse-stream``, ``invoke``,
``invoke-with-response-stream``); the model id is percent-encoded in the path (``%3A`` for ``:``).
Errors are REST-JSON: ``{"message": ...}`` with the error code in ``x-amzn-ErrorType``.

Streams use the binary ``application/vnd.amazon.eventstream`` framing: each message is a prelude
(total length, headers length: two big-endian uint32), the CRC32 of the prelude, the headers
(``:event-type``, ``:content-type``, ``:message-type``; ``:exception-type`` for an exception), the
payload and the CRC32 of the whole message. ConverseStream sends one event per delta
(``messageStart``, ``contentBlockStart``, ``contentBlockDelta``, ``contentBlockStop``, ``messageStop``,
``metadata``); InvokeModelWithResponseStream sends ``chunk`` events whose payload is
``{"bytes": base64(model-native JSON)}``. A stream that fails midway ends with an exception message
(``modelStreamErrorException``; :func:`exception_message` builds any other).

InvokeModel bodies follow the model family named by the model id (inference-profile prefixes such
as ``us.`` and ARNs included): Anthropic (``anthropic.``, the Messages API), Amazon Nova
(``amazon.nova``) and Meta Llama (``meta.llama``); Titan embedding models answer embeddings.

Authentication: every request must carry a SigV4 signature (service ``bedrock``) made with
:data:`TEST_ACCESS_KEY_ID`/:data:`TEST_SECRET_ACCESS_KEY` (AWS's documented example credentials), or
``Authorization: Bearer`` :data:`TEST_BEARER_TOKEN`. The server recomputes the signature from the
request it received, the way AWS does, and answers a mismatch with ``403 InvalidSignatureException``
before any scripted reply is used: a client (or an instrumentation) that changes a signed part of a
request after signing it gets the error a real endpoint would give.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote

from agentwatch._fakellm._anthropic import render_messages
from agentwatch._fakellm._render import (
    Ids,
    PreparedCall,
    error_message,
    fake_vector,
    openai_finish_reason,
    prepare_calls,
    split_text,
)
from agentwatch._fakellm._replies import CompletionSpec, EmbeddingsSpec, ErrorSpec
from agentwatch._fakellm._wire import Body, Context, Event, RecordedRequest, Route, Stream, WireFormat

__all__ = [
    "EVENT_STREAM_CONTENT_TYPE",
    "TEST_ACCESS_KEY_ID",
    "TEST_BEARER_TOKEN",
    "TEST_SECRET_ACCESS_KEY",
    "BedrockFormat",
    "event_message",
    "exception_message",
    "verify_sigv4",
]

# AWS's documented example credentials: never valid anywhere.
TEST_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
TEST_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TEST_BEARER_TOKEN = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLXRlc3Qtb25seQ=="
EVENT_STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
_SECRETS = {TEST_ACCESS_KEY_ID: TEST_SECRET_ACCESS_KEY}

_PATH = re.compile(
    r"^/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream|invoke|invoke-with-response-stream)$"
)
_STREAMING = frozenset({"converse-stream", "invoke-with-response-stream"})
_ERROR_TYPE_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"
_ERROR_CODES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
# Bedrock's own stop reasons pass through; the neutral (OpenAI) vocabulary is mapped.
_STOP_REASONS = frozenset(
    {
        "end_turn",
        "tool_use",
        "max_tokens",
        "stop_sequence",
        "guardrail_intervened",
        "content_filtered",
        "model_context_window_exceeded",
    }
)
_TO_BEDROCK = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "content_filtered",
}
_TO_LLAMA = {"end_turn": "stop", "max_tokens": "length", "stop_sequence": "stop"}
_LATENCY_MS = 42


class BedrockFormat(WireFormat):
    name = "bedrock"
    request_id_header = "x-amzn-RequestId"

    def route(self, request: RecordedRequest) -> Route | None:
        match = _PATH.match(request.path)
        if match is None:
            return None
        model = unquote(match.group("model"))
        op = match.group("op")
        embeddings = op == "invoke" and _family(model) == "titan-embed"
        return Route(
            provider="bedrock",
            endpoint=op if request.method == "POST" else None,
            answers="embeddings" if embeddings else "completion",
            model=model,
            stream=op in _STREAMING,
        )

    def claims(self, request: RecordedRequest) -> bool:
        return "/bedrock/aws4_request" in request.headers.get("authorization", "")

    def authenticate(self, request: RecordedRequest) -> ErrorSpec | None:
        problem = verify_sigv4(request)
        if problem is None:
            return None
        code, message = problem
        return ErrorSpec(403, message, code, None, ())

    def error(self, spec: ErrorSpec, request: RecordedRequest, ctx: Context) -> Body:
        if request.endpoint is None and spec.error_type is None:
            code = "UnknownOperationException"
        else:
            default = "InternalServerException" if spec.status >= 500 else "ValidationException"
            code = spec.error_type or _ERROR_CODES.get(spec.status, default)
        return Body(
            spec.status,
            {"message": error_message(spec)},
            headers=(("x-amzn-ErrorType", code + _ERROR_TYPE_SUFFIX),),
        )

    def completion(self, spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
        op = request.endpoint
        if op in ("converse", "converse-stream"):
            return _converse(spec, request, ctx.ids)
        family = _family(request.model or "")
        if family == "anthropic":
            return _invoke_anthropic(spec, request, ctx.ids)
        if family == "nova":
            return _invoke_nova(spec, request, ctx.ids)
        if family == "llama":
            return _invoke_llama(spec, request)
        raise ValueError(f"the fake Bedrock server renders no InvokeModel body for model {request.model!r}")

    def embeddings(self, spec: EmbeddingsSpec, request: RecordedRequest, ctx: Context) -> Body:
        body = request.json if isinstance(request.json, dict) else {}
        text = body.get("inputText")
        text = text if isinstance(text, str) else ""
        dimensions = body.get("dimensions")
        size = dimensions if isinstance(dimensions, int) and dimensions > 0 else spec.dimensions
        vector = list(spec.vectors[0]) if spec.vectors else fake_vector(text, size)
        tokens = spec.input_tokens if spec.input_tokens is not None else len(text.split())
        return Body(
            200,
            {"embedding": vector, "embeddingsByType": {"float": vector}, "inputTextTokenCount": tokens},
            headers=_token_headers(tokens, 0, 0, 0),
        )


# --------------------------------------------------------------------------------------------------
# Model families and usage
# --------------------------------------------------------------------------------------------------


def _family(model: str) -> str | None:
    """The InvokeModel body family of a model id, inference profile or ARN."""
    name = model.rsplit("/", 1)[-1]
    if "anthropic." in name:
        return "anthropic"
    if "amazon.nova" in name:
        return "nova"
    if "meta.llama" in name:
        return "llama"
    if "amazon.titan-embed" in name:
        return "titan-embed"
    return None


def _stop_reason(spec: CompletionSpec) -> str:
    if spec.finish_reason in _STOP_REASONS:
        return spec.finish_reason
    neutral = openai_finish_reason(spec.finish_reason)
    return _TO_BEDROCK.get(neutral, neutral)


def _fresh_input(spec: CompletionSpec) -> int:
    """Bedrock, like Anthropic, counts input tokens without the cached ones."""
    return spec.input_tokens - spec.cached_tokens - spec.cache_creation_tokens


def _converse_usage(spec: CompletionSpec, cache_suffix: str = "InputTokens") -> dict[str, int]:
    """Converse's usage; Nova's InvokeModel body names the cache counts ``...InputTokenCount``."""
    usage = {
        "inputTokens": _fresh_input(spec),
        "outputTokens": spec.output_tokens,
        "totalTokens": spec.input_tokens + spec.output_tokens,
    }
    if spec.cached_tokens:
        usage[f"cacheRead{cache_suffix}"] = spec.cached_tokens
    if spec.cache_creation_tokens:
        usage[f"cacheWrite{cache_suffix}"] = spec.cache_creation_tokens
    return usage


def _invocation_metrics(spec: CompletionSpec) -> dict[str, int]:
    metrics = {
        "inputTokenCount": _fresh_input(spec),
        "outputTokenCount": spec.output_tokens,
        "invocationLatency": _LATENCY_MS,
        "firstByteLatency": _LATENCY_MS // 2,
    }
    if spec.cached_tokens:
        metrics["cacheReadInputTokenCount"] = spec.cached_tokens
    if spec.cache_creation_tokens:
        metrics["cacheWriteInputTokenCount"] = spec.cache_creation_tokens
    return metrics


def _token_headers(fresh: int, output: int, cache_read: int, cache_write: int) -> tuple[tuple[str, str], ...]:
    headers = [
        ("X-Amzn-Bedrock-Input-Token-Count", str(fresh)),
        ("X-Amzn-Bedrock-Output-Token-Count", str(output)),
        ("X-Amzn-Bedrock-Invocation-Latency", str(_LATENCY_MS)),
    ]
    if cache_read:
        headers.append(("X-Amzn-Bedrock-Cache-Read-Input-Token-Count", str(cache_read)))
    if cache_write:
        headers.append(("X-Amzn-Bedrock-Cache-Write-Input-Token-Count", str(cache_write)))
    return tuple(headers)


def _spec_headers(spec: CompletionSpec) -> tuple[tuple[str, str], ...]:
    if not spec.usage:
        return ()
    return _token_headers(
        _fresh_input(spec), spec.output_tokens, spec.cached_tokens, spec.cache_creation_tokens
    )


def _tool_inputs(calls: Sequence[PreparedCall]) -> list[dict[str, Any]]:
    inputs = []
    for call in calls:
        parsed = json.loads(call.arguments)
        if not isinstance(parsed, dict):
            raise ValueError(f"Bedrock toolUse input must be a JSON object, got {call.arguments!r}")
        inputs.append(parsed)
    return inputs


# --------------------------------------------------------------------------------------------------
# Converse and ConverseStream (also the Nova InvokeModel shapes, which are the same)
# --------------------------------------------------------------------------------------------------


def _content_blocks(spec: CompletionSpec, calls: list[PreparedCall]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if spec.content is not None or not calls:
        blocks.append({"text": spec.content or ""})
    for call, arguments in zip(calls, _tool_inputs(calls), strict=True):
        blocks.append({"toolUse": {"toolUseId": call.id, "name": call.name, "input": arguments}})
    return blocks


def _converse_events(
    spec: CompletionSpec, calls: list[PreparedCall]
) -> list[tuple[str, dict[str, Any], bool]]:
    """(event type, payload, is a content delta) of a ConverseStream, without the end events."""
    events: list[tuple[str, dict[str, Any], bool]] = [("messageStart", {"role": "assistant"}, False)]
    index = 0
    if spec.content is not None or not calls:
        for piece in split_text(spec.content or "", spec.chunks):
            events.append(("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}, True))
        events.append(("contentBlockStop", {"contentBlockIndex": 0}, False))
        index = 1
    for call in calls:
        start = {"toolUse": {"toolUseId": call.id, "name": call.name}}
        events.append(("contentBlockStart", {"contentBlockIndex": index, "start": start}, False))
        for piece in call.pieces:
            delta = {"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}
            events.append(("contentBlockDelta", delta, True))
        events.append(("contentBlockStop", {"contentBlockIndex": index}, False))
        index += 1
    return events


def _converse(spec: CompletionSpec, request: RecordedRequest, ids: Ids) -> Body | Stream:
    calls = prepare_calls(spec, ids, "tooluse_")
    reason = _stop_reason(spec)
    if not request.stream:
        body: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": _content_blocks(spec, calls)}},
            "stopReason": reason,
            "metrics": {"latencyMs": _LATENCY_MS},
        }
        # The live API always reports usage; usage=False shows how a client copes without it.
        if spec.usage:
            body["usage"] = _converse_usage(spec)
        return Body(200, body)
    events = [
        Event(kind, event_message(kind, payload), content=content)
        for kind, payload, content in _converse_events(spec, calls)
    ]
    events.append(Event("messageStop", event_message("messageStop", {"stopReason": reason}), terminal=True))
    if spec.usage:
        metadata = {"usage": _converse_usage(spec), "metrics": {"latencyMs": _LATENCY_MS}}
        events.append(Event("metadata", event_message("metadata", metadata), terminal=True))
    return _event_stream(events)


# --------------------------------------------------------------------------------------------------
# InvokeModel bodies per family
# --------------------------------------------------------------------------------------------------


def _anthropic_model(model: str) -> str:
    """``us.anthropic.claude-3-5-sonnet-20240620-v1:0`` answers as ``claude-3-5-sonnet-20240620``."""
    name = model.rsplit("/", 1)[-1]
    name = name.split("anthropic.", 1)[-1]
    return re.sub(r"-v\d+(:\d+)?$", "", name)


def _invoke_anthropic(spec: CompletionSpec, request: RecordedRequest, ids: Ids) -> Body | Stream:
    spec = replace(spec, model=spec.model or _anthropic_model(request.model or ""))
    rendered = render_messages(spec, request, ids, "msg_bdrk_fake")
    if isinstance(rendered, Body):
        return Body(200, rendered.content, headers=_spec_headers(spec))
    events = [ev for ev in rendered.events if ev.name != "ping"]
    last = events[-1]
    last.data = {**last.data, "amazon-bedrock-invocationMetrics": _invocation_metrics(spec)}
    return _event_stream([replace(ev, data=chunk_message(ev.data)) for ev in events])


def _invoke_nova(spec: CompletionSpec, request: RecordedRequest, ids: Ids) -> Body | Stream:
    calls = prepare_calls(spec, ids, "tooluse_")
    reason = _stop_reason(spec)
    usage = _converse_usage(spec, "InputTokenCount")
    if not request.stream:
        body: dict[str, Any] = {
            "output": {"message": {"role": "assistant", "content": _content_blocks(spec, calls)}},
            "stopReason": reason,
        }
        if spec.usage:
            body["usage"] = usage
        return Body(200, body, headers=_spec_headers(spec))
    events = [
        Event(kind, chunk_message({kind: payload}), content=content)
        for kind, payload, content in _converse_events(spec, calls)
    ]
    events.append(Event("messageStop", chunk_message({"messageStop": {"stopReason": reason}}), terminal=True))
    if spec.usage:
        metadata = {
            "metadata": {"usage": usage, "metrics": {}, "trace": {}},
            "amazon-bedrock-invocationMetrics": _invocation_metrics(spec),
        }
        events.append(Event("metadata", chunk_message(metadata), terminal=True))
    return _event_stream(events)


def _invoke_llama(spec: CompletionSpec, request: RecordedRequest) -> Body | Stream:
    if spec.calls:
        raise ValueError("Meta Llama's InvokeModel body has no tool calls; script text")
    neutral = _stop_reason(spec)
    reason = _TO_LLAMA.get(neutral, neutral)
    text = spec.content or ""
    if not request.stream:
        body: dict[str, Any] = {"generation": text, "stop_reason": reason}
        if spec.usage:
            body["prompt_token_count"] = spec.input_tokens
            body["generation_token_count"] = spec.output_tokens
        return Body(200, body, headers=_spec_headers(spec))
    events = []
    pieces = split_text(text, spec.chunks)
    for number, piece in enumerate(pieces, start=1):
        chunk: dict[str, Any] = {
            "generation": piece,
            "prompt_token_count": spec.input_tokens if number == 1 and spec.usage else None,
            "generation_token_count": number,
            "stop_reason": None,
        }
        events.append(Event("chunk", chunk_message(chunk), content=True))
    final: dict[str, Any] = {
        "generation": "",
        "prompt_token_count": None,
        "generation_token_count": spec.output_tokens,
        "stop_reason": reason,
    }
    if spec.usage:
        final["amazon-bedrock-invocationMetrics"] = _invocation_metrics(spec)
    events.append(Event("chunk", chunk_message(final), terminal=True))
    return _event_stream(events)


# --------------------------------------------------------------------------------------------------
# Event-stream framing
# --------------------------------------------------------------------------------------------------

_STRING = 7  # header value type: UTF-8 string with a uint16 length


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One ``application/vnd.amazon.eventstream`` message (string headers only)."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", zlib.crc32(head))


def event_message(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """An ``event`` message of type ``event_type`` with a JSON payload."""
    headers = {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"}
    return encode_message(headers, json.dumps(payload, separators=(",", ":")).encode())


def chunk_message(payload: Mapping[str, Any]) -> bytes:
    """An InvokeModelWithResponseStream ``chunk`` event carrying ``payload`` (model-native JSON)."""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return event_message("chunk", {"bytes": base64.b64encode(raw).decode()})


def exception_message(exception_type: str, message: str) -> bytes:
    """An ``exception`` message, e.g. ``throttlingException``, as a stream that fails midway ends."""
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps({"message": message}).encode())


def _encode(events: list[Event]) -> list[bytes]:
    return [ev.data for ev in events]


def _event_stream(events: list[Event]) -> Stream:
    error = exception_message("modelStreamErrorException", "Model stream error (fake LLM)")
    return Stream(
        events,
        [Event("modelStreamErrorException", error)],
        encode=_encode,
        content_type=EVENT_STREAM_CONTENT_TYPE,
        headers=(("X-Amzn-Bedrock-Content-Type", "application/json"),),
    )


# --------------------------------------------------------------------------------------------------
# SigV4
# --------------------------------------------------------------------------------------------------

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _canonical_path(path: str) -> str:
    """The path as SigV4 canonicalises it for every service but S3: dot segments removed, then
    URI-encoded once more (the raw path is already encoded, so ``%3A`` becomes ``%253A``)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in ("", "."):
            segments.append(segment)
    normalised = "/" + "/".join(segments)
    if path.endswith("/") and normalised != "/":
        normalised += "/"
    return quote(normalised, safe="/~")


def _canonical_query(query: Mapping[str, str]) -> str:
    pairs = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query.items())
    return "&".join(f"{k}={v}" for k, v in pairs)


def verify_sigv4(request: RecordedRequest) -> tuple[str, str] | None:
    """None when ``request`` is signed with the test credentials (or bears the test token), else
    the (error code, message) AWS answers with."""
    authorization = request.headers.get("authorization")
    if authorization is None:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    if authorization.startswith("Bearer "):
        if hmac.compare_digest(authorization[7:].strip(), TEST_BEARER_TOKEN):
            return None
        return "UnrecognizedClientException", "Invalid API Key format: Must start with pre-defined prefix"
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        return (
            "IncompleteSignatureException",
            "Authorization header requires Credential, SignedHeaders and Signature",
        )
    access_key, _, scope = match.group("credential").partition("/")
    secret = _SECRETS.get(access_key)
    if secret is None:
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    date, region, service, terminator = [*scope.split("/"), "", "", "", ""][:4]
    amz_date = request.headers.get("x-amz-date", "")
    if service != "bedrock" or terminator != "aws4_request" or not amz_date.startswith(date):
        return (
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region and service 'bedrock' ({scope}).",
        )
    signed = match.group("signed").split(";")
    missing = [name for name in signed if name not in request.headers]
    if missing or "host" not in signed:
        return (
            "InvalidSignatureException",
            f"Signed headers missing from the request: {', '.join(missing) or 'host'}",
        )
    canonical_headers = "".join(f"{name}:{' '.join(request.headers[name].split())}\n" for name in signed)
    payload_hash = request.headers.get("x-amz-content-sha256") or hashlib.sha256(request.body).hexdigest()
    canonical_request = "\n".join(
        [
            request.method,
            _canonical_path(request.path),
            _canonical_query(request.query),
            canonical_headers,
            ";".join(signed),
            payload_hash,
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if hmac.compare_digest(expected, match.group("signature")):
        return None
    return (
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your "
        "AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
