"""Policy settings: safe defaults, normalisation, and errors that name the setting and the accepted values."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from agentwatch._errors import ConfigError
from agentwatch.resilience import (
    Bulkhead,
    CircuitBreaker,
    Classification,
    ErrorCategory,
    Pipeline,
    Policy,
    Retry,
    RetryBudget,
)


def test_defaults_are_usable_as_is() -> None:
    policy = Policy()
    assert (policy.timeout, policy.attempt_timeout, policy.retry, policy.breaker, policy.bulkhead) == (
        30.0,
        None,
        None,
        None,
        None,
    )
    assert policy.critical is True
    assert policy.fallback_models == ()
    assert Retry() == Retry(
        attempts=3, backoff=0.5, multiplier=2.0, max_delay=8.0, jitter=True, retry_after_cap=60.0
    )
    assert Retry().budget == RetryBudget(ratio=0.1, min_retries=10, window=10.0)
    breaker = CircuitBreaker()
    assert (breaker.mode, breaker.failure_threshold, breaker.break_duration) == ("consecutive", 5, 30.0)
    assert CircuitBreaker(failure_ratio=0.5).failure_threshold is None
    assert Bulkhead() == Bulkhead(max_concurrent=25, max_queue=0, queue_timeout=1.0)


def test_the_issue_example_builds() -> None:
    policy = Policy(
        timeout=5.0,
        attempt_timeout=2.0,
        retry=Retry(attempts=3, backoff=0.5, max_delay=8.0),
        breaker=CircuitBreaker(failure_threshold=5, break_duration=30.0),
        bulkhead=Bulkhead(max_concurrent=25),
        critical=True,
    )
    assert policy.breaker is not None
    assert policy.breaker.mode == "consecutive"
    ratio = CircuitBreaker(failure_ratio=0.5, minimum_calls=10, window=30.0, break_duration=15.0)
    assert Policy(timeout=5.0, attempt_timeout=2.0, breaker=ratio).breaker == ratio


def test_durations_accept_timedelta_and_are_stored_as_seconds() -> None:
    policy = Policy(timeout=timedelta(seconds=5), attempt_timeout=timedelta(milliseconds=1500))
    assert policy.timeout == 5.0
    assert isinstance(policy.timeout, float)
    assert policy.attempt_timeout == 1.5
    assert Retry(backoff=timedelta(milliseconds=100)) == Retry(backoff=0.1)
    assert CircuitBreaker(break_duration=timedelta(minutes=1)).break_duration == 60.0


def test_fallback_models_list_is_stored_as_tuple() -> None:
    policy = Policy(fallback_models=["gpt-4o-mini", "gpt-4.1-nano"])
    assert policy.fallback_models == ("gpt-4o-mini", "gpt-4.1-nano")
    hash(policy)  # usable as a cache key by integrators


def test_settings_are_frozen_and_keyword_only() -> None:
    with pytest.raises(TypeError):
        Policy(5.0)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Policy().timeout = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Retry(3)  # type: ignore[misc]


def test_custom_classifier_is_carried() -> None:
    def classify(exc: BaseException) -> Classification:
        return Classification(category=ErrorCategory.UNKNOWN, retryable=True, counts_as_failure=False)

    assert Policy(classifier=classify).classifier is classify


# (constructor, expected setting, a fragment of the accepted values)
INVALID: list[tuple[Any, str, str]] = [
    (lambda: Policy(timeout=0), "Policy.timeout", "positive number of seconds"),
    (lambda: Policy(timeout=-1.0), "Policy.timeout", "or None"),
    (lambda: Policy(timeout="5"), "Policy.timeout", "datetime.timedelta"),
    (lambda: Policy(timeout=float("inf")), "Policy.timeout", "positive number"),
    (lambda: Policy(attempt_timeout=True), "Policy.attempt_timeout", "positive number"),
    (lambda: Policy(timeout=5.0, attempt_timeout=6.0), "Policy.attempt_timeout", "≤ Policy.timeout (5 s)"),
    (lambda: Policy(retry=3), "Policy.retry", "agentwatch.Retry or None"),
    (lambda: Policy(breaker={"failure_threshold": 3}), "Policy.breaker", "agentwatch.CircuitBreaker"),
    (lambda: Policy(bulkhead=10), "Policy.bulkhead", "agentwatch.Bulkhead"),
    (lambda: Policy(critical="no"), "Policy.critical", "'True', 'False'"),
    (lambda: Policy(fallback_models="gpt-4o-mini"), "Policy.fallback_models", "list or tuple"),
    (lambda: Policy(fallback_models=["ok", ""]), "Policy.fallback_models", "non-empty model names"),
    (lambda: Policy(first_chunk_timeout=0), "Policy.first_chunk_timeout", "positive"),
    (lambda: Policy(idle_timeout=-2), "Policy.idle_timeout", "positive"),
    (lambda: Policy(classifier="default"), "Policy.classifier", "callable"),
    (
        lambda: Policy(
            timeout=30.0, attempt_timeout=10.0, breaker=CircuitBreaker(failure_ratio=0.5, window=15.0)
        ),
        "Policy.breaker.window",
        "≥ 2 × Policy.attempt_timeout (20 s)",
    ),
    (lambda: Retry(attempts=0), "Retry.attempts", "integer ≥ 1"),
    (lambda: Retry(attempts=2.5), "Retry.attempts", "integer ≥ 1"),
    (lambda: Retry(attempts=True), "Retry.attempts", "integer ≥ 1"),
    (lambda: Retry(backoff=-0.1), "Retry.backoff", "non-negative number of seconds"),
    (lambda: Retry(multiplier=0.5), "Retry.multiplier", "number ≥ 1"),
    (lambda: Retry(backoff=2.0, max_delay=1.0), "Retry.max_delay", "≥ Retry.backoff (2 s)"),
    (lambda: Retry(jitter=1), "Retry.jitter", "'True', 'False'"),
    (lambda: Retry(retry_after_cap=0), "Retry.retry_after_cap", "positive"),
    (lambda: Retry(budget=0.1), "Retry.budget", "agentwatch.RetryBudget or None"),
    (lambda: RetryBudget(ratio=-1), "RetryBudget.ratio", "number ≥ 0"),
    (lambda: RetryBudget(min_retries=-1), "RetryBudget.min_retries", "integer ≥ 0"),
    (lambda: RetryBudget(window=0), "RetryBudget.window", "positive"),
    (lambda: CircuitBreaker(failure_threshold=0), "CircuitBreaker.failure_threshold", "integer ≥ 1"),
    (lambda: CircuitBreaker(failure_ratio=0), "CircuitBreaker.failure_ratio", "0 < ratio ≤ 1"),
    (lambda: CircuitBreaker(failure_ratio=1.5), "CircuitBreaker.failure_ratio", "0 < ratio ≤ 1"),
    (
        lambda: CircuitBreaker(failure_threshold=3, failure_ratio=0.5),
        "CircuitBreaker.failure_ratio",
        "not both",
    ),
    (lambda: CircuitBreaker(minimum_calls=0), "CircuitBreaker.minimum_calls", "integer ≥ 1"),
    (lambda: CircuitBreaker(window=0), "CircuitBreaker.window", "positive"),
    (lambda: CircuitBreaker(break_duration=0), "CircuitBreaker.break_duration", "positive"),
    (
        lambda: CircuitBreaker(break_duration=60, max_break_duration=30),
        "CircuitBreaker.max_break_duration",
        "≥ CircuitBreaker.break_duration (60 s)",
    ),
    (lambda: CircuitBreaker(break_growth=0.5), "CircuitBreaker.break_growth", "number ≥ 1"),
    (lambda: Bulkhead(max_concurrent=0), "Bulkhead.max_concurrent", "integer ≥ 1"),
    (lambda: Bulkhead(max_queue=-1), "Bulkhead.max_queue", "integer ≥ 0"),
    (lambda: Bulkhead(queue_timeout=0), "Bulkhead.queue_timeout", "positive"),
    (lambda: Pipeline(Policy(), name="x", kind="agent"), "Pipeline.kind", "'tool', 'llm'"),  # type: ignore[arg-type]
    (lambda: Pipeline(Policy(), name=""), "Pipeline.name", "non-empty"),
    (lambda: Pipeline({"timeout": 1}, name="x"), "Pipeline.policy", "agentwatch.Policy"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("build", "setting", "accepted"), INVALID, ids=[case[1] for case in INVALID])
def test_invalid_setting_names_setting_and_accepted_values(build: Any, setting: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build()
    error = caught.value
    assert error.setting == setting
    assert accepted in error.accepted
    message = str(error)
    assert setting in message
    assert "accepted values are" in message
    assert accepted in message


def test_ratio_window_rule_is_not_checked_without_attempt_timeout() -> None:
    # The default policy has no per-attempt limit; the ratio breaker's default window must fit it.
    Policy(breaker=CircuitBreaker(failure_ratio=0.5))
    Policy(attempt_timeout=10.0, breaker=CircuitBreaker(failure_ratio=0.5, window=20.0))
