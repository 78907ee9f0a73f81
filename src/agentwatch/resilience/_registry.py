"""Process-wide state shared by every pipeline: circuits and rate-limit budgets by key, the tools
disabled by operators, and where operator state lives (``agentwatch.resilience._state``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agentwatch._internal import report_internal_error, reset_in_forked_child
from agentwatch.resilience._breaker import Circuit, CircuitSnapshot, ManualAction, Transition
from agentwatch.resilience._config import CircuitBreaker, RateLimit, SharedState
from agentwatch.resilience._errors import CallKind
from agentwatch.resilience._ratelimit import RateLimiter
from agentwatch.resilience._state import (
    CircuitRecord,
    FleetState,
    LocalState,
    RedisState,
    Scope,
    StateBackend,
)

__all__ = [
    "Registry",
    "circuit",
    "circuits",
    "configure_shared_state",
    "default_registry",
    "disable_tool",
    "disabled_tools",
    "enable_tool",
    "reset_registry",
]


def _report_manual_transition(circuit: Circuit, transition: Transition) -> None:
    try:
        # Imported here: the telemetry module observes this registry for its gauge.
        from agentwatch.resilience._telemetry import current_telemetry

        current_telemetry().circuit_transition(circuit, transition, span=None)
    except Exception:  # noqa: BLE001 - telemetry faults never reach the operator's call
        report_internal_error("resilience.circuit_transition")


class Registry:
    """Circuits, rate-limit budgets and disabled tools. Thread-safe; reads on the call path take
    no lock and never touch the state backend.

    ``state``: where operator state lives (default: in this process). The process-wide registry
    picks its backend from the settings (``SharedState`` / ``AGENTWATCH_STATE_REDIS_URL``) when it
    is first used, or from :func:`configure_shared_state`.
    """

    def __init__(self, state: StateBackend | None = None) -> None:
        self._lock = threading.Lock()
        self._circuits: dict[str, Circuit] = {}
        self._limiters: dict[str, RateLimiter] = {}
        # Replaced, never mutated, so that the per-call membership test needs no lock.
        self._disabled: frozenset[str] = frozenset()
        self._disabled_info: dict[str, dict[str, object]] = {}
        self._tools: frozenset[str] = frozenset()
        # The last fleet-wide operator action per circuit key (shared state only).
        self._records: dict[str, CircuitRecord] = {}
        self._backend: StateBackend = LocalState()
        self._from_settings = False
        reset_in_forked_child(self, "_lock")
        if state is not None:
            self.use_state(state)

    # -- the state backend ------------------------------------------------------------------

    def use_state(self, state: StateBackend) -> None:
        """Make ``state`` this registry's backend (stopping the previous one) and load it."""
        with self._lock:
            old, self._backend = self._backend, state
            self._from_settings = False
        if old is not state:
            old.stop()
        state.attach(self)

    def _ensure(self) -> StateBackend:
        if self._from_settings:
            with self._lock:
                pending, self._from_settings = self._from_settings, False
            if pending:
                try:
                    config = _settings_state()
                except BaseException:
                    self._from_settings = True  # a bad setting is reported again, as settings are
                    raise
                if config is not None:
                    self.use_state(RedisState(config))
        return self._backend

    @property
    def state(self) -> StateBackend:
        """The backend operator state lives in."""
        return self._ensure()

    # -- circuits ---------------------------------------------------------------------------

    def circuit_for(
        self,
        key: str,
        config: CircuitBreaker,
        *,
        name: str,
        kind: CallKind,
        clock: Callable[[], float] = time.monotonic,
    ) -> Circuit:
        """The circuit for ``key``, created on first use; the first creator's settings win."""
        existing = self._circuits.get(key)
        if existing is not None:
            return existing
        self._ensure()
        with self._lock:
            existing = self._circuits.get(key)
            if existing is not None:
                return existing
            existing = Circuit(
                key,
                config,
                name=name,
                kind=kind,
                clock=clock,
                listener=_report_manual_transition,
                operator=self._operate,
            )
            self._circuits[key] = existing
            record = self._records.get(key)
        if record is not None and record.action == "open":
            # Forced open by an operator before this replica built the circuit.
            existing.apply_manual("open")
        return existing

    def get(self, key: str) -> Circuit | None:
        return self._circuits.get(key)

    def all(self) -> list[Circuit]:
        with self._lock:
            return sorted(self._circuits.values(), key=lambda c: c.key)

    def snapshots(self) -> list[CircuitSnapshot]:
        return [c.snapshot() for c in self.all()]

    def _operate(self, circuit: Circuit, action: ManualAction) -> None:
        self.circuit_action(circuit.key, action)

    def circuit_action(self, key: str, action: ManualAction) -> Scope:
        """Apply an operator action to circuit ``key`` here and, with shared state, on every
        replica (also one that has no circuit of that key yet, or that is not this one)."""
        backend = self._ensure()
        circuit = self._circuits.get(key)

        def apply() -> None:
            if circuit is not None:
                circuit.apply_manual(action)

        def record(seq: int) -> None:
            with self._lock:
                self._records[key] = CircuitRecord(action, seq, time.time(), backend.replica)

        return backend.publish_circuit(key, action, apply, record)

    # -- rate limits ------------------------------------------------------------------------

    def limiter_for(
        self,
        key: str,
        config: RateLimit,
        *,
        name: str,
        kind: CallKind,
        clock: Callable[[], float] = time.monotonic,
    ) -> RateLimiter:
        """The budget named ``key``, created on first use; the first creator's settings win."""
        existing = self._limiters.get(key)
        if existing is not None:
            return existing
        self._ensure()
        with self._lock:
            existing = self._limiters.get(key)
            if existing is None:
                existing = RateLimiter(
                    key, config, name=name, kind=kind, backend=lambda: self._backend, clock=clock
                )
                self._limiters[key] = existing
            return existing

    # -- tools ------------------------------------------------------------------------------

    def register_tool(self, name: str) -> None:
        if name in self._tools:
            return
        self._ensure()
        with self._lock:
            self._tools = self._tools | {name}

    @property
    def tools(self) -> frozenset[str]:
        """Tool names some pipeline was built for."""
        return self._tools

    def disable_tool(self, name: str) -> Scope:
        backend = self._ensure()

        def apply() -> None:
            with self._lock:
                self._disabled = self._disabled | {name}
                self._disabled_info[name] = {"at": time.time(), "by": backend.replica}

        return backend.publish_tool(name, True, apply)

    def enable_tool(self, name: str) -> Scope:
        backend = self._ensure()

        def apply() -> None:
            with self._lock:
                self._disabled = self._disabled - {name}
                self._disabled_info.pop(name, None)

        return backend.publish_tool(name, False, apply)

    def is_tool_disabled(self, name: str) -> bool:
        return name in self._disabled

    @property
    def disabled_tools(self) -> frozenset[str]:
        return self._disabled

    # -- what the backend drives (StateListener) ---------------------------------------------

    def apply_fleet_state(self, state: FleetState, *, joining: bool) -> None:
        """Take the fleet's operator state (called by the backend's poller); ``joining``: the
        first state this replica sees, whose past closes and resets are history."""
        actions: list[tuple[Circuit, ManualAction]] = []
        with self._lock:
            self._disabled = frozenset(state.disabled)
            self._disabled_info = dict(state.disabled)
            for key, record in state.circuits.items():
                known = self._records.get(key)
                self._records[key] = record
                if known is not None and known.seq == record.seq:
                    continue
                # Joining the fleet, only a forced-open circuit is a state to take on; a close or
                # reset before this replica joined is history.
                if joining and record.action != "open":
                    continue
                circuit = self._circuits.get(key)
                if circuit is not None:
                    actions.append((circuit, record.action))
        for circuit, action in actions:
            try:
                circuit.apply_manual(action)
            except Exception:  # noqa: BLE001 - one circuit must not stop the others
                report_internal_error("shared state circuit action")

    def seed_state(self) -> FleetState:
        """This replica's view of the operator state, to restore a Redis that lost it."""
        with self._lock:
            disabled = {
                name: self._disabled_info.get(name, {"at": time.time(), "by": self._backend.replica})
                for name in self._disabled
            }
            return FleetState(0, disabled, dict(self._records))

    def replica_report(self) -> dict[str, object]:
        """What this replica publishes for the fleet view."""
        return {
            "shared": self._backend.shared,
            "disabled_tools": sorted(self._disabled),
            "circuits": [_compact(s) for s in self.snapshots()],
        }

    # -- the fleet view ---------------------------------------------------------------------

    def fleet_view(self) -> dict[str, object]:
        """The fleet as the state backend sees it: every live replica's circuits, by key.

        In-process state: this process is the whole fleet. Redis unavailable: ``available`` is
        false and only this replica is listed.
        """
        backend = self._ensure()
        reports = backend.fleet_reports()
        available = reports is not None or backend.kind == "memory"
        # This replica's own entry is read now rather than from its last heartbeat.
        own = {**self.replica_report(), "replica": backend.replica, "at": time.time()}
        reports = [r for r in reports or [] if r.get("replica") != backend.replica] + [own]
        with self._lock:
            records = dict(self._records)
        names: dict[str, tuple[object, object]] = {}
        states: dict[str, dict[str, str]] = {}
        for report in reports:
            replica = str(report.get("replica", "?"))
            listed = report.get("circuits")
            for entry in listed if isinstance(listed, list) else []:
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                    continue
                key = entry["key"]
                names.setdefault(key, (entry.get("name"), entry.get("kind")))
                states.setdefault(key, {})[replica] = str(entry.get("state"))
        circuits = []
        for key in sorted(states):
            record = records.get(key)
            counts: dict[str, int] = {}
            for state in states[key].values():
                counts[state] = counts.get(state, 0) + 1
            circuits.append(
                {
                    "key": key,
                    "name": names[key][0],
                    "kind": names[key][1],
                    "forced_open": record is not None and record.action == "open",
                    "states": counts,
                    "replicas": states[key],
                }
            )
        return {
            "available": available,
            "replicas": sorted(str(r.get("replica", "?")) for r in reports),
            "circuits": circuits,
            "forced_open": sorted(k for k, r in records.items() if r.action == "open"),
        }

    def knows_circuit(self, key: str) -> bool:
        """Whether some replica (this one included) has a circuit ``key``."""
        if key in self._circuits or key in self._records:
            return True
        view = self.fleet_view()
        circuits = view["circuits"]
        return isinstance(circuits, list) and any(c.get("key") == key for c in circuits)

    def reset(self) -> None:
        with self._lock:
            self._circuits = {}
            self._limiters = {}
            self._disabled = frozenset()
            self._disabled_info = {}
            self._tools = frozenset()
            self._records = {}


