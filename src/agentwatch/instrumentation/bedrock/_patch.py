"""How agentwatch hooks into botocore for Bedrock Runtime, and what each call does.

**Where.** Every operation of a botocore client goes ``client.converse(...)`` ->
``self._make_api_call("Converse", params)``. opentelemetry-instrumentation-botocore wraps
``BaseClient._make_api_call`` and makes a span (a GenAI ``chat`` span with its own metrics, for
Bedrock) for every call; so would agentwatch if it wrapped the same method, and which of the two
wraps last (so runs first) depends on the order the instrumentors load. agentwatch instead gives
each ``bedrock-runtime`` client class (botocore generates one per client) its own
``_make_api_call``, which runs before ``BaseClient``'s whatever wraps that: classes created later
through ``ClientCreator._create_client_class``, classes already created when ``instrument()`` runs
by walking ``BaseClient``'s subclasses. ``uninstrument()`` deletes them again.

**One span.** agentwatch's span is the call's span: each attempt runs with instrumentation
suppressed (the OpenTelemetry context flag every instrumentor honours), so the botocore
instrumentor passes the traced operations through, and the HTTP instrumentations under botocore
make no span either (the botocore instrumentor suppresses those itself). Its X-Ray header still
goes out, carrying agentwatch's span. Operations agentwatch does not trace (``apply_guardrail``...)
keep the botocore instrumentor's span.

**Trace context.** ``traceparent`` (and ``tracestate``, ``baggage``) is added in the client's
``before-send.bedrock-runtime`` event: once per attempt, on the request botocore has already
signed, so the header is *not* covered by the SigV4 signature. That is deliberate: botocore leaves
``X-Amzn-Trace-Id`` out of the signature for the same reason, proxies and service meshes on the
way rewrite trace headers, and a signed one would turn that into ``InvalidSignatureException``
(recent botocore leaves ``traceparent`` out of the signature itself; 1.34.116 signs every header it
sees at signing time). An unsigned header can be changed without breaking the request.

**Exactly one layer retries.** When an agentwatch policy retries a Bedrock call, each attempt runs
with botocore's retries off, without touching the client: ``Endpoint._needs_retry`` (where every
retry mode, legacy, standard and adaptive, decides) is called as if the attempt budget were
spent, so botocore's handlers (its adaptive rate limiter, its retry quota) see the response and
decide "no retry", as for a client configured with one attempt. So 3 policy attempts are 3 HTTP
requests. Without a policy retry, botocore retries as configured.
"""

from __future__ import annotations

import io
import sys
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import replace
from functools import partial
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled, suppress_instrumentation
from opentelemetry.propagators.textmap import Setter

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._headers import inject_trace_context
from agentwatch._telemetry._inference import InferenceCall
from agentwatch._telemetry._stream import IterableStreamProxy, OnItem
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._policies import safe_policy_for, stream_limits
from agentwatch.instrumentation._wrappers import Operation, policies_of, start_call
from agentwatch.instrumentation.bedrock import _extract as ex

__all__ = ["BedrockHooks"]

SERVICE = "bedrock-runtime"
_UNIQUE_ID = "agentwatch-trace-context"
_MARK = "__agentwatch_bedrock__"

# The attempt number botocore's retry handlers are shown when the policy owns retries: past any
# sane max_attempts, small enough that a handler computing a backoff from it cannot overflow.
_SPENT_ATTEMPTS = 1000
_sdk_retries_off: ContextVar[bool] = ContextVar("agentwatch_botocore_retries_off", default=False)

_STREAMS = {"ConverseStream": "stream", "InvokeModelWithResponseStream": "body"}
_TRACED = frozenset({"Converse", "ConverseStream", "InvokeModel", "InvokeModelWithResponseStream"})


def _operations() -> dict[str, Operation]:
    converse = Operation(
        name=sc.OP_CHAT,
        client_info=ex.client_info,
        request=ex.converse_request,
        content=ex.converse_content,
        response=ex.converse_response,
        model_key="modelId",
        error_type=ex.error_type,
        attempt_options=botocore_options,
    )
    # InvokeModel responses are read in BedrockHooks._finish (the body has to be buffered first).
    invoke = replace(converse, request=ex.invoke_request, content=ex.invoke_content)
    return {
        "Converse": converse,
        "ConverseStream": replace(converse, stream_items=ex.converse_stream_handler, streams=_always),
        "InvokeModel": invoke,
        "InvokeModelEmbeddings": replace(invoke, name=sc.OP_EMBEDDINGS, request=_no_attributes, content=None),
        "InvokeModelWithResponseStream": replace(
            invoke, stream_items=ex.invoke_stream_handler, streams=_always
        ),
    }


