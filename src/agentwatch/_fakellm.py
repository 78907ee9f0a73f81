"""A fake LLM HTTP server that speaks enough of the OpenAI and Anthropic HTTP APIs for the real SDKs.

The point is to exercise the *real* ``openai`` and ``anthropic`` clients end to end (HTTP, connection
pooling, SSE decoding, retries, error mapping) without a network or an account, so that the test suite
can run the same call with and without instrumentation and compare the results, faults included, and
so that ``agentwatch demo`` can run scripted agent sessions offline.

Usage::

    with FakeLLMServer() as server:
        server.enqueue(Reply.tool_calls([("get_weather", {"city": "Paris"})]), Reply.text("Sunny."))
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test")
        ...

Each request pops the next scripted :class:`Reply`; once the script is exhausted the ``responder``
(``default_responder`` unless given) answers. High-level replies (:meth:`Reply.text`,
:meth:`Reply.tool_calls`, :meth:`Reply.embeddings`) are rendered only when a request arrives, into the
wire format of that request's endpoint and stream flag, so one script serves every provider.

Stdlib only: this module is imported by the package's own command line and must not pull in the SDKs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import select
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Endpoint",
    "FakeLLMServer",
    "Provider",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ToolCall",
    "default_responder",
]

Provider = Literal["openai", "anthropic"]
Endpoint = Literal["chat", "responses", "embeddings", "messages"]

_HOST = "127.0.0.1"
_FINGERPRINT = "fp_fakellm"
# Argument JSON is streamed in slices of this many characters: small enough that even short tool
# arguments arrive as several deltas, which is what reassembly code has to cope with in production.
_ARGUMENT_SLICE = 12
# How often a hanging reply re-checks for a stopping server or a vanished client; bounds stop() latency.
_POLL_INTERVAL = 0.05


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------

# Optional "/openai[/deployments/X]" covers Azure (the SDK rewrites deployment endpoints to
# "/openai/deployments/{model}/..." and leaves others on "/openai/..."); optional "/v1" covers both
# the OpenAI base URL and Azure's v1 surface.
_OPENAI_PATH = re.compile(
    r"^(?:/openai(?:/deployments/(?P<deployment>[^/]+))?)?(?:/v1)?"
    r"/(?P<endpoint>chat/completions|responses|embeddings)/?$"
)
_ANTHROPIC_PATH = re.compile(r"^/v1/messages/?$")
_OPENAI_ENDPOINTS: dict[str, Endpoint] = {
    "chat/completions": "chat",
    "responses": "responses",
    "embeddings": "embeddings",
}


def _route(path: str) -> tuple[Provider | None, Endpoint | None, str | None]:
    if _ANTHROPIC_PATH.match(path):
        return "anthropic", "messages", None
    match = _OPENAI_PATH.match(path)
    if match:
        return "openai", _OPENAI_ENDPOINTS[match.group("endpoint")], match.group("deployment")
    return None, None, None


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it. ``path`` excludes the query string."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # parsed body, or None when the body is empty or not JSON
    received_at: float = field(default=0.0, compare=False)  # time.monotonic() on arrival

    @property
    def provider(self) -> Provider:
        provider = _route(self.path)[0]
        if provider is not None:
            return provider
        # An unknown path still needs an error envelope its client understands.
        if "anthropic-version" in self.headers or "x-api-key" in self.headers:
            return "anthropic"
        return "openai"

    @property
    def endpoint(self) -> Endpoint | None:
        """``chat``/``responses``/``embeddings``/``messages``, or None for a request the server does not serve."""
        # Only the create calls are served: e.g. GET /v1/chat/completions lists stored completions and
        # must not consume a scripted reply meant for a POST.
        return _route(self.path)[1] if self.method == "POST" else None

    @property
    def deployment(self) -> str | None:
        """The Azure deployment named in the path, if any."""
        return _route(self.path)[2]

    @property
    def model(self) -> str | None:
        if isinstance(self.json, dict):
            model = self.json.get("model")
            if isinstance(model, str):
                return model
        return self.deployment

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def wants_usage(self) -> bool:
        """OpenAI chat only: the request set ``stream_options.include_usage``."""
        if self.endpoint != "chat" or not isinstance(self.json, dict):
            return False
        options = self.json.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


# --------------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A tool call for :meth:`Reply.tool_calls`; ``id`` defaults to a per-server counter."""

    name: str
    # A string is sent verbatim (OpenAI), which lets a script emit invalid JSON arguments on purpose.
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class _JsonSpec:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class _ErrorSpec:
    status: int
    message: str | None
    error_type: str | None
    code: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _SSESpec:
    events: tuple[tuple[str | None, str], ...]
    chunk_delay: float
    status: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _HangSpec:
    seconds: float


@dataclass(frozen=True)
class _ResetSpec:
    pass


@dataclass(frozen=True)
class _MalformedSpec:
    content_type: str
    status: int
    body: bytes


