"""The demo's own OpenTelemetry providers: nothing global is set.

* an in-memory metric reader, from which the summary is computed (the SDK's own aggregation, not
  a second bookkeeping);
* a span processor that remembers, per finished session, only its trace id and what happened
  inside it (retries, fallbacks, errors), and keeps the spans of the most interesting session
  only, to draw it at the end;
* with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or a per-signal endpoint) set: the OTLP exporters, which
  read the standard ``OTEL_EXPORTER_OTLP_*`` variables themselves (protocol ``grpc``, as
  ``opentelemetry-instrument`` defaults to, or ``http/protobuf``);
* otherwise (or with an explicit output path): a JSON Lines file of OTLP JSON, one export batch
  per line (``{"resourceSpans": ...}``, ``{"resourceMetrics": ...}``, ``{"resourceLogs": ...}``),
  flushed line by line so an interrupted run leaves only complete lines.

Every exporter is wrapped to count the exports it was asked for and those that failed, so the
summary can say that telemetry did not arrive instead of naming a destination it never reached.
The standard ``OTEL_*`` settings the demo's SDK pieces read are checked first
(:func:`check_settings`): the SDK would only log a warning for a bad value and use its default.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from google.protobuf.message import Message  # type: ignore[import-untyped]
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from agentwatch import _semconv as sc
from agentwatch._cli._spans import SpanView, from_readable, marks_of
from agentwatch._config import otlp_protocol
from agentwatch._errors import ConfigError

__all__ = [
    "DemoTelemetry",
    "ExportCounts",
    "SessionRecord",
    "SessionTracker",
    "check_settings",
    "otlp_endpoint",
    "otlp_protocol",
]

OTLP_ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
)
_R = TypeVar("_R")
_COMPRESSIONS = ("gzip", "deflate", "none")
_SIGNALS = ("traces", "metrics", "logs")
_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})
# What makes a session worth looking at, and how much: the trace named at the end of the run is
# the one with the highest score (the earliest among equals).
_SCORES = {"fallback": 4, "circuit": 3, "error": 3, "retry": 2, "timeout": 2}
# Numeric settings the demo's SDK pieces read (batch processors, periodic metric reader, OTLP
# exporters), with the smallest value that makes sense: the SDK takes ``int()``/``float()`` of
# each and, for a bad one, logs a warning and goes on with its default.
_MILLIS = "a number of milliseconds"
_NUMERIC_SETTINGS: dict[str, tuple[Callable[[str], float], float, str]] = {
    "OTEL_METRIC_EXPORT_INTERVAL": (float, 1, f"{_MILLIS} >= 1"),
    "OTEL_METRIC_EXPORT_TIMEOUT": (float, 0, f"{_MILLIS} >= 0"),
    "OTEL_BSP_SCHEDULE_DELAY": (int, 0, "an integer number of milliseconds >= 0"),
    "OTEL_BSP_EXPORT_TIMEOUT": (int, 0, "an integer number of milliseconds >= 0"),
    "OTEL_BSP_MAX_QUEUE_SIZE": (int, 1, "an integer >= 1"),
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": (int, 1, "an integer >= 1"),
    "OTEL_BLRP_SCHEDULE_DELAY": (int, 0, "an integer number of milliseconds >= 0"),
    "OTEL_BLRP_EXPORT_TIMEOUT": (int, 0, "an integer number of milliseconds >= 0"),
    "OTEL_BLRP_MAX_QUEUE_SIZE": (int, 1, "an integer >= 1"),
    "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE": (int, 1, "an integer >= 1"),
    **{
        name: (float, 0, "a number of seconds >= 0")
        for name in (
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            *(f"OTEL_EXPORTER_OTLP_{s.upper()}_TIMEOUT" for s in _SIGNALS),
        )
    },
}


def check_settings(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` for a standard ``OTEL_*`` setting the demo uses that has a value
    the SDK would ignore, naming the setting and the accepted values."""
    env = os.environ if environ is None else environ
    for name, (parse, minimum, accepted) in _NUMERIC_SETTINGS.items():
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            value = parse(text)
        except ValueError:
            raise ConfigError(name, text, accepted) from None
        if not math.isfinite(value) or value < minimum:
            raise ConfigError(name, text, accepted)
    for signal in _SIGNALS:
        otlp_protocol(signal, env)
        for name in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"):
            text = env.get(name, "").strip()
            if text and text.lower() not in _COMPRESSIONS:
                raise ConfigError(name, text, _COMPRESSIONS)
    for prefix in ("OTEL_BSP", "OTEL_BLRP"):
        queue, batch = (
            env.get(f"{prefix}_MAX_QUEUE_SIZE", "").strip(),
            env.get(f"{prefix}_MAX_EXPORT_BATCH_SIZE", "").strip(),
        )
        if queue and batch and int(batch) > int(queue):
            raise ConfigError(
                f"{prefix}_MAX_EXPORT_BATCH_SIZE", batch, f"an integer <= {prefix}_MAX_QUEUE_SIZE ({queue})"
            )


