"""One tool call: its ``execute_tool`` span, its duration metric, its log record, its session totals.

Every tool integration (``@tool``, :class:`~agentwatch.ToolRegistry`, ``instrument_registry``,
the MCP and LangChain instrumentors) runs its calls through :func:`run_sync` / :func:`run_async`,
so the conventions are applied here once:

* span ``execute_tool {gen_ai.tool.name}`` (INTERNAL), started before a resilience policy may
  short-circuit the call and ended after its last attempt, so it sees every retry;
* histogram ``gen_ai.execute_tool.duration`` with ``gen_ai.operation.name``, ``gen_ai.tool.name``
  and, on failure only, ``error.type`` (the same value as on the span);
* a cancelled call (``asyncio.CancelledError``, ``KeyboardInterrupt``: any ``BaseException`` that
  is not an ``Exception``) is ended and re-raised, but is no failure: no ``error.type``, no ERROR
  status, not a session tool error, as for LLM calls;
* one record on the stdlib logger ``agentwatch.tool_calls`` whose fields are record attributes;
* the call and its failure counted in the current :func:`agentwatch.session`.

Argument values and results are recorded only with content capture on; otherwise only argument
names and the result size in bytes. A fault in this module is reported through
``report_internal_error`` and never changes what the tool returns or raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import (
    NO_SPAN_CONTEXT,
    instrumentation_enabled,
    renew_locks_at_fork,
    report_internal_error,
)
from agentwatch._telemetry._context import SessionSink, current_session
from agentwatch._telemetry._core import Telemetry, default_telemetry
from agentwatch._telemetry._errors import describe_error, error_type
from agentwatch._telemetry._instruments import DURATION_BUCKETS
from agentwatch.resilience import (
    BulkheadFullError,
    CircuitOpenError,
    InvalidArgumentsError,
    Pipeline,
    RateLimitedError,
    ToolDisabledError,
    ToolTimeoutError,
    ToolUnavailable,
)
from agentwatch.resilience._telemetry import current_telemetry
from agentwatch.tools._content import argument_keys, render, to_json

__all__ = [
    "LOGGER_NAME",
    "OTHER_TOOL",
    "ToolCall",
    "ToolSpec",
    "ToolTelemetry",
    "default_tool_telemetry",
    "run_async",
    "run_sync",
]


R = TypeVar("R")

LOGGER_NAME = "agentwatch.tool_calls"
OTHER_TOOL = "_OTHER"
"""``gen_ai.tool.name`` on the metric of a call to a tool the registry does not know: the name
comes from model output, so it must not become a metric dimension."""

VALIDATION_FIELDS = "agentwatch.validation.fields"

_log = logging.getLogger(LOGGER_NAME)
_MISSING: Any = object()
# error.type values of a call the resilience policy stopped; any other degradation reason is a
# failure category and the call's own exception names the error.
_POLICY_STOPS = frozenset(
    cls.error_type
    for cls in (CircuitOpenError, BulkheadFullError, ToolTimeoutError, ToolDisabledError, RateLimitedError)
)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What an integration knows about a tool before calling it.

    ``result_error`` turns a returned value into an ``error.type``
    when the tool reports failure in its result (MCP ``isError``). ``present`` maps the result to
    what the model reads, for sizes and captured content (LangChain's ``ToolMessage.content``).
    """

    name: str
    description: str | None = None
    tool_type: str = sc.TOOL_TYPE_FUNCTION
    error_typer: Callable[[BaseException], str] = error_type
    result_error: Callable[[Any], str | None] | None = None
    present: Callable[[Any], object] | None = None


