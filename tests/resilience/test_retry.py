"""Retry: backoff with full jitter, Retry-After, the deadline, the budget, what is never retried."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import httpx
import pytest

from agentwatch.resilience import (
    AttemptContext,
    Classification,
    ErrorCategory,
    Policy,
    Retry,
    RetryBudget,
    ToolTimeoutError,
)
from agentwatch.resilience._retry import backoff_ceiling
from resilience._support import FakeClock, events
from support import Signals


class Flaky:
    """Fails with the given errors in turn, then returns ``"ok"``; records each attempt's context."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.contexts: list[AttemptContext] = []

    def __call__(self, ctx: AttemptContext) -> str:
        self.contexts.append(ctx)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def acall(self, ctx: AttemptContext) -> str:
        await asyncio.sleep(0)
        return self(ctx)


class RateLimited(Exception):
    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("429 Too Many Requests")
        self.status_code = 429
        self.response = httpx.Response(429, headers=headers)


def test_transient_failures_are_retried_until_success(make: Any, clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError("reset"), TimeoutError("slow"))
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3, jitter=False)))
    assert pipeline.call(flaky) == "ok"
    assert [c.attempt for c in flaky.contexts] == [1, 2, 3]
    assert clock.sleeps == [0.5, 1.0]


@pytest.mark.anyio
async def test_async_transient_failures_are_retried(make: Any, clock: FakeClock) -> None:
    flaky = Flaky(ConnectionError("reset"), TimeoutError("slow"))
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3, jitter=False)))
    assert await pipeline.acall(flaky.acall) == "ok"
    assert len(flaky.contexts) == 3
    assert clock.sleeps == [0.5, 1.0]


def test_last_error_is_raised_unchanged_when_attempts_run_out(make: Any, clock: FakeClock) -> None:
    last = ConnectionError("still down")
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3)))
    with pytest.raises(ConnectionError) as caught:
        pipeline.call(Flaky(ConnectionError("1"), ConnectionError("2"), last))
    assert caught.value is last
    assert caught.value.__context__ is None
    assert len(clock.sleeps) == 2


@pytest.mark.parametrize("error", [ValueError("bad"), TypeError("bad"), KeyError("city"), RuntimeError("?")])
def test_validation_and_unknown_errors_are_never_retried(
    make: Any, clock: FakeClock, error: Exception
) -> None:
    flaky = Flaky(error)
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=5)))
    with pytest.raises(type(error)) as caught:
        pipeline.call(flaky)
    assert caught.value is error
    assert len(flaky.contexts) == 1
    assert clock.sleeps == []


def test_backoff_ceilings_double_up_to_max_delay() -> None:
    retry = Retry(attempts=10, backoff=0.5, multiplier=2.0, max_delay=3.0)
    assert [backoff_ceiling(retry, n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_ceiling(Retry(attempts=5000), 4000) == 8.0  # no overflow


def test_full_jitter_scales_the_ceiling_by_the_random_draw(make: Any, clock: FakeClock) -> None:
    draws = iter([0.0, 0.5, 0.999, 0.25])
    pipeline = make(
        Policy(timeout=None, retry=Retry(attempts=5, backoff=1.0, max_delay=3.0)), random=lambda: next(draws)
    )
    pipeline.call(Flaky(*(ConnectionError() for _ in range(4))))
    assert clock.sleeps == pytest.approx([0.0, 1.0, 0.999 * 3.0, 0.25 * 3.0])


def test_full_jitter_stays_within_bounds_with_real_randomness(make: Any, clock: FakeClock) -> None:
    pipeline = make(
        Policy(timeout=None, retry=Retry(attempts=8, backoff=0.5, max_delay=2.0, budget=None)),
        random=random.Random(7).random,
    )
    for _ in range(50):
        with pytest.raises(ConnectionError):
            pipeline.call(Flaky(*(ConnectionError() for _ in range(8))))
    ceilings = [0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0] * 50
    assert len(clock.sleeps) == len(ceilings)
    assert all(0.0 <= delay <= ceiling for delay, ceiling in zip(clock.sleeps, ceilings, strict=False))
    # Full jitter spreads delays over the whole range, not just near the ceiling.
    assert min(clock.sleeps) < 0.1
    assert max(clock.sleeps) > 1.8


def test_retry_after_replaces_the_backoff(make: Any, clock: FakeClock) -> None:
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3)))
    assert (
        pipeline.call(Flaky(RateLimited({"retry-after": "3"}), RateLimited({"retry-after-ms": "1200"})))
        == "ok"
    )
    assert clock.sleeps == [3.0, 1.2]


def test_retry_after_is_capped(make: Any, clock: FakeClock) -> None:
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=2, retry_after_cap=60.0)))
    pipeline.call(Flaky(RateLimited({"retry-after": "600"})))
    assert clock.sleeps == [60.0]


def test_retry_after_never_goes_past_the_deadline(make: Any, clock: FakeClock, signals: Signals) -> None:
    error = RateLimited({"retry-after": "20"})
    flaky = Flaky(error)
    pipeline = make(Policy(timeout=10.0, retry=Retry(attempts=3)))
    with (
        signals.tracer_provider.get_tracer("t").start_as_current_span("call") as span,
        pytest.raises(RateLimited) as caught,
    ):
        pipeline.call(flaky, span=span)
    assert caught.value is error
    assert clock.sleeps == []
    assert len(flaky.contexts) == 1
    (abandoned,) = events(signals.only_span(), "retry_abandoned")
    assert abandoned["agentwatch.retry.reason"] == "deadline"


