"""A ``Runner`` run as an agentwatch session: ``AgentRunner.run`` and ``AgentRunner.run_streamed``.

``Runner.run``, ``run_sync`` and ``run_streamed`` all go through these two methods of the default
runner. A run opens a session (the ``invoke_agent {starting agent}`` span, the live totals, the
``agentwatch.session.*`` metrics) unless one is already current, in which case it joins it: the
application's own ``agentwatch.session()``, or the outer run of an agent used as a tool.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any

from agentwatch import _semconv as sc
from agentwatch._internal import instrumentation_enabled, report_internal_error
from agentwatch._session import FrameworkSession, SessionInstruments
from agentwatch._telemetry._context import SessionSink, current_session
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._common import as_str, get, sdk_attribute

__all__ = ["Run", "RunSession", "active_run", "run_streamed_wrapper", "run_wrapper"]

_NO_OP = "no-op"  # the id of the SDK's disabled traces and spans


class RunSession(FrameworkSession):
    """A session opened for a run, reporting to the instrumentor's providers."""

    __slots__ = ()

    def bind(self, conversation_id: str) -> None:
        """Adopt the SDK's trace id, known only once the run has started its trace."""
        self.session_id = conversation_id
        span = self._span
        if span is not None and span.is_recording():
            span.set_attribute(sc.CONVERSATION_ID, conversation_id)


class Run:
    """The run in progress in this context (the processor reads it through :data:`active_run`)."""

    __slots__ = ("agent", "owns", "pending_id", "session", "token", "unclaimed")

    def __init__(self, agent: object, session: SessionSink, *, owns: bool, pending_id: bool) -> None:
        self.agent = agent
        self.session = session
        self.owns = owns
        self.pending_id = pending_id
        # The starting agent's first agent span is the session span itself, not a child of it.
        self.unclaimed = _name(agent) if owns else None
        self.token: Token[Run | None] | None = None

    def claims(self, agent_name: object) -> bool:
        """Whether the SDK's agent span for ``agent_name`` is the one the session span stands for."""
        if self.unclaimed is not None and agent_name == self.unclaimed:
            self.unclaimed = None
            return True
        return False

    def bind_trace(self, trace: object) -> None:
        if not self.pending_id or not isinstance(self.session, RunSession):
            return
        self.pending_id = False
        found = _trace_conversation(trace)
        if found is not None:
            self.session.bind(found)


active_run: ContextVar[Run | None] = ContextVar("agentwatch_openai_agents_run", default=None)


def _name(agent: object) -> str | None:
    name = getattr(agent, "name", None)
    return name if isinstance(name, str) and name else None


def _trace_conversation(trace: object) -> str | None:
    """A trace's ``group_id`` (the SDK's "chat thread id"), else its own id."""
    group = as_str(getattr(trace, "group_id", None))
    if group:
        return group
    trace_id = as_str(getattr(trace, "trace_id", None))
    return trace_id if trace_id and trace_id != _NO_OP else None


def _conversation_id(kwargs: Mapping[str, Any]) -> str | None:
    """What identifies the conversation before the run starts, most specific first: the Responses
    ``conversation_id``, the SDK memory session's id, the trace's ``group_id`` or id."""
    given = as_str(kwargs.get("conversation_id"))
    if given:
        return given
    memory = as_str(getattr(kwargs.get("session"), "session_id", None))
    if memory:
        return memory
    from agents.tracing import get_current_trace

    current = get_current_trace()
    if current is not None:
        # The run joins the application's trace, whose id is known now.
        return _trace_conversation(current)
    group = as_str(get(kwargs.get("run_config"), "group_id"))
    return group or None


def _sdk_exceptions(*names: str) -> tuple[type[BaseException], ...]:
    found = (sdk_attribute("agents.exceptions", name) for name in names)
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, BaseException))


@functools.cache
def _outcome_classes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    return _sdk_exceptions("MaxTurnsExceeded"), _sdk_exceptions(
        "InputGuardrailTripwireTriggered",
        "OutputGuardrailTripwireTriggered",
        "ToolInputGuardrailTripwireTriggered",
        "ToolOutputGuardrailTripwireTriggered",
    )