class ToolTelemetry:
    """The tracer, settings and duration histogram tool calls report to; built once per provider set."""

    __slots__ = ("duration", "settings", "tracer")

    def __init__(self, telemetry: Telemetry) -> None:
        self.tracer = telemetry.tracer
        self.settings = telemetry.settings
        self.duration = telemetry.meter.create_histogram(
            sc.METRIC_EXECUTE_TOOL_DURATION,
            unit="s",
            description="Duration of tool executions, retries and waits of a resilience policy included.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )


_default_lock = threading.Lock()
renew_locks_at_fork(globals(), "_default_lock")
_default_cache: tuple[Telemetry, ToolTelemetry] | None = None


def default_tool_telemetry() -> ToolTelemetry:
    """The telemetry of agentwatch's own tools: the providers ``agentwatch.instrument()`` was given."""
    global _default_cache
    telemetry = default_telemetry("agentwatch.tools")
    cached = _default_cache
    if cached is not None and cached[0] is telemetry:
        return cached[1]
    with _default_lock:
        cached = _default_cache
        if cached is None or cached[0] is not telemetry:
            cached = (telemetry, ToolTelemetry(telemetry))
            _default_cache = cached
        return cached[1]


class ToolCall:
    """One execution of one tool, from before its policy to after its last attempt. Ended once."""

    __slots__ = (
        "_ended",
        "_parent",
        "_start",
        "_token",
        "arguments",
        "call_id",
        "degraded_error",
        "invalid",
        "keys",
        "last_error",
        "metric_name",
        "session",
        "span",
        "spec",
        "telemetry",
    )

    def __init__(
        self,
        telemetry: ToolTelemetry,
        spec: ToolSpec,
        *,
        arguments: object,
        call_id: str | None,
        attributes: Mapping[str, AttributeValue] | None = None,
        metric_name: str | None = None,
        start_time: int | None = None,
    ) -> None:
        """``start_time`` (ns since the epoch) records a call observed only once it is over, such
        as an agent framework's handoff, from when it really started."""
        self.telemetry = telemetry
        self.spec = spec
        self.arguments = arguments
        self.call_id = call_id
        self.metric_name = metric_name or spec.name
        self.last_error: BaseException | None = None
        self.degraded_error: str | None = None
        # Set by an integration whose framework validated the arguments itself (LangChain).
        self.invalid: InvalidArgumentsError | None = None
        self._ended = False
        self._token: object = None
        self._parent: otel_context.Context | None = None
        self.session: SessionSink | None = current_session.get()
        self.keys = argument_keys(arguments)

        attrs: dict[str, AttributeValue] = {
            sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL,
            sc.TOOL_NAME: spec.name,
            sc.TOOL_TYPE: spec.tool_type,
        }
        if spec.description:
            attrs[sc.TOOL_DESCRIPTION] = spec.description
        if call_id:
            attrs[sc.TOOL_CALL_ID] = call_id
        if self.keys is not None:
            attrs[sc.TOOL_ARGUMENT_KEYS] = self.keys
        session = self.session
        if session is not None:
            attrs[sc.CONVERSATION_ID] = session.conversation_id
            agent_name = getattr(session, "agent_name", None)
            if agent_name:
                attrs[sc.AGENT_NAME] = agent_name
            user_id = getattr(session, "user_id", None)
            if user_id:
                attrs[sc.USER_ID] = user_id
        if attributes:
            attrs.update(attributes)
        try:
            span = telemetry.tracer.start_span(
                f"{sc.OP_EXECUTE_TOOL} {spec.name}",
                kind=SpanKind.INTERNAL,
                attributes=attrs,
                start_time=start_time,
            )
        except Exception:  # noqa: BLE001 - a sampler or span processor that raises
            # The call is still measured, logged and counted in its session, without a span.
            report_internal_error("starting an execute_tool span")
            span = trace.INVALID_SPAN
        self.span: Span = span
        # Set after the start so that a sampled-out call never pays for encoding its arguments.
        if telemetry.settings.capture.span and arguments is not None and span.is_recording():
            text = to_json(arguments)
            if text is not None:
                span.set_attribute(sc.TOOL_CALL_ARGUMENTS, text)
        self._start = time.perf_counter()
        if start_time is not None:
            self._start -= max(0.0, (time.time_ns() - start_time) / 1e9)

    # -- context ---------------------------------------------------------------------------

    def activate(self) -> None:
        """Make the span current, for child spans, propagation headers and log correlation."""
        parent = self._parent = otel_context.get_current()
        self._token = otel_context.attach(trace.set_span_in_context(self.span, parent))

    def deactivate(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001
                report_internal_error("detaching an execute_tool context")

    # -- outcome ---------------------------------------------------------------------------

    def degraded(self, reason: str, error_type: str | None = None) -> None:
        """The policy returned a degradation result (an optional tool that could not run)."""
        last = self.last_error
        if reason in _POLICY_STOPS:
            self.degraded_error = reason
        elif last is not None:
            self.degraded_error = self.spec.error_typer(last)
        else:
            # Shared from an identical call in flight: that call's failure names the error.
            self.degraded_error = error_type or reason

    def finish(self, result: object) -> None:
        """End a call that returned ``result`` (possibly a failure reported in the result)."""
        etype = self.degraded_error
        if etype is None and self.spec.result_error is not None:
            try:
                etype = self.spec.result_error(result)
            except Exception:  # noqa: BLE001
                report_internal_error("reading a tool result's error flag")
        self.end(result, error_type=etype)

    def end(
        self, result: object = _MISSING, error: BaseException | None = None, *, error_type: str | None = None
    ) -> None:
        """Record the call once; later calls do nothing. Never raises."""
        if self._ended:
            return
        self._ended = True
        try:
            self._end(result, error, error_type)
        except Exception:  # noqa: BLE001 - a telemetry fault must not reach the app
            report_internal_error("ending an execute_tool span")
            try:
                self.span.end()
            except Exception:  # noqa: BLE001
                pass

    def _end(self, result: object, error: BaseException | None, etype: str | None) -> None:
        duration = time.perf_counter() - self._start
        spec = self.spec
        settings = self.telemetry.settings
        # Only an Exception is a failure: a cancelled call (CancelledError, KeyboardInterrupt)
        # says nothing about the tool's health, as for LLM calls and the resilience classifier.
        cancelled = error is not None and not isinstance(error, Exception)
        invalid = error if isinstance(error, InvalidArgumentsError) else self.invalid
        if invalid is not None and not cancelled:
            etype = InvalidArgumentsError.error_type
            self._rejected(invalid)
        if etype is None and error is not None and not cancelled:
            etype = spec.error_typer(error)

        metric_attrs = _metric_attributes(self.metric_name)
        if etype is not None:
            metric_attrs = {**metric_attrs, sc.ERROR_TYPE: etype}
        # Recorded in the caller's context, as an inference call's metrics are: with the tool's
        # own span current the SDK would also sample an exemplar of it on every call.
        self.telemetry.duration.record(duration, metric_attrs, context=self._parent or NO_SPAN_CONTEXT)

        session = self.session
        record = getattr(session, "record_tool_call", None)
        if record is not None:
            try:
                record(failed=etype is not None)
            except Exception:  # noqa: BLE001
                report_internal_error("session tool accounting")

        span = self.span
        recording = span.is_recording()
        logging_on = _log.isEnabledFor(logging.INFO)
        text: str | None = None
        size: int | None = None
        if result is not _MISSING and (recording or logging_on):
            shown = spec.present(result) if spec.present is not None else result
            wanted = (recording and settings.capture.span) or (logging_on and settings.capture.event)
            text, size = render(shown, text=wanted)

        if recording:
            out: dict[str, AttributeValue] = {}
            if size is not None:
                out[sc.TOOL_RESULT_BYTES] = size
            if text is not None and settings.capture.span:
                out[sc.TOOL_CALL_RESULT] = text
            if etype is not None:
                out[sc.ERROR_TYPE] = etype
            if out:
                span.set_attributes(out)
            if etype is not None:
                span.set_status(Status(StatusCode.ERROR, self._describe(error, etype)))
        if logging_on:
            self._log(duration, etype, size, text, cancelled)
        span.end()

    def _rejected(self, invalid: InvalidArgumentsError) -> None:
        """The validation decision: a span event naming the bad fields (never their values) and
        a point of ``agentwatch.resilience.events``, like every policy decision."""
        try:
            current_telemetry().event(
                self.span,
                "arguments_invalid",
                "validation",
                kind="tool",
                subject=self.metric_name,
                error_type=InvalidArgumentsError.error_type,
                attributes={VALIDATION_FIELDS: list(invalid.fields)},
            )
        except Exception:  # noqa: BLE001
            report_internal_error("recording a validation decision")

    def _describe(self, error: BaseException | None, etype: str) -> str | None:
        invalid = error if isinstance(error, InvalidArgumentsError) else self.invalid
        if invalid is not None and not self.telemetry.settings.capture.enabled:
            return str(invalid)  # field names and kinds of problems only
        # Exception messages of tools (and MCP servers' JSON-RPC error messages) may quote
        # argument values: with capture off the span has error.type and no description.
        if error is None or not self.telemetry.settings.capture.span:
            return None
        return describe_error(error, capture=True, etype=etype)

    def _log(
        self, duration: float, etype: str | None, size: int | None, text: str | None, cancelled: bool
    ) -> None:
        span_context = self.span.get_span_context()
        valid = span_context.is_valid
        session = self.session
        duration_ms = round(duration * 1000.0, 3)
        extra: dict[str, object] = {
            "tool": self.spec.name,
            "tool_call_id": self.call_id,
            "session_id": session.conversation_id if session is not None else None,
            "user_id": getattr(session, "user_id", None),
            "agent_name": getattr(session, "agent_name", None),
            "success": etype is None and not cancelled,
            "error_type": etype,
            "duration_ms": duration_ms,
            "result_bytes": size,
            "argument_keys": self.keys,
            "trace_id": format(span_context.trace_id, "032x") if valid else None,
            "span_id": format(span_context.span_id, "016x") if valid else None,
        }
        if self.telemetry.settings.capture.event:
            extra["arguments"] = to_json(self.arguments) if self.arguments is not None else None
            extra["result"] = text
        if cancelled:
            _log.info("tool call %s was cancelled after %.1f ms", self.spec.name, duration_ms, extra=extra)
        elif etype is None:
            _log.info("tool call %s succeeded in %.1f ms", self.spec.name, duration_ms, extra=extra)
        else:
            _log.info("tool call %s failed (%s) in %.1f ms", self.spec.name, etype, duration_ms, extra=extra)


_METRIC_ATTRIBUTES_CACHE_SIZE = 1024
_metric_attribute_cache: dict[str, dict[str, AttributeValue]] = {}


def _metric_attributes(tool: str) -> dict[str, AttributeValue]:
    """The duration metric's attributes of a successful call of ``tool``: built once per tool
    and shared (the SDK copies attributes when it records)."""
    attrs = _metric_attribute_cache.get(tool)
    if attrs is None:
        if len(_metric_attribute_cache) >= _METRIC_ATTRIBUTES_CACHE_SIZE:
            _metric_attribute_cache.clear()  # bounded: tool names may come from model output
        attrs = _metric_attribute_cache[tool] = {sc.OPERATION_NAME: sc.OP_EXECUTE_TOOL, sc.TOOL_NAME: tool}
    return attrs


def _start(
    telemetry: ToolTelemetry,
    spec: ToolSpec,
    arguments: object,
    call_id: str | None,
    attributes: Mapping[str, AttributeValue] | None,
    metric_name: str | None,
    on_start: Callable[[ToolCall], None] | None,
) -> ToolCall | None:
    if not instrumentation_enabled():
        return None
    try:
        call = ToolCall(
            telemetry,
            spec,
            arguments=arguments,
            call_id=call_id,
            attributes=attributes,
            metric_name=metric_name,
        )
    except Exception:  # noqa: BLE001
        report_internal_error("starting an execute_tool span")
        return None
    call.activate()
    if on_start is not None:
        try:
            on_start(call)
        except Exception:  # noqa: BLE001
            report_internal_error("starting an execute_tool span")
    return call


# -- the resilience pipeline: the one place a policy runs a tool call ----------------------------


def _through_policy_sync(
    pipeline: Pipeline | None,
    fn: Callable[[], R],
    call: ToolCall | None,
    cache_arguments: Mapping[str, object] | None,
) -> R:
    if pipeline is None:
        return fn()

    def attempt(_ctx: object) -> R:
        try:
            return fn()
        except Exception as exc:
            if call is not None:
                call.last_error = exc
            raise

    result = pipeline.call(attempt, span=call.span if call is not None else None, arguments=cache_arguments)
    _note_degradation(result, call)
    # A ToolUnavailable stands in for the tool's result by contract.
    return result  # type: ignore[return-value]


async def _through_policy_async(
    pipeline: Pipeline | None,
    fn: Callable[[], Awaitable[R]],
    call: ToolCall | None,
    cache_arguments: Mapping[str, object] | None,
) -> R:
    if pipeline is None:
        return await fn()

    async def attempt(_ctx: object) -> R:
        try:
            return await fn()
        except Exception as exc:
            if call is not None:
                call.last_error = exc
            raise

    result = await pipeline.acall(
        attempt, span=call.span if call is not None else None, arguments=cache_arguments
    )
    _note_degradation(result, call)
    return result  # type: ignore[return-value]


def _note_degradation(result: object, call: ToolCall | None) -> None:
    if call is None:
        return
    if isinstance(result, ToolUnavailable):
        try:
            call.degraded(result.reason, result.error_type)
        except Exception:  # noqa: BLE001
            report_internal_error("reading a degradation result")


# -- entry points -------------------------------------------------------------------------------


def run_sync(
    telemetry: ToolTelemetry,
    spec: ToolSpec,
    fn: Callable[[], R],
    *,
    arguments: object = None,
    call_id: str | None = None,
    pipeline: Pipeline | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    metric_name: str | None = None,
    on_start: Callable[[ToolCall], None] | None = None,
    cache_arguments: Mapping[str, object] | None = None,
) -> R:
    """Run ``fn()`` as one tool call (through ``pipeline`` if given); return or raise what it does.

    ``arguments`` are recorded (names always, values with content capture), not passed: ``fn``
    closes over them. ``attributes`` are added to the span at its start; ``metric_name`` replaces
    the tool name on the metric; ``on_start`` receives the call once its span is current;
    ``cache_arguments`` (canonical: by name, defaults filled in) key the policy's cache.
    """
    call = _start(telemetry, spec, arguments, call_id, attributes, metric_name, on_start)
    if call is None:
        return _through_policy_sync(pipeline, fn, None, cache_arguments)
    try:
        result = _through_policy_sync(pipeline, fn, call, cache_arguments)
    except BaseException as exc:
        call.end(error=exc)
        raise
    else:
        call.finish(result)
    finally:
        call.deactivate()
    return result


async def run_async(
    telemetry: ToolTelemetry,
    spec: ToolSpec,
    fn: Callable[[], Awaitable[R]],
    *,
    arguments: object = None,
    call_id: str | None = None,
    pipeline: Pipeline | None = None,
    attributes: Mapping[str, AttributeValue] | None = None,
    metric_name: str | None = None,
    on_start: Callable[[ToolCall], None] | None = None,
    cache_arguments: Mapping[str, object] | None = None,
) -> R:
    """Await ``fn()`` as one tool call (through ``pipeline`` if given); return or raise what it does."""
    call = _start(telemetry, spec, arguments, call_id, attributes, metric_name, on_start)
    if call is None:
        return await _through_policy_async(pipeline, fn, None, cache_arguments)
    try:
        result = await _through_policy_async(pipeline, fn, call, cache_arguments)
    except BaseException as exc:
        call.end(error=exc)
        raise
    else:
        call.finish(result)
    finally:
        call.deactivate()
    return result
