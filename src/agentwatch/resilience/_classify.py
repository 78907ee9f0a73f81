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
from agentwatch._telemetry._errors import error_body, http_status, provider_error_codes

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
# none of those packages has to be imported (openai, anthropic, httpx, httpcore, botocore).
_TIMEOUT_CLASS_NAMES = frozenset(
    {"APITimeoutError", "TimeoutException", "ReadTimeoutError", "ConnectTimeoutError"}
)
# botocore's ConnectionError (EndpointConnectionError...) and HTTPClientError (ConnectionClosedError...)
# are not OSErrors.
_CONNECTION_CLASS_NAMES = frozenset(
    {"APIConnectionError", "TransportError", "NetworkError", "ConnectionError", "HTTPClientError"}
)
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
_FALLBACK_MESSAGES = (
    "prompt is too long",
    "context window",
    "maximum context length",
    "input is too long",  # Bedrock
)
_QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
_TIMEOUT_CODES = frozenset({"deadline_exceeded"})

# AWS error codes (botocore's ``ClientError``, ``response["Error"]["Code"]``), lower-cased: an
# exception event in a Bedrock stream names them in lower camel case and carries no HTTP status,
# and a few statuses mislead (ModelNotReadyException is a 429 about the model, not the caller).
_AWS_RATE_LIMIT = frozenset(
    {
        "throttlingexception",
        "throttling",
        "throttledexception",
        "toomanyrequestsexception",
        "requestlimitexceeded",
        "provisionedthroughputexceededexception",
        "slowdown",
    }
)
_AWS_CODES: dict[str, Classification] = {
    **dict.fromkeys(
        (
            "internalserverexception",
            "serviceunavailableexception",
            "modelstreamerrorexception",
            "modelnotreadyexception",
            "internalfailure",
            "serviceunavailable",
        ),
        _DEPENDENCY,
    ),
    # The model failed on this request: another model may not, the same one again likely will.
    "modelerrorexception": Classification(
        category=ErrorCategory.DEPENDENCY, retryable=False, counts_as_failure=True, fallback=True
    ),
    "modeltimeoutexception": _TIMEOUT,
    # An account quota, not a burst: waiting does not help, another model may have quota left.
    "servicequotaexceededexception": Classification(
        category=ErrorCategory.RATE_LIMIT, retryable=False, counts_as_failure=True, fallback=True
    ),
    # Not this model for this caller (unknown id, no access granted): another model may do.
    "resourcenotfoundexception": Classification(
        category=ErrorCategory.VALIDATION, retryable=False, counts_as_failure=False, fallback=True
    ),
    **dict.fromkeys(
        (
            "validationexception",
            "accessdeniedexception",
            "unrecognizedclientexception",
            "invalidsignatureexception",
            "incompletesignatureexception",
            "expiredtokenexception",
            "missingauthenticationtokenexception",
            "conflictexception",
        ),
        _VALIDATION,
    ),
}


def default_classifier(exc: BaseException) -> Classification:
    """Classify ``exc`` by the project's seed table.

    Plain Python exceptions: ``TimeoutError`` (and the asyncio / concurrent.futures timeouts) is a
    timeout; ``ConnectionError`` and every other ``OSError`` is a dependency failure; ``ValueError``,
    ``TypeError`` and ``KeyError`` are validation errors. HTTP errors of the LLM SDKs and HTTP
    clients are classified by status code (408, 409, 429 and 5xx transient; other 4xx validation),
    read from ``exc.status_code``, ``exc.code`` (google-genai) or the response's status (botocore's
    ``ResponseMetadata.HTTPStatusCode``), and honour the response's ``retry-after-ms`` /
    ``retry-after`` and ``x-should-retry`` headers (and Google's ``RetryInfo`` delay); Google's
    ``DEADLINE_EXCEEDED`` is a timeout. botocore's AWS error codes (``ThrottlingException``,
    ``ModelNotReadyException``...) are read before the status.

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
    codes = _error_codes(exc)
    known = _classify_code(exc, codes) if codes else None
    if known is not None:
        return known
    status = http_status(exc)
    if status is not None:
        return _classify_status(exc, status, codes)
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


def _classify_code(exc: BaseException, codes: set[str]) -> Classification | None:
    """By an AWS error code (botocore's ``Error.Code``), before the HTTP status: an exception
    event in a Bedrock stream has none, and a few statuses mislead. Other codes: ``None``."""
    if codes & _AWS_RATE_LIMIT:
        return Classification(
            category=ErrorCategory.RATE_LIMIT,
            retryable=True,
            counts_as_failure=True,
            retry_after=parse_retry_after(_response_headers(exc)),
            fallback=True,
        )
    for code in codes:
        known = _AWS_CODES.get(code)
        if known is None:
            continue
        if known.category is ErrorCategory.VALIDATION and _mentions(exc, _FALLBACK_MESSAGES):
            # "Input is too long for requested model": a model with a larger context may take it.
            return Classification(
                category=ErrorCategory.VALIDATION, retryable=False, counts_as_failure=False, fallback=True
            )
        return known
    return None


def _response_headers(exc: BaseException) -> object:
    """The error response's headers: ``exc.response.headers`` (httpx), botocore's
    ``ResponseMetadata.HTTPHeaders`` (its ``response`` is the parsed dict), or the provider's that
    LiteLLM keeps apart (``litellm_response_headers``: it raises with an HTTP response of its own
    making, without headers, for the providers it calls itself)."""
    provider_headers = getattr(exc, "litellm_response_headers", None)
    if provider_headers is not None:
        return provider_headers
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        metadata = response.get("ResponseMetadata")
        return metadata.get("HTTPHeaders") if isinstance(metadata, Mapping) else None
    return getattr(response, "headers", None)


def _classify_status(exc: BaseException, status: int, codes: set[str]) -> Classification:
    headers = _response_headers(exc)
    retry_after = parse_retry_after(headers)
    if retry_after is None:
        retry_after = _retry_delay(exc)
    should_retry = _header(headers, "x-should-retry")
    vetoed = should_retry is not None and should_retry.strip().lower() == "false"
    if status >= 500 and codes & _TIMEOUT_CODES:
        # Google's DEADLINE_EXCEEDED (HTTP 504): the server gave up waiting, a timeout.
        return Classification(
            category=ErrorCategory.TIMEOUT,
            retryable=not vetoed,
            counts_as_failure=True,
            retry_after=retry_after,
            fallback=True,
        )
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
    """The provider's ``code``/``type``/``status`` strings, from the exception, its JSON body
    (Google's canonical status, ``RESOURCE_EXHAUSTED`` ..., is ``status``) or botocore's parsed
    error response (``Error.Code``)."""
    return {code.lower() for code in provider_error_codes(exc)}


def _retry_delay(exc: BaseException) -> float | None:
    """Google's ``RetryInfo`` detail (``"retryDelay": "7s"``), which its 429s carry instead of a
    ``Retry-After`` header."""
    body = error_body(exc)
    inner = body.get("error") if body is not None else None
    details = inner.get("details") if isinstance(inner, Mapping) else None
    if not isinstance(details, list):
        return None
    for detail in details:
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    seconds = float(delay[:-1])
                except ValueError:
                    return None
                return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


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
