"""The run-time state a demo run shares between its agent loop, its tools and its fake LLM server.

The "clock" of the outage windows is the share of planned sessions that have started, not wall
time: a short run (``--sessions 5``) and a long one go through the same phases, and the windows do
not depend on how fast the machine is. Which individual calls fall inside a window does depend on
timing (sessions overlap), and so do the breaker's decisions.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextvars import ContextVar

from agentwatch._demo._plan import FaultModel, PlannedCall, SessionPlan

__all__ = ["World", "current_call"]

current_call: ContextVar[PlannedCall | None] = ContextVar("agentwatch_demo_call", default=None)
"""The planned tool call being executed, set by the agent loop around each registry call (the
resilience layer copies the context into the thread of a timed attempt, so the tool sees it)."""


class World:
    """Shared, thread-safe state of one run."""

    def __init__(self, plans: tuple[SessionPlan, ...], faults: FaultModel) -> None:
        self.plans = plans
        self.faults = faults
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._started = 0
        self._attempts: Counter[str] = Counter()

    # -- progress -------------------------------------------------------------------------------

    def session_started(self) -> None:
        with self._lock:
            self._started += 1

    @property
    def started(self) -> int:
        return self._started

    def _in(self, window: tuple[float, float] | None) -> bool:
        if window is None or self.faults.clean or not self.plans:
            return False
        share = self._started / len(self.plans)
        return window[0] <= share < window[1]

    def outage_active(self) -> bool:
        """Whether ``fetch_related_content``'s dependency is down right now."""
        return self._in(self.faults.outage)

    def brownout_active(self) -> bool:
        """Whether the main model answers 503 right now."""
        return self._in(self.faults.llm_brownout)

    # -- per-call bookkeeping ----------------------------------------------------------------------

    def next_attempt(self, key: str) -> int:
        """1 for the first request or attempt made under ``key``, then 2, 3..."""
        with self._lock:
            self._attempts[key] += 1
            return self._attempts[key]

    def sleep(self, seconds: float) -> None:
        """Simulated work that ends early when the run stops (abandoned attempts must not linger)."""
        self.stopping.wait(seconds)
