"""The google-genai methods agentwatch wraps, and how each is read.

One span per request to the model: the SDK's private ``Models._generate_content``,
``_generate_content_stream`` and ``_embed_content`` (and their ``AsyncModels`` twins) each send
exactly one. The public ``generate_content`` may send several (automatic function calling runs the
application's Python functions between model turns; automatic continuation follows continuation
tokens), and chats call it: wrapping the public methods would give one span for several billed
requests, report only the last one's usage, and make a policy retry re-run the application's
functions. Older SDKs have no ``_embed_content``: there the public ``embed_content`` is the request.

Trace context: every transport the SDK uses (httpx or httpx2, aiohttp for async when installed,
google-auth's requests session) sends the headers of the ``HttpRequest`` that
``BaseApiClient._build_request`` returns, once per call and reused by each of the SDK's retries.
agentwatch adds ``traceparent`` to a copy of those headers while an instrumented call is current.
"""

from __future__ import annotations

import inspect
import math
import types
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._context import current_call
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._common import server_of_url
from agentwatch.instrumentation._wrappers import Operation, async_wrapper, generator_wrapper, sync_wrapper
from agentwatch.instrumentation.google_genai import _extract as ex

OP_GENERATE_CONTENT = "generate_content"


def client_info(instance: Any) -> tuple[str, str | None, int | None]:
    client = getattr(instance, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(client, "vertexai", False) is True else "gcp.gemini"
    host, port = server_of_url(getattr(getattr(client, "_http_options", None), "base_url", None))
    return provider, host, port


# -- a policy's attempts ---------------------------------------------------------------------


def _with(obj: object, updates: dict[str, Any], model: type | None) -> Any:
    """``obj`` (None, a dict or an SDK model) with ``updates``, never changing the caller's."""
    if obj is None:
        return updates if model is None else model(**updates)
    if isinstance(obj, Mapping):
        return {**obj, **updates}
    return obj.model_copy(update=updates)  # type: ignore[attr-defined]


_per_request_retries: dict[type, bool] = {}
_no_retry_types: dict[type, type] = {}
_no_retry_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _takes_request_retries(client: Any) -> bool:
    """Whether the SDK honours a request's own ``retry_options`` (``_request(..., http_options)``);
    before that (older google-genai) only the client's retry policy applied."""
    kind = type(client)
    known = _per_request_retries.get(kind)
    if known is None:
        try:
            known = "http_options" in inspect.signature(kind._request).parameters
        except (AttributeError, TypeError, ValueError):
            known = False
        _per_request_retries[kind] = known
    return known


def _without_client_retries(wrapped: Any, instance: Any) -> Any:
    """``wrapped`` bound to a copy of its module over a copy of the API client whose retry
    policy tries once. The copy shares the original's HTTP clients and sessions; its class
    drops ``__del__``, which would close them."""
    import tenacity

    client = instance._api_client
    quiet: Any = _no_retry_clients.get(client)
    if quiet is None:
        kind = type(client)
        no_del = _no_retry_types.get(kind)
        if no_del is None:
            no_del = _no_retry_types[kind] = type(kind.__name__, (kind,), {"__del__": lambda self: None})
        quiet = object.__new__(no_del)
        quiet.__dict__.update(client.__dict__)
        quiet._retry = tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True)
        quiet._async_retry = tenacity.AsyncRetrying(stop=tenacity.stop_after_attempt(1), reraise=True)
        _no_retry_clients[client] = quiet
    return wrapped.__func__.__get__(type(instance)(quiet))


