"""The default classifier: plain Python exceptions and SDK/HTTP errors by duck typing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
from typing import Any

import httpx
import pytest

from agentwatch.resilience import ErrorCategory, default_classifier, parse_retry_after


@pytest.mark.parametrize(
    ("exc", "category", "retryable", "counts"),
    [
        (TimeoutError("slow"), ErrorCategory.TIMEOUT, True, True),
        (asyncio.TimeoutError(), ErrorCategory.TIMEOUT, True, True),
        (concurrent.futures.TimeoutError(), ErrorCategory.TIMEOUT, True, True),
        (TimeoutError(), ErrorCategory.TIMEOUT, True, True),
        (ConnectionRefusedError(), ErrorCategory.DEPENDENCY, True, True),
        (ConnectionResetError(), ErrorCategory.DEPENDENCY, True, True),
        (OSError("disk"), ErrorCategory.DEPENDENCY, True, True),
        (ValueError("bad"), ErrorCategory.VALIDATION, False, False),
        (TypeError("bad"), ErrorCategory.VALIDATION, False, False),
        (KeyError("city"), ErrorCategory.VALIDATION, False, False),
        (RuntimeError("?"), ErrorCategory.UNKNOWN, False, True),
        (asyncio.CancelledError(), ErrorCategory.CANCELLED, False, False),
        (KeyboardInterrupt(), ErrorCategory.CANCELLED, False, False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_plain_exceptions(exc: BaseException, category: ErrorCategory, retryable: bool, counts: bool) -> None:
    result = default_classifier(exc)
    assert (result.category, result.retryable, result.counts_as_failure) == (category, retryable, counts)
    assert result.retry_after is None


class APIStatusError(Exception):
    """Shaped like openai/anthropic ``APIStatusError``: ``status_code``, ``response``, ``body``."""

    def __init__(self, status: int, headers: dict[str, str] | None = None, body: Any = None) -> None:
        super().__init__(f"Error code: {status}")
        self.response = httpx.Response(status, headers=headers or {})
        self.status_code = status
        self.body = body


class APIConnectionError(Exception):
    pass


class APITimeoutError(APIConnectionError):
    pass


class TimeoutException(Exception):
    pass


class ReadTimeout(TimeoutException):
    """Named after httpx's: only a base class in the MRO says what it is."""


@pytest.mark.parametrize(
    ("status", "category", "retryable", "counts"),
    [
        (408, ErrorCategory.TIMEOUT, True, True),
        (409, ErrorCategory.DEPENDENCY, True, True),
        (429, ErrorCategory.RATE_LIMIT, True, True),
        (500, ErrorCategory.DEPENDENCY, True, True),
        (503, ErrorCategory.DEPENDENCY, True, True),
        (529, ErrorCategory.DEPENDENCY, True, True),
        (400, ErrorCategory.VALIDATION, False, False),
        (401, ErrorCategory.VALIDATION, False, False),
        (404, ErrorCategory.VALIDATION, False, False),
        (422, ErrorCategory.VALIDATION, False, False),
    ],
)
def test_http_errors_by_status(status: int, category: ErrorCategory, retryable: bool, counts: bool) -> None:
    result = default_classifier(APIStatusError(status))
    assert (result.category, result.retryable, result.counts_as_failure) == (category, retryable, counts)
    assert result.fallback is (status >= 408 and status != 422 and status not in (400, 401, 404))


def test_status_from_response_attribute_like_httpx() -> None:
    request = httpx.Request("GET", "http://backend.invalid/")
    error = httpx.HTTPStatusError("boom", request=request, response=httpx.Response(503, request=request))
    assert default_classifier(error).category is ErrorCategory.DEPENDENCY
    missing = httpx.HTTPStatusError("nope", request=request, response=httpx.Response(404, request=request))
    assert default_classifier(missing).category is ErrorCategory.VALIDATION


def test_sdk_transport_errors_by_class_name_in_mro() -> None:
    assert default_classifier(APITimeoutError()).category is ErrorCategory.TIMEOUT
    assert default_classifier(APIConnectionError()).category is ErrorCategory.DEPENDENCY
    assert default_classifier(ReadTimeout()).category is ErrorCategory.TIMEOUT
    assert default_classifier(httpx.ConnectError("refused")).category is ErrorCategory.DEPENDENCY
    assert default_classifier(httpx.ReadTimeout("slow")).category is ErrorCategory.TIMEOUT


def test_retry_after_headers() -> None:
    assert default_classifier(APIStatusError(429, {"retry-after": "7"})).retry_after == 7.0
    assert default_classifier(APIStatusError(429, {"retry-after-ms": "1500"})).retry_after == 1.5
    both = APIStatusError(503, {"retry-after-ms": "250", "retry-after": "9"})
    assert default_classifier(both).retry_after == 0.25
    assert default_classifier(APIStatusError(429, {"retry-after": "soon"})).retry_after is None


def test_retry_after_http_date_and_plain_dict() -> None:
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert parse_retry_after({"Retry-After": date}, now=lambda: 1_000_000.0) == pytest.approx(30.0)
    assert parse_retry_after({"Retry-After": date}, now=lambda: 2_000_000.0) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after({"Retry-After": "-3"}) is None


def test_quota_exhausted_and_should_retry_false_are_not_retried() -> None:
    quota = APIStatusError(429, body={"error": {"code": "insufficient_quota", "type": "insufficient_quota"}})
    assert default_classifier(quota).retryable is False
    assert default_classifier(quota).fallback is True
    vetoed = APIStatusError(503, {"x-should-retry": "false"})
    assert default_classifier(vetoed).retryable is False


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"code": "context_length_exceeded", "type": "invalid_request_error"}},
        {"error": {"code": "content_policy_violation"}},
        {"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long"}},
    ],
)
def test_fallback_worthy_validation_errors(body: dict[str, Any]) -> None:
    error = APIStatusError(400, body=body)
    if "prompt is too long" in str(body):
        error.args = ("Error code: 400 - prompt is too long: 210000 tokens > 200000 maximum",)
    result = default_classifier(error)
    assert result.category is ErrorCategory.VALIDATION
    assert not result.retryable
    assert result.fallback is True


def test_real_sdk_exceptions_are_recognised_without_importing_them() -> None:
    openai = pytest.importorskip("openai")
    httpx2 = pytest.importorskip("httpx2")
    request = httpx2.Request("POST", "http://fake.invalid/v1/chat/completions")
    response = httpx2.Response(429, headers={"retry-after": "2"}, request=request)
    rate = openai.RateLimitError("slow down", response=response, body=None)
    assert (default_classifier(rate).category, default_classifier(rate).retry_after) == (
        ErrorCategory.RATE_LIMIT,
        2.0,
    )
    assert default_classifier(openai.APITimeoutError(request=request)).category is ErrorCategory.TIMEOUT
    assert default_classifier(openai.APIConnectionError(request=request)).category is ErrorCategory.DEPENDENCY
    bad = openai.BadRequestError(
        "too long",
        response=httpx2.Response(400, request=request),
        body={"code": "context_length_exceeded", "type": "invalid_request_error"},
    )
    assert default_classifier(bad).fallback is True