def _always(params: Mapping[str, Any]) -> bool:
    return True


def _no_attributes(params: Mapping[str, Any]) -> dict[str, Any]:
    return {}


# -- attempts ------------------------------------------------------------------------------------


def _send(parent: Callable[..., Any], operation_name: str, params: Any) -> Any:
    """One request, botocore's own span (opentelemetry-instrumentation-botocore) suppressed."""
    with suppress_instrumentation():
        return parent(operation_name, params)


def _request(parent: Callable[..., Any], operation_name: str) -> Callable[..., Any]:
    """The request as a policy's attempts make it: its parameters as keyword arguments, so the
    attempt's model replaces ``modelId`` the way it replaces other SDKs' ``model``."""

    def send(**params: Any) -> Any:
        return _send(parent, operation_name, params)

    return send


def _without_retries(send: Callable[..., Any], /, **params: Any) -> Any:
    token = _sdk_retries_off.set(True)
    try:
        return send(**params)
    finally:
        _sdk_retries_off.reset(token)


def _replayable(params: dict[str, Any]) -> dict[str, Any]:
    """A policy sends the same parameters on every attempt: a file-like InvokeModel body would be
    read to its end by the first. Read it once (a copy of the parameters; the caller's dict and
    file are left as they are)."""
    body = params.get("body")
    if body is None or isinstance(body, (bytes, bytearray, str)) or not hasattr(body, "read"):
        return params
    return {**params, "body": body.read()}


def botocore_options(
    wrapped: Callable[..., Any], instance: Any, kwargs: dict[str, Any], limit: float | None, no_retries: bool
) -> Callable[..., Any]:
    """The :data:`~agentwatch.instrumentation._policies.AttemptOptions` of a Bedrock request.
    botocore has no per-request timeout: the pipeline enforces the attempt's time, and an abandoned
    request ends at the client's ``read_timeout``. Its retries are off for the attempt's request
    only (:func:`needs_retry_wrapper`)."""
    return partial(_without_retries, wrapped) if no_retries else wrapped


def needs_retry_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    """``Endpoint._needs_retry(attempts, operation_model, request_dict, response, caught_exception)``.

    Only the Bedrock request itself: a client the call uses on the way (STS refreshing the
    credentials while botocore signs) keeps its retries."""
    if not _sdk_retries_off.get() or _service_of(args, kwargs) != SERVICE:
        return wrapped(*args, **kwargs)
    if args:
        args = (_SPENT_ATTEMPTS, *args[1:])
    else:
        kwargs = {**kwargs, "attempts": _SPENT_ATTEMPTS}
    return wrapped(*args, **kwargs)


def _service_of(args: Any, kwargs: Any) -> object:
    operation = args[1] if len(args) > 1 else kwargs.get("operation_model")
    return getattr(getattr(operation, "service_model", None), "service_name", None)


# -- trace context -------------------------------------------------------------------------------


class _ReplacingSetter(Setter[Any]):
    """botocore's headers are an ``email.message.Message``: assignment appends, so replace."""

    def set(self, carrier: Any, key: str, value: str) -> None:
        if key in carrier:
            del carrier[key]
        carrier[key] = value


_SETTER = _ReplacingSetter()


def _host(request: Any) -> str:
    from urllib.parse import urlsplit

    return urlsplit(request.url).hostname or ""


def _inject(request: Any, **kwargs: Any) -> None:
    """``before-send`` handler: the request is signed by now (see the module docstring)."""
    inject_trace_context(request.headers, lambda: _host(request), _SETTER)


# -- streams and bodies --------------------------------------------------------------------------