def attempt_options(
    wrapped: Any, instance: Any, kwargs: dict[str, Any], limit: float | None, no_retries: bool
) -> Any:
    """google-genai takes the timeout per request, in ``config.http_options.timeout``
    (milliseconds), and in newer releases (1.30 has them) the retries too: ``retry_options=HttpRetryOptions(attempts=1)``,
    one try, and no implicit reconnect of the async aiohttp path either. Older SDKs retry by the
    client's policy only: there the attempt goes through a copy of the client that tries once."""
    from google.genai import types as gt

    config = kwargs.get("config")
    http = ex.field(config, "http_options")
    updates: dict[str, Any] = {}
    if limit is not None:
        ms = max(1, math.ceil(limit * 1000))
        given = ex.field(http, "timeout")
        if not isinstance(given, int) or isinstance(given, bool) or given > ms:
            updates["timeout"] = ms
    retry_model = getattr(gt, "HttpRetryOptions", None)
    per_request = no_retries and _takes_request_retries(getattr(instance, "_api_client", None))
    if per_request and retry_model is not None and "retry_options" in gt.HttpOptions.model_fields:
        as_dict = (http is None and (config is None or isinstance(config, Mapping))) or isinstance(
            http, Mapping
        )
        updates["retry_options"] = {"attempts": 1} if as_dict else retry_model(attempts=1)
    if updates:
        plain = config is None or isinstance(config, Mapping)
        new_http = _with(http, updates, None if plain or isinstance(http, Mapping) else gt.HttpOptions)
        kwargs["config"] = _with(config, {"http_options": new_http}, None)
    if no_retries and not per_request and retry_model is not None:
        return _without_client_retries(wrapped, instance)
    return wrapped


# -- trace context ---------------------------------------------------------------------------


def _build_request(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = wrapped(*args, **kwargs)
    call = current_call.get()
    if call is not None:
        try:
            host = urlsplit(request.url).hostname or ""
            if call.telemetry.settings.propagate.allows(host):
                # A copy: older SDKs hand the client's default headers dict to every request.
                headers = dict(request.headers)
                propagate.inject(headers)
                request.headers = headers
        except Exception:  # noqa: BLE001
            report_internal_error("injecting trace-context headers")
    return request


# -- older SDKs' embed_content ---------------------------------------------------------------


def _public_embed(inner: Any) -> Any:
    """``embed_content`` is the request itself only in SDKs without ``_embed_content``."""

    def traced(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        if "_embed_content" in vars(type(instance)):
            return wrapped(*args, **kwargs)
        return inner(wrapped, instance, args, kwargs)

    return traced


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    # Nothing of google.genai is imported here: the SDK types are only needed in the wrappers.
    generate = Operation(
        name=OP_GENERATE_CONTENT,
        client_info=client_info,
        request=ex.generate_request,
        content=ex.content,
        response=ex.generate_response,
        error_type=ex.error_type,
        attempt_options=attempt_options,
    )
    stream = Operation(
        name=OP_GENERATE_CONTENT,
        client_info=client_info,
        request=ex.generate_request,
        content=ex.content,
        response=ex.generate_response,
        stream_items=ex.stream_handler,
        stream_types=(types.GeneratorType, types.AsyncGeneratorType),
        streams=lambda kwargs: True,
        error_type=ex.error_type,
        attempt_options=attempt_options,
    )
    embed = Operation(
        name=sc.OP_EMBEDDINGS,
        client_info=client_info,
        request=ex.embed_request,
        response=ex.embed_response,
        error_type=ex.error_type,
        attempt_options=attempt_options,
    )
    module = "google.genai.models"
    yield module, "Models._generate_content", sync_wrapper(telemetry, generate)
    yield module, "AsyncModels._generate_content", async_wrapper(telemetry, generate)
    yield module, "Models._generate_content_stream", generator_wrapper(telemetry, stream)
    # The async twin awaits the request, then returns an async generator.
    yield module, "AsyncModels._generate_content_stream", async_wrapper(telemetry, stream)
    yield module, "Models._embed_content", sync_wrapper(telemetry, embed)
    yield module, "AsyncModels._embed_content", async_wrapper(telemetry, embed)
    yield module, "Models.embed_content", _public_embed(sync_wrapper(telemetry, embed))
    yield module, "AsyncModels.embed_content", _public_embed(async_wrapper(telemetry, embed))
    yield "google.genai._api_client", "BaseApiClient._build_request", _build_request
