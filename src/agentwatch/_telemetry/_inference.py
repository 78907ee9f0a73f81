"""One instrumented inference call: its span, its metrics, its contribution to the session.

The provider instrumentors translate SDK requests, responses and stream chunks into the fields
of :class:`InferenceCall`; everything that follows the conventions (names, units, which
attribute goes where, content capture, cost) happens here once for every provider.

Hot-path rules: the span starts with every attribute known from the request in one dict (so a
sampler sees them and no per-attribute calls follow); metric attribute sets are built once per
model, server and response model and shared by the calls that have them; content is converted
only when capture is on; span-only work is skipped when the span is not recording, but metrics
are always recorded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._context import SessionSink, current_call, current_session, framework_model_call
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._errors import client_secrets, describe_error, error_type, is_code
from agentwatch._telemetry._pricing import put_cost
from agentwatch._telemetry._usage import Usage

__all__ = ["Content", "InferenceCall"]

Content = list[dict[str, Any]]
"""Messages in the semconv v1.41 JSON message schema."""

_NO_USAGE = Usage()

_MetricSets = tuple[
    dict[str, AttributeValue], dict[str, AttributeValue], dict[str, AttributeValue], dict[str, AttributeValue]
]
"""(cost and chunk metrics, duration, input tokens, output tokens) attributes."""
_METRIC_KEYS = (sc.REQUEST_MODEL, sc.SERVER_ADDRESS, sc.SERVER_PORT, sc.RESPONSE_MODEL)
_METRIC_SET_CACHE_SIZE = 1024
_metric_set_cache: dict[tuple[Any, ...], _MetricSets] = {}


class InferenceCall:
    """Created when the SDK method is called; ended exactly once by :meth:`end`."""

    __slots__ = (
        "_ended",
        "_faulted",
        "_owns_span",
        "_start_ns",
        "_start_perf",
        "_tokens",
        "after_end",
        "answered_by",
        "attributes",
        "before_end",
        "chunk_gaps",
        "client",
        "error_typer",
        "finish_reasons",
        "first_chunk_at",
        "input_messages",
        "last_chunk_at",
        "metric_attributes",
        "operation",
        "output_messages",
        "provider",
        "request_model",
        "response_attributes",
        "response_id",
        "response_model",
        "session",
        "span",
        "stream",
        "system_instructions",
        "telemetry",
        "tool_definitions",
        "usage",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        *,
        operation: str,
        provider: str,
        request_model: str | None,
        server_address: str | None,
        server_port: int | None,
        attributes: dict[str, AttributeValue],
        stream: bool = False,
        owns_span: bool = True,
        started: tuple[float, int] | None = None,
    ) -> None:
        """``started`` is ``(time.perf_counter(), time.time_ns())`` of a call that began before
        this object was made (a framework call known to need a span only once it returned)."""
        self.telemetry = telemetry
        self.operation = operation
        self.provider = provider
        self.request_model = request_model
        self.stream = stream
        self.response_id: str | None = None
        self.response_model: str | None = None
        # The model of the request that answered when a policy's fallback sent it to another
        # model than the requested one: the model that answered when the response does not say
        # (Bedrock's Converse), and the one that is billed (a Bedrock model id names its price).
        self.answered_by: str | None = None
        self.finish_reasons: list[str] | None = None
        self.usage = _NO_USAGE
        self.response_attributes: dict[str, AttributeValue] | None = None
        # Response attributes a provider's conventions also put on the duration and token-usage
        # metrics (v1.41 openai.md: the service tier and the system fingerprint).
        self.metric_attributes: dict[str, AttributeValue] | None = None
        self.first_chunk_at: float | None = None
        self.last_chunk_at: float | None = None
        self.chunk_gaps: list[float] | None = None
        self.input_messages: Content | None = None
        self.system_instructions: Content | None = None
        self.tool_definitions: Content | None = None
        self.output_messages: Content | None = None
        # Set by stream handlers that accumulate content: turns the accumulation into output
        # messages once, at the end, rather than on every chunk.
        self.before_end: Callable[[InferenceCall], None] | None = None
        # Set by a resilience policy whose rate limit settles its token estimate with the usage
        # the call reported (known only here for a stream); runs once, after the call ended.
        self.after_end: Callable[[InferenceCall], None] | None = None
        self._ended = False
        self._faulted = False
        self._tokens: tuple[object, object] | None = None
        self._owns_span = owns_span
        # Where the SDK owns the span (Anthropic's native tracing) its error.type convention is
        # used for the metric too, so span and metric agree.
        self.error_typer: Callable[[BaseException], str] = error_type
        # The SDK client that made the call: the key it holds is scrubbed from error descriptions.
        self.client: object = None

        attributes[sc.OPERATION_NAME] = operation
        attributes[sc.PROVIDER_NAME] = provider
        if request_model:
            attributes[sc.REQUEST_MODEL] = request_model
        if server_address:
            attributes[sc.SERVER_ADDRESS] = server_address
        if server_port:
            attributes[sc.SERVER_PORT] = server_port
        if stream:
            attributes[sc.REQUEST_STREAM] = True
        self.session: SessionSink | None = current_session.get()
        if self.session is not None:
            if sc.CONVERSATION_ID not in attributes:
                attributes[sc.CONVERSATION_ID] = self.session.conversation_id
            if self.session.user_id:
                attributes[sc.USER_ID] = self.session.user_id
        self.attributes = attributes
        framework = framework_model_call.get()
        if framework is not None:
            framework.covered = True

        self._start_perf, self._start_ns = started or (time.perf_counter(), time.time_ns())
        self.span: Span | None = None
        if owns_span:
            try:
                self.span = telemetry.tracer.start_span(
                    self.span_name, kind=SpanKind.CLIENT, attributes=attributes, start_time=self._start_ns
                )
            except Exception:  # noqa: BLE001 - a sampler or span processor that raises
                # Metrics and session totals do not depend on the span: the call is still measured.
                self.fault("starting an inference span")

    def fault(self, site: str) -> None:
        """Report the exception being handled as this call's agentwatch fault (from an ``except``).

        Only a call's first fault is reported: one says its telemetry is incomplete, and a reader
        that trips on a malformed stream would otherwise report every chunk.
        """
        if not self._faulted:
            self._faulted = True
            report_internal_error(site)

    @property
    def span_name(self) -> str:
        return f"{self.operation} {self.request_model}" if self.request_model else self.operation

    @property
    def capture_content(self) -> bool:
        """Whether content is read at all: for the event, or for a span that is recorded."""
        capture = self.telemetry.settings.capture
        if capture.event:
            return True
        if not capture.span:
            return False
        # A span the SDK makes itself (Anthropic) is only known later: read, in case.
        span = self.span
        return span is None or span.is_recording()

    # -- context ---------------------------------------------------------------------------

    def activate(self) -> None:
        """Make the call's span current (for propagation and child spans) until :meth:`deactivate`."""
        self._tokens = self.enter()

    def deactivate(self) -> None:
        tokens = self._tokens
        if tokens is not None:
            self._tokens = None
            self.leave(tokens)

    def enter(self) -> tuple[object, object]:
        """Make the call current for a while; :meth:`leave` with the result undoes it. Unlike
        :meth:`activate` it keeps nothing on the call, so it nests (a stream's first read)."""
        ctx = trace.set_span_in_context(self.span) if self.span is not None else otel_context.get_current()
        return otel_context.attach(ctx), current_call.set(self)

    def leave(self, tokens: tuple[object, object]) -> None:
        current_call.reset(tokens[1])  # type: ignore[arg-type]
        otel_context.detach(tokens[0])  # type: ignore[arg-type]

    def adopt_span(self, span: Span) -> None:
        """Enrich a span the SDK made itself (Anthropic's native tracing) instead of owning one."""
        self.span = span
        if span.is_recording():
            span.update_name(self.span_name)
            span.set_attributes(self.attributes)

    # -- streams ---------------------------------------------------------------------------

    def chunk_received(self) -> None:
        now = time.perf_counter()
        last = self.last_chunk_at
        if last is None:
            self.first_chunk_at = now
        else:
            # Recorded into the histogram at the end: one SDK record costs ~10 µs, which would
            # dominate the per-chunk path (see benchmarks/).
            gaps = self.chunk_gaps
            if gaps is None:
                self.chunk_gaps = [now - last]
            else:
                gaps.append(now - last)
        self.last_chunk_at = now

    # -- end ---------------------------------------------------------------------------------

    def end(
        self,
        error: BaseException | None = None,
        *,
        outcome: str | None = None,
        at_last_activity: bool = False,
    ) -> None:
        """Finish the call once; later calls do nothing. Never raises."""
        if self._ended:
            return
        self._ended = True
        try:
            self._end(error, outcome, at_last_activity)
        except Exception:  # noqa: BLE001 - a telemetry fault must not reach the app
            self.fault("ending an inference span")
            span = self.span
            if span is not None and self._owns_span and span.is_recording():
                span.end()
        after = self.after_end
        if after is not None:
            try:
                after(self)
            except Exception:  # noqa: BLE001
                self.fault("settling a rate-limit estimate")

    def _end(self, error: BaseException | None, outcome: str | None, at_last_activity: bool) -> None:
        now = time.perf_counter()
        if self.before_end is not None:
            self.before_end(self)
        if at_last_activity and self.last_chunk_at is not None:
            # An abandoned stream is noticed only when it is garbage-collected; its operation
            # really ended at the last chunk it delivered.
            now = self.last_chunk_at
        duration = now - self._start_perf
        tel = self.telemetry
        inst = tel.instruments
        usage = self.usage

        metric_attrs, response_attrs, input_attrs, output_attrs = self._metric_sets()
        etype = None
        if error is not None and isinstance(error, Exception):
            etype = self._error_type(error)
            inst.duration.record(duration, {**response_attrs, sc.ERROR_TYPE: etype})
        else:
            inst.duration.record(duration, response_attrs)

        if usage.input_tokens is not None:
            inst.token_usage.record(usage.input_tokens, input_attrs)
        if usage.output_tokens is not None:
            inst.token_usage.record(usage.output_tokens, output_attrs)

        cost: float | None = None
        unpriced = False
        if usage.reported:
            cost = tel.pricer.cost(self.provider, self._priced_models(), usage)
            if cost is None:
                unpriced = True
            else:
                inst.cost.record(cost, metric_attrs)

        ttfc: float | None = None
        if self.first_chunk_at is not None:
            ttfc = self.first_chunk_at - self._start_perf
            inst.time_to_first_chunk.record(ttfc, metric_attrs)
            if self.chunk_gaps and tel.settings.time_per_output_chunk:
                record = inst.time_per_output_chunk.record
                for gap in self.chunk_gaps:
                    record(gap, metric_attrs)

        session = self.session
        if session is not None:
            try:
                session.record_inference(usage, cost, priced=not unpriced, failed=etype is not None)
            except Exception:  # noqa: BLE001
                self.fault("session accounting")

        span = self.span
        recording = span is not None and span.is_recording()
        if recording or tel.settings.capture.event:
            response = self._response_attributes(cost, unpriced, ttfc)
            if self.stream and outcome is not None:
                response[sc.STREAM_OUTCOME] = outcome
            # Events are logs: they have their own pipeline, and a span sampled out (or already
            # ended by the SDK that made it) does not drop them.
            if tel.settings.capture.event:
                self._emit_details_event(span, etype, response)
            if recording and span is not None:
                self._write_response(span, response)
        if span is None:
            return
        if recording and etype is not None and error is not None:
            span.set_attribute(sc.ERROR_TYPE, etype)
            description = describe_error(
                error, capture=tel.settings.capture.span, etype=etype, secrets=client_secrets(self.client)
            )
            span.set_status(Status(StatusCode.ERROR, description))
        if self._owns_span:
            if at_last_activity:
                span.end(end_time=self._start_ns + int(duration * 1e9))
            else:
                span.end()

    def _metric_sets(self) -> _MetricSets:
        """The metric attribute sets of this call, shared by every call with the same model,
        server, response model and provider extras (the SDK copies attributes when it records, so
        sharing them is safe); built once per such combination instead of four dicts a call."""
        attrs = self.attributes
        extra = self.metric_attributes
        key = (
            self.operation,
            self.provider,
            attrs.get(sc.REQUEST_MODEL),
            attrs.get(sc.SERVER_ADDRESS),
            attrs.get(sc.SERVER_PORT),
            self.response_model or self.answered_by or None,
            tuple(extra.items()) if extra else None,
        )
        try:
            sets = _metric_set_cache.get(key)
        except TypeError:  # an unhashable extra value (a list): built for this call only
            return self._build_metric_sets(key)
        if sets is None:
            sets = self._build_metric_sets(key)
            if len(_metric_set_cache) >= _METRIC_SET_CACHE_SIZE:
                # Model names come from requests and responses: bounded like the SDK's own
                # attribute sets, rebuilt rather than grown without limit.
                _metric_set_cache.clear()
            _metric_set_cache[key] = sets
        return sets

    def _build_metric_sets(self, key: tuple[Any, ...]) -> _MetricSets:
        metric_attrs: dict[str, AttributeValue] = {
            sc.OPERATION_NAME: self.operation,
            sc.PROVIDER_NAME: self.provider,
        }
        for name, value in zip(_METRIC_KEYS, key[2:6], strict=True):
            if value is not None:
                metric_attrs[name] = value
        # Only the duration and token-usage metrics carry the provider's extra attributes.
        extra = self.metric_attributes
        response_attrs = {**metric_attrs, **extra} if extra else metric_attrs
        return (
            metric_attrs,
            response_attrs,
            {**response_attrs, sc.TOKEN_TYPE: sc.TOKEN_INPUT},
            {**response_attrs, sc.TOKEN_TYPE: sc.TOKEN_OUTPUT},
        )

    def _error_type(self, error: Exception) -> str:
        typer = self.error_typer
        if typer is error_type:
            return typer(error)
        try:
            value = typer(error)
        except Exception:  # noqa: BLE001 - the SDK's convention failed on this error: ours then
            self.fault("reading an error's type")
            return error_type(error)
        # anthropic's convention is the error envelope's "type", which the server chooses: as a
        # metric attribute it must be a short token, not whatever text a server sends.
        return value if isinstance(value, str) and is_code(value) else error_type(error)

    @property
    def owns_span(self) -> bool:
        return self._owns_span

    def _priced_models(self) -> tuple[str | None, str | None]:
        """(the response's model, the model requested of the request that answered) for the pricer."""
        return (self.response_model or self.answered_by, self.answered_by or self.request_model)

    @property
    def ended(self) -> bool:
        return self._ended

    def write_response_to_span(self) -> None:
        """Write what is known of the response now, for a span the SDK ends itself."""
        span = self.span
        if span is None or not span.is_recording():
            return
        if self.before_end is not None:
            self.before_end(self)
        cost = None
        if self.usage.reported:
            cost = self.telemetry.pricer.cost(self.provider, self._priced_models(), self.usage)
        self._write_response(
            span, self._response_attributes(cost, self.usage.reported and cost is None, None)
        )

    def _response_attributes(
        self, cost: float | None, unpriced: bool, ttfc: float | None
    ) -> dict[str, AttributeValue]:
        """What the response adds to the span's attributes; the details event carries the same."""
        out: dict[str, AttributeValue] = {}
        if self.response_id:
            out[sc.RESPONSE_ID] = self.response_id
        response_model = self.response_model or self.answered_by
        if response_model:
            out[sc.RESPONSE_MODEL] = response_model
        if self.finish_reasons:
            out[sc.RESPONSE_FINISH_REASONS] = self.finish_reasons
        usage = self.usage
        if usage.input_tokens is not None:
            out[sc.USAGE_INPUT_TOKENS] = usage.input_tokens
        if usage.output_tokens is not None:
            out[sc.USAGE_OUTPUT_TOKENS] = usage.output_tokens
        if usage.cache_read_tokens is not None:
            out[sc.USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
        if usage.cache_creation_tokens is not None:
            out[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] = usage.cache_creation_tokens
        if usage.reasoning_tokens is not None:
            out[sc.USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
        put_cost(out, cost, unpriced)
        if ttfc is not None:
            out[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = ttfc
        if self.response_attributes:
            out.update(self.response_attributes)
        return out

    def _write_response(self, span: Span, out: dict[str, AttributeValue]) -> None:
        """Set the response attributes (and the content, with span capture) on ``span``; ``out`` is
        the call's own dict, so it is extended in place."""
        if self.telemetry.settings.capture.span:
            if self.input_messages is not None:
                out[sc.INPUT_MESSAGES] = _json(self.input_messages)
            if self.system_instructions:
                out[sc.SYSTEM_INSTRUCTIONS] = _json(self.system_instructions)
            if self.tool_definitions:
                out[sc.TOOL_DEFINITIONS] = _json(self.tool_definitions)
            if self.output_messages is not None:
                out[sc.OUTPUT_MESSAGES] = _json(self.output_messages)
        if out:
            span.set_attributes(out)

    def _emit_details_event(
        self, span: Span | None, etype: str | None, response: dict[str, AttributeValue]
    ) -> None:
        # The conventions: the span's attributes plus the content.
        attributes: dict[str, Any] = {**self.attributes, **response}
        if etype is not None:
            attributes[sc.ERROR_TYPE] = etype
        # On events the conventions require structured values, not JSON strings.
        if self.input_messages is not None:
            attributes[sc.INPUT_MESSAGES] = self.input_messages
        if self.system_instructions:
            attributes[sc.SYSTEM_INSTRUCTIONS] = self.system_instructions
        if self.tool_definitions:
            attributes[sc.TOOL_DEFINITIONS] = self.tool_definitions
        if self.output_messages is not None:
            attributes[sc.OUTPUT_MESSAGES] = self.output_messages
        self.telemetry.event_logger.emit(
            event_name=sc.EVENT_OPERATION_DETAILS,
            attributes=attributes,
            context=trace.set_span_in_context(span) if span is not None else None,
        )


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