def _read_timeout(stream: Any, seconds: float) -> None:
    """Bound every read of a sync event stream by ``seconds`` (a policy's chunk timeouts; see
    ``SyncStreamProxy``): botocore has no per-request timeout, so set it on the response's socket,
    with botocore's own helper. urllib3 sets the pool's timeout again on the connection's next
    request."""
    from botocore.compat import set_socket_timeout

    try:
        set_socket_timeout(stream._raw_stream, seconds)
    except AttributeError:
        report_internal_error("finding the socket of a Bedrock stream for its chunk timeouts")


def _buffer_body(result: dict[str, Any]) -> tuple[bytes | None, Exception | None]:
    """Read an InvokeModel response body into memory and put an equivalent ``StreamingBody`` in its
    place, so agentwatch reads the model's answer and the caller still reads every byte. A body
    that fails midway is replaced by one that fails the same way, with the same exception."""
    from botocore.response import StreamingBody

    body = result.get("body")
    if not isinstance(body, StreamingBody):
        return None, None
    chunks: list[bytes] = []
    try:
        while chunk := body.read(65536):
            chunks.append(chunk)
    except Exception as exc:  # noqa: BLE001 - handed to the caller on its own read, unchanged
        result["body"] = _failing_body(StreamingBody, b"".join(chunks), exc)
        return None, exc
    finally:
        body.close()
    data = b"".join(chunks)
    result["body"] = StreamingBody(io.BytesIO(data), len(data))
    return data, None


def _failing_body(base: type, data: bytes, error: Exception) -> Any:
    class FailingBody(base):  # type: ignore[misc]
        """What arrived before the failure, then the failure: ``read()`` of the whole body raises
        at once, as the original would have; reads in chunks get the bytes first."""

        def read(self, amt: int | None = None) -> bytes:
            if amt is None:
                raise error
            chunk: bytes = super().read(amt)
            if not chunk and amt > 0:
                raise error
            return chunk

    return FailingBody(io.BytesIO(data), None)


# -- the calls -----------------------------------------------------------------------------------


def _override(cls: Any, handle: Callable[..., Any]) -> Callable[..., Any]:
    """The ``_make_api_call`` of one generated client class: agentwatch's handling around the
    inherited one (``BaseClient``'s, however other instrumentors wrapped it)."""

    def _make_api_call(client: Any, operation_name: str, api_params: Any) -> Any:
        return handle(super(cls, client)._make_api_call, client, operation_name, api_params)

    setattr(_make_api_call, _MARK, True)
    return _make_api_call


