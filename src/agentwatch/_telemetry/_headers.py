"""Trace-context headers on every HTTP request an instrumented SDK call sends.

The Stainless-generated SDKs (openai, anthropic) build a fresh ``httpx.Request`` per attempt in
``BaseClient._build_request``, for the first try and each retry alike. Injecting there, while
the inference span is current, puts the span's context on every attempt without touching the
``extra_headers`` dict the caller passed. Calls that agentwatch does not instrument (files,
batches, ...) are left alone: only a request made inside an instrumented call is changed.

HTTP clients that take the headers as an argument (LiteLLM's own handlers) get a copy of them with
the context added (:func:`with_trace_context`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._context import current_call, open_call

__all__ = ["build_request_wrapper", "with_trace_context"]


def build_request_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = wrapped(*args, **kwargs)
    call = current_call.get()
    if call is not None:
        try:
            if call.telemetry.settings.propagate.allows(request.url.host):
                propagate.inject(request.headers)
        except Exception:  # noqa: BLE001
            report_internal_error("injecting trace-context headers")
    return request


def with_trace_context(headers: object, url: object) -> dict[str, Any] | None:
    """A copy of ``headers`` (a mapping or None) with the trace context of the open call, for a
    request to ``url``; None when no instrumented call is open, the host may not receive it
    (``AGENTWATCH_PROPAGATE_HOSTS``), or the headers are not a mapping. Never raises."""
    call = open_call()
    if call is None:
        return None
    try:
        if headers is not None and not isinstance(headers, Mapping):
            return None
        host = urlsplit(str(url)).hostname or ""
        if not call.telemetry.settings.propagate.allows(host):
            return None
        carrier = dict(headers) if headers is not None else {}
        propagate.inject(carrier)
        return carrier
    except Exception:  # noqa: BLE001
        report_internal_error("injecting trace-context headers")
        return None
