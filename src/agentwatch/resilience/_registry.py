"""Process-wide state shared by every pipeline: circuits by key and the tools disabled by operators."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from agentwatch._internal import report_internal_error, reset_in_forked_child
from agentwatch.resilience._breaker import Circuit, CircuitSnapshot, Transition
from agentwatch.resilience._config import CircuitBreaker
from agentwatch.resilience._errors import CallKind

__all__ = [
    "Registry",
    "circuit",
    "circuits",
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
    """Circuits by key and disabled tools. Thread-safe; reads on the call path take no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._circuits: dict[str, Circuit] = {}
        # Replaced, never mutated, so that the per-call membership test needs no lock.
        self._disabled: frozenset[str] = frozenset()
        self._tools: frozenset[str] = frozenset()
        reset_in_forked_child(self, "_lock")

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
        with self._lock:
            existing = self._circuits.get(key)
            if existing is None:
                existing = Circuit(
                    key, config, name=name, kind=kind, clock=clock, listener=_report_manual_transition
                )
                self._circuits[key] = existing
            return existing

    def get(self, key: str) -> Circuit | None:
        return self._circuits.get(key)

    def all(self) -> list[Circuit]:
        with self._lock:
            return sorted(self._circuits.values(), key=lambda c: c.key)

    def snapshots(self) -> list[CircuitSnapshot]:
        return [c.snapshot() for c in self.all()]

    def register_tool(self, name: str) -> None:
        if name in self._tools:
            return
        with self._lock:
            self._tools = self._tools | {name}

    @property
    def tools(self) -> frozenset[str]:
        """Tool names some pipeline was built for."""
        return self._tools

    def disable_tool(self, name: str) -> None:
        with self._lock:
            self._disabled = self._disabled | {name}

    def enable_tool(self, name: str) -> None:
        with self._lock:
            self._disabled = self._disabled - {name}

    def is_tool_disabled(self, name: str) -> bool:
        return name in self._disabled

    @property
    def disabled_tools(self) -> frozenset[str]:
        return self._disabled

    def reset(self) -> None:
        with self._lock:
            self._circuits = {}
            self._disabled = frozenset()
            self._tools = frozenset()


_default = Registry()


def default_registry() -> Registry:
    return _default


def circuits() -> list[CircuitSnapshot]:
    """A snapshot of every circuit breaker in the process, sorted by key."""
    return _default.snapshots()


def circuit(key: str) -> Circuit | None:
    """The live circuit for ``key`` (a tool name, or ``provider:model``), for ``open()``/``close()``."""
    return _default.get(key)


def disable_tool(name: str) -> None:
    """Make tool ``name`` return its degradation result (or raise ``ToolDisabledError`` if critical)
    at once, without being called, until ``enable_tool(name)``. Takes effect on the next call."""
    _default.disable_tool(name)


def enable_tool(name: str) -> None:
    """Undo ``disable_tool(name)``; enabling a tool that is not disabled does nothing."""
    _default.enable_tool(name)


def disabled_tools() -> frozenset[str]:
    return _default.disabled_tools


def reset_registry() -> None:
    """Forget every circuit and disabled tool. For tests: pipelines built before keep their circuits."""
    _default.reset()
