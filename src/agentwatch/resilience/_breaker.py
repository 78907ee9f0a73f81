"""The circuit breaker state machine.

The lock guards state transitions only and is never held while the protected call runs: a call
takes a :class:`Permit` (``acquire``), runs unlocked, then reports its outcome with the permit.
Permits carry the *generation* of the state they were issued in; outcomes of calls that started
before the last transition (a slow call finishing after the circuit opened, a probe overtaken by
a manual close) update the totals but never the state, so a stale failure cannot re-open a
circuit that a probe just closed.

In half-open state exactly one caller holds the probe permit; every other caller is rejected with
``CircuitOpenError`` until the probe reports. A probe that ends without a verdict (cancelled, or a
validation error that says nothing about the dependency's health) frees the probe slot for the
next caller.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from agentwatch._internal import reset_in_forked_child
from agentwatch.resilience._config import CircuitBreaker, seconds
from agentwatch.resilience._errors import CallKind, CircuitOpenError
from agentwatch.resilience._window import SlidingCounts

__all__ = ["Circuit", "CircuitSnapshot", "CircuitState", "ManualAction", "Permit", "Transition"]

Clock = Callable[[], float]
ManualAction = Literal["open", "close", "reset"]


class CircuitState(str, enum.Enum):
    """State of a circuit; ``gauge_value`` is what ``agentwatch.circuit.state`` reports."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def gauge_value(self) -> int:
        return _GAUGE[self]


_GAUGE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
_EVENTS = {
    CircuitState.CLOSED: "circuit_closed",
    CircuitState.HALF_OPEN: "circuit_half_opened",
    CircuitState.OPEN: "circuit_opened",
}