class BedrockHooks:
    """Everything one instrumentation installs: built at instrument time, undone by :meth:`remove`."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.policies = policies_of(telemetry)
        self.operations = _operations()
        self._classes: weakref.WeakSet[type] = weakref.WeakSet()
        self._emitters: weakref.WeakSet[Any] = weakref.WeakSet()

    def patches(self) -> Iterable[Patch]:
        yield "botocore.client", "ClientCreator._create_client_class", self._create_client_class
        yield "botocore.endpoint", "Endpoint._needs_retry", needs_retry_wrapper

    # -- client classes --

    def _create_client_class(self, wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        cls = wrapped(*args, **kwargs)
        try:
            service_model = args[1] if len(args) > 1 else kwargs.get("service_model")
            if getattr(service_model, "service_name", None) == SERVICE:
                self._install(cls)
        except Exception:  # noqa: BLE001
            report_internal_error("instrumenting a bedrock-runtime client class")
        return cls

    def install_existing(self) -> None:
        """The client classes created before ``instrument()`` (module-level clients)."""
        module = sys.modules.get("botocore.client")
        if module is None:
            return
        try:
            for cls in module.BaseClient.__subclasses__():
                if cls.__name__ == "BedrockRuntime" and "converse" in getattr(cls, "_PY_TO_OP_NAME", {}):
                    self._install(cls)
        except Exception:  # noqa: BLE001
            report_internal_error("instrumenting existing bedrock-runtime clients")

    def _install(self, cls: type) -> None:
        from botocore.client import BaseClient

        own = cls.__dict__.get("_make_api_call")
        if own is not None and not getattr(own, _MARK, False):
            return  # the class has a _make_api_call of its own: not a plain generated client
        inherited = next(k for k in cls.__mro__[1:] if "_make_api_call" in vars(k))
        if inherited is not BaseClient:
            return  # e.g. aiobotocore's async clients
        cls._make_api_call = _override(cls, self.handle)  # type: ignore[attr-defined]
        self._classes.add(cls)

    def remove(self) -> None:
        for cls in list(self._classes):
            own = cls.__dict__.get("_make_api_call")
            if own is not None and getattr(own, _MARK, False):
                del cls._make_api_call  # type: ignore[attr-defined]
        self._classes = weakref.WeakSet()
        for emitter in list(self._emitters):
            try:
                emitter.unregister(f"before-send.{SERVICE}", unique_id=_UNIQUE_ID)
            except Exception:  # noqa: BLE001
                report_internal_error("removing the trace-context handler of a Bedrock client")
        self._emitters = weakref.WeakSet()

    def _watch(self, client: Any) -> None:
        events = client.meta.events
        if events not in self._emitters:
            events.register(f"before-send.{SERVICE}", _inject, unique_id=_UNIQUE_ID)
            self._emitters.add(events)

    # -- one call --

    def handle(self, parent: Callable[..., Any], client: Any, operation_name: str, api_params: Any) -> Any:
        if (
            operation_name not in _TRACED
            or not isinstance(api_params, dict)
            or not is_instrumentation_enabled()
        ):
            return parent(operation_name, api_params)
        call = None
        try:
            op, view = self._operation(operation_name, api_params)
            policy = safe_policy_for(self.policies, api_params.get("modelId"))
            if policy is not None:
                api_params = _replayable(api_params)
            call = start_call(self.telemetry, op, client, view, own_span=True)
        except Exception:  # noqa: BLE001
            report_internal_error(f"starting a Bedrock {operation_name} span")
        if call is None:
            return parent(operation_name, api_params)
        try:
            self._watch(client)
        except Exception:  # noqa: BLE001 - the call goes ahead (and is traced) without traceparent
            call.fault("adding the trace-context handler to a Bedrock client")
        call.activate()
        try:
            if policy is None:
                result = _send(parent, operation_name, api_params)
            else:
                result = self.policies.call(
                    call,
                    policy,
                    _request(parent, operation_name),
                    client,
                    (),
                    api_params,
                    op.attempt_options,
                    model_key=op.model_key,
                )
        except BaseException as exc:
            try:
                ex.error_metadata(call, exc)
            except Exception:  # noqa: BLE001
                call.fault("reading a Bedrock error")
            call.end(exc)
            raise
        finally:
            call.deactivate()
        return self._finish(call, op, operation_name, result, stream_limits(policy), view)

    def _operation(self, operation_name: str, params: dict[str, Any]) -> tuple[Operation, Mapping[str, Any]]:
        if operation_name in ("Converse", "ConverseStream"):
            return self.operations[operation_name], params
        model = params.get("modelId")
        if operation_name == "InvokeModel" and ex.is_embeddings_model(model):
            return self.operations["InvokeModelEmbeddings"], params
        view = {
            "modelId": model,
            "guardrailIdentifier": params.get("guardrailIdentifier"),
            "body": ex.request_body(params),
        }
        return self.operations[operation_name], view

    def _finish(
        self,
        call: InferenceCall,
        op: Operation,
        operation_name: str,
        result: Any,
        limits: tuple[float | None, float | None] | None,
        view: Mapping[str, Any],
    ) -> Any:
        try:
            if not isinstance(result, dict):
                call.end()
                return result
            key = _STREAMS.get(operation_name)
            if key is not None and op.stream_items is not None and result.get(key) is not None:
                ex.response_metadata(call, result)
                stream = result[key]
                if limits is not None:
                    _read_timeout(stream, max(t for t in limits if t is not None))
                items: OnItem = op.stream_items(call.capture_content)
                result[key] = IterableStreamProxy(stream, call, items, limits)
                return result
            if operation_name == "InvokeModel":
                body: object = None
                if op.name == sc.OP_CHAT and ex.family(call.request_model, view.get("body")) is not None:
                    data, error = _buffer_body(result)
                    if error is not None:
                        call.end(error)
                        return result
                    body = ex.response_body(data)
                ex.invoke_response(call, result, body)
            else:
                op.response(call, result)
        except Exception:  # noqa: BLE001
            call.fault(f"reading a Bedrock {operation_name} response")
        call.end()
        return result
