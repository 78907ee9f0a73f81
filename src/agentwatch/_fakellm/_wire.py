"""The seam between the transport and the wire formats.

A :class:`WireFormat` says which requests it serves (:meth:`WireFormat.route`) and renders the
high-level replies into its provider's shapes: a :class:`Body`, or for a stream a :class:`Stream` of
:class:`Event` objects plus its framing (``encode``) and its in-band error event. Everything that is
not about a provider's shapes is done here, once, for every format: the raw replies and the faults
(hang, reset, malformed, delay), the stream faults (``chunk_delay``, ``error_after_chunks``,
``disconnect_after_chunks``), the request-id header and the script's extra headers.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

from agentwatch._fakellm._render import Ids
from agentwatch._fakellm._replies import (
    CompletionSpec,
    DelaySpec,
    EmbeddingsSpec,
    ErrorSpec,
    FramesSpec,
    HangSpec,
    JsonSpec,
    MalformedSpec,
    Reply,
    ResetSpec,
    SSESpec,
)

__all__ = [
    "SSE_CONTENT_TYPE",
    "Body",
    "Context",
    "Endpoint",
    "Event",
    "Provider",
    "RecordedRequest",
    "Route",
    "Stream",
    "WireFormat",
    "encode_sse",
    "route_request",
]

Provider: TypeAlias = str
"""The provider a request is for, as its wire format names it: ``openai``, ``anthropic``..."""
Endpoint: TypeAlias = str
"""The operation a request asks for, as its wire format names it: ``chat``, ``responses``,
``embeddings`` (OpenAI), ``messages`` (Anthropic)..."""

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


# --------------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """What a wire format read from a request it recognises.

    ``endpoint`` None means the path is the format's but the request is not one it serves (e.g.
    ``GET /v1/chat/completions`` lists stored completions): it gets a 404 in the format's envelope
    and never consumes a scripted reply. ``answers`` is the kind of high-level reply that can answer
    it (``Reply.text``/``tool_calls`` are ``"completion"``). ``model`` and ``stream`` are for formats
    that put them in the URL (Gemini's ``models/{model}:streamGenerateContent``, Bedrock's
    ``/model/{id}/converse-stream``); None defers to the body's ``model``/``stream`` fields.
    ``params`` holds other path captures (``deployment`` for Azure OpenAI).
    """

    provider: Provider
    endpoint: Endpoint | None
    answers: Literal["completion", "embeddings"] = "completion"
    model: str | None = None
    stream: bool | None = None
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    ``path`` excludes the query string and is as sent (still percent-encoded); ``query`` is the
    parsed query string. ``route``/``wire_format`` are filled in by the server; a request built by
    hand is routed against the registered formats on first use.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    json: Any  # parsed body, or None when the body is empty or not JSON
    received_at: float = field(default=0.0, compare=False)  # time.monotonic() on arrival
    route: Route | None = field(default=None, compare=False)
    wire_format: WireFormat | None = field(default=None, compare=False, repr=False)

    def routed(self) -> tuple[WireFormat, Route]:
        """The format that answers this request and what it read from it."""
        if self.wire_format is None or self.route is None:
            from agentwatch._fakellm._formats import WIRE_FORMATS

            wire_format, route = route_request(self, WIRE_FORMATS)
            object.__setattr__(self, "wire_format", wire_format)
            object.__setattr__(self, "route", route)
            return wire_format, route
        return self.wire_format, self.route

    @property
    def provider(self) -> Provider:
        return self.routed()[1].provider

    @property
    def endpoint(self) -> Endpoint | None:
        """``chat``/``responses``/``embeddings``/``messages``..., or None for a request the server does not serve."""
        return self.routed()[1].endpoint

    @property
    def deployment(self) -> str | None:
        """The Azure deployment named in the path, if any."""
        return self.routed()[1].params.get("deployment")

    @property
    def model(self) -> str | None:
        if isinstance(self.json, dict):
            model = self.json.get("model")
            if isinstance(model, str):
                return model
        return self.routed()[1].model

    @property
    def stream(self) -> bool:
        stream = self.routed()[1].stream
        if stream is not None:
            return stream
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def wants_usage(self) -> bool:
        """OpenAI chat only: the request set ``stream_options.include_usage``."""
        if self.endpoint != "chat" or not isinstance(self.json, dict):
            return False
        options = self.json.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True


def route_request(request: RecordedRequest, formats: Sequence[WireFormat]) -> tuple[WireFormat, Route]:
    """The first format that routes ``request``; else the first that claims it, else ``formats[0]``,
    with no endpoint (a 404 in that format's envelope)."""
    if not formats:
        raise ValueError("the fake LLM server needs at least one wire format")
    for wire_format in formats:
        route = wire_format.route(request)
        if route is not None:
            return wire_format, route
    owner = next((f for f in formats if f.claims(request)), formats[0])
    return owner, Route(provider=owner.name, endpoint=None)


# --------------------------------------------------------------------------------------------------
# What a format returns
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a renderer may need besides the reply and the request."""

    ids: Ids  # per-server counters for deterministic ids
    request_id: str  # also sent in the format's ``request_id_header``


@dataclass(frozen=True)
class Body:
    """A whole response: ``content`` is serialised as JSON unless it is already ``bytes``."""

    status: int
    content: Any
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # e.g. Bedrock's x-amzn-ErrorType

    def encoded(self) -> bytes:
        return self.content if isinstance(self.content, bytes) else json.dumps(self.content).encode()


@dataclass
class Event:
    """One stream event before framing; ``name`` and ``data`` mean what the format's ``encode`` makes of them.

    ``content`` marks the deltas that ``error_after_chunks``/``disconnect_after_chunks`` count;
    ``terminal`` marks the events that finish a turn (and a stream's end marker, such as OpenAI's
    ``[DONE]``), which a stream broken by a fault must never have sent.
    """

    name: str | None
    data: Any  # JSON-serialisable, a str sent verbatim, or whatever the format's encoder takes
    content: bool = False
    terminal: bool = False


def encode_sse(events: Sequence[Event]) -> list[bytes]:
    """Server-sent events framing: ``event: {name}`` (when named) and the JSON (or str) data."""
    return [
        _sse_frame(ev.name, ev.data if isinstance(ev.data, str) else json.dumps(ev.data)) for ev in events
    ]


def _sse_frame(name: str | None, data: str) -> bytes:
    lines = [f"event: {name}"] if name is not None else []
    # A multi-line payload must become several data: lines or the decoder would split the event.
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


@dataclass
class Stream:
    """A streamed response: the complete, successful stream and what the provider sends when a
    stream fails midway (``error``, sent after the truncated events for ``error_after_chunks``).

    ``encode`` turns the events actually sent into frames, one HTTP chunk each (SSE by default;
    a format may number events there, or frame them in binary).
    """

    events: list[Event]
    error: list[Event]
    encode: Callable[[list[Event]], list[bytes]] = encode_sse
    content_type: str = SSE_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


class WireFormat(ABC):
    """One provider's HTTP API. Subclass it in ``_{provider}.py`` and add an instance to
    ``_formats.WIRE_FORMATS``; see the package docstring for the recipe.

    ``route`` and ``claims`` may read the request's fields (method, path, query, headers, json) but
    not its properties, which are derived from their answer. A renderer raising is a bad script: the
    test sees a 500 and the traceback in ``FakeLLMServer.errors``.
    """

    name: ClassVar[str]
    """The provider name of requests this format claims but does not route (unknown paths)."""
    request_id_header: ClassVar[str] = "x-request-id"

    @abstractmethod
    def route(self, request: RecordedRequest) -> Route | None:
        """What the request asks for, if its method and path are this format's; else None."""

    def claims(self, request: RecordedRequest) -> bool:
        """Whether a request no format routes is meant for this provider (by its headers), so
        that the 404 comes in an envelope its client understands."""
        return False

    def authenticate(self, request: RecordedRequest) -> ErrorSpec | None:
        """The error to answer instead of the script when the request's credentials are wrong (an
        AWS signature that does not verify), or None to accept it. A rejected request is recorded
        but consumes no scripted reply, as a real endpoint rejects it before the model sees it."""
        return None

    @abstractmethod
    def error(self, spec: ErrorSpec, request: RecordedRequest, ctx: Context) -> Body:
        """An HTTP error response with ``spec.status`` in this provider's envelope."""

    def completion(self, spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
        """A text/tool-call turn for a ``"completion"`` route; a :class:`Stream` when ``request.stream``."""
        raise ValueError(f"the {self.name} wire format renders no text/tool-call replies")

    def embeddings(self, spec: EmbeddingsSpec, request: RecordedRequest, ctx: Context) -> Body:
        """Vectors for an ``"embeddings"`` route."""
        raise ValueError(f"the {self.name} wire format renders no embeddings")


# --------------------------------------------------------------------------------------------------
# Reply + request -> what the transport puts on the wire
# --------------------------------------------------------------------------------------------------

Headers: TypeAlias = list[tuple[str, str]]


@dataclass(frozen=True)
class SendBody:
    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class SendStream:
    status: int
    headers: Headers
    frames: list[bytes]
    chunk_delay: float
    # Close the connection after the frames without ending the chunked body: a cut stream.
    disconnect: bool = False


@dataclass(frozen=True)
class Wait:
    seconds: float
    then: Reply


Plan: TypeAlias = SendBody | SendStream | HangSpec | ResetSpec | Wait

_STREAM_HEADERS: Headers = [("Cache-Control", "no-cache")]


def _merge(defaults: Headers, extra: Sequence[tuple[str, str]]) -> Headers:
    """``defaults`` with ``extra`` appended; a name in ``extra`` replaces the default of that name."""
    overridden = {name.lower() for name, _ in extra}
    return [(n, v) for n, v in defaults if n.lower() not in overridden] + list(extra)


def truncate_after_content(events: list[Event], n: int) -> list[Event]:
    """The events a stream sends before a fault injected after its ``n``-th content delta.

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


def body_plan(body: Body, base: Headers, extra: Sequence[tuple[str, str]] = ()) -> SendBody:
    headers = _merge([("Content-Type", body.content_type), *base, *body.headers], extra)
    return SendBody(body.status, headers, body.encoded())


def _stream_plan(stream: Stream, spec: CompletionSpec, base: Headers) -> SendStream:
    events = stream.events
    disconnect = spec.disconnect_after_chunks is not None
    if spec.error_after_chunks is not None:
        events = [*truncate_after_content(events, spec.error_after_chunks), *stream.error]
    elif spec.disconnect_after_chunks is not None:
        events = truncate_after_content(events, spec.disconnect_after_chunks)
    headers = _merge(
        [("Content-Type", stream.content_type), *_STREAM_HEADERS, *base, *stream.headers], spec.headers
    )
    return SendStream(200, headers, stream.encode(events), spec.chunk_delay, disconnect)


def plan_reply(reply: Reply, request: RecordedRequest, ctx: Context) -> Plan:
    """What to send for ``reply``; raises when the reply cannot answer the request (a bad script)."""
    spec = reply.spec
    wire_format, route = request.routed()
    base: Headers = [(wire_format.request_id_header, ctx.request_id)]
    if isinstance(spec, JsonSpec):
        return SendBody(
            spec.status, _merge([("Content-Type", "application/json"), *base], spec.headers), spec.body
        )
    if isinstance(spec, ErrorSpec):
        return body_plan(wire_format.error(spec, request, ctx), base, spec.headers)
    if isinstance(spec, SSESpec):
        frames = [_sse_frame(name, data) for name, data in spec.events]
        headers = _merge([("Content-Type", SSE_CONTENT_TYPE), *_STREAM_HEADERS, *base], spec.headers)
        return SendStream(spec.status, headers, frames, spec.chunk_delay)
    if isinstance(spec, FramesSpec):
        headers = _merge([("Content-Type", spec.content_type), *_STREAM_HEADERS, *base], spec.headers)
        return SendStream(spec.status, headers, list(spec.frames), spec.chunk_delay)
    if isinstance(spec, MalformedSpec):
        return SendBody(spec.status, [("Content-Type", spec.content_type), *base], spec.body)
    if isinstance(spec, (HangSpec, ResetSpec)):
        return spec
    if isinstance(spec, DelaySpec):
        return Wait(spec.seconds, spec.reply)
    if isinstance(spec, EmbeddingsSpec):
        if route.endpoint is None or route.answers != "embeddings":
            raise ValueError(f"Reply.embeddings() cannot answer a {route.endpoint!r} request")
        return body_plan(wire_format.embeddings(spec, request, ctx), base, spec.headers)
    if route.endpoint is None or route.answers != "completion":
        raise ValueError(
            f"a text/tool-call reply cannot answer a {route.endpoint!r} request; use Reply.embeddings()"
        )
    rendered = wire_format.completion(spec, request, ctx)
    if isinstance(rendered, Stream):
        return _stream_plan(rendered, spec, base)
    return body_plan(rendered, base, spec.headers)


def error_plan(request: RecordedRequest, ctx: Context, status: int, message: str) -> SendBody:
    """An error the server itself raises (a faulty responder or script), in the request's envelope."""
    wire_format, _ = request.routed()
    base: Headers = [(wire_format.request_id_header, ctx.request_id)]
    try:
        return body_plan(wire_format.error(ErrorSpec(status, message, None, None, ()), request, ctx), base)
    except Exception:  # noqa: BLE001 - a format that cannot render errors still gets its test a status
        return body_plan(Body(status, {"error": {"message": message}}), base)
