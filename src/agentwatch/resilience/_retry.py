"""Retry delays (exponential backoff with full jitter, Retry-After) and the retry budget."""

from __future__ import annotations

import threading
from collections.abc import Callable

from agentwatch._internal import reset_in_forked_child
from agentwatch.resilience._classify import Classification
from agentwatch.resilience._config import Retry, RetryBudget, seconds
from agentwatch.resilience._window import SlidingCounts

__all__ = ["RetryBudgetTracker", "backoff_ceiling", "retry_delay"]


def backoff_ceiling(retry: Retry, retry_number: int) -> float:
    """Upper bound of the delay before retry ``retry_number`` (1 for the first retry)."""
    max_delay = seconds(retry.max_delay)
    try:
        return min(max_delay, seconds(retry.backoff) * retry.multiplier ** (retry_number - 1))
    except OverflowError:
        return max_delay


def retry_delay(
    retry: Retry, retry_number: int, classification: Classification, random: Callable[[], float]
) -> float:
    """Seconds to wait before retry ``retry_number``.

    A server's Retry-After wins over the backoff, because waiting less only earns another
    rejection; it is capped at ``retry_after_cap`` so that one header cannot park a call for
    minutes. The caller still drops the retry if the delay would pass the deadline.
    """
    if classification.retry_after is not None:
        return min(classification.retry_after, seconds(retry.retry_after_cap))
    ceiling = backoff_ceiling(retry, retry_number)
    return ceiling * random() if retry.jitter else ceiling


class RetryBudgetTracker:
    """Calls and retries of one pipeline over a sliding window, to cap the load retries add."""

    def __init__(self, budget: RetryBudget, clock: Callable[[], float]) -> None:
        self._ratio = budget.ratio
        self._minimum = budget.min_retries
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = SlidingCounts(seconds(budget.window))
        reset_in_forked_child(self, "_lock")

    def record_call(self) -> None:
        with self._lock:
            self._counts.add(self._clock(), first=1)

    def try_spend(self) -> bool:
        """Record a retry if the budget allows one; ``False`` means: do not retry."""
        with self._lock:
            now = self._clock()
            calls, retries = self._counts.totals(now)
            if retries >= self._minimum + self._ratio * calls:
                return False
            self._counts.add(now, second=1)
            return True
