"""The Anthropic methods agentwatch wraps, and how each is read.

anthropic 2.x can trace itself (on unless ``ANTHROPIC_OPEN_TELEMETRY=false``): each call then
gets a span from the SDK, made current around the HTTP attempts. Two spans per call would
double every count, so when the SDK's span will record, agentwatch makes none: it adopts the
SDK's span (renaming it to the semconv ``chat {model}`` and adding what it lacks: request
parameters, finish reasons, cost, content when enabled) and still records its own metrics. The
SDK's span is found through two module-level functions of ``anthropic._base_client``
(``start_api_call_span``, ``finish_api_call_span``); where they do not exist (older versions),
neither does native tracing. When agentwatch owns the call's span (an LLM policy's span covers
every attempt), the same hook keeps the SDK from starting one per attempt.

``client.beta.messages`` (``create``, ``stream``, ``parse``) and ``messages.parse`` are read exactly
like ``messages.create``: the SDK names their spans ``anthropic.messages.create`` too, so the same
hooks adopt them. Raw responses (``with_raw_response``/``with_streaming_response``) are read by
``_telemetry._raw``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from opentelemetry import trace

from agentwatch import _semconv as sc
from agentwatch._telemetry._context import current_call
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._errors import error_type as default_error_type
from agentwatch._telemetry._headers import build_request_wrapper
from agentwatch._telemetry._inference import InferenceCall
from agentwatch._telemetry._raw import RawResponses, read_body
from agentwatch._telemetry._stream import AsyncStreamManagerProxy, SyncStreamManagerProxy
from agentwatch.instrumentation._base import Patch, sdk_type
from agentwatch.instrumentation._common import get, server_of
from agentwatch.instrumentation._wrappers import (
    Operation,
    async_wrapper,
    stream_manager_wrapper,
    sync_wrapper,
)
from agentwatch.instrumentation.anthropic import _extract as ex

_PROVIDERS = {
    "AnthropicBedrock": "aws.bedrock",
    "AsyncAnthropicBedrock": "aws.bedrock",
    "AnthropicVertex": "gcp.vertex_ai",
    "AsyncAnthropicVertex": "gcp.vertex_ai",
}
_provider_by_type: dict[type, str] = {}


def client_info(instance: Any) -> tuple[str, str | None, int | None]:
    client = getattr(instance, "_client", None)
    kind = type(client)
    provider = _provider_by_type.get(kind)
    if provider is None:
        provider = next(
            (_PROVIDERS[c.__name__] for c in kind.__mro__ if c.__name__ in _PROVIDERS), "anthropic"
        )
        _provider_by_type[kind] = provider
    host, port = server_of(client)
    return provider, host, port


# with_streaming_response sets it to "stream": the SDK leaves the body unread.
_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"


def native_span(instance: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether the SDK's own tracing will make a recording span for this call (agentwatch adopts it).

    Not for a body the SDK leaves unread (``with_streaming_response`` without ``stream=True``): the
    SDK ends its span when the caller reads the body, before anything can read the completion
    from it, so agentwatch keeps the span itself (and the start hook stops the SDK's).
    """
    options = getattr(getattr(instance, "_client", None), "open_telemetry", None)
    if not isinstance(options, Mapping):
        return False
    traces = options.get("traces")
    if not isinstance(traces, Mapping) or not traces.get("enabled"):
        return False
    if (
        kwargs.get("stream") is not True
        and get(kwargs.get("extra_headers"), _RAW_RESPONSE_HEADER) == "stream"
    ):
        return False
    if options.get("tracer_provider") is not None:
        return True
    # Without a provider of its own the SDK uses the global one, which records only once set.
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _start_api_call_span(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = current_call.get()
    if call is not None and call.owns_span:
        # agentwatch already has this call's span (it covers every attempt of a policy, or the
        # SDK's tracing was predicted off): no second one. The SDK then proceeds untraced and
        # agentwatch's request hook propagates the context.
        return None
    span = wrapped(*args, **kwargs)
    if span is not None and call is not None and call.span is None:
        try:
            call.adopt_span(span)
        except Exception:  # noqa: BLE001
            call.fault("adopting the anthropic SDK span")
    return span


def _finish_api_call_span(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    call = current_call.get()
    if call is not None and not call.owns_span and len(args) >= 3:
        # The SDK ends a non-streamed call's span here, before the call returns to the wrapper.
        try:
            span, result = args[1], args[2]
            if span is call.span and getattr(result, "error", None) is None:
                data = getattr(result, "data", None)
                if get(data, "type") != "message":
                    data = read_body(data)  # with_raw_response: a read body ends the span here too
                if get(data, "type") == "message":
                    ex.response(call, data)
                    call.write_response_to_span()
        except Exception:  # noqa: BLE001
            call.fault("enriching the anthropic SDK span")
    outcome = wrapped(*args, **kwargs)
    if call is not None and not call.owns_span and call.stream and len(args) >= 3:
        try:
            _end_with_the_body(call, args[1], args[2])
        except Exception:  # noqa: BLE001
            call.fault("observing the anthropic SDK stream")
    return outcome


def _native_error_type(exc: BaseException) -> str:
    """``error.type`` as the SDK's own tracing computes it (``anthropic._tracing.error_type``),
    looked up when a call on an adopted SDK span fails: that module exists, and is imported, only
    where the SDK traces itself."""
    sdk = getattr(sys.modules.get("anthropic._tracing"), "error_type", None)
    if not callable(sdk):
        return default_error_type(exc)
    value: str = sdk(exc)  # checked by InferenceCall._error_type, which falls back to ours
    return value


# How the SDK says a streamed body ended -> agentwatch.stream.outcome.
_OUTCOMES = {"read": "completed", "closed": "closed", "failed": "error"}


def _end_with_the_body(call: InferenceCall, span: object, result: object) -> None:
    """End ``call`` just before the SDK ends the span of its streamed body.

    The SDK ends its span from the body's observer, inside the stream's ``close()`` or as an error
    leaves its iterator: before the stream proxy learns of it. Ending the call first puts the
    outcome (and what the events said) on a span that still records, instead of writing to an
    ended one. The observer is the SDK's object: its ``end`` is shadowed on that instance only.
    """
    if span is not call.span:
        return
    body = getattr(getattr(result, "response", None), "stream", None)
    observer = getattr(body, "stream_observer", None)
    sdk_end = getattr(observer, "end", None)
    if not callable(sdk_end):
        return

    def end(how: str, error: BaseException | None = None) -> Any:
        call.end(error, outcome=_OUTCOMES.get(how, "closed"))  # never raises
        return sdk_end(how, error)

    observer.end = end  # type: ignore[union-attr]


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    # Resolved at the first call: importing anthropic here would import it into every application.
    stream_types = (
        sdk_type("anthropic._streaming", "Stream"),
        sdk_type("anthropic._streaming", "AsyncStream"),
    )
    raw = RawResponses.of("anthropic")
    create = Operation(
        name=sc.OP_CHAT,
        client_info=client_info,
        request=ex.request,
        content=ex.content,
        response=ex.response,
        stream_items=ex.event_handler,
        stream_types=stream_types,
        native_span=native_span,
        native_error_type=_native_error_type,
        raw=raw,
    )
    # messages.stream() always streams; otherwise read exactly like create(stream=True).
    stream = replace(create, streams=lambda kwargs: True)
    # parse() posts directly (not through create()) and never streams.
    parse = replace(create, streams=lambda kwargs: False)
    # The beta resource (structured outputs, betas) has the same methods and shapes. It and
    # parse() exist only in some SDK versions: a missing one is skipped.
    for module in ("anthropic.resources.messages", "anthropic.resources.beta.messages"):
        yield module, "Messages.create", sync_wrapper(telemetry, create)
        yield module, "AsyncMessages.create", async_wrapper(telemetry, create)
        yield module, "Messages.parse", sync_wrapper(telemetry, parse)
        yield module, "AsyncMessages.parse", async_wrapper(telemetry, parse)
        yield module, "Messages.stream", stream_manager_wrapper(telemetry, stream, SyncStreamManagerProxy)
        yield (
            module,
            "AsyncMessages.stream",
            stream_manager_wrapper(telemetry, stream, AsyncStreamManagerProxy),
        )
    yield "anthropic._base_client", "BaseClient._build_request", build_request_wrapper
    yield "anthropic._base_client", "start_api_call_span", _start_api_call_span
    yield "anthropic._base_client", "finish_api_call_span", _finish_api_call_span
    yield "anthropic._response", "APIResponse.close", raw.close_wrapper()
    yield "anthropic._response", "AsyncAPIResponse.close", raw.aclose_wrapper()