def otlp_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """Where the traces go over OTLP, or ``None`` when no OTLP endpoint variable is set.

    The SDK's precedence, so that what the demo prints and probes is where the spans go: the
    traces endpoint, else the generic one; with only a metrics or logs endpoint set, traces go to
    the exporter's default.
    """
    env = os.environ if environ is None else environ
    if not any(env.get(name, "").strip() for name in OTLP_ENDPOINT_VARIABLES):
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = env.get(name, "").strip()
        if value:
            return value
    return "http://localhost:4317" if otlp_protocol("traces", env) == "grpc" else "http://localhost:4318"


# ------------------------------------------------------------------------------------------------
# OTLP JSON Lines
# ------------------------------------------------------------------------------------------------


def _hex_ids(value: Any) -> Any:
    """OTLP JSON writes trace and span ids as hex, where the protobuf JSON mapping writes base64."""
    if isinstance(value, dict):
        return {
            key: base64.b64decode(item).hex() if key in _ID_KEYS and isinstance(item, str) else _hex_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def otlp_json(message: Message) -> dict[str, Any]:
    """The OTLP/JSON form of an OTLP protobuf message (lowerCamelCase keys, enums as integers)."""
    return _hex_ids(MessageToDict(message, use_integers_for_enums=True))  # type: ignore[no-any-return]


class JsonlWriter:
    """Appends one JSON object per line; thread-safe (every processor exports from its own thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", encoding="utf-8")
        self.lines = 0

    def write(self, message: Message) -> bool:
        try:
            payload = otlp_json(message)
            if not any(payload.values()):
                return True
            line = json.dumps(payload, separators=(",", ":"))
            with self._lock:
                if self._file is None:
                    return False
                self._file.write(line + "\n")
                # Line by line: an interrupted or killed run leaves complete lines only.
                self._file.flush()
                self.lines += 1
            return True
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class JsonlSpanExporter(SpanExporter):
    def __init__(self, writer: JsonlWriter) -> None:
        self._writer = writer

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        ok = self._writer.write(encode_spans(spans))
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class JsonlMetricExporter(MetricExporter):
    def __init__(self, writer: JsonlWriter) -> None:
        super().__init__()
        self._writer = writer

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        ok = self._writer.write(encode_metrics(metrics_data))
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


class JsonlLogExporter(LogRecordExporter):
    def __init__(self, writer: JsonlWriter) -> None:
        self._writer = writer

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

        ok = self._writer.write(encode_logs(batch))
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ------------------------------------------------------------------------------------------------
# Sessions seen in the spans
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What the demo remembers of one finished session span."""

    trace_id: str  # 32 lowercase hex digits
    session_id: str
    outcome: str
    marks: tuple[str, ...]  # sorted: "error", "fallback", "retry", "circuit", "timeout"

    @property
    def score(self) -> int:
        return sum(_SCORES.get(mark, 0) for mark in self.marks)


@dataclass
class _Tracked:
    best: SessionRecord | None = None
    best_spans: tuple[SpanView, ...] = ()
    records: list[SessionRecord] = field(default_factory=list)


@dataclass
class _OpenTrace:
    marks: set[str] = field(default_factory=set)
    spans: list[SpanView] = field(default_factory=list)


class SessionTracker(SpanProcessor):
    """Remembers, per open session trace, the marks its children left and their spans.

    Children end before their session span, so a trace is complete when its ``invoke_agent`` span
    ends; then only the best candidate's spans (and, with ``keep_all``, one small record per
    session) are kept, so memory stays bounded by the sessions running at once.
    """

    def __init__(self, *, keep_all: bool = False) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, _OpenTrace] = {}
        self._keep_all = keep_all
        self._tracked = _Tracked()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        attributes = span.attributes or {}
        marks = marks_of(span.status.status_code is StatusCode.ERROR, (event.name for event in span.events))
        view = from_readable(span)
        trace_id = context.trace_id
        if attributes.get(sc.OPERATION_NAME) != sc.OP_INVOKE_AGENT:
            if span.parent is not None:
                with self._lock:
                    trace = self._open.setdefault(trace_id, _OpenTrace())
                    trace.marks.update(marks)
                    trace.spans.append(view)
            return
        with self._lock:
            trace = self._open.pop(trace_id, _OpenTrace())
            marks |= trace.marks
            record = SessionRecord(
                trace_id=format(trace_id, "032x"),
                session_id=str(attributes.get(sc.CONVERSATION_ID, "")),
                outcome=str(attributes.get(sc.SESSION_OUTCOME, "")),
                marks=tuple(sorted(marks)),
            )
            tracked = self._tracked
            if record.score and (tracked.best is None or record.score > tracked.best.score):
                tracked.best = record
                tracked.best_spans = (view, *trace.spans)
            if self._keep_all:
                tracked.records.append(record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    @property
    def interesting(self) -> SessionRecord | None:
        return self._tracked.best

    @property
    def interesting_spans(self) -> tuple[SpanView, ...]:
        """Every span of the interesting session's trace (the session span first)."""
        with self._lock:
            return self._tracked.best_spans

    @property
    def records(self) -> tuple[SessionRecord, ...]:
        with self._lock:
            return tuple(self._tracked.records)


# ------------------------------------------------------------------------------------------------
# Export accounting
# ------------------------------------------------------------------------------------------------


@dataclass
class ExportCounts:
    """Exports of one signal to one destination: how many were attempted and how many failed."""

    exports: int = 0
    failed: int = 0
    items: int = 0  # spans, metric data points or log records handed to the exporter
    items_failed: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "exports": self.exports,
            "failed": self.failed,
            "items": self.items,
            "items_failed": self.items_failed,
        }