def _compact(snapshot: CircuitSnapshot) -> dict[str, object]:
    return {
        "key": snapshot.key,
        "name": snapshot.name,
        "kind": snapshot.kind,
        "state": snapshot.state.value,
        "forced_open": snapshot.forced_open,
        "opened_at": snapshot.opened_at,
        "next_probe_at": snapshot.next_probe_at,
    }


def _settings_state() -> SharedState | None:
    from agentwatch._telemetry._core import current_settings

    return current_settings().shared_state


_default = Registry()
# The process-wide registry takes its backend from the settings when it is first used (a pipeline
# is built, an operator acts), not at import.
_default._from_settings = True


def default_registry() -> Registry:
    return _default


def configure_shared_state(state: SharedState | None) -> None:
    """Share operator state and rate limits with the other replicas through Redis
    (``None``: in-process state again). ``agentwatch.instrument(shared_state=...)`` calls it;
    without it the ``AGENTWATCH_STATE_REDIS_URL`` environment variable decides, at first use.

    Loads the shared state before returning (bounded by ``SharedState.timeout``), so a tool an
    operator disabled is off from this replica's first call.
    """
    _default.use_state(RedisState(state) if state is not None else LocalState())


def circuits() -> list[CircuitSnapshot]:
    """A snapshot of every circuit breaker in the process, sorted by key."""
    return _default.snapshots()


def circuit(key: str) -> Circuit | None:
    """The live circuit for ``key`` (a tool name, or ``provider:model``), for ``open()``/``close()``."""
    return _default.get(key)


def disable_tool(name: str) -> Scope:
    """Make tool ``name`` return its degradation result (or raise ``ToolDisabledError`` if critical)
    at once, without being called, until ``enable_tool(name)``. Takes effect on this replica's next
    call; with shared state on every replica's within ``poll_interval + timeout``. Returns
    ``"fleet"`` when the switch reached the shared state, ``"replica"`` when it applies to this
    process only (in-process state, or Redis unavailable: it reaches the fleet when Redis answers)."""
    return _default.disable_tool(name)


def enable_tool(name: str) -> Scope:
    """Undo ``disable_tool(name)``; enabling a tool that is not disabled does nothing."""
    return _default.enable_tool(name)


def disabled_tools() -> frozenset[str]:
    return _default.disabled_tools


def reset_registry() -> None:
    """Forget every circuit, budget and disabled tool. For tests: pipelines built before keep
    their circuits. The state backend stays."""
    _default.reset()
