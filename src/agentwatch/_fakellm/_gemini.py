"""Google's Gemini REST wire format: the Gemini API (AI Studio) and Vertex AI paths.

``POST /{version}/models/{model}:generateContent`` (Gemini API, key in ``x-goog-api-key``) and
``/{version}/projects/{p}/locations/{l}/publishers/{publisher}/models/{model}:...`` (Vertex AI;
``/{version}/publishers/...`` in express mode): ``generateContent`` answers JSON,
``streamGenerateContent?alt=sse`` server-sent events (each a partial ``GenerateContentResponse``;
the last carries the finish reason and the full usage), ``embedContent``/``batchEmbedContents``
(and Vertex's ``predict``) vectors. Errors come in Google's envelope
``{"error": {"code", "message", "status"}}``, a stream's in-band error as one such event.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentwatch._fakellm._render import (
    error_message,
    fake_vector,
    openai_finish_reason,
    prepare_calls,
    request_field,
    split_text,
)
from agentwatch._fakellm._replies import CompletionSpec, EmbeddingsSpec, ErrorSpec
from agentwatch._fakellm._wire import Body, Context, Event, RecordedRequest, Route, Stream, WireFormat

__all__ = ["GeminiFormat"]

_PATH = re.compile(
    r"^/(?P<version>v1(?:alpha|beta)?\d*)/"
    r"(?:(?P<vertex>(?:projects/[^/]+/locations/[^/]+/)?publishers/[^/]+/)|(?:projects/[^/]+/locations/[^/]+/)?)"
    r"(?:models|tunedModels)/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)
_COMPLETION = {"generateContent": False, "streamGenerateContent": True}
_EMBEDDINGS = frozenset({"embedContent", "batchEmbedContents", "predict"})
# Google's canonical codes (google.rpc.Code) by HTTP status.
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_TO_GEMINI = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP", "content_filter": "SAFETY"}


class GeminiFormat(WireFormat):
    name = "gemini"
    request_id_header = "x-request-id"

    def route(self, request: RecordedRequest) -> Route | None:
        match = _PATH.match(request.path)
        if match is None:
            return None
        method = match.group("method")
        served = method in _COMPLETION or method in _EMBEDDINGS
        return Route(
            provider="vertex_ai" if match.group("vertex") else "gemini",
            endpoint=method if served and request.method == "POST" else None,
            answers="embeddings" if method in _EMBEDDINGS else "completion",
            model=match.group("model"),
            stream=_COMPLETION.get(method, False),
        )

    def claims(self, request: RecordedRequest) -> bool:
        return "x-goog-api-key" in request.headers

    def error(self, spec: ErrorSpec, request: RecordedRequest, ctx: Context) -> Body:
        status = (
            spec.code
            or spec.error_type
            or _STATUS.get(spec.status)
            or ("INTERNAL" if spec.status >= 500 else "FAILED_PRECONDITION")
        )
        return Body(
            spec.status, {"error": {"code": spec.status, "message": error_message(spec), "status": status}}
        )

    def completion(self, spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
        return _render_generate(spec, request, ctx)

    def embeddings(self, spec: EmbeddingsSpec, request: RecordedRequest, ctx: Context) -> Body:
        return _render_embeddings(spec, request)


def _usage(spec: CompletionSpec, *, final: bool) -> dict[str, Any]:
    """Gemini counts thoughts apart from the candidates; the prompt count includes the cached tokens."""
    usage: dict[str, Any] = {
        "promptTokenCount": spec.input_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": spec.input_tokens}],
    }
    if spec.cached_tokens:
        usage["cachedContentTokenCount"] = spec.cached_tokens
    if not final:
        usage["totalTokenCount"] = spec.input_tokens
        return usage
    candidates = spec.output_tokens - spec.reasoning_tokens
    usage["candidatesTokenCount"] = candidates
    if spec.reasoning_tokens:
        usage["thoughtsTokenCount"] = spec.reasoning_tokens
    usage["totalTokenCount"] = spec.input_tokens + spec.output_tokens
    return usage


def _render_generate(spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
    model = spec.model or request.model or "fake-model"
    response_id = spec.response_id or f"fake-gemini-{ctx.ids.object()}"
    reason = openai_finish_reason(spec.finish_reason)
    finish = _TO_GEMINI.get(reason, reason)
    calls = prepare_calls(spec, ctx.ids, "call_")
    call_parts: list[dict[str, Any]] = []
    for scripted, call in zip(spec.calls, calls, strict=True):
        arguments = json.loads(call.arguments)
        if not isinstance(arguments, dict):
            raise ValueError(f"Gemini function call args must be a JSON object, got {call.arguments!r}")
        function_call: dict[str, Any] = {"name": call.name, "args": arguments}
        if scripted.id is not None:  # the Gemini API sends ids only with some models
            function_call["id"] = call.id
        call_parts.append({"functionCall": function_call})

    def response(parts: list[dict[str, Any]], finish_reason: str | None, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish_reason is not None:
            candidate["finishReason"] = finish_reason
        body: dict[str, Any] = {"candidates": [candidate]}
        if spec.usage:
            body["usageMetadata"] = _usage(spec, final=final)
        body["modelVersion"] = model
        body["responseId"] = response_id
        return body

    if not request.stream:
        parts = [{"text": spec.content}] if spec.content is not None or not call_parts else []
        if parts and parts[0]["text"] is None:
            parts[0]["text"] = ""
        return Body(200, response(parts + call_parts, finish, final=True))

    events = [
        Event(None, response([{"text": piece}], None, final=False), content=True)
        for piece in split_text(spec.content or "", spec.chunks)
    ]
    # The API sends each function call whole, in one chunk.
    events.extend(Event(None, response([part], None, final=False), content=True) for part in call_parts)
    # The last chunk carries the finish reason and the complete usage.
    events.append(Event(None, response([{"text": ""}], finish, final=True), terminal=True))
    error = {
        "code": 503,
        "message": "The model is overloaded. Please try again later.",
        "status": "UNAVAILABLE",
    }
    return Stream(events, [Event(None, {"error": error})])


def _texts(content: Any) -> str:
    """The text of a ``Content`` (its parts' texts) or of a plain string instance."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if isinstance(content.get("content"), (str, dict)):  # a Vertex predict instance
            return _texts(content["content"])
        parts = content.get("parts")
        if isinstance(parts, list):
            return " ".join(p.get("text", "") for p in parts if isinstance(p, dict))
    return json.dumps(content)


def _render_embeddings(spec: EmbeddingsSpec, request: RecordedRequest) -> Body:
    method = request.endpoint
    body = request.json if isinstance(request.json, dict) else {}
    if method == "batchEmbedContents":
        items = [r for r in request_field(request, "requests", []) if isinstance(r, dict)]
        texts = [_texts(r.get("content")) for r in items]
        requested = items[0].get("outputDimensionality") if items else None
    elif method == "predict":
        texts = [_texts(i) for i in request_field(request, "instances", [])]
        requested = (body.get("parameters") or {}).get("outputDimensionality")
    else:  # embedContent
        texts = [_texts(body.get("content"))]
        config = body.get("embedContentConfig") or {}
        requested = body.get("outputDimensionality") or config.get("outputDimensionality")
    dimensions = requested if isinstance(requested, int) and requested > 0 else spec.dimensions
    vectors = (
        [list(v) for v in spec.vectors]
        if spec.vectors is not None
        else [fake_vector(t, dimensions) for t in texts]
    )
    counts = [max(1, len(t.split())) for t in texts] or [0]
    tokens = spec.input_tokens if spec.input_tokens is not None else sum(counts)
    if method == "predict":
        predictions = [
            {"embeddings": {"values": v, "statistics": {"token_count": n, "truncated": False}}}
            for v, n in zip(vectors, counts, strict=False)
        ]
        return Body(
            200, {"predictions": predictions, "metadata": {"billableCharacterCount": sum(map(len, texts))}}
        )
    usage = {"promptTokenCount": tokens, "totalTokenCount": tokens}
    if method == "embedContent":
        return Body(200, {"embedding": {"values": vectors[0] if vectors else []}, "usageMetadata": usage})
    return Body(200, {"embeddings": [{"values": v} for v in vectors]})
