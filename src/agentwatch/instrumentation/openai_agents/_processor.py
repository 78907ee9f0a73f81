"""The SDK's tracing events as OpenTelemetry spans: a processor registered with
``agents.tracing``.

=====================  =============================================================================
SDK span / trace        OpenTelemetry
=====================  =============================================================================
agent                   ``invoke_agent {agent}`` (INTERNAL), current while the agent runs; the
                        starting agent's first one is the run's session span itself
handoff                 ``execute_tool {handoff tool}`` with ``gen_ai.agent.handoff.source.name`` /
                        ``.target.name`` (semantic-conventions-genai PR #98), a tool call in every
                        respect (metric, log record, session count)
guardrail               ``run_guardrail {guardrail}`` (INTERNAL, PR #427) with
                        ``agentwatch.guardrail.triggered``
trace the application   ``invoke_workflow {workflow}`` (INTERNAL), so that the runs inside it share
opened around runs      one trace
function                nothing: the tool patches make the ``execute_tool`` span (with the policy)
generation, response    nothing: the model call's span is the OpenAI instrumentor's (one per call,
                        tokens and cost counted once)
task, turn, custom,     nothing
MCP list, speech
=====================  =============================================================================

Every callback runs synchronously where the SDK starts or ends its span, so a span made current
at the start is left at the end in the same context (task); a span the SDK ends from another
context (an async generator finalized elsewhere) is ended without touching that context.
"""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from typing import Any

from agents.tracing import Span as SdkSpan
from agents.tracing import Trace, TracingProcessor
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import instrumentation_enabled, report_internal_error
from agentwatch._telemetry._context import current_session
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._errors import error_type
from agentwatch.instrumentation._common import as_str
from agentwatch.instrumentation.openai_agents._runs import active_run
from agentwatch.tools._execution import ToolCall, ToolSpec, ToolTelemetry

__all__ = ["AgentsProcessor"]

_OTHER = "_OTHER"
_MAX_AGENTS = 256  # bound on the handoff graph walked to name a handoff tool


class _Open:
    """One SDK span or trace agentwatch is following."""

    __slots__ = ("span", "started", "token", "trace_id")

    def __init__(self, trace_id: str, span: Span | None = None) -> None:
        self.trace_id = trace_id
        self.span = span
        self.token: object = None
        self.started = time.time_ns()

    def enter(self) -> None:
        if self.span is not None:
            self.token = otel_context.attach(trace.set_span_in_context(self.span))

    def leave(self) -> None:
        token, self.token = self.token, None
        # Only where it was entered: elsewhere (a span ended from another context) detaching would
        # fail and restore nothing of that context.
        if token is not None and trace.get_current_span() is self.span:
            otel_context.detach(token)  # type: ignore[arg-type]


_CLAIMED = _Open("")  # an agent span the session span stands for


def _failure() -> BaseException | None:
    """The exception the SDK is ending its span on, if any (the SDK ends spans in ``finally`` and
    ``__exit__`` blocks; a cancellation is not a failure)."""
    exc = sys.exc_info()[1]
    return exc if isinstance(exc, Exception) else None


def _default_handoff_tool(agent_name: str) -> str:
    try:
        from agents.handoffs import Handoff

        return str(Handoff.default_tool_name(types.SimpleNamespace(name=agent_name)))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001
        return "transfer_to_" + "_".join(agent_name.lower().split())


def _handoff_entries(agent: object) -> Iterator[tuple[str | None, str | None, object | None]]:
    """``(target agent name, tool name, target agent)`` for each handoff an agent declares."""
    handoffs = getattr(agent, "handoffs", None)
    if not isinstance(handoffs, (list, tuple)):
        return
    for item in handoffs:
        if hasattr(item, "tool_name") and hasattr(item, "agent_name"):  # a Handoff
            ref = getattr(item, "_agent_ref", None)
            yield as_str(item.agent_name), as_str(item.tool_name), ref() if callable(ref) else None
        else:  # an Agent
            name = as_str(getattr(item, "name", None))
            yield name, _default_handoff_tool(name) if name else None, item


def handoff_tool_name(start: object, source: str | None, target: str) -> str:
    """The name of the tool the model called to hand off from ``source`` to ``target``: looked up
    among the handoffs reachable from the run's starting agent (a ``handoff()`` may rename it),
    else the SDK's default ``transfer_to_{target}``."""
    stack: list[object] = [start]
    seen: set[int] = set()
    while stack and len(seen) < _MAX_AGENTS:
        agent = stack.pop()
        if agent is None or id(agent) in seen:
            continue
        seen.add(id(agent))
        is_source = getattr(agent, "name", None) == source
        for name, tool, next_agent in _handoff_entries(agent):
            if is_source and name == target and tool:
                return tool
            stack.append(next_agent)
    return _default_handoff_tool(target)