def outcome_of(exc: BaseException | None) -> str | None:
    """The outcome of a run the SDK ended with ``exc``, when it is not simply ``error``."""
    if exc is None:
        return None
    max_turns, refused = _outcome_classes()
    if max_turns and isinstance(exc, max_turns):
        return sc.OUTCOME_MAX_ITERATIONS
    if refused and isinstance(exc, refused):
        return sc.OUTCOME_REFUSED
    return None


class RunState:
    """What the run wrappers share, built once per instrumentation."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.sessions = (telemetry, SessionInstruments(telemetry))


def _begin(state: RunState, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Run | None:
    if not instrumentation_enabled():
        return None
    try:
        agent = args[0] if args else kwargs.get("starting_agent")
        joined = current_session.get()
        if joined is not None:
            run = Run(agent, joined, owns=False, pending_id=False)
        else:
            conversation = _conversation_id(kwargs)
            session = RunSession(state.sessions, conversation, agent_name=_name(agent))
            session.__enter__()
            run = Run(agent, session, owns=True, pending_id=conversation is None)
        run.token = active_run.set(run)
        return run
    except Exception:  # noqa: BLE001
        report_internal_error("starting an agent run session")
        return None


def _leave(run: Run) -> None:
    """This context stops being inside the run (the session itself may go on, see streams)."""
    token, run.token = run.token, None
    if token is not None:
        try:
            active_run.reset(token)
        except ValueError:  # left from another context than it was entered in
            report_internal_error("leaving an agent run")


def _finish(state: RunState, run: Run, exc: BaseException | None) -> None:
    _leave(run)
    session = run.session
    if not run.owns or not isinstance(session, RunSession):
        return
    try:
        outcome = outcome_of(exc)
        if outcome is not None:
            session.outcome = outcome
    except Exception:  # noqa: BLE001
        report_internal_error("reading an agent run's outcome")
    session.__exit__(type(exc) if exc is not None else None, exc, None)


def run_wrapper(state: RunState) -> Callable[..., Any]:
    """``AgentRunner.run``: the session spans the awaited run."""

    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        run = _begin(state, args, kwargs)
        if run is None:
            return await wrapped(*args, **kwargs)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _finish(state, run, exc)
            raise
        _finish(state, run, None)
        return result

    return traced


_MISSING: Any = object()


def _stream_error(task: asyncio.Task[Any], result: object) -> BaseException | None:
    if task.cancelled():
        return asyncio.CancelledError()
    # Read without Task.exception(), which would mark the exception retrieved and silence
    # asyncio's "exception was never retrieved" report for an application that never reads it.
    error = getattr(task, "_exception", _MISSING)
    if error is _MISSING:
        error = task.exception()
    if isinstance(error, BaseException):
        return error
    # Errors the run loop hands to stream_events() instead of raising them (a tripped guardrail,
    # max turns reached in some SDK versions).
    stored = getattr(result, "_stored_exception", None)
    return stored if isinstance(stored, BaseException) else None


def run_streamed_wrapper(state: RunState) -> Callable[..., Any]:
    """``AgentRunner.run_streamed``: the run continues in a task created inside; the session
    follows that task (which copied this context) and ends when it does."""

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        run = _begin(state, args, kwargs)
        if run is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _finish(state, run, exc)
            raise
        _leave(run)
        session = run.session
        if run.owns and isinstance(session, RunSession):
            try:
                session._leave()
                task = getattr(result, "run_loop_task", None)
                if isinstance(task, asyncio.Task):

                    def done(finished: asyncio.Task[Any]) -> None:
                        try:
                            _finish(state, run, _stream_error(finished, result))
                        except Exception:  # noqa: BLE001
                            report_internal_error("ending a streamed agent run session")

                    task.add_done_callback(done)
                else:
                    _finish(state, run, None)
            except Exception:  # noqa: BLE001
                report_internal_error("following a streamed agent run")
        return result

    return traced