class _Counter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = ExportCounts()

    def record(self, ok: bool, items: int) -> None:
        with self._lock:
            self.counts.exports += 1
            self.counts.items += items
            if not ok:
                self.counts.failed += 1
                self.counts.items_failed += items

    def run(self, export: Callable[[], _R], success: _R, items: int) -> _R:
        try:
            result = export()
        except Exception:
            self.record(False, items)
            raise
        self.record(result is success, items)
        return result


class _CountedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, counter: _Counter) -> None:
        self._inner = inner
        self._counter = counter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._counter.run(lambda: self._inner.export(spans), SpanExportResult.SUCCESS, len(spans))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _points(metrics_data: MetricsData) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )


class _CountedMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, counter: _Counter) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._counter = counter

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        return self._counter.run(
            lambda: self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs),
            MetricExportResult.SUCCESS,
            _points(metrics_data),
        )

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class _CountedLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, counter: _Counter) -> None:
        self._inner = inner
        self._counter = counter

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        return self._counter.run(lambda: self._inner.export(batch), LogRecordExportResult.SUCCESS, len(batch))

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


# ------------------------------------------------------------------------------------------------
# Providers
# ------------------------------------------------------------------------------------------------


def _resource(service_name: str) -> Resource:
    # The standard variables win: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES name the service if set.
    attributes: dict[str, str] = {}
    env_attributes = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in env_attributes:
        attributes["service.name"] = service_name
    resource = Resource.create(attributes)
    if "service.instance.id=" not in env_attributes:
        # Readable in Prometheus' `instance` label (the SDK's default is a bare UUID).
        name = str(resource.attributes.get("service.name", service_name))
        resource = resource.merge(Resource({"service.instance.id": f"{name}-{uuid.uuid4().hex[:8]}"}))
    return resource


def _interval(variable: str, default_millis: int) -> int | None:
    # An explicit standard variable wins (the SDK reads it when given None).
    return None if os.environ.get(variable) else default_millis