class AgentsProcessor(TracingProcessor):
    """Registered once per instrumentation; :attr:`enabled` is cleared when uninstrumented."""

    def __init__(self, telemetry: Telemetry, tools: ToolTelemetry) -> None:
        self._tracer = telemetry.tracer
        self._tools = tools
        self._open: dict[str, _Open] = {}
        self.enabled = True

    # -- traces ---------------------------------------------------------------------------

    def on_trace_start(self, trace: Trace) -> None:
        if not self.enabled:
            return
        try:
            run = active_run.get()
            if run is not None:
                # A run's own trace: its session span is already the root.
                run.bind_trace(trace)
                return
            if not instrumentation_enabled():
                return
            self._follow(
                trace.trace_id,
                trace.trace_id,
                sc.OP_INVOKE_WORKFLOW,
                as_str(getattr(trace, "name", None)) or None,
                sc.WORKFLOW_NAME,
                as_str(getattr(trace, "group_id", None)) or trace.trace_id,
            )
        except Exception:  # noqa: BLE001
            report_internal_error("starting an OpenAI Agents workflow span")

    def on_trace_end(self, trace: Trace) -> None:
        try:
            opened = self._open.pop(trace.trace_id, None)
            if opened is not None and opened.span is not None:
                opened.leave()
                self._end(opened.span, _failure())
            # Spans of this trace the SDK never ended (it does end them all today).
            for key, leftover in list(self._open.items()):
                if (
                    leftover.trace_id == trace.trace_id
                    and self._open.pop(key, None) is not None
                    and leftover.span is not None
                ):
                    leftover.span.end()
        except Exception:  # noqa: BLE001
            report_internal_error("ending an OpenAI Agents workflow span")

    # -- spans ----------------------------------------------------------------------------

    def on_span_start(self, span: SdkSpan[Any]) -> None:
        if not self.enabled or not instrumentation_enabled():
            return
        try:
            kind = span.span_data.type
            if kind == "agent":
                self._agent_started(span)
            elif kind == "handoff":
                # Named and recorded when it ends: only then does the SDK know the target agent.
                self._open[span.span_id] = _Open(span.trace_id)
            elif kind == "guardrail":
                self._guardrail_started(span)
        except Exception:  # noqa: BLE001
            report_internal_error("starting an OpenAI Agents span")

    def on_span_end(self, span: SdkSpan[Any]) -> None:
        opened = self._open.pop(span.span_id, None)
        if opened is None or opened is _CLAIMED:
            return
        try:
            data = span.span_data
            if data.type == "handoff":
                self._handoff(span, opened)
                return
            opened.leave()
            if opened.span is None:
                return
            if data.type == "guardrail":
                triggered = getattr(data, "triggered", None)
                if isinstance(triggered, bool) and opened.span.is_recording():
                    opened.span.set_attribute(sc.GUARDRAIL_TRIGGERED, triggered)
            self._end(opened.span, _failure(), sdk_error=span.error is not None)
        except Exception:  # noqa: BLE001
            report_internal_error("ending an OpenAI Agents span")

    def _agent_started(self, span: SdkSpan[Any]) -> None:
        name = as_str(getattr(span.span_data, "name", None)) or None
        run = active_run.get()
        if run is not None and run.claims(name):
            self._open[span.span_id] = _CLAIMED
            return
        self._follow(span.span_id, span.trace_id, sc.OP_INVOKE_AGENT, name, sc.AGENT_NAME)

    def _guardrail_started(self, span: SdkSpan[Any]) -> None:
        name = as_str(getattr(span.span_data, "name", None)) or None
        self._follow(span.span_id, span.trace_id, sc.OP_RUN_GUARDRAIL, name, sc.GUARDRAIL_NAME)

    def _follow(
        self,
        key: str,
        trace_id: str,
        operation: str,
        name: str | None,
        name_attribute: str,
        conversation: str | None = None,
    ) -> None:
        """Start ``{operation} {name}``, current until the SDK ends what ``key`` names."""
        attributes: dict[str, AttributeValue] = {sc.OPERATION_NAME: operation}
        if name:
            attributes[name_attribute] = name
        if conversation is None:
            session = current_session.get()
            conversation = session.conversation_id if session is not None else None
        if conversation:
            attributes[sc.CONVERSATION_ID] = conversation
        otel_span = self._tracer.start_span(
            f"{operation} {name}" if name else operation, kind=SpanKind.INTERNAL, attributes=attributes
        )
        opened = _Open(trace_id, otel_span)
        opened.enter()
        self._open[key] = opened

    def _handoff(self, span: SdkSpan[Any], opened: _Open) -> None:
        data = span.span_data
        source = as_str(getattr(data, "from_agent", None)) or None
        target = as_str(getattr(data, "to_agent", None)) or None
        failure = _failure()
        if target is None and failure is None:
            return  # nothing was handed off
        run = active_run.get()
        tool = handoff_tool_name(run.agent if run is not None else None, source, target) if target else None
        attributes: dict[str, AttributeValue] = {}
        if source:
            attributes[sc.HANDOFF_SOURCE_NAME] = source
        if target:
            attributes[sc.HANDOFF_TARGET_NAME] = target
        call = ToolCall(
            self._tools,
            ToolSpec(tool or "handoff", None, sc.TOOL_TYPE_FUNCTION),
            arguments=None,
            call_id=None,
            attributes=attributes,
            start_time=opened.started,
        )
        call.end(error=failure)

    def _end(self, span: Span, failure: BaseException | None, *, sdk_error: bool = False) -> None:
        if (failure is not None or sdk_error) and span.is_recording():
            # The SDK's own error text may quote inputs; the type is enough.
            span.set_attribute(sc.ERROR_TYPE, error_type(failure) if failure is not None else _OTHER)
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    # -- lifecycle ------------------------------------------------------------------------

    def shutdown(self) -> None:
        # Interpreter exit: end what is still open so that it is exported.
        for key in list(self._open):
            opened = self._open.pop(key, None)
            if opened is not None and opened.span is not None:
                try:
                    opened.span.end()
                except Exception:  # noqa: BLE001
                    report_internal_error("ending OpenAI Agents spans at shutdown")

    def force_flush(self) -> None:
        """Nothing is buffered here: spans go to the tracer provider's processors as they end."""
