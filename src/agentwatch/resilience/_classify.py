"""Error categories and the classifier that maps an exception to what the policies do with it.

The seed table (operations.md):

============  ==========================================  ========================
category      examples                                     response
============  ==========================================  ========================
timeout       ``TimeoutError``, HTTP 408, SDK timeouts     retry with backoff
rate_limit    HTTP 429                                     wait (Retry-After), retry
validation    ``ValueError``/``TypeError``/``KeyError``,   never retried
              other HTTP 4xx
dependency    ``ConnectionError``/``OSError``, HTTP 409,   retry, then fall back
              5xx, SDK connection errors
unknown       any other exception                          not retried, counted by
                                                           the breaker
cancelled     ``asyncio.CancelledError``                   never retried or counted
============  ==========================================  ========================

A classifier is any ``Callable[[BaseException], Classification]``; pass one as
``Policy(classifier=...)``. It may delegate to :func:`default_classifier` for what it does not
know. It only sees the call's own exceptions: the policies' own errors (timeouts, open circuits,
full bulkheads) have fixed semantics.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import enum
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._errors import http_status, provider_error_codes

__all__ = [
    "Classification",
    "Classifier",
    "ErrorCategory",
    "default_classifier",
    "parse_retry_after",
]


class ErrorCategory(str, enum.Enum):
    """Why a call failed, as far as the policies are concerned."""

    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    VALIDATION = "validation"
    DEPENDENCY = "dependency"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class Classification:
    """What the policies do with one failure.

    Attributes:
        category: the error category.
        retryable: the retry policy may try again.
        counts_as_failure: the circuit breaker counts it against the dependency.
        retry_after: seconds the server asked to wait (``Retry-After``), or ``None``.
        fallback: the fallback layer may replace the failure: try the next model of an LLM
            fallback chain, or return the degradation result of an optional tool.
    """

    category: ErrorCategory
    retryable: bool
    counts_as_failure: bool
    retry_after: float | None = None
    fallback: bool = False


Classifier = Callable[[BaseException], Classification]

_TIMEOUT = Classification(
    category=ErrorCategory.TIMEOUT, retryable=True, counts_as_failure=True, fallback=True
)
_DEPENDENCY = Classification(
    category=ErrorCategory.DEPENDENCY, retryable=True, counts_as_failure=True, fallback=True
)
_VALIDATION = Classification(category=ErrorCategory.VALIDATION, retryable=False, counts_as_failure=False)
_UNKNOWN = Classification(
    category=ErrorCategory.UNKNOWN, retryable=False, counts_as_failure=True, fallback=True
)
_CANCELLED = Classification(category=ErrorCategory.CANCELLED, retryable=False, counts_as_failure=False)

# Exception classes of HTTP clients and LLM SDKs, recognised by name anywhere in the MRO so that
# none of those packages has to be imported (openai, anthropic, httpx, httpcore).
_TIMEOUT_CLASS_NAMES = frozenset({"APITimeoutError", "TimeoutException"})
_CONNECTION_CLASS_NAMES = frozenset({"APIConnectionError", "TransportError", "NetworkError"})
# LiteLLM's exceptions for a request this model cannot serve but another might, whatever the
# provider's own code said (LiteLLM maps each provider's wording to them).
_FALLBACK_CLASS_NAMES = frozenset({"ContextWindowExceededError", "ContentPolicyViolationError"})

# Provider error codes of a request that this model cannot serve but another model might:
# context-length and content-policy rejections (OpenAI ``code``, Anthropic messages).
_FALLBACK_CODES = frozenset(
    {
        "context_length_exceeded",
        "string_above_max_length",
        "content_policy_violation",
        "content_filter",
        "model_not_found",
    }
)
_FALLBACK_MESSAGES = ("prompt is too long", "context window", "maximum context length")
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})


def default_classifier(exc: BaseException) -> Classification:
    """Classify ``exc`` by the project's seed table.

    Plain Python exceptions: ``TimeoutError`` (and the asyncio / concurrent.futures timeouts) is a
    timeout; ``ConnectionError`` and every other ``OSError`` is a dependency failure; ``ValueError``,
    ``TypeError`` and ``KeyError`` are validation errors. HTTP errors of the LLM SDKs and HTTP
    clients are classified by status code (408, 409, 429 and 5xx transient; other 4xx validation),
    read from ``exc.status_code`` or ``exc.response.status_code``, and honour the response's
    ``retry-after-ms`` / ``retry-after`` and ``x-should-retry`` headers.

    Unknown exceptions are not retried, because retrying a call whose failure nobody understood may
    repeat a side effect (tools are not known to be idempotent) or a bug; but they count as a breaker
    failure, because a dependency that keeps failing in a way nobody anticipated is still failing
    and must not keep receiving traffic. A custom classifier can say otherwise.
    """
    if isinstance(exc, asyncio.CancelledError) or not isinstance(exc, Exception):
        return _CANCELLED
    try:
        return _classify(exc)
    except Exception:  # noqa: BLE001 - a hostile exception (a property or __str__ that raises)
        # Classifying must never replace the call's own exception: nobody understood this
        # failure, which is what "unknown" means.
        report_internal_error("classifying an exception")
        return _UNKNOWN


def _classify(exc: Exception) -> Classification:
    status = http_status(exc)
    if status is not None:
        return _classify_status(exc, status)
    mro_names = {cls.__name__ for cls in type(exc).__mro__}
    if (
        isinstance(exc, (TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError))
        or mro_names & _TIMEOUT_CLASS_NAMES
    ):
        return _TIMEOUT
    if isinstance(exc, OSError) or mro_names & _CONNECTION_CLASS_NAMES:
        return _DEPENDENCY
    if isinstance(exc, (ValueError, TypeError, KeyError)):
        return _VALIDATION
    return _UNKNOWN


def _response_headers(exc: BaseException) -> object:
    # LiteLLM raises with an HTTP response of its own making (no headers) for the providers it
    # calls itself, and keeps the provider's headers (Retry-After...) apart.
    provider_headers = getattr(exc, "litellm_response_headers", None)
    if provider_headers is not None:
        return provider_headers
    return getattr(getattr(exc, "response", None), "headers", None)


def _classify_status(exc: BaseException, status: int) -> Classification:
    headers = _response_headers(exc)
    retry_after = parse_retry_after(headers)
    should_retry = _header(headers, "x-should-retry")
    vetoed = should_retry is not None and should_retry.strip().lower() == "false"
    codes = _error_codes(exc)
    if status == 429:
        quota = bool(codes & _QUOTA_CODES)
        return Classification(
            category=ErrorCategory.RATE_LIMIT,
            retryable=not quota and not vetoed,
            counts_as_failure=True,
            retry_after=retry_after,
            fallback=True,
        )
    if status == 408 or status >= 500 or status == 409:
        return Classification(
            category=ErrorCategory.TIMEOUT if status == 408 else ErrorCategory.DEPENDENCY,
            retryable=not vetoed,
            counts_as_failure=True,
            retry_after=retry_after,
            fallback=True,
        )
    if status >= 400:
        fallback = (
            bool(codes & _FALLBACK_CODES)
            or _mentions(exc, _FALLBACK_MESSAGES)
            or any(cls.__name__ in _FALLBACK_CLASS_NAMES for cls in type(exc).__mro__)
        )
        return Classification(
            category=ErrorCategory.VALIDATION, retryable=False, counts_as_failure=False, fallback=fallback
        )
    return _UNKNOWN


def _error_codes(exc: BaseException) -> set[str]:
    """The provider's ``code``/``type`` strings, from the exception or its JSON body."""
    return {code.lower() for code in provider_error_codes(exc)}


def _mentions(exc: BaseException, phrases: tuple[str, ...]) -> bool:
    text = str(exc).lower()
    return any(phrase in text for phrase in phrases)


def _header(headers: object, name: str) -> str | None:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    value = getter(name) if callable(getter) else None
    if value is None and isinstance(headers, Mapping):
        # A plain dict is case-sensitive; HTTP header names are not.
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    return value if isinstance(value, str) else None


def parse_retry_after(headers: object, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait according to ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date).

    ``headers`` is any mapping-like object with ``get`` (``httpx.Headers``, a dict). Returns
    ``None`` when neither header is present or parsable; a date in the past gives ``0.0``.
    """
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = _header(headers, name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value / divisor
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now())