@dataclass(frozen=True, slots=True)
class Permit:
    """Admission of one call; hand it back to exactly one of the ``record_*``/``release`` methods."""

    generation: int
    probe: bool


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, for span events and metrics (``event`` is the span event name)."""

    new: CircuitState
    manual: bool = False

    @property
    def event(self) -> str:
        return _EVENTS[self.new]


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitSnapshot:
    """A consistent view of one circuit, as served by ``agentwatch.circuits()`` and the admin app.

    Times are Unix timestamps (seconds). ``break_duration`` is the break of the current opening, or
    the break the next opening would use when closed. ``consecutive_failures`` (consecutive mode)
    and ``window_calls``/``window_failures`` (ratio mode) are the inputs of the next decision;
    ``successes``/``failures``/``rejections`` are totals since creation or the last ``reset()``.
    """

    key: str
    name: str
    kind: CallKind
    mode: str
    state: CircuitState
    forced_open: bool
    consecutive_failures: int
    window_calls: int
    window_failures: int
    successes: int
    failures: int
    rejections: int
    opened_at: float | None
    break_duration: float
    next_probe_at: float | None

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "name": self.name,
            "kind": self.kind,
            "mode": self.mode,
            "state": self.state.value,
            "forced_open": self.forced_open,
            "consecutive_failures": self.consecutive_failures,
            "window_calls": self.window_calls,
            "window_failures": self.window_failures,
            "successes": self.successes,
            "failures": self.failures,
            "rejections": self.rejections,
            "opened_at": self.opened_at,
            "break_duration": self.break_duration,
            "next_probe_at": self.next_probe_at,
        }


class Circuit:
    """One circuit breaker, shared by every call with the same key (a tool, or provider:model).

    ``listener`` receives the transitions made by ``open()``, ``close()`` and ``reset()``;
    transitions caused by calls are returned to the caller, which reports them on its span.
    ``operator`` receives those three manual actions instead of the circuit applying them: the
    registry applies them here and shares them with the other replicas (``apply_manual``).
    """

    def __init__(
        self,
        key: str,
        config: CircuitBreaker,
        *,
        name: str,
        kind: CallKind,
        clock: Clock = time.monotonic,
        listener: Callable[[Circuit, Transition], None] | None = None,
        operator: Callable[[Circuit, ManualAction], None] | None = None,
    ) -> None:
        self.key = key
        self.config = config
        self.name = name
        self.kind: CallKind = kind
        self._clock = clock
        self._listener = listener
        self._operator = operator
        self._lock = threading.Lock()
        self._base_break = seconds(config.break_duration)
        self._max_break = seconds(config.max_break_duration)
        self._threshold = config.failure_threshold or 0
        self._ratio = config.failure_ratio
        self._state = CircuitState.CLOSED
        self._generation = 0
        self._probe_in_flight = False
        self._forced = False
        self._break = self._base_break
        self._opened_at: float | None = None
        self._next_probe_at: float | None = None
        self._consecutive = 0
        self._window = SlidingCounts(seconds(config.window))
        self._successes = 0
        self._failures = 0
        self._rejections = 0
        reset_in_forked_child(self, "_lock")

    def _reset_after_fork(self) -> None:
        # The state is still true of the dependency; a probe in flight in another thread is not:
        # it will never report in the child, which would reject every call while half-open.
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        return self._state

    def acquire(self) -> tuple[Permit, Transition | None]:
        """Admit a call or raise ``CircuitOpenError``; a returned transition is the half-opening."""
        with self._lock:
            state = self._state
            if state is CircuitState.CLOSED:
                return Permit(self._generation, False), None
            now = self._clock()
            next_probe = self._next_probe_at
            if state is CircuitState.OPEN and next_probe is not None:
                if now >= next_probe:
                    self._set_state(CircuitState.HALF_OPEN)
                    self._probe_in_flight = True
                    return Permit(self._generation, True), Transition(CircuitState.HALF_OPEN)
            elif state is CircuitState.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return Permit(self._generation, True), None
            self._rejections += 1
            retry_in = next_probe - now if state is CircuitState.OPEN and next_probe is not None else None
        raise CircuitOpenError(name=self.name, kind=self.kind, circuit=self.key, retry_in=retry_in)

    def record_success(self, permit: Permit) -> Transition | None:
        with self._lock:
            self._successes += 1
            if permit.generation != self._generation:
                return None
            if self._state is CircuitState.CLOSED:
                self._consecutive = 0
                if self._ratio is not None:
                    self._window.add(self._clock(), first=1)
                return None
            if permit.probe and self._state is CircuitState.HALF_OPEN:
                return self._close(manual=False)
            return None

    def record_failure(self, permit: Permit) -> Transition | None:
        with self._lock:
            self._failures += 1
            if permit.generation != self._generation:
                return None
            now = self._clock()
            if self._state is CircuitState.CLOSED:
                return self._count_failure(now)
            if permit.probe and self._state is CircuitState.HALF_OPEN:
                self._break = min(self._max_break, self._break * self.config.break_growth)
                return self._open(now)
            return None

    def release(self, permit: Permit) -> None:
        """End a call without a verdict (cancelled, or a failure that says nothing about health)."""
        with self._lock:
            if permit.probe and permit.generation == self._generation:
                self._probe_in_flight = False

    def record_outcome(self, success: bool) -> Transition | None:
        """Count an outcome observed elsewhere (another instrumentation's span).

        Such outcomes can open a closed circuit but never decide a half-open one: only the probe
        admitted by ``acquire`` does.
        """
        with self._lock:
            if success:
                self._successes += 1
            else:
                self._failures += 1
            if self._state is not CircuitState.CLOSED:
                return None
            now = self._clock()
            if not success:
                return self._count_failure(now)
            self._consecutive = 0
            if self._ratio is not None:
                self._window.add(now, first=1)
            return None

    def open(self) -> None:
        """Open the circuit by hand; it stays open (no probes) until ``close()`` or ``reset()``.

        With a shared state backend (``agentwatch.SharedState``) this, ``close()`` and ``reset()``
        apply to the circuit of the same key on every replica."""
        self._manual("open")

    def close(self) -> None:
        """Close the circuit by hand: counts and the break duration start afresh."""
        self._manual("close")

    def reset(self) -> None:
        """Close the circuit and zero its totals."""
        self._manual("reset")

    def _manual(self, action: ManualAction) -> None:
        if self._operator is not None:
            self._operator(self, action)
        else:
            self.apply_manual(action)

    def apply_manual(self, action: ManualAction) -> None:
        """Apply an operator action to this circuit only (what ``open()`` & co. do without a registry)."""
        if action == "open":
            self._open_by_hand()
        elif action == "close":
            self._close_by_hand()
        else:
            self._reset_by_hand()

    def _open_by_hand(self) -> None:
        with self._lock:
            if self._forced:
                return
            self._forced = True
            self._opened_at = self._clock()
            self._next_probe_at = None
            self._set_state(CircuitState.OPEN)
            transition = Transition(CircuitState.OPEN, manual=True)
        self._notify(transition)

    def _close_by_hand(self) -> None:
        with self._lock:
            old = self._state
            transition = self._close(manual=True)
        if old is not CircuitState.CLOSED:
            self._notify(transition)

    def _reset_by_hand(self) -> None:
        with self._lock:
            old = self._state
            transition = self._close(manual=True)
            self._successes = self._failures = self._rejections = 0
        if old is not CircuitState.CLOSED:
            self._notify(transition)

    def snapshot(self) -> CircuitSnapshot:
        wall_now = time.time()
        with self._lock:
            now = self._clock()
            successes, failures = self._window.totals(now) if self._ratio is not None else (0, 0)
            opened_at = None if self._opened_at is None else wall_now - (now - self._opened_at)
            next_probe_at = None if self._next_probe_at is None else wall_now + (self._next_probe_at - now)
            return CircuitSnapshot(
                key=self.key,
                name=self.name,
                kind=self.kind,
                mode=self.config.mode,
                state=self._state,
                forced_open=self._forced,
                consecutive_failures=self._consecutive,
                window_calls=successes + failures,
                window_failures=failures,
                successes=self._successes,
                failures=self._failures,
                rejections=self._rejections,
                opened_at=opened_at,
                break_duration=self._break,
                next_probe_at=next_probe_at,
            )

    # The helpers below run with the lock held.

    def _count_failure(self, now: float) -> Transition | None:
        self._consecutive += 1
        if self._ratio is None:
            return self._open(now) if self._consecutive >= self._threshold else None
        self._window.add(now, second=1)
        successes, failures = self._window.totals(now)
        calls = successes + failures
        if calls >= self.config.minimum_calls and failures >= self._ratio * calls:
            return self._open(now)
        return None

    def _open(self, now: float) -> Transition:
        self._opened_at = now
        self._next_probe_at = now + self._break
        self._set_state(CircuitState.OPEN)
        return Transition(CircuitState.OPEN)

    def _close(self, *, manual: bool) -> Transition:
        self._forced = False
        self._break = self._base_break
        self._opened_at = None
        self._next_probe_at = None
        self._consecutive = 0
        self._window.clear()
        self._set_state(CircuitState.CLOSED)
        return Transition(CircuitState.CLOSED, manual=manual)

    def _set_state(self, state: CircuitState) -> None:
        # Every transition starts a new generation, which invalidates outstanding permits.
        self._state = state
        self._generation += 1
        self._probe_in_flight = False

    def _notify(self, transition: Transition) -> None:
        if self._listener is not None:
            self._listener(self, transition)
