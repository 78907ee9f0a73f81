"""Span events, span attributes and metrics of the resilience layer.

Every public method swallows its own faults (reported through ``report_internal_error``): a
broken span or meter must never change the outcome of the call being protected. Instruments are
created once per :class:`ResilienceTelemetry`; the process-wide default uses the global meter
provider lazily, and ``configure_resilience_telemetry`` (called by ``agentwatch.instrument``)
replaces it.

Names (``{event}``, ``{attempt}`` and ``{state}`` units follow the OTel convention for counts):

- counter ``agentwatch.resilience.events``: ``agentwatch.resilience.event``,
  ``agentwatch.resilience.policy``, ``gen_ai.tool.name`` or ``gen_ai.request.model``, ``error.type``.
- histogram ``agentwatch.resilience.attempts``: attempts per call, by tool or model.
- counter ``agentwatch.admin.requests``: ``agentwatch.admin.action``, ``agentwatch.admin.outcome``,
  ``http.response.status_code``.
- observable gauge ``agentwatch.circuit.state``: 0 closed, 1 half-open, 2 open, per circuit
  (``agentwatch.circuit.name`` plus the tool or model attribute).
- observable gauge ``agentwatch.state.shared``: with a shared state backend only, 1 while this
  replica follows the fleet's state, 0 while it runs on its local state because the backend does
  not answer (``agentwatch.state.backend``: ``redis``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation, get_meter
from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import (
    GEN_AI_REQUEST_MODEL,
    GEN_AI_TOOL_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from agentwatch._internal import NO_SPAN_CONTEXT, renew_locks_at_fork, report_internal_error
from agentwatch._version import __version__
from agentwatch.resilience._breaker import Circuit, Transition
from agentwatch.resilience._errors import CallKind
from agentwatch.resilience._registry import Registry, default_registry

__all__ = [
    "ATTEMPTS_ATTRIBUTE",
    "BULKHEAD_REJECTED",
    "CIRCUIT_NAME",
    "CIRCUIT_REJECTED",
    "RATE_LIMIT_REJECTED",
    "REJECTION_EVENTS",
    "TOOL_DISABLED",
    "ResilienceTelemetry",
    "configure_resilience_telemetry",
    "current_telemetry",
    "subject_attribute",
]

EVENT = "agentwatch.resilience.event"
POLICY = "agentwatch.resilience.policy"
CIRCUIT_NAME = "agentwatch.circuit.name"
ATTEMPTS_ATTRIBUTE = "agentwatch.resilience.attempts"
ATTEMPT_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)

# The events of a call refused without being made: a full bulkhead, an open circuit, a rate limit
# whose wait would pass ``max_wait`` or the deadline, a tool an operator disabled. The Tools
# dashboard's "Rejections" panel counts exactly these (a test keeps the two equal).
BULKHEAD_REJECTED = "bulkhead_rejected"
CIRCUIT_REJECTED = "circuit_rejected"
RATE_LIMIT_REJECTED = "rate_limit_rejected"
TOOL_DISABLED = "tool_disabled"
REJECTION_EVENTS = frozenset({BULKHEAD_REJECTED, CIRCUIT_REJECTED, RATE_LIMIT_REJECTED, TOOL_DISABLED})


def subject_attribute(kind: CallKind) -> str:
    """``gen_ai.tool.name`` for tools, ``gen_ai.request.model`` for LLM calls."""
    return GEN_AI_TOOL_NAME if kind == "tool" else GEN_AI_REQUEST_MODEL


def _recording(span: Span | None) -> bool:
    return span is not None and span.is_recording()


class ResilienceTelemetry:
    """The instruments of the resilience layer, created once from a meter provider.

    ``meter_provider=None`` uses the global provider (through the API's proxy, so a provider set
    later still receives the data). ``registry`` is the one whose circuits the gauge reports.
    """

    def __init__(
        self, *, meter_provider: MeterProvider | None = None, registry: Registry | None = None
    ) -> None:
        self._registry = registry or default_registry()
        self.meter_provider = meter_provider
        meter = get_meter("agentwatch", __version__, meter_provider=meter_provider)
        self._events = meter.create_counter(
            "agentwatch.resilience.events",
            unit="{event}",
            description="Decisions taken by agentwatch resilience policies (retries, timeouts, circuit changes, rejections, fallbacks).",
        )
        self._attempts = meter.create_histogram(
            "agentwatch.resilience.attempts",
            unit="{attempt}",
            description="Attempts made per tool or LLM call, retries and fallback models included.",
            explicit_bucket_boundaries_advisory=ATTEMPT_BUCKETS,
        )
        self._admin = meter.create_counter(
            "agentwatch.admin.requests",
            unit="{request}",
            description="Requests to the agentwatch admin API, by action and answer (refused ones included).",
        )
        meter.create_observable_gauge(
            "agentwatch.circuit.state",
            callbacks=[self._observe_circuits],
            unit="{state}",
            description="Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        )
        meter.create_observable_gauge(
            "agentwatch.state.shared",
            callbacks=[self._observe_state],
            unit="1",
            description="1 while this replica follows the shared operator state and rate limits, "
            "0 while it runs on its local state because the shared backend does not answer.",
        )

    def event(
        self,
        span: Span | None,
        name: str,
        policy: str,
        *,
        kind: CallKind,
        subject: str,
        error_type: str | None = None,
        attributes: Mapping[str, AttributeValue] | None = None,
        metric_attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Record a policy decision as a span event and on the events counter.

        ``attributes`` go on the span event; ``metric_attributes`` (low-cardinality only) are added
        to the counter's.
        """
        if _recording(span):
            try:
                event_attributes = dict(attributes or {})
                if error_type is not None:
                    event_attributes[ERROR_TYPE] = error_type
                span.add_event(name, event_attributes)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a faulty span must not change the call's outcome
                report_internal_error("resilience.span_event")
        try:
            counted: dict[str, AttributeValue] = {
                EVENT: name,
                POLICY: policy,
                subject_attribute(kind): subject,
            }
            if metric_attributes:
                counted.update(metric_attributes)
            if error_type is not None:
                counted[ERROR_TYPE] = error_type
            self._events.add(1, counted)
        except Exception:  # noqa: BLE001 - a faulty meter must not change the call's outcome
            report_internal_error("resilience.events_metric")

    def circuit_transition(self, circuit: Circuit, transition: Transition, *, span: Span | None) -> None:
        attributes: dict[str, AttributeValue] = {CIRCUIT_NAME: circuit.key}
        if transition.manual:
            attributes["agentwatch.circuit.manual"] = True
        self.event(
            span,
            transition.event,
            "circuit_breaker",
            kind=circuit.kind,
            subject=circuit.name,
            attributes=attributes,
            metric_attributes=attributes,
        )

    def attempts(self, span: Span | None, attempts: int, attributes: Mapping[str, AttributeValue]) -> None:
        """Record the number of attempts of a finished call; ``attributes`` names the tool or model."""
        if _recording(span):
            try:
                span.set_attribute(ATTEMPTS_ATTRIBUTE, attempts)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a faulty span must not change the call's outcome
                report_internal_error("resilience.span_attribute")
        try:
            # The call's span is current here: NO_SPAN_CONTEXT spares sampling an exemplar of it.
            self._attempts.record(attempts, attributes, context=NO_SPAN_CONTEXT)
        except Exception:  # noqa: BLE001 - a faulty meter must not change the call's outcome
            report_internal_error("resilience.attempts_metric")

    def admin_request(self, action: str, status: int, outcome: str) -> None:
        """Count one admin API request (``action``: ``tool.disable``, ``circuits.list``, ...)."""
        try:
            self._admin.add(
                1,
                {
                    "agentwatch.admin.action": action,
                    "agentwatch.admin.outcome": outcome,
                    "http.response.status_code": status,
                },
            )
        except Exception:  # noqa: BLE001 - a faulty meter must not change the answer
            report_internal_error("admin.metric")

    @staticmethod
    def mark_error(span: Span | None, error_type: str) -> None:
        """Set ``error.type`` on a call the policy short-circuited or degraded."""
        if _recording(span):
            try:
                span.set_attribute(ERROR_TYPE, error_type)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a faulty span must not change the call's outcome
                report_internal_error("resilience.span_attribute")

    def _observe_state(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            # The backend as it is: observing must never start one (no _ensure()).
            backend = self._registry._backend
            if backend.kind == "memory":
                return []
            return [Observation(1 if backend.shared else 0, {"agentwatch.state.backend": backend.kind})]
        except Exception:  # noqa: BLE001 - an export must never fail because of the gauge
            report_internal_error("resilience.state_gauge")
            return []

    def _observe_circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            return [
                Observation(
                    c.state.gauge_value,
                    {CIRCUIT_NAME: c.key, subject_attribute(c.kind): c.name},
                )
                for c in self._registry.all()
            ]
        except Exception:  # noqa: BLE001 - an export must never fail because of the gauge
            report_internal_error("resilience.circuit_gauge")
            return []


_lock = threading.Lock()
_current: ResilienceTelemetry | None = None
renew_locks_at_fork(globals(), "_lock")


def current_telemetry() -> ResilienceTelemetry:
    """The process-wide telemetry, created on first use from the global meter provider."""
    global _current
    telemetry = _current
    if telemetry is None:
        with _lock:
            if _current is None:
                _current = ResilienceTelemetry()
            telemetry = _current
    return telemetry


def configure_resilience_telemetry(meter_provider: MeterProvider | None = None) -> ResilienceTelemetry:
    """Send the resilience metrics of every pipeline without its own telemetry to ``meter_provider``.

    Called by ``agentwatch.instrument()``; ``None`` means the global meter provider.
    """
    global _current
    with _lock:
        # Instruments are registered once per meter: reconfiguring with the same provider (an
        # instrument() called twice) must not register the gauge callback again.
        if _current is None or _current.meter_provider is not meter_provider:
            _current = ResilienceTelemetry(meter_provider=meter_provider)
        return _current
