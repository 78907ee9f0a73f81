"""Trace-context headers on every HTTP request an instrumented SDK call sends.

The Stainless-generated SDKs (openai, anthropic) build a fresh ``httpx.Request`` per attempt in
``BaseClient._build_request``, for the first try and each retry alike. Injecting there, while
the inference span is current, puts the span's context on every attempt without touching the
``extra_headers`` dict the caller passed. Calls that agentwatch does not instrument (files,
batches, ...) are left alone: only a request made inside an instrumented call is changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import propagate
from opentelemetry.propagators.textmap import Setter, default_setter

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._context import current_call

__all__ = ["build_request_wrapper", "inject_trace_context"]


def build_request_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    request = wrapped(*args, **kwargs)
    inject_trace_context(request.headers, lambda: request.url.host)
    return request


def inject_trace_context(headers: Any, host: Callable[[], str], setter: Setter[Any] = default_setter) -> None:
    """Put the current instrumented call's trace context on ``headers`` of a request to ``host``
    (when ``AGENTWATCH_PROPAGATE_HOSTS`` allows it); nothing outside an instrumented call."""
    call = current_call.get()
    if call is None:
        return
    try:
        hosts = call.telemetry.settings.propagate
        # The default allows every host: the URL is read only when there is a list to check.
        if hosts.allow_all or hosts.allows(host()):
            propagate.inject(headers, setter=setter)
    except Exception:  # noqa: BLE001
        report_internal_error("injecting trace-context headers")
