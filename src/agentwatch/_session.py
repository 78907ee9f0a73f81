"""``agentwatch.session()``: one agent run for one user request, as an ``invoke_agent`` span.

While a session is active (``with``/``async with``, or a function decorated with it), it is the
:data:`~agentwatch._telemetry._context.current_session` and its span is the current span, so
every LLM span and tool span started inside it — in the same thread, in asyncio tasks created
inside it, and in threads that receive a copy of the context (``asyncio.to_thread``,
``contextvars.copy_context().run``) — carries its ``gen_ai.conversation.id`` and adds to its
totals. A plain ``threading.Thread`` or a ``ThreadPoolExecutor`` does not copy the context; run the
work through ``contextvars.copy_context().run`` there.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import Counter, Histogram
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import (
    is_async_callable,
    renew_locks_at_fork,
    report_internal_error,
    reset_in_forked_child,
)
from agentwatch._telemetry._context import current_session
from agentwatch._telemetry._core import Telemetry, default_telemetry
from agentwatch._telemetry._errors import error_type
from agentwatch._telemetry._instruments import COST_BUCKETS
from agentwatch._telemetry._pricing import put_cost

if TYPE_CHECKING:
    from agentwatch._telemetry._usage import Usage

__all__ = ["FrameworkSession", "Session", "SessionInstruments", "session"]

F = TypeVar("F", bound=Callable[..., Any])

# Agent runs last from a fraction of a second to minutes; the SLO is p95 < 15 s.
SESSION_DURATION_BUCKETS = (
    0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
)  # fmt: skip
# USD per session: the per-call buckets, extended for long multi-call runs (SLO p95 < $0.10,
# alert at $0.50 — both are boundaries).
SESSION_COST_BUCKETS = (*COST_BUCKETS, 25.0, 50.0, 100.0)
# LLM calls per session: an agent loop typically caps around 8 (alert on p95 > 7).
ITERATION_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50)

_NEW, _ACTIVE, _ENDED = 0, 1, 2


class SessionInstruments:
    __slots__ = ("cost", "count", "duration", "iterations")

    def __init__(self, telemetry: Telemetry) -> None:
        meter = telemetry.meter
        self.duration: Histogram = meter.create_histogram(
            sc.METRIC_SESSION_DURATION,
            unit="s",
            description="Duration of agent sessions, from the user's request to the final response.",
            explicit_bucket_boundaries_advisory=SESSION_DURATION_BUCKETS,
        )
        self.cost: Histogram = meter.create_histogram(
            sc.METRIC_SESSION_COST,
            unit="USD",
            description="Cost of the LLM calls of an agent session (sessions with an unpriced call are not recorded).",
            explicit_bucket_boundaries_advisory=SESSION_COST_BUCKETS,
        )
        self.iterations: Histogram = meter.create_histogram(
            sc.METRIC_SESSION_ITERATIONS,
            unit="{iteration}",
            description="LLM calls per agent session.",
            explicit_bucket_boundaries_advisory=ITERATION_BUCKETS,
        )
        self.count: Counter = meter.create_counter(
            sc.METRIC_SESSIONS, unit="{session}", description="Agent sessions, by outcome."
        )


_cache_lock = threading.Lock()
renew_locks_at_fork(globals(), "_cache_lock")
_cache: tuple[Telemetry, SessionInstruments] | None = None


def _telemetry() -> tuple[Telemetry, SessionInstruments]:
    global _cache
    telemetry = default_telemetry("agentwatch.sessions")
    cached = _cache
    if cached is not None and cached[0] is telemetry:
        return cached
    with _cache_lock:
        cached = _cache
        if cached is None or cached[0] is not telemetry:
            cached = (telemetry, SessionInstruments(telemetry))
            _cache = cached
        return cached


def _check_text(setting: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, uuid.UUID)) and not isinstance(value, bool):
        return str(value)  # numeric user ids and UUID objects are common
    if not isinstance(value, str) or not value:
        raise TypeError(f"{setting} must be a non-empty string or None, not {value!r}")
    return value


class Session:
    """One agent run. Use through :func:`session`.

    Live totals (thread-safe, readable at any time): :attr:`iterations` (LLM calls),
    :attr:`input_tokens`, :attr:`output_tokens`, :attr:`cost`, :attr:`tool_calls`,
    :attr:`tool_errors`. Set :attr:`outcome` to declare how the run ended (``"max_iterations"``,
    ``"refused"``...); otherwise it is ``completed``, ``error`` when an exception escapes, or
    ``cancelled`` when a cancellation does (``asyncio.CancelledError``, ``KeyboardInterrupt``: no
    ``error.type``, no ERROR status). A declared outcome wins over ``error``: the exception still
    sets ``error.type`` on the span. The session-completion SLO counts ``completed`` and
    ``refused`` as answered, ``interrupted`` and ``cancelled`` not at all, and every other outcome,
    a declared one included, as a failure (README, "Session outcomes").
    A session object is single-use; a function decorated with a session opens a new one per call.
    """

    __slots__ = (
        "__weakref__",
        "_cost",
        "_given_id",
        "_input_reported",
        "_input_tokens",
        "_iterations",
        "_lock",
        "_outcome",
        "_output_reported",
        "_output_tokens",
        "_priced_calls",
        "_span",
        "_start",
        "_state",
        "_tokens",
        "_tool_calls",
        "_tool_errors",
        "_unpriced",
        "agent_name",
        "session_id",
        "user_id",
    )

    def __init__(
        self, session_id: str | None = None, *, user_id: str | None = None, agent_name: str | None = None
    ) -> None:
        given = _check_text("session_id", session_id)
        self._given_id = given is not None
        self.session_id: str = given or str(uuid.uuid4())
        self.user_id = _check_text("user_id", user_id)
        self.agent_name = _check_text("agent_name", agent_name)
        self._lock = threading.Lock()
        reset_in_forked_child(self, "_lock")
        self._iterations = 0
        self._input_tokens = 0
        self._output_tokens = 0
        self._input_reported = False
        self._output_reported = False
        self._cost = 0.0
        self._priced_calls = 0
        self._unpriced = False
        self._tool_calls = 0
        self._tool_errors = 0
        self._outcome: str | None = None
        self._state = _NEW
        self._span: Span | None = None
        self._tokens: tuple[object, object] | None = None
        self._start = 0.0

    def __repr__(self) -> str:
        return f"<agentwatch.Session {self.session_id!r} agent={self.agent_name!r}>"

    @staticmethod
    def current() -> Session | None:
        """The innermost active session of this context, if any."""
        found = current_session.get()
        return found if isinstance(found, Session) else None

    # -- SessionSink (called by inference and tool calls) ----------------------------------------

    @property
    def conversation_id(self) -> str:
        return self.session_id

    def record_inference(self, usage: Usage, cost: float | None, *, priced: bool, failed: bool) -> None:
        with self._lock:
            self._iterations += 1
            if usage.input_tokens is not None:
                self._input_tokens += usage.input_tokens
                self._input_reported = True
            if usage.output_tokens is not None:
                self._output_tokens += usage.output_tokens
                self._output_reported = True
            if not priced:
                self._unpriced = True
            elif cost is not None:
                self._cost += cost
                self._priced_calls += 1

    def record_tool_call(self, *, failed: bool) -> None:
        with self._lock:
            self._tool_calls += 1
            if failed:
                self._tool_errors += 1

    # -- live totals -------------------------------------------------------------------------------

    @property
    def iterations(self) -> int:
        """LLM calls made in the session so far (failed ones included)."""
        return self._iterations

    @property
    def input_tokens(self) -> int:
        return self._input_tokens

    @property
    def output_tokens(self) -> int:
        return self._output_tokens

    @property
    def cost(self) -> float | None:
        """USD spent on LLM calls so far; ``None`` if a call could not be priced, or none reported usage."""
        with self._lock:
            if self._unpriced or self._priced_calls == 0:
                return None
            return self._cost

    @property
    def tool_calls(self) -> int:
        return self._tool_calls

    @property
    def tool_errors(self) -> int:
        return self._tool_errors

    @property
    def outcome(self) -> str | None:
        """The declared outcome, or ``None`` (then ``completed``/``error``/``cancelled`` is decided at the end)."""
        return self._outcome

    @outcome.setter
    def outcome(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError(
                f"a session outcome must be a non-empty string such as 'max_iterations', not {value!r}"
            )
        self._outcome = value

    # -- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Session:
        self._begin()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Session:
        self._begin()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    def __call__(self, fn: F) -> F:
        """Use as a decorator: every call of ``fn`` runs in a new session with these settings.

        For plain and ``async def`` functions and objects with an async ``__call__``; a generator
        would end its session as soon as it is created, before its body runs.
        """
        if self._state != _NEW:
            raise RuntimeError("only a session that was never entered can decorate a function")
        # Given no id, each call mints its own; given one, every call reuses it.
        session_id = self.session_id if self._given_id else None
        user_id, agent_name = self.user_id, self.agent_name

        if is_async_callable(fn):

            async def async_run(*args: Any, **kwargs: Any) -> Any:
                async with Session(session_id, user_id=user_id, agent_name=agent_name):
                    return await fn(*args, **kwargs)

            return functools.wraps(fn)(async_run)  # type: ignore[return-value]

        def run(*args: Any, **kwargs: Any) -> Any:
            with Session(session_id, user_id=user_id, agent_name=agent_name):
                return fn(*args, **kwargs)

        return functools.wraps(fn)(run)  # type: ignore[return-value]

    def _begin(self) -> None:
        self._open()
        self._tokens = self._enter_context()

    def _finish(self, exc: BaseException | None) -> None:
        if self._state != _ACTIVE:
            return
        self._leave()
        self._close(exc)

    # The steps of _begin/_finish, for integrations whose run is not one `with` block:
    # _open/_close start and end it; _enter_context/_leave_context make it current around each
    # step of a run resumed piecewise (a LangGraph stream, once per item); _leave ends what
    # _begin made current early, for a run that goes on in tasks that copied the context (a
    # streamed OpenAI Agents run), the session ended by _finish when the run ends.

    def _open(self) -> None:
        """Start the run and its span, without making them current."""
        if self._state != _NEW:
            raise RuntimeError(
                "an agentwatch session can be entered only once; create a new agentwatch.session(...) per run"
            )
        self._state = _ACTIVE
        self._start = time.perf_counter()
        try:
            telemetry, _ = self._instruments()
            attributes: dict[str, AttributeValue] = {
                sc.OPERATION_NAME: sc.OP_INVOKE_AGENT,
                sc.CONVERSATION_ID: self.session_id,
            }
            if self.agent_name:
                attributes[sc.AGENT_NAME] = self.agent_name
            if self.user_id:
                attributes[sc.USER_ID] = self.user_id
            name = f"{sc.OP_INVOKE_AGENT} {self.agent_name}" if self.agent_name else sc.OP_INVOKE_AGENT
            self._span = telemetry.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        except Exception:  # noqa: BLE001
            report_internal_error("starting a session span")

    def _enter_context(self) -> tuple[object, object]:
        """Make the session and its span current in this context, until :meth:`_leave_context`."""
        otel_token = None
        if self._span is not None:
            try:
                otel_token = otel_context.attach(trace.set_span_in_context(self._span))
            except Exception:  # noqa: BLE001
                report_internal_error("starting a session span")
        return otel_token, current_session.set(self)

    def _leave_context(self, tokens: tuple[object, object]) -> None:
        otel_token, session_token = tokens
        try:
            current_session.reset(session_token)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - exited in another context than it was entered in
            report_internal_error("leaving a session")
        if otel_token is not None:
            try:
                otel_context.detach(otel_token)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001
                report_internal_error("leaving a session")

    def _leave(self) -> None:
        """Stop being the current session and span of the context :meth:`_begin` entered."""
        tokens, self._tokens = self._tokens, None
        if tokens is not None:
            self._leave_context(tokens)

    def _close(self, exc: BaseException | None) -> None:
        """End the run once: totals on the span, the session metrics."""
        if self._state != _ACTIVE:
            return
        self._state = _ENDED
        duration = time.perf_counter() - self._start
        try:
            self._record(exc, duration)
        except Exception:  # noqa: BLE001
            report_internal_error("ending a session span")
            span = self._span
            if span is not None:
                try:
                    span.end()
                except Exception:  # noqa: BLE001
                    pass

    def _instruments(self) -> tuple[Telemetry, SessionInstruments]:
        """Where the span and metrics go: ``agentwatch.instrument()``'s providers (see
        :class:`FrameworkSession` for an instrumentor's own)."""
        return _telemetry()

    def _record(self, exc: BaseException | None, duration: float) -> None:
        if exc is None:
            etype, outcome = None, sc.OUTCOME_COMPLETED
        elif isinstance(exc, Exception):
            etype, outcome = error_type(exc), sc.OUTCOME_ERROR
        else:
            etype, outcome = None, sc.OUTCOME_CANCELLED
        outcome = self._outcome or outcome
        cost = self.cost
        with self._lock:
            iterations = self._iterations
            tool_calls, tool_errors = self._tool_calls, self._tool_errors
            unpriced = self._unpriced
            inputs = self._input_tokens if self._input_reported else None
            outputs = self._output_tokens if self._output_reported else None

        _, instruments = self._instruments()
        metric_attrs: dict[str, AttributeValue] = {sc.SESSION_OUTCOME: outcome}
        if self.agent_name:
            metric_attrs[sc.AGENT_NAME] = self.agent_name
        instruments.duration.record(duration, metric_attrs)
        instruments.iterations.record(iterations, metric_attrs)
        if cost is not None:
            instruments.cost.record(cost, metric_attrs)
        instruments.count.add(1, metric_attrs)

        span = self._span
        if span is None:
            return
        if span.is_recording():
            out: dict[str, AttributeValue] = {
                sc.SESSION_OUTCOME: outcome,
                sc.SESSION_ITERATIONS: iterations,
                sc.SESSION_TOOL_CALLS: tool_calls,
                sc.SESSION_TOOL_ERRORS: tool_errors,
            }
            if inputs is not None:
                out[sc.USAGE_INPUT_TOKENS] = inputs
            if outputs is not None:
                out[sc.USAGE_OUTPUT_TOKENS] = outputs
            put_cost(out, cost, unpriced)
            if etype is not None:
                out[sc.ERROR_TYPE] = etype
            span.set_attributes(out)
            if etype is not None:
                span.set_status(Status(StatusCode.ERROR))
        span.end()