class DemoTelemetry:
    """Builds and owns the providers of one run; :meth:`close` flushes and shuts them down."""

    def __init__(
        self,
        *,
        service_name: str,
        output_path: Path | None,
        use_otlp: bool,
        keep_sessions: bool = False,
        metric_export_millis: int | None = None,
    ) -> None:
        self.resource = _resource(service_name)
        self.otlp_endpoint = otlp_endpoint() if use_otlp else None
        if use_otlp and self.otlp_endpoint is None:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_ENDPOINT", None, "an OTLP endpoint such as http://localhost:4317"
            )
        span_exporters: list[SpanExporter] = []
        metric_exporters: list[MetricExporter] = []
        log_exporters: list[LogRecordExporter] = []
        # destination ("otlp", "file") -> signal ("traces", "metrics", "logs") -> counter
        self._counters: dict[str, dict[str, _Counter]] = {}

        def add(
            destination: str, spans: SpanExporter, metrics: MetricExporter, logs: LogRecordExporter
        ) -> None:
            counters = self._counters[destination] = {signal: _Counter() for signal in _SIGNALS}
            span_exporters.append(_CountedSpanExporter(spans, counters["traces"]))
            metric_exporters.append(_CountedMetricExporter(metrics, counters["metrics"]))
            log_exporters.append(_CountedLogExporter(logs, counters["logs"]))

        if use_otlp:
            add("otlp", *self._otlp_exporters())
        self.writer: JsonlWriter | None = None
        if output_path is not None:
            self.writer = JsonlWriter(output_path)
            add(
                "file",
                JsonlSpanExporter(self.writer),
                JsonlMetricExporter(self.writer),
                JsonlLogExporter(self.writer),
            )

        self.tracker = SessionTracker(keep_all=keep_sessions)
        self.tracer_provider = TracerProvider(resource=self.resource)
        self.tracer_provider.add_span_processor(self.tracker)
        for span_exporter in span_exporters:
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    span_exporter, schedule_delay_millis=_interval("OTEL_BSP_SCHEDULE_DELAY", 1000)
                )
            )
        self.reader = InMemoryMetricReader()
        readers: list[MetricReader] = [self.reader]
        for metric_exporter in metric_exporters:
            default = metric_export_millis or (2000 if use_otlp else 5000)
            readers.append(
                PeriodicExportingMetricReader(
                    metric_exporter, export_interval_millis=_interval("OTEL_METRIC_EXPORT_INTERVAL", default)
                )
            )
        self.meter_provider = MeterProvider(metric_readers=readers, resource=self.resource)
        self.logger_provider = LoggerProvider(resource=self.resource)
        for log_exporter in log_exporters:
            self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
        self._closed = False

    @staticmethod
    def _otlp_exporters() -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
        if otlp_protocol("traces") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

            spans: SpanExporter = GrpcSpans()
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

            spans = HttpSpans()
        if otlp_protocol("metrics") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetrics,
            )

            metrics: MetricExporter = GrpcMetrics()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
                OTLPMetricExporter as HttpMetrics,
            )

            metrics = HttpMetrics()
        if otlp_protocol("logs") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

            logs: LogRecordExporter = GrpcLogs()
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

            logs = HttpLogs()
        return spans, metrics, logs

    @property
    def exports(self) -> dict[str, dict[str, ExportCounts]]:
        """Per destination (``otlp``, ``file``) and signal: exports attempted and failed so far."""
        return {
            destination: {signal: counter.counts for signal, counter in counters.items()}
            for destination, counters in self._counters.items()
        }

    @property
    def service_name(self) -> str:
        return str(self.resource.attributes.get("service.name", ""))

    @property
    def service_instance_id(self) -> str:
        return str(self.resource.attributes.get("service.instance.id", ""))

    def close(self) -> MetricsData | None:
        """Flush and shut everything down; return the final metrics (cumulative) of the run."""
        if self._closed:
            return None
        self._closed = True
        self.tracer_provider.force_flush()
        # Collected before the shutdown, which stops the in-memory reader from collecting.
        data = self.reader.get_metrics_data()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()
        if self.writer is not None:
            self.writer.close()
        return data
