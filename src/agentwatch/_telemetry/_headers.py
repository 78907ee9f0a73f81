"""Trace-context headers on every HTTP request an instrumented SDK call sends.

The Stainless-generated SDKs (openai, anthropic) build a fresh ``httpx.Request`` per attempt in
``BaseClient._build_request``, for the first try and each retry alike. Injecting there, while
the inference span is current, puts the span's context on every attempt without touching the
``extra_headers`` dict the caller passed. Calls that agentwatch does not instrument (files,
batches, ...) are left alone: only a request made inside an instrumented call is changed.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._context import current_call

__all__ = ["build_request_wrapper"]


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