@dataclass(frozen=True)
class _CompletionSpec:
    content: str | None
    calls: tuple[ToolCall, ...]
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cache_creation_tokens: int
    model: str | None
    response_id: str | None
    chunk_delay: float
    chunks: int | None
    error_after_chunks: int | None
    usage: bool
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _EmbeddingsSpec:
    vectors: tuple[tuple[float, ...], ...] | None
    dimensions: int
    input_tokens: int | None
    model: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _DelaySpec:
    seconds: float
    reply: Reply


_Spec: TypeAlias = (
    _JsonSpec
    | _ErrorSpec
    | _SSESpec
    | _HangSpec
    | _ResetSpec
    | _MalformedSpec
    | _CompletionSpec
    | _EmbeddingsSpec
    | _DelaySpec
)

_KINDS: dict[type, str] = {
    _JsonSpec: "json",
    _ErrorSpec: "error",
    _SSESpec: "sse",
    _HangSpec: "hang",
    _ResetSpec: "reset",
    _MalformedSpec: "malformed",
    _CompletionSpec: "completion",
    _EmbeddingsSpec: "embeddings",
    _DelaySpec: "delay",
}


def _header_tuple(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in (headers or {}).items())


def _check_seconds(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Reply:
    """An immutable description of how to answer one request; build it with the classmethods."""

    spec: _Spec

    @property
    def kind(self) -> str:
        return _KINDS[type(self.spec)]

    @classmethod
    def json(
        cls, body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Send ``body`` verbatim as JSON."""
        # Serialised now so that a body that is not JSON fails in the test that built it.
        return cls(_JsonSpec(status, _header_tuple(headers), json.dumps(body).encode()))

    @classmethod
    def error(
        cls,
        status: int,
        *,
        message: str | None = None,
        error_type: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An HTTP error in the envelope of the request's provider (chosen when the request arrives).

        ``error_type`` defaults to what that provider uses for ``status`` (e.g. ``rate_limit_error``
        / ``overloaded_error`` for Anthropic, ``server_error`` for OpenAI 5xx).
        """
        if not 400 <= status <= 599:
            raise ValueError(f"error status must be 4xx or 5xx, got {status}")
        return cls(_ErrorSpec(status, message, error_type, code, _header_tuple(headers)))

    @classmethod
    def sse(
        cls,
        events: Sequence[tuple[str | None, str]],
        *,
        chunk_delay: float = 0.0,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Raw server-sent events: ``(event name or None, data)``; no terminator is added."""
        _check_seconds("chunk_delay", chunk_delay)
        return cls(_SSESpec(tuple(events), chunk_delay, status, _header_tuple(headers)))

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """Read the request, send nothing for ``seconds`` (or until the server stops), then close."""
        _check_seconds("seconds", seconds)
        return cls(_HangSpec(seconds))

    @classmethod
    def reset(cls) -> Reply:
        """Reset the TCP connection (RST) without sending a response."""
        return cls(_ResetSpec())

    @classmethod
    def malformed(
        cls, content_type: str = "application/json", *, status: int = 200, body: bytes | None = None
    ) -> Reply:
        """A response whose body does not parse as JSON (truncated object by default)."""
        return cls(
            _MalformedSpec(content_type, status, b'{"id": "broken", "choices": [' if body is None else body)
        )

    @classmethod
    def delay(cls, seconds: float, reply: Reply) -> Reply:
        """Wait ``seconds`` before the status line, then send ``reply``: slow but successful."""
        _check_seconds("seconds", seconds)
        return cls(_DelaySpec(seconds, reply))

    @classmethod
    def text(
        cls,
        content: str = "Hello from fake LLM",
        *,
        finish_reason: str = "stop",
        input_tokens: int = 12,
        output_tokens: int = 7,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_creation_tokens: int = 0,
        model: str | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
        chunk_delay: float = 0.0,
        chunks: int | None = None,
        error_after_chunks: int | None = None,
        usage: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An assistant text turn, rendered for whichever endpoint and stream mode asks.

        Token counts describe the turn, not one wire format: ``input_tokens`` is the whole prompt
        and includes ``cached_tokens`` and ``cache_creation_tokens``, as OpenAI reports it. Anthropic
        reports them disjointly, so its ``usage.input_tokens`` is ``input_tokens - cached_tokens -
        cache_creation_tokens``. ``output_tokens`` includes ``reasoning_tokens``.

        ``finish_reason`` may be given in either vocabulary (``stop``/``length``/``tool_calls``/
        ``content_filter`` or ``end_turn``/``max_tokens``/``tool_use``/``refusal``...) and is mapped
        to the other; unknown values are passed through. For the Responses API ``length`` and
        ``content_filter`` make the response ``incomplete``.

        ``model`` (alias ``response_model``) is the model the response reports; it defaults to the
        request's. ``chunks`` is the number of content deltas a stream is split into (default: one
        per word); ``chunk_delay`` is slept between consecutive SSE events. ``error_after_chunks=N``
        ends a stream with a provider-style error event right after the N-th content delta (it has
        no effect on non-streaming requests). ``usage=False`` leaves usage out of every payload.
        """
        return cls._completion(
            content,
            (),
            finish_reason=finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
            cache_creation_tokens=cache_creation_tokens,
            model=model,
            response_model=response_model,
            response_id=response_id,
            chunk_delay=chunk_delay,
            chunks=chunks,
            error_after_chunks=error_after_chunks,
            usage=usage,
            headers=headers,
        )

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[tuple[str, Mapping[str, Any]] | ToolCall],
        *,
        content: str | None = None,
        finish_reason: str = "tool_calls",
        input_tokens: int = 12,
        output_tokens: int = 7,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_creation_tokens: int = 0,
        model: str | None = None,
        response_model: str | None = None,
        response_id: str | None = None,
        chunk_delay: float = 0.0,
        chunks: int | None = None,
        error_after_chunks: int | None = None,
        usage: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An assistant turn that calls tools, optionally preceded by ``content`` text.

        Calls are ``(name, arguments)`` pairs or :class:`ToolCall` objects. Ids not given explicitly
        come from a per-server counter: ``call_1``, ``call_2``... for OpenAI (Responses items are
        ``fc_N`` with ``call_id`` ``call_N``), ``toolu_1``... for Anthropic. Argument deltas count as
        content deltas for ``error_after_chunks``. Other arguments are as for :meth:`text`.
        """
        if not calls:
            raise ValueError("tool_calls needs at least one call")
        normalized = tuple(c if isinstance(c, ToolCall) else ToolCall(c[0], dict(c[1])) for c in calls)
        return cls._completion(
            content,
            normalized,
            finish_reason=finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cached_tokens=cached_tokens,
            reasoning_tokens=reasoning_tokens,
            cache_creation_tokens=cache_creation_tokens,
            model=model,
            response_model=response_model,
            response_id=response_id,
            chunk_delay=chunk_delay,
            chunks=chunks,
            error_after_chunks=error_after_chunks,
            usage=usage,
            headers=headers,
        )

    @classmethod
    def embeddings(
        cls,
        vectors: Sequence[Sequence[float]] | None = None,
        *,
        dimensions: int = 8,
        input_tokens: int | None = None,
        model: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """An embeddings response: one vector per input (deterministic from its text unless given).

        The request's ``dimensions`` wins over ``dimensions``; ``input_tokens`` defaults to a word
        count of the inputs; ``encoding_format="base64"`` (the openai SDK's default) is honoured.
        """
        if dimensions < 1:
            raise ValueError("dimensions must be >= 1")
        frozen = None if vectors is None else tuple(tuple(float(x) for x in v) for v in vectors)
        return cls(_EmbeddingsSpec(frozen, dimensions, input_tokens, model, _header_tuple(headers)))

    @classmethod
    def _completion(
        cls,
        content: str | None,
        calls: tuple[ToolCall, ...],
        *,
        finish_reason: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int,
        reasoning_tokens: int,
        cache_creation_tokens: int,
        model: str | None,
        response_model: str | None,
        response_id: str | None,
        chunk_delay: float,
        chunks: int | None,
        error_after_chunks: int | None,
        usage: bool,
        headers: Mapping[str, str] | None,
    ) -> Reply:
        # Validated here rather than at render time so a bad script fails at the line that built it.
        counts = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "reasoning_tokens": reasoning_tokens,
            "cache_creation_tokens": cache_creation_tokens,
        }
        for name, value in counts.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if cached_tokens + cache_creation_tokens > input_tokens:
            raise ValueError("cached_tokens + cache_creation_tokens cannot exceed input_tokens")
        if reasoning_tokens > output_tokens:
            raise ValueError("reasoning_tokens cannot exceed output_tokens")
        if chunks is not None and chunks < 1:
            raise ValueError("chunks must be >= 1")
        if error_after_chunks is not None and error_after_chunks < 0:
            raise ValueError("error_after_chunks must be >= 0")
        if model is not None and response_model is not None and model != response_model:
            raise ValueError("model and response_model are aliases; pass only one")
        _check_seconds("chunk_delay", chunk_delay)
        return cls(
            _CompletionSpec(
                content=content,
                calls=calls,
                finish_reason=finish_reason,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_tokens=cached_tokens,
                reasoning_tokens=reasoning_tokens,
                cache_creation_tokens=cache_creation_tokens,
                model=model if model is not None else response_model,
                response_id=response_id,
                chunk_delay=chunk_delay,
                chunks=chunks,
                error_after_chunks=error_after_chunks,
                usage=usage,
                headers=_header_tuple(headers),
            )
        )


Responder = Callable[[RecordedRequest], Reply]


def default_responder(request: RecordedRequest) -> Reply:
    """What the server answers once its script is empty: a short text naming the model, or embeddings."""
    if request.endpoint == "embeddings":
        return Reply.embeddings()
    if request.endpoint is None:
        return Reply.error(404, message=f"Invalid URL ({request.method} {request.path})")
    return Reply.text(f"Hello from fake LLM ({request.model or 'unknown model'})")


# --------------------------------------------------------------------------------------------------
# Rendering: Reply + request -> what to put on the wire
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SendBody:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class _SendStream:
    status: int
    headers: list[tuple[str, str]]
    events: list[bytes]
    chunk_delay: float


@dataclass(frozen=True)
class _Wait:
    seconds: float
    then: Reply


_Plan: TypeAlias = _SendBody | _SendStream | _HangSpec | _ResetSpec | _Wait


class _Ids:
    """Per-server counters so that ids are deterministic within one test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tool = 0
        self._object = 0

    def reset(self) -> None:
        with self._lock:
            self._tool = 0
            self._object = 0

    def tool(self) -> int:
        with self._lock:
            self._tool += 1
            return self._tool

    def object(self) -> int:
        with self._lock:
            self._object += 1
            return self._object


@dataclass
class _Ev:
    """One SSE event before encoding.

    ``content`` marks the deltas that ``error_after_chunks`` counts; ``terminal`` marks the events
    that finish a turn, which a stream broken by an error must never have sent.
    """

    name: str | None
    data: dict[str, Any] | str
    content: bool = False
    terminal: bool = False


def _encode_sse(name: str | None, data: str) -> bytes:
    lines = [f"event: {name}"] if name is not None else []
    # A multi-line payload must become several data: lines or the decoder would split the event.
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def _encode_events(events: list[_Ev]) -> list[bytes]:
    return [
        _encode_sse(ev.name, ev.data if isinstance(ev.data, str) else json.dumps(ev.data)) for ev in events
    ]


def _truncate_after_content(events: list[_Ev], n: int) -> list[_Ev]:
    """The events a stream sends before an error injected after its ``n``-th content delta.

    That is everything up to and including that delta (up to the first delta when ``n`` is 0, up to
    the last when there are fewer than ``n``), minus terminal events.
    """
    events = [ev for ev in events if not ev.terminal]
    positions = [i for i, ev in enumerate(events) if ev.content]
    if not positions:
        return events
    if n == 0:
        return events[: positions[0]]
    return events[: positions[min(n, len(positions)) - 1] + 1]


_WORD = re.compile(r"\s*\S+\s*|\s+")


def _split_text(text: str, chunks: int | None) -> list[str]:
    if not text:
        return []
    if chunks is None:
        return _WORD.findall(text)
    n = min(chunks, len(text))
    size, extra = divmod(len(text), n)
    pieces: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _split_fixed(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


@dataclass(frozen=True)
class _Call:
    id: str
    name: str
    arguments: str
    pieces: list[str]


def _prepare_calls(spec: _CompletionSpec, ids: _Ids, prefix: str) -> list[_Call]:
    prepared = []
    for call in spec.calls:
        arguments = (
            call.arguments
            if isinstance(call.arguments, str)
            else json.dumps(dict(call.arguments), separators=(",", ":"))
        )
        call_id = call.id if call.id is not None else f"{prefix}{ids.tool()}"
        prepared.append(_Call(call_id, call.name, arguments, _split_fixed(arguments, _ARGUMENT_SLICE)))
    return prepared


def _request_field(request: RecordedRequest, name: str, default: Any) -> Any:
    if isinstance(request.json, dict) and request.json.get(name) is not None:
        return request.json[name]
    return default


def _json_plan(status: int, headers: list[tuple[str, str]], body: Any) -> _SendBody:
    return _SendBody(status, [("Content-Type", "application/json"), *headers], json.dumps(body).encode())


def _stream_plan(headers: list[tuple[str, str]], events: list[_Ev], chunk_delay: float) -> _SendStream:
    return _SendStream(200, headers, _encode_events(events), chunk_delay)


# --- OpenAI chat completions ----------------------------------------------------------------------


def _chat_usage(spec: _CompletionSpec) -> dict[str, Any]:
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


def _render_chat(
    spec: _CompletionSpec, request: RecordedRequest, ids: _Ids, headers: list[tuple[str, str]]
) -> _Plan:
    model = spec.model or request.model or "fake-model"
    completion_id = spec.response_id or f"chatcmpl-fake{ids.object()}"
    created = int(time.time())
    finish = _TO_OPENAI.get(spec.finish_reason, spec.finish_reason)
    calls = _prepare_calls(spec, ids, "call_")

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
        return _json_plan(200, headers, body)

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
    events = [_Ev(None, chunk(role_delta))]
    for piece in _split_text(spec.content or "", spec.chunks):
        events.append(_Ev(None, chunk({"content": piece}), content=True))
    for index, call in enumerate(calls):
        header = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        events.append(_Ev(None, chunk({"tool_calls": [header]})))
        for piece in call.pieces:
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            events.append(_Ev(None, chunk(delta), content=True))
    events.append(_Ev(None, chunk({}, finish), terminal=True))
    if include_usage:
        usage_chunk = chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _chat_usage(spec)
        events.append(_Ev(None, usage_chunk, terminal=True))

    if spec.error_after_chunks is not None:
        events = _truncate_after_content(events, spec.error_after_chunks)
        # The openai SDK turns a data line with an "error" object into APIError; no [DONE] follows.
        error = {"message": "The server had an error while processing your request.", "type": "server_error"}
        events.append(_Ev(None, {"error": {**error, "param": None, "code": None}}))
    else:
        events.append(_Ev(None, "[DONE]"))
    return _stream_plan(headers, events, spec.chunk_delay)


# --- OpenAI Responses -----------------------------------------------------------------------------


def _responses_usage(spec: _CompletionSpec) -> dict[str, Any]:
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


def _render_responses(
    spec: _CompletionSpec, request: RecordedRequest, ids: _Ids, headers: list[tuple[str, str]]
) -> _Plan:
    model = spec.model or request.model or "fake-model"
    number = ids.object()
    response_id = spec.response_id or f"resp_fake{number}"
    message_id = f"msg_fake{number}"
    created = int(time.time())
    finish = _TO_OPENAI.get(spec.finish_reason, spec.finish_reason)
    if finish == "length":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    elif finish == "content_filter":
        status, incomplete = "incomplete", {"reason": "content_filter"}
    else:
        status, incomplete = "completed", None
    calls = _prepare_calls(spec, ids, "call_")

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

    def call_item(call: _Call, arguments: str, item_status: str) -> dict[str, Any]:
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
            "instructions": _request_field(request, "instructions", None),
            "max_output_tokens": _request_field(request, "max_output_tokens", None),
            "model": model,
            "output": resp_output,
            "parallel_tool_calls": _request_field(request, "parallel_tool_calls", True),
            "previous_response_id": _request_field(request, "previous_response_id", None),
            "reasoning": {"effort": None, "summary": None},
            "store": _request_field(request, "store", True),
            "temperature": _request_field(request, "temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": _request_field(request, "tool_choice", "auto"),
            "tools": _request_field(request, "tools", []),
            "top_p": _request_field(request, "top_p", 1.0),
            "truncation": "disabled",
            "usage": _responses_usage(spec) if final and spec.usage else None,
            "user": None,
            "metadata": _request_field(request, "metadata", {}),
        }

    if not request.stream:
        return _json_plan(200, headers, response(status, output, final=True))

    events = [
        _Ev("response.created", {"type": "response.created", "response": response("in_progress", [], False)}),
        _Ev(
            "response.in_progress",
            {"type": "response.in_progress", "response": response("in_progress", [], False)},
        ),
    ]
    index = 0
    if spec.content is not None:
        where = {"item_id": message_id, "output_index": index}
        events.append(
            _Ev(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": message_item("", "in_progress"),
                },
            )
        )
        events.append(
            _Ev(
                "response.content_part.added",
                {"type": "response.content_part.added", **where, "content_index": 0, "part": text_part("")},
            )
        )
        for piece in _split_text(spec.content, spec.chunks):
            delta = {
                "type": "response.output_text.delta",
                **where,
                "content_index": 0,
                "delta": piece,
                "logprobs": [],
            }
            events.append(_Ev("response.output_text.delta", delta, content=True))
        done = {
            "type": "response.output_text.done",
            **where,
            "content_index": 0,
            "text": spec.content,
            "logprobs": [],
        }
        events.append(_Ev("response.output_text.done", done))
        part_done = {
            "type": "response.content_part.done",
            **where,
            "content_index": 0,
            "part": text_part(spec.content),
        }
        events.append(_Ev("response.content_part.done", part_done))
        item_done = {"type": "response.output_item.done", "output_index": index, "item": output[index]}
        events.append(_Ev("response.output_item.done", item_done))
        index += 1
    for call in calls:
        item = call_item(call, "", "in_progress")
        where = {"item_id": item["id"], "output_index": index}
        added = {"type": "response.output_item.added", "output_index": index, "item": item}
        events.append(_Ev("response.output_item.added", added))
        for piece in call.pieces:
            delta = {"type": "response.function_call_arguments.delta", **where, "delta": piece}
            events.append(_Ev("response.function_call_arguments.delta", delta, content=True))
        args_done = {
            "type": "response.function_call_arguments.done",
            **where,
            "name": call.name,
            "arguments": call.arguments,
        }
        events.append(_Ev("response.function_call_arguments.done", args_done))
        item_done = {"type": "response.output_item.done", "output_index": index, "item": output[index]}
        events.append(_Ev("response.output_item.done", item_done))
        index += 1
    terminal = "response.completed" if status == "completed" else "response.incomplete"
    final_response = response(status, output, final=True)
    events.append(_Ev(terminal, {"type": terminal, "response": final_response}, terminal=True))

    if spec.error_after_chunks is not None:
        events = _truncate_after_content(events, spec.error_after_chunks)
        # The documented ResponseErrorEvent has code/message/param at the top level, but the live API
        # has been seen nesting them under "error" (openai/openai-dotnet#881); sending both keeps the
        # event parseable as documented while making the openai SDK raise APIError as it does live.
        message = "The server had an error while processing your request."
        error = {"type": "server_error", "code": "server_error", "message": message, "param": None}
        events.append(
            _Ev(
                "error",
                {"type": "error", "code": "server_error", "message": message, "param": None, "error": error},
            )
        )
    for sequence_number, ev in enumerate(events):
        if isinstance(ev.data, dict):
            ev.data["sequence_number"] = sequence_number
    return _stream_plan(headers, events, spec.chunk_delay)


# --- OpenAI embeddings ----------------------------------------------------------------------------


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(key to derive a vector from, token count) for each input the request embeds."""
    if isinstance(value, str):
        return [(value, max(1, len(value.split())))]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [(json.dumps(value), len(value))]  # a single pre-tokenised input
        return [_embedding_inputs(v)[0] if isinstance(v, (str, list)) else (json.dumps(v), 1) for v in value]
    return [(json.dumps(value), 1)]


def _fake_vector(key: str, dimensions: int) -> list[float]:
    # Deterministic and unit length, so similarity arithmetic in demos behaves sensibly.
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{block}:{key}".encode()).digest()
        raw.extend(b / 127.5 - 1.0 for b in digest)
        block += 1
    vector = raw[:dimensions]
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in vector]


def _render_embeddings(
    spec: _EmbeddingsSpec, request: RecordedRequest, headers: list[tuple[str, str]]
) -> _Plan:
    inputs = _embedding_inputs(_request_field(request, "input", ""))
    requested = _request_field(request, "dimensions", None)
    dimensions = requested if isinstance(requested, int) and requested > 0 else spec.dimensions
    vectors = (
        [list(v) for v in spec.vectors]
        if spec.vectors is not None
        else [_fake_vector(k, dimensions) for k, _ in inputs]
    )
    as_base64 = _request_field(request, "encoding_format", "float") == "base64"
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
    return _json_plan(200, headers, body)


# --- Anthropic messages ---------------------------------------------------------------------------


def _anthropic_usage(spec: _CompletionSpec, output_tokens: int) -> dict[str, Any]:
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


def _render_messages(
    spec: _CompletionSpec, request: RecordedRequest, ids: _Ids, headers: list[tuple[str, str]]
) -> _Plan:
    model = spec.model or request.model or "fake-model"
    message_id = spec.response_id or f"msg_fake{ids.object()}"
    stop_reason = _TO_ANTHROPIC.get(spec.finish_reason, spec.finish_reason)
    calls = _prepare_calls(spec, ids, "toolu_")
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
        return _json_plan(200, headers, message(blocks, stop_reason, spec.output_tokens))

    # message_start reports the prompt and a token or so of output; message_delta the final count.
    events = [
        _Ev(
            "message_start",
            {"type": "message_start", "message": message([], None, min(1, spec.output_tokens))},
        ),
        _Ev("ping", {"type": "ping"}),
    ]
    index = 0
    if blocks[0]["type"] == "text":
        start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        events.append(_Ev("content_block_start", start))
        for piece in _split_text(blocks[0]["text"], spec.chunks):
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
            events.append(_Ev("content_block_delta", delta, content=True))
        events.append(_Ev("content_block_stop", {"type": "content_block_stop", "index": 0}))
        index = 1
    for call in calls:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events.append(
            _Ev(
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
            events.append(_Ev("content_block_delta", delta, content=bool(piece)))
        events.append(_Ev("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
    }
    if spec.usage:
        message_delta["usage"] = {"output_tokens": spec.output_tokens}
    events.append(_Ev("message_delta", message_delta, terminal=True))
    events.append(_Ev("message_stop", {"type": "message_stop"}, terminal=True))

    if spec.error_after_chunks is not None:
        events = _truncate_after_content(events, spec.error_after_chunks)
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        events.append(_Ev("error", error))
    return _stream_plan(headers, events, spec.chunk_delay)


# --- Errors ---------------------------------------------------------------------------------------

_ANTHROPIC_ERROR_TYPES = {
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


def _phrase(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _error_plan(
    provider: Provider,
    status: int,
    *,
    message: str | None,
    error_type: str | None,
    code: str | None,
    headers: list[tuple[str, str]],
    request_id: str,
) -> _SendBody:
    text = message if message is not None else f"{_phrase(status) or 'Error'} (fake LLM, HTTP {status})"
    body: dict[str, Any]
    if provider == "anthropic":
        default_type = _ANTHROPIC_ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        body = {
            "type": "error",
            "error": {"type": error_type or default_type, "message": text},
            "request_id": request_id,
        }
    else:
        if status == 429:
            default_type, default_code = "requests", "rate_limit_exceeded"
        elif status >= 500:
            default_type, default_code = "server_error", None
        else:
            default_type, default_code = "invalid_request_error", None
        error = {
            "message": text,
            "type": error_type or default_type,
            "param": None,
            "code": code or default_code,
        }
        body = {"error": error}
    return _json_plan(status, headers, body)


def _merge_headers(
    defaults: list[tuple[str, str]], extra: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    overridden = {name.lower() for name, _ in extra}
    return [(n, v) for n, v in defaults if n.lower() not in overridden] + list(extra)


def _render(reply: Reply, request: RecordedRequest, ids: _Ids, request_id: str) -> _Plan:
    spec = reply.spec
    id_header = "request-id" if request.provider == "anthropic" else "x-request-id"
    base = [(id_header, request_id)]
    if isinstance(spec, _JsonSpec):
        return _SendBody(
            spec.status,
            _merge_headers([("Content-Type", "application/json"), *base], spec.headers),
            spec.body,
        )
    if isinstance(spec, _ErrorSpec):
        return _error_plan(
            request.provider,
            spec.status,
            message=spec.message,
            error_type=spec.error_type,
            code=spec.code,
            headers=_merge_headers(base, spec.headers),
            request_id=request_id,
        )
    if isinstance(spec, _SSESpec):
        events = [_encode_sse(name, data) for name, data in spec.events]
        return _SendStream(spec.status, _merge_headers(base, spec.headers), events, spec.chunk_delay)
    if isinstance(spec, _MalformedSpec):
        return _SendBody(spec.status, [("Content-Type", spec.content_type), *base], spec.body)
    if isinstance(spec, (_HangSpec, _ResetSpec)):
        return spec
    if isinstance(spec, _DelaySpec):
        return _Wait(spec.seconds, spec.reply)
    if isinstance(spec, _EmbeddingsSpec):
        if request.endpoint != "embeddings":
            raise ValueError(f"Reply.embeddings() cannot answer a {request.endpoint!r} request")
        return _render_embeddings(spec, request, _merge_headers(base, spec.headers))
    headers = _merge_headers(base, spec.headers)
    if request.endpoint == "chat":
        return _render_chat(spec, request, ids, headers)
    if request.endpoint == "responses":
        return _render_responses(spec, request, ids, headers)
    if request.endpoint == "messages":
        return _render_messages(spec, request, ids, headers)
    raise ValueError(
        f"a text/tool-call reply cannot answer a {request.endpoint!r} request; use Reply.embeddings()"
    )


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


def _is_disconnect(exc: BaseException | None) -> bool:
    # Clients abandon connections all the time (timeouts, early stream close); that is not a fault.
    return isinstance(exc, OSError)


class _HTTPServer(socketserver.TCPServer):
    """A threading TCP server that can account for, and forcibly end, every connection it owns.

    ``socketserver.ThreadingMixIn`` either joins handler threads without a timeout or forgets them,
    and cannot interrupt a handler blocked reading the next keep-alive request; ``stop()`` needs to
    do both to return promptly and leave no sockets open.
    """

    allow_reuse_address = False
    request_queue_size = 128

    def __init__(self, owner: FakeLLMServer) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = False
        super().__init__((_HOST, 0), _Handler)
        # serve_forever() notices shutdown() only at its next poll; a socketpair wakes the accept
        # loop at once, so stop() costs no poll interval (which adds up over many servers).
        self._wake_reader, self._wake_writer = socket.socketpair()

    def serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self._closing:
                        self._accept_one()

    def _accept_one(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # the client gave up before we accepted
        try:
            self.process_request(request, client_address)
        except Exception:  # noqa: BLE001 - e.g. no thread could be started; drop this connection only
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def stop_serving(self) -> None:
        self._closing = True
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="fakellm-connection",
            daemon=True,
        )
        with self._lock:
            self._connections.add(request)
            self._threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a handler fault must never reach stderr or kill the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.discard(request)
                self._threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not _is_disconnect(exc):
            self.owner._record_error("connection handler failed:\n" + traceback.format_exc())

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                # shutdown() rather than close(): it wakes the owning thread out of recv() and lets
                # that thread close its own socket, so no file descriptor is closed twice.
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, deadline: float) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    server_version = "agentwatch-fakellm/1"
    sys_version = ""
    # Drop idle keep-alive connections eventually even if a client leaks them.
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            # Without this, Nagle's algorithm can hold back small SSE events and skew chunk timing.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, if any, end with an empty line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            json=parsed,
            received_at=time.monotonic(),
        )
        reply = owner._accept(request)
        self._execute(reply, request, owner._next_request_id())

    def _execute(self, reply: Reply, request: RecordedRequest, request_id: str) -> None:
        owner = self.server.owner
        while True:
            try:
                plan = _render(reply, request, owner._ids, request_id)
            except Exception:  # noqa: BLE001 - a bad script becomes a 500 that the test can see
                owner._record_error(
                    f"rendering {reply!r} for {request.method} {request.path} failed:\n{traceback.format_exc()}"
                )
                plan = _error_plan(
                    request.provider,
                    500,
                    message="fake LLM failed to render the reply; see FakeLLMServer.errors",
                    error_type=None,
                    code=None,
                    headers=[],
                    request_id=request_id,
                )
            if not isinstance(plan, _Wait):
                break
            if owner._sleep(plan.seconds):
                self.close_connection = True
                return
            reply = plan.then
        try:
            if isinstance(plan, _SendBody):
                self._send_body(plan)
            elif isinstance(plan, _SendStream):
                self._send_stream(plan)
            elif isinstance(plan, _HangSpec):
                self._hang(plan.seconds)
            else:
                self._reset()
        except (OSError, ValueError):
            # The client went away mid-reply (or we reset it); nothing more can be sent on this socket.
            self.close_connection = True

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status, _phrase(status))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")

    def _send_body(self, plan: _SendBody) -> None:
        self._start(plan.status, plan.headers)
        self.send_header("Content-Length", str(len(plan.body)))
        self.end_headers()
        self.wfile.write(plan.body)

    def _send_stream(self, plan: _SendStream) -> None:
        # Chunked encoding keeps the connection reusable after a stream and, since wfile is unbuffered,
        # each event leaves in its own write: time to first chunk and chunk spacing are real.
        self._start(
            plan.status,
            [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Cache-Control", "no-cache"),
                *plan.headers,
            ],
        )
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        owner = self.server.owner
        for index, event in enumerate(plan.events):
            if index and plan.chunk_delay and owner._sleep(plan.chunk_delay):
                self.close_connection = True
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.write(b"0\r\n\r\n")

    def _hang(self, seconds: float) -> None:
        owner = self.server.owner
        deadline = time.monotonic() + seconds
        connection = self.connection
        self.close_connection = True
        while not owner._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Watch the socket as well as the clock: once the client times out and hangs up there is
            # no point holding a thread until `seconds` have passed.
            readable, _, _ = select.select([connection], [], [], min(remaining, _POLL_INTERVAL))
            if readable:
                if not connection.recv(1, socket.MSG_PEEK):
                    return
                # Pipelined bytes arrived, so EOF can no longer be seen by peeking; just wait it out.
                owner._sleep(remaining)
                return

    def _reset(self) -> None:
        connection = self.connection
        try:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("HH", 1, 0))
        self.close_connection = True
        # The buffered reader holds a reference that would defer the real close (and so the RST)
        # until the handler unwinds; release it so close() takes effect now.
        self.rfile.close()
        connection.close()


# --------------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------------


class FakeLLMServer:
    """A loopback HTTP server that answers OpenAI and Anthropic SDK calls from a script.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Requests are served on daemon
    threads; :meth:`stop` wakes hanging and delayed replies and closes every connection.
    """

    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or default_responder
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._ids = _Ids()
        self._request_counter = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle --

    def start(self) -> FakeLLMServer:
        with self._lock:
            if self._stopped:
                raise RuntimeError("a FakeLLMServer cannot be restarted; create a new one")
            if self._httpd is not None:
                return self
            self._httpd = _HTTPServer(self)
            self._thread = threading.Thread(
                target=self._httpd.serve,
                name=f"fakellm-{self._httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 1.5) -> None:
        """Stop serving, end in-flight replies and close all sockets; returns within about ``timeout``."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            if httpd is None or self._stopped:
                self._stopped = True
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        httpd.stop_serving()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        httpd.close_connections()
        httpd.join_threads(deadline)
        httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- script and records --

    def enqueue(self, *replies: Reply) -> None:
        """Append replies to the FIFO script; each request pops one."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(
                    f"enqueue() takes Reply objects (unpack lists with *), got {type(reply).__name__}"
                )
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Server-side faults (responder or rendering exceptions), with tracebacks; empty when all is well."""
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """Forget the script, the recorded requests and errors, and restart the id counters."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._errors.clear()
            self._request_counter = 0
        self._ids.reset()

    # -- used by the handler threads --

    def _accept(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            if request.endpoint is None:
                # Unknown paths never consume the script: a stray probe must not shift every later reply.
                return Reply.error(404, message=f"Invalid URL ({request.method} {request.path})")
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        try:
            reply = responder(request)
            if not isinstance(reply, Reply):
                raise TypeError(f"responder returned {type(reply).__name__}, not Reply")
            return reply
        except Exception:  # noqa: BLE001 - a faulty responder becomes a visible 500, not a dead thread
            self._record_error(
                f"responder failed for {request.method} {request.path}:\n{traceback.format_exc()}"
            )
            return Reply.error(500, message="fake LLM responder failed; see FakeLLMServer.errors")

    def _next_request_id(self) -> str:
        with self._lock:
            self._request_counter += 1
            return f"req_fake{self._request_counter}"

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True means it is stopping."""
        return self._stopping.wait(seconds)
