"""The LangGraph methods agentwatch wraps: ``Pregel.stream`` and ``Pregel.astream``.

Every run of a compiled graph goes through one of them: ``invoke``/``ainvoke`` iterate them,
``stream_events``/``astream_events`` too, and so do prebuilt agents (``create_agent``,
``create_react_agent``: compiled graphs) and subgraphs (a compiled graph run as a node or from a
tool calls ``invoke`` on it).

A run is one of three things, decided when it starts, in the context it starts in:

* no agentwatch session is current: the run **is** a session (``invoke_agent {graph name}``, its
  ``gen_ai.conversation.id`` the ``thread_id`` of ``config["configurable"]``, live totals, the
  ``agentwatch.session.*`` metrics and outcome when it ends);
* the application opened ``agentwatch.session()`` around it: the run **joins** that session (its
  model and tool calls count there; no second ``invoke_agent`` span, no second session);
* it runs inside another graph run (a subgraph, a sub-agent called from a node or a tool): an
  ``invoke_agent {graph name}`` child span, counted in the enclosing session.

Nodes get no spans: the conventions define none, and a ReAct loop runs two nodes per model call
(a span flood that says nothing the model and tool spans don't). The model calls (``chat``,
from the provider instrumentor or the LangChain one) and the tool calls (``execute_tool``) of
every node are children of the run's span, in whichever thread or task LangGraph runs the node:
LangGraph copies the context into both, and the run's context is current while each step runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from typing import Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import instrumentation_enabled, report_internal_error
from agentwatch._session import FrameworkSession, Session, SessionInstruments
from agentwatch._telemetry._context import SessionSink, current_session
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._errors import error_type
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._steps import Steps, async_steps, sync_steps

__all__ = ["patches"]

_INTERRUPT = "__interrupt__"

# The graph run whose step is running in this context (for subgraphs to find their parent).
_current_run: ContextVar[_GraphRun | None] = ContextVar("agentwatch_langgraph_run", default=None)


class GraphRuns:
    """What every run shares: built once per instrumentor."""

    __slots__ = ("_errors", "signals", "tracer")

    def __init__(self, telemetry: Telemetry) -> None:
        self.tracer = telemetry.tracer
        self.signals = (telemetry, SessionInstruments(telemetry))
        self._errors: tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]] | None = None

    def errors(self) -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
        """(control flow, recursion limit) exception classes of the installed langgraph.

        Looked up at the first run's end, not at instrument(): instrumenting imports no part of
        langgraph the application has not imported (a run means it has).
        """
        if self._errors is None:
            from langgraph import errors

            # Control flow, not failures: an interrupt (human in the loop), a Command to the
            # parent graph (handoffs), a drain.
            bubble_up = tuple(
                cls
                for cls in (getattr(errors, "GraphBubbleUp", None), getattr(errors, "GraphInterrupt", None))
                if isinstance(cls, type)
            )
            recursion = getattr(errors, "GraphRecursionError", None)
            self._errors = (bubble_up, (recursion,) if isinstance(recursion, type) else ())
        return self._errors


def _config_value(sources: Iterable[object], key: str) -> object:
    for source in sources:
        configurable = source.get("configurable") if isinstance(source, Mapping) else None
        if isinstance(configurable, Mapping) and configurable.get(key) is not None:
            return configurable[key]
    return None


def _thread_id(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, (int, uuid.UUID)) and not isinstance(value, bool):
        return str(value)
    return None


def _interrupted(item: object) -> bool:
    """Whether a streamed item reports an interrupt, in any stream mode or format version."""
    if isinstance(item, tuple) and item:
        item = item[-1]  # (mode, data), (namespace, data), (namespace, mode, data)
    if not isinstance(item, Mapping):
        return False
    if _INTERRUPT in item:
        return True
    if "type" in item and "data" in item:  # a v2 stream part
        data = item["data"]
        return bool(item.get("interrupts")) or (isinstance(data, Mapping) and _INTERRUPT in data)
    return False


class _GraphRun:
    """One run of a compiled graph; see the module docstring for what it becomes."""

    __slots__ = (
        "_ended",
        "_interrupted",
        "_joined",
        "_runs",
        "_session",
        "_span",
        "_started",
        "name",
        "thread_id",
    )

    def __init__(self, runs: GraphRuns, name: str, thread_id: str | None) -> None:
        self._runs = runs
        self.name = name
        self.thread_id = thread_id
        self._started = False
        self._ended = False
        self._interrupted = False
        self._session: FrameworkSession | None = None  # a session this run opened
        self._joined: SessionSink | None = None  # the session this run counts in otherwise
        self._span: Span | None = None  # the child span of a nested run

    def _start(self) -> None:
        self._started = True
        current = current_session.get()
        if current is None:
            session = FrameworkSession(self._runs.signals, self.thread_id, agent_name=self.name)
            session._open()
            self._session = session
            return
        self._joined = current
        if _current_run.get() is None:
            return  # the application's own session stands for this run
        attributes: dict[str, AttributeValue] = {
            sc.OPERATION_NAME: sc.OP_INVOKE_AGENT,
            sc.AGENT_NAME: self.name,
            sc.CONVERSATION_ID: current.conversation_id,
        }
        self._span = self._runs.tracer.start_span(
            f"{sc.OP_INVOKE_AGENT} {self.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )

    # -- Steps --------------------------------------------------------------------------------------

    def enter(self) -> object:
        if not self._started:
            if not instrumentation_enabled():
                self._ended = True
            else:
                try:
                    self._start()
                except Exception:  # noqa: BLE001
                    report_internal_error("starting a LangGraph run")
                    self._ended = True
        if self._ended:
            return None
        session = self._session
        if session is not None:
            own: object = session._enter_context()
        elif self._span is not None:
            own = otel_context.attach(trace.set_span_in_context(self._span))
        else:
            own = None
        return own, _current_run.set(self)

    def leave(self, token: object) -> None:
        if token is None:
            return
        own, run_token = cast("tuple[Any, Token[_GraphRun | None]]", token)
        try:
            _current_run.reset(run_token)
            if self._session is not None:
                self._session._leave_context(own)
            elif own is not None:
                otel_context.detach(own)
        except Exception:  # noqa: BLE001 - left in another context than it was entered in
            report_internal_error("leaving a LangGraph run")

    def item(self, item: Any) -> None:
        if not self._interrupted and not self._ended:
            try:
                self._interrupted = _interrupted(item)
            except Exception:  # noqa: BLE001
                report_internal_error("reading a LangGraph stream item")

    def end(self, error: BaseException | None) -> None:
        if self._ended or not self._started:
            return
        self._ended = True
        try:
            self._end(error)
        except Exception:  # noqa: BLE001
            report_internal_error("ending a LangGraph run")

    def _end(self, error: BaseException | None) -> None:
        bubble_up, recursion = self._runs.errors()
        outcome: str | None = None
        if error is not None and isinstance(error, bubble_up):
            outcome, error = sc.OUTCOME_INTERRUPTED, None
        elif error is not None and isinstance(error, recursion):
            outcome = sc.OUTCOME_MAX_ITERATIONS
        elif error is None and self._interrupted:
            outcome = sc.OUTCOME_INTERRUPTED
        session = self._session if self._session is not None else self._joined
        if outcome is not None and isinstance(session, Session) and session.outcome is None:
            # A declared outcome (the application's) wins; a nested run's also ends its parent's.
            session.outcome = outcome
        if self._session is not None:
            self._session._close(error)
            return
        span = self._span
        if span is None:
            return
        if error is not None and isinstance(error, Exception) and span.is_recording():
            etype = error_type(error)
            span.set_attribute(sc.ERROR_TYPE, etype)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _run_for(runs: GraphRuns, graph: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _GraphRun:
    config = args[1] if len(args) > 1 else kwargs.get("config")
    sources = (config, getattr(graph, "config", None))
    name = None
    if isinstance(config, Mapping):
        name = config.get("run_name")
    if not isinstance(name, str) or not name:
        name = getattr(graph, "name", None)
    if not isinstance(name, str) or not name:
        name = type(graph).__name__
    return _GraphRun(runs, name, _thread_id(_config_value(sources, "thread_id")))


def _runner(runs: GraphRuns, steps: Callable[[Any, Steps], Any]) -> Callable[..., Any]:
    """The wrapper of ``stream`` (``steps=sync_steps``) or ``astream`` (``async_steps``)."""

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            run = _run_for(runs, instance, args, kwargs)
        except Exception:  # noqa: BLE001
            report_internal_error("reading a LangGraph run's config")
            return wrapped(*args, **kwargs)
        return steps(wrapped(*args, **kwargs), run)

    return traced


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    runs = GraphRuns(telemetry)
    yield "langgraph.pregel", "Pregel.stream", _runner(runs, sync_steps)
    yield "langgraph.pregel", "Pregel.astream", _runner(runs, async_steps)