def test_backoff_never_goes_past_the_deadline(make: Any, clock: FakeClock) -> None:
    def slow_failure(ctx: AttemptContext) -> str:
        clock.advance(4.0)
        raise ConnectionError("down")

    pipeline = make(Policy(timeout=10.0, retry=Retry(attempts=10, backoff=1.0, max_delay=4.0, jitter=False)))
    with pytest.raises(ConnectionError):
        pipeline.call(slow_failure)
    # attempt (4 s), sleep 1, attempt (4 s) ends at 9 s: a 2 s delay would pass the 10 s deadline
    assert clock.sleeps == [1.0]
    assert clock.now - 1000.0 <= 10.0


def test_retry_budget_is_exhausted_then_refills(make: Any, clock: FakeClock, signals: Signals) -> None:
    budget = RetryBudget(ratio=0.0, min_retries=2, window=10.0)
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=5, budget=budget, jitter=False)))
    with pytest.raises(ConnectionError):
        pipeline.call(Flaky(*(ConnectionError() for _ in range(5))))
    assert len(clock.sleeps) == 2  # the budget allowed two retries, not four
    tracer = signals.tracer_provider.get_tracer("t")
    flaky = Flaky(ConnectionError())
    with tracer.start_as_current_span("call") as span, pytest.raises(ConnectionError):
        pipeline.call(flaky, span=span)
    assert len(flaky.contexts) == 1
    (abandoned,) = events(signals.only_span(), "retry_abandoned")
    assert abandoned["agentwatch.retry.reason"] == "budget"
    clock.advance(11.0)
    assert pipeline.call(Flaky(ConnectionError())) == "ok"


def test_retry_budget_ratio_scales_with_traffic(make: Any, clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_retries=0, window=10.0)
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=2, budget=budget)))
    for _ in range(4):
        pipeline.call(lambda ctx: "fine")
    retried = 0
    for _ in range(6):
        flaky = Flaky(ConnectionError())
        try:
            pipeline.call(flaky)
        except ConnectionError:
            pass
        retried += len(flaky.contexts) - 1
    # 10 calls in the window allow 5 retries
    assert retried == 5


def test_custom_classifier_decides(make: Any, clock: FakeClock) -> None:
    def classify(exc: BaseException) -> Classification:
        return Classification(category=ErrorCategory.DEPENDENCY, retryable=True, counts_as_failure=True)

    flaky = Flaky(ValueError("retry me anyway"))
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=2), classifier=classify))
    assert pipeline.call(flaky) == "ok"


def test_a_faulty_classifier_falls_back_to_the_default(make: Any, clock: FakeClock) -> None:
    def classify(exc: BaseException) -> Classification:
        raise RuntimeError("classifier bug")

    pipeline = make(Policy(timeout=None, retry=Retry(attempts=2), classifier=classify))
    assert pipeline.call(Flaky(ConnectionError())) == "ok"
    error = ValueError("not retried")
    with pytest.raises(ValueError, match="not retried") as caught:
        pipeline.call(Flaky(error))
    assert caught.value is error


@pytest.mark.anyio
async def test_cancelled_error_from_the_attempt_is_not_retried(make: Any, clock: FakeClock) -> None:
    flaky = Flaky(asyncio.CancelledError())
    pipeline = make(Policy(timeout=None, retry=Retry(attempts=3)))
    with pytest.raises(asyncio.CancelledError):
        await pipeline.acall(flaky.acall)
    assert len(flaky.contexts) == 1
    assert clock.sleeps == []


@pytest.mark.anyio
async def test_cancellation_during_backoff_stops_retrying(make: Any) -> None:
    flaky = Flaky(ConnectionError(), ConnectionError())
    pipeline = make(
        Policy(timeout=None, retry=Retry(attempts=3, backoff=30.0, max_delay=30.0, jitter=False)),
        async_sleep=asyncio.sleep,
    )
    task = asyncio.create_task(pipeline.acall(flaky.acall))
    while not flaky.contexts:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(flaky.contexts) == 1


@pytest.mark.parametrize(
    ("timeout", "calls", "scope"),
    [(0.5, 3, "attempt"), (0.15, 2, "total")],
    ids=["attempt-timeouts-retried", "deadline-not-retried"],
)
def test_attempt_timeouts_are_retried_but_the_deadline_is_not(
    make: Any, timeout: float, calls: int, scope: str
) -> None:
    release = threading.Event()
    made = 0

    def hang(ctx: AttemptContext) -> str:
        nonlocal made
        made += 1
        release.wait(5)
        return "late"

    pipeline = make(
        Policy(timeout=timeout, attempt_timeout=0.1, retry=Retry(attempts=3, backoff=0.0, max_delay=0.0)),
        clock=time.monotonic,
    )
    try:
        with pytest.raises(ToolTimeoutError) as caught:
            pipeline.call(hang)
    finally:
        release.set()
    assert made == calls
    assert caught.value.scope == scope