class FrameworkSession(Session):
    """A session an instrumentor opens for a framework's run (a LangGraph graph run, an OpenAI
    Agents ``Runner`` run): it reports to that instrumentor's providers, given once at instrument
    time, rather than to ``agentwatch.instrument()``'s."""

    __slots__ = ("_signals",)

    def __init__(
        self,
        signals: tuple[Telemetry, SessionInstruments],
        session_id: str | None = None,
        *,
        agent_name: str | None = None,
    ) -> None:
        super().__init__(session_id, agent_name=agent_name)
        self._signals = signals

    def _instruments(self) -> tuple[Telemetry, SessionInstruments]:
        return self._signals


def session(
    session_id: str | None = None, *, user_id: str | None = None, agent_name: str | None = None
) -> Session:
    """Open an agent session: ``with``, ``async with`` or as a decorator.

    ``session_id`` becomes ``gen_ai.conversation.id`` on the ``invoke_agent`` span and on every LLM
    and tool span inside it (a UUID4 is generated when omitted, per run for a decorator);
    ``user_id`` becomes ``user.id``; ``agent_name`` names the span (``invoke_agent {agent_name}``)
    and labels the session metrics. See :class:`Session` for the live totals and outcomes.
    """
    return Session(session_id, user_id=user_id, agent_name=agent_name)
