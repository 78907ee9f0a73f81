"""Wrapper factories shared by the provider instrumentors.

An :class:`Operation` says how to read one SDK method (request attributes, content, response,
stream items); :func:`sync_wrapper`/:func:`async_wrapper` turn it into a wrapt wrapper once, at
instrument time. The wrapper returns exactly what the SDK returned (a stream observed in place, or
a transparent proxy of it: see ``_telemetry._stream``) and re-raises exactly what it raised.

A wrapped method called while another instrumented call is open (:func:`open_call`) is that call
seen by a second layer (LiteLLM over the openai SDK, LiteLLM retrying itself): it passes straight
through, so the outer call's span, metrics, policy and session accounting are the only ones.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.util.types import AttributeValue

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._context import open_call
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._inference import InferenceCall
from agentwatch._telemetry._raw import RawResponses
from agentwatch._telemetry._stream import (
    AsyncStreamManagerProxy,
    AsyncStreamProxy,
    OnEnd,
    OnItem,
    SyncGeneratorProxy,
    SyncStreamManagerProxy,
    SyncStreamProxy,
)
from agentwatch.instrumentation._policies import (
    AttemptOptions,
    LLMPolicies,
    safe_policy_for,
    stream_limits,
)

if TYPE_CHECKING:
    from agentwatch.resilience import Policy

__all__ = ["Operation", "async_wrapper", "generator_wrapper", "stream_manager_wrapper", "sync_wrapper"]

ClientInfo = Callable[[Any], tuple[str, str | None, int | None]]
"""instance -> (gen_ai.provider.name, server.address, server.port)"""
Target = Callable[[Any, Mapping[str, Any]], tuple[str, str | None, str | None, int | None]]
"""(instance, kwargs) -> (gen_ai.provider.name, gen_ai.request.model, server.address, server.port)"""


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    client_info: ClientInfo
    request: Callable[[Mapping[str, Any]], dict[str, AttributeValue]]
    response: Callable[[InferenceCall, Any], None]
    content: Callable[[InferenceCall, Mapping[str, Any]], None] | None = None
    stream_items: Callable[[bool], OnItem] | None = None
    stream_types: tuple[type, ...] = ()
    adjust_kwargs: Callable[[Telemetry, dict[str, Any]], dict[str, Any]] | None = None
    streams: Callable[[Mapping[str, Any]], bool] = lambda kwargs: kwargs.get("stream") is True
    native_span: Callable[[Any, Mapping[str, Any]], bool] | None = None
    """(instance, kwargs) -> whether the SDK makes its own span for this call (then it is enriched)."""
    native_error_type: Callable[[BaseException], str] | None = None
    error_type: Callable[[BaseException], str] | None = None
    """The SDK's own ``error.type`` reader, where the exception class alone says too little."""
    attempt_options: AttemptOptions | None = None
    """How a policy's attempt passes its timeout and turns the SDK's retries off (see _policies)."""
    raw: RawResponses | None = None
    """The SDK's raw-response classes (``with_raw_response``/``with_streaming_response``)."""
    model_key: str = "model"
    """The request parameter naming the model (Bedrock's is ``modelId``)."""
    target: Target | None = None
    """Where the request names the provider, model and server rather than the client (LiteLLM's
    ``"groq/llama-3.1-8b-instant"``): read from it instead of ``client_info`` and ``model_key``."""
    stream_end: OnEnd | None = None
    """What the SDK stream object itself tells when it ends (see _stream.OnEnd)."""
    credentials: Callable[[Any, Mapping[str, Any]], object] | None = None
    """(instance, kwargs) -> what holds the call's API key (scrubbed from error descriptions), when
    the instance's client does not."""


def start_call(
    telemetry: Telemetry, op: Operation, instance: Any, kwargs: Mapping[str, Any], *, own_span: bool = False
) -> InferenceCall | None:
    try:
        # The SDKs merge ``extra_body`` into the JSON body over the named arguments (OpenAI-
        # compatible servers take top_k, seed ... that way): read the request that is sent.
        extra = kwargs.get("extra_body")
        params = {**kwargs, **extra} if isinstance(extra, Mapping) and extra else kwargs
        if op.target is not None:
            provider, model, host, port = op.target(instance, params)
        else:
            provider, host, port = op.client_info(instance)
            model = params.get(op.model_key)
        # A policy's span must cover every attempt, so it is always agentwatch's own.
        native = not own_span and op.native_span is not None and op.native_span(instance, kwargs)
        call = InferenceCall(
            telemetry,
            operation=op.name,
            provider=provider,
            request_model=model if isinstance(model, str) else None,
            server_address=host,
            server_port=port,
            attributes=_request_attributes(op, params),
            stream=op.streams(kwargs),
            owns_span=not native,
        )
        if native and op.native_error_type is not None:
            call.error_typer = op.native_error_type
        elif op.error_type is not None:
            call.error_typer = op.error_type
        # The client whose credentials an error description must not quote (openai and
        # anthropic resources hold it as ``_client``, google-genai's ``Models`` as ``_api_client``).
        call.client = (
            op.credentials(instance, kwargs)
            if op.credentials is not None
            else getattr(instance, "_client", None) or getattr(instance, "_api_client", None)
        )
        if op.content is not None and telemetry.settings.capture.enabled and call.capture_content:
            # On its own: the span has started, and a fault here must not leave it open.
            try:
                op.content(call, params)
            except Exception:  # noqa: BLE001
                call.fault(f"reading {op.name} request content")
        return call
    except Exception:  # noqa: BLE001
        report_internal_error(f"starting a {op.name} span")
        return None


