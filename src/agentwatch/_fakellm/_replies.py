"""The scripting API: :class:`Reply` (how to answer one request) and the specs it carries.

A reply is a frozen description, built and validated when the test scripts it and rendered only
when a request arrives. The high-level replies (:class:`CompletionSpec` from :meth:`Reply.text` and
:meth:`Reply.tool_calls`, :class:`EmbeddingsSpec`, :class:`ErrorSpec`) describe *what* the model
answers in no particular wire format; each wire format renders them (``_wire.WireFormat``). The raw
replies and the faults (JSON, SSE, frames, hang, reset, malformed, delay) are sent as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = [
    "CompletionSpec",
    "DelaySpec",
    "EmbeddingsSpec",
    "ErrorSpec",
    "FramesSpec",
    "HangSpec",
    "JsonSpec",
    "MalformedSpec",
    "Reply",
    "ResetSpec",
    "SSESpec",
    "Spec",
    "ToolCall",
]


@dataclass(frozen=True)
class ToolCall:
    """A tool call for :meth:`Reply.tool_calls`; ``id`` defaults to a per-server counter."""

    name: str
    # A string is sent verbatim (OpenAI), which lets a script emit invalid JSON arguments on purpose.
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class JsonSpec:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class ErrorSpec:
    """:meth:`Reply.error`: a wire format renders it in its provider's error envelope.

    ``message``/``error_type``/``code`` None mean "what this provider sends for ``status``".
    """

    status: int
    message: str | None
    error_type: str | None
    code: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SSESpec:
    events: tuple[tuple[str | None, str], ...]
    chunk_delay: float
    status: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FramesSpec:
    frames: tuple[bytes, ...]
    content_type: str
    chunk_delay: float
    status: int
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HangSpec:
    seconds: float


@dataclass(frozen=True)
class ResetSpec:
    pass


@dataclass(frozen=True)
class MalformedSpec:
    content_type: str
    status: int
    body: bytes


@dataclass(frozen=True)
class CompletionSpec:
    """:meth:`Reply.text` / :meth:`Reply.tool_calls`: one assistant turn, in no particular wire format.

    Token counts follow :meth:`Reply.text`: ``input_tokens`` includes ``cached_tokens`` and
    ``cache_creation_tokens``, ``output_tokens`` includes ``reasoning_tokens``. ``finish_reason`` is
    in whatever vocabulary the script used (see ``_render.openai_finish_reason``). ``model`` None
    means "the request's". The stream faults (``chunk_delay``, ``error_after_chunks``,
    ``disconnect_after_chunks``) are applied by the server to any format's stream, not by the format.
    """

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
    disconnect_after_chunks: int | None = None


@dataclass(frozen=True)
class EmbeddingsSpec:
    """:meth:`Reply.embeddings`: one vector per input; ``vectors`` None means derive them from the inputs."""

    vectors: tuple[tuple[float, ...], ...] | None
    dimensions: int
    input_tokens: int | None
    model: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DelaySpec:
    seconds: float
    reply: Reply


Spec: TypeAlias = (
    JsonSpec
    | ErrorSpec
    | SSESpec
    | FramesSpec
    | HangSpec
    | ResetSpec
    | MalformedSpec
    | CompletionSpec
    | EmbeddingsSpec
    | DelaySpec
)

_KINDS: dict[type, str] = {
    JsonSpec: "json",
    ErrorSpec: "error",
    SSESpec: "sse",
    FramesSpec: "frames",
    HangSpec: "hang",
    ResetSpec: "reset",
    MalformedSpec: "malformed",
    CompletionSpec: "completion",
    EmbeddingsSpec: "embeddings",
    DelaySpec: "delay",
}


def _header_tuple(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in (headers or {}).items())


def _check_seconds(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


@dataclass(frozen=True)
class Reply:
    """An immutable description of how to answer one request; build it with the classmethods."""

    spec: Spec

    @property
    def kind(self) -> str:
        return _KINDS[type(self.spec)]

    @classmethod
    def json(
        cls, body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Reply:
        """Send ``body`` verbatim as JSON."""
        # Serialised now so that a body that is not JSON fails in the test that built it.
        return cls(JsonSpec(status, _header_tuple(headers), json.dumps(body).encode()))

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
        return cls(ErrorSpec(status, message, error_type, code, _header_tuple(headers)))

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
        return cls(SSESpec(tuple(events), chunk_delay, status, _header_tuple(headers)))

    @classmethod
    def frames(
        cls,
        frames: Sequence[bytes],
        *,
        content_type: str = "application/octet-stream",
        chunk_delay: float = 0.0,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """A raw stream of byte frames, each sent in its own chunk (e.g. binary event-stream messages).

        ``chunk_delay`` is slept between consecutive frames; nothing is added or re-encoded.
        """
        _check_seconds("chunk_delay", chunk_delay)
        if not all(isinstance(frame, bytes) for frame in frames):
            raise TypeError("frames must be bytes")
        return cls(FramesSpec(tuple(frames), content_type, chunk_delay, status, _header_tuple(headers)))

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """Read the request, send nothing for ``seconds`` (or until the server stops), then close."""
        _check_seconds("seconds", seconds)
        return cls(HangSpec(seconds))

    @classmethod
    def reset(cls) -> Reply:
        """Reset the TCP connection (RST) without sending a response."""
        return cls(ResetSpec())

    @classmethod
    def malformed(
        cls, content_type: str = "application/json", *, status: int = 200, body: bytes | None = None
    ) -> Reply:
        """A response whose body does not parse as JSON (truncated object by default)."""
        return cls(
            MalformedSpec(content_type, status, b'{"id": "broken", "choices": [' if body is None else body)
        )

    @classmethod
    def delay(cls, seconds: float, reply: Reply) -> Reply:
        """Wait ``seconds`` before the status line, then send ``reply``: slow but successful."""
        _check_seconds("seconds", seconds)
        return cls(DelaySpec(seconds, reply))

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
        disconnect_after_chunks: int | None = None,
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
        per word); ``chunk_delay`` is slept between consecutive stream events. ``error_after_chunks=N``
        ends a stream with a provider-style error event right after the N-th content delta;
        ``disconnect_after_chunks=N`` instead closes the connection there without ending the stream
        (as a proxy cutting it would). Neither affects non-streaming requests. ``usage=False`` leaves
        usage out of every payload.
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
            disconnect_after_chunks=disconnect_after_chunks,
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
        disconnect_after_chunks: int | None = None,
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
            disconnect_after_chunks=disconnect_after_chunks,
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
        return cls(EmbeddingsSpec(frozen, dimensions, input_tokens, model, _header_tuple(headers)))

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
        disconnect_after_chunks: int | None,
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
        if disconnect_after_chunks is not None and disconnect_after_chunks < 0:
            raise ValueError("disconnect_after_chunks must be >= 0")
        if error_after_chunks is not None and disconnect_after_chunks is not None:
            raise ValueError("error_after_chunks and disconnect_after_chunks exclude each other")
        if model is not None and response_model is not None and model != response_model:
            raise ValueError("model and response_model are aliases; pass only one")
        _check_seconds("chunk_delay", chunk_delay)
        return cls(
            CompletionSpec(
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
                disconnect_after_chunks=disconnect_after_chunks,
                usage=usage,
                headers=_header_tuple(headers),
            )
        )