def _request_attributes(op: Operation, kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    # A request agentwatch cannot read is still a call: measured and counted, without attributes.
    try:
        return op.request(kwargs)
    except Exception:  # noqa: BLE001
        report_internal_error(f"reading a {op.name} request")
        return {}


# Request arguments the SDKs accept as any iterable (messages, Responses input items, system
# blocks), and so as a one-shot iterator.
_REQUEST_ITERABLES = ("messages", "input", "system")


def make_replayable(kwargs: dict[str, Any]) -> None:
    """Turn one-shot iterators in the request (top level and inside each item) into lists.

    Content capture reads the request before the SDK does, and a policy hands the same kwargs to
    every attempt: either would leave the SDK an exhausted iterator, that is, send a different
    request than the application made. ``kwargs`` is the dict wrapt built for this call, so
    replacing its values changes nothing the application holds.
    """
    for key in _REQUEST_ITERABLES:
        value = kwargs.get(key)
        if isinstance(value, Iterator):
            value = kwargs[key] = list(value)
        if isinstance(value, list) and any(_holds_iterator(item) for item in value):
            kwargs[key] = [_replayable_item(item) for item in value]


def _holds_iterator(item: object) -> bool:
    return isinstance(item, Mapping) and any(isinstance(v, Iterator) for v in item.values())


def _replayable_item(item: Any) -> Any:
    if not _holds_iterator(item):
        return item
    return {k: list(v) if isinstance(v, Iterator) else v for k, v in item.items()}


def finish_call(
    call: InferenceCall,
    op: Operation,
    result: Any,
    proxy: type[SyncStreamProxy] | type[AsyncStreamProxy],
    limits: tuple[float | None, float | None] | None = None,
) -> Any:
    raw = op.raw
    if raw is not None and isinstance(result, raw.types):
        return raw.finish(call, op, result, proxy, limits)
    if op.stream_items is not None and isinstance(result, op.stream_types):
        try:
            return proxy.observe(result, call, op.stream_items(call.capture_content), limits, op.stream_end)[
                0
            ]
        except Exception:  # noqa: BLE001
            call.fault("wrapping a stream")
            call.end()
            return result
    try:
        op.response(call, result)
    except Exception:  # noqa: BLE001
        call.fault(f"reading a {op.name} response")
    call.end()
    return result


def _passes_through() -> bool:
    """Whether a wrapped method runs as if unwrapped: instrumentation suppressed, or the method is
    part of an instrumented call that is already open (see the module docstring)."""
    return not is_instrumentation_enabled() or open_call() is not None


def _begin(
    telemetry: Telemetry, policies: LLMPolicies, op: Operation, instance: Any, kwargs: dict[str, Any]
) -> tuple[Policy | None, InferenceCall | None]:
    """The call's policy and its started call (None when starting it failed)."""
    policy = safe_policy_for(policies, kwargs.get(op.model_key))
    if policy is not None or telemetry.settings.capture.enabled:
        make_replayable(kwargs)
    return policy, start_call(telemetry, op, instance, kwargs, own_span=policy is not None)


def sync_wrapper(telemetry: Telemetry, op: Operation) -> Callable[..., Any]:
    policies = policies_of(telemetry)

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _passes_through():
            return wrapped(*args, **kwargs)
        policy, call = _begin(telemetry, policies, op, instance, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        if op.adjust_kwargs is not None:
            kwargs = op.adjust_kwargs(telemetry, kwargs)
        call.activate()
        try:
            if policy is None:
                result = wrapped(*args, **kwargs)
            else:
                result = policies.call(
                    call, policy, wrapped, instance, args, kwargs, op.attempt_options, model_key=op.model_key
                )
        except BaseException as exc:
            call.end(exc)
            raise
        finally:
            call.deactivate()
        return finish_call(call, op, result, SyncStreamProxy, stream_limits(policy))

    return traced


def async_wrapper(telemetry: Telemetry, op: Operation) -> Callable[..., Any]:
    policies = policies_of(telemetry)

    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _passes_through():
            return await wrapped(*args, **kwargs)
        policy, call = _begin(telemetry, policies, op, instance, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        if op.adjust_kwargs is not None:
            kwargs = op.adjust_kwargs(telemetry, kwargs)
        call.activate()
        try:
            if policy is None:
                result = await wrapped(*args, **kwargs)
            else:
                result = await policies.acall(
                    call, policy, wrapped, instance, args, kwargs, op.attempt_options, model_key=op.model_key
                )
        except BaseException as exc:
            call.end(exc)
            raise
        finally:
            call.deactivate()
        raw = op.raw
        if raw is not None and isinstance(result, raw.types):
            # AsyncAPIResponse.parse() is a coroutine.
            return await raw.afinish(call, op, result, AsyncStreamProxy, stream_limits(policy))
        return finish_call(call, op, result, AsyncStreamProxy, stream_limits(policy))

    return traced


_NO_ITEM: Any = object()


def generator_wrapper(telemetry: Telemetry, op: Operation) -> Callable[..., Any]:
    """For a sync SDK method that returns a generator sending its request at the first ``next()``
    (google-genai's streams).

    The span starts at the call; the request is still made when the caller first iterates, as
    without agentwatch, but with the call's span current (:class:`SyncGeneratorProxy`). With a
    policy, that first step is the policy's call: each attempt opens a generator of its own and
    reads its first item, so retries, fallbacks and the breaker see the request's failures; once
    a first item has arrived the stream is the caller's, as with the other SDKs' streams.
    """
    policies = policies_of(telemetry)
    if op.stream_items is None:
        raise ValueError(f"{op.name}: a generator wrapper needs stream_items")
    stream_items = op.stream_items

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _passes_through():
            return wrapped(*args, **kwargs)
        policy, call = _begin(telemetry, policies, op, instance, kwargs)
        try:
            generator = wrapped(*args, **kwargs)
        except BaseException as exc:
            if call is not None:
                call.end(exc)
            raise
        if call is None:
            return generator
        opener = (
            None
            if policy is None
            else _policy_opener(policies, policy, op, call, wrapped, instance, args, kwargs)
        )
        try:
            return SyncGeneratorProxy(
                generator, call, stream_items(call.capture_content), stream_limits(policy), opener
            )
        except Exception:  # noqa: BLE001
            call.fault("wrapping a stream")
            call.end()
            return generator

    return traced


def _policy_opener(
    policies: LLMPolicies,
    policy: Policy,
    op: Operation,
    call: InferenceCall,
    wrapped: Callable[..., Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Callable[[SyncGeneratorProxy], Any]:
    def first(generator: Any) -> tuple[Any, Any]:
        # An empty stream is a success, not a StopIteration escaping into the pipeline.
        return generator, next(generator, _NO_ITEM)

    base = op.attempt_options or policies.stainless_options

    def options(
        target: Callable[..., Any],
        owner: Any,
        attempt_kwargs: dict[str, Any],
        limit: float | None,
        no_retries: bool,
    ) -> Callable[..., Any]:
        chosen = base(target, owner, attempt_kwargs, limit, no_retries)
        return lambda *a, **k: first(chosen(*a, **k))

    def opener(proxy: SyncGeneratorProxy) -> Any:
        # Each attempt returns its own generator; only the pipeline's winner becomes the stream
        # (an attempt cut by a timeout may still finish later, in its thread).
        generator, item = policies.call(
            call, policy, wrapped, instance, args, kwargs, options, model_key=op.model_key
        )
        proxy.__wrapped__ = generator
        if item is _NO_ITEM:
            raise StopIteration
        return item

    return opener


_policies: weakref.WeakKeyDictionary[Telemetry, LLMPolicies] = weakref.WeakKeyDictionary()


def policies_of(telemetry: Telemetry) -> LLMPolicies:
    """One set of LLM pipelines per instrumentor (shared by its chat, responses, ... wrappers)."""
    policies = _policies.get(telemetry)
    if policies is None:
        policies = _policies[telemetry] = LLMPolicies(telemetry)
    return policies


def stream_manager_wrapper(
    telemetry: Telemetry,
    op: Operation | None,
    proxy: type[SyncStreamManagerProxy] | type[AsyncStreamManagerProxy],
) -> Callable[..., Any]:
    """For ``.stream()`` helpers, which return a manager that makes the request when entered.

    ``op=None``: the helper goes through an instrumented ``create`` that makes the span; the
    proxy only ends that span when the manager exits.
    """

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _passes_through():
            return wrapped(*args, **kwargs)
        if op is not None and telemetry.settings.capture.enabled:
            make_replayable(kwargs)
        manager = wrapped(*args, **kwargs)

        def start() -> InferenceCall | None:
            if op is None or _passes_through():
                return None
            return start_call(telemetry, op, instance, kwargs)

        items: Callable[[bool], OnItem] = (op.stream_items if op is not None else None) or _ignore_items
        try:
            return proxy(manager, start, items)
        except Exception:  # noqa: BLE001
            report_internal_error("wrapping a stream manager")
            return manager

    return traced


def _ignore_items(capture: bool) -> OnItem:
    return lambda call, item: None
