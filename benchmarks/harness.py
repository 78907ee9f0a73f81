"""Measurement primitives shared by every worker: clocks, interleaved rounds, in-memory signals, the floor.

Timings are CPU time of this process (``time.process_time_ns``), not wall time: on a shared,
loaded machine a process that is descheduled accumulates wall time but not CPU time, so CPU time
is the steadier measure of the work a call does. Every comparison is made inside one round of
one process (variants interleaved, order rotated each round) and summarised as the median over
rounds, so a burst of load moves a whole round, not one side of a comparison.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

clock = time.process_time_ns


def per_call_us(fn: Callable[[], object], n: int) -> float:
    """CPU µs per call of ``fn`` over ``n`` calls (loop overhead included; it cancels in differences)."""
    gc.collect()
    start = clock()
    for _ in range(n):
        fn()
    return (clock() - start) / n / 1000.0


@dataclass
class Variant:
    """One side of a comparison: how to switch to it, and the call to time."""

    name: str
    call: Callable[[], object]
    enter: Callable[[], None] = lambda: None
    leave: Callable[[], None] = lambda: None
    after: Callable[[], None] = lambda: None
    """Run after each timed segment (outside the timing): e.g. drop finished spans."""


def interleaved(variants: Sequence[Variant], *, rounds: int, n: int, warmup: int) -> dict[str, list[float]]:
    """Per-call µs of each variant, one sample per round; the variant order rotates every round."""
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    for r in range(rounds):
        shift = r % len(variants)
        for variant in (*variants[shift:], *variants[:shift]):
            variant.enter()
            try:
                for _ in range(warmup):
                    variant.call()
                variant.after()
                samples[variant.name].append(per_call_us(variant.call, n))
                variant.after()
            finally:
                variant.leave()
    return samples


def summary(values: Iterable[float]) -> dict[str, float]:
    data = list(values)
    if not data:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def pairwise(a: Sequence[float], b: Sequence[float], op: Callable[[float, float], float]) -> list[float]:
    return [op(x, y) for x, y in zip(a, b, strict=True)]


# -- in-memory signals ---------------------------------------------------------------------------


@dataclass
class Signals:
    """SimpleSpanProcessor + InMemorySpanExporter, an InMemoryMetricReader and in-memory logs."""

    tracer_provider: Any
    meter_provider: Any
    logger_provider: Any
    spans: Any
    metrics: Any
    logs: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def providers(self) -> dict[str, Any]:
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def clear(self) -> None:
        self.spans.clear()
        if self.logs is not None:
            self.logs.clear()

    def span_count(self) -> int:
        return len(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, int]:
        """Metric name -> number of recorded measurements (histogram counts summed)."""
        data = self.metrics.get_metrics_data()
        out: dict[str, int] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    total = 0
                    for point in metric.data.data_points:
                        total += int(getattr(point, "count", 1))
                    out[metric.name] = out.get(metric.name, 0) + total
        return out


def make_signals(span_exporter: Any = None) -> Signals:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    try:  # renamed in SDK 1.3x; both names exist in some releases
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as LogExporter
    except ImportError:  # pragma: no cover - older SDKs
        from opentelemetry.sdk._logs.export import InMemoryLogExporter as LogExporter  # type: ignore[no-redef]
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

    spans = span_exporter if span_exporter is not None else InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    logs = LogExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    return Signals(
        tracer_provider, MeterProvider(metric_readers=[reader]), logger_provider, spans, reader, logs
    )


class DroppingSpanExporter:
    """Accepts every span and keeps none: span storage is then not counted as instrumentation memory."""

    def export(self, spans: Any) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def clear(self) -> None:
        pass

    def get_finished_spans(self) -> tuple[()]:
        return ()


# -- the floor -----------------------------------------------------------------------------------
# What any instrumentation that follows the conventions must at least do for one non-streaming
# chat call: one CLIENT span with the attributes agentwatch writes (the request attributes at
# start, the response attributes in one call at the end) and the four histogram records agentwatch
# makes, with the same attribute sets, on histograms with the same bucket advisories. The worker in
# the agentwatch environment checks these against the span and points agentwatch really produces.

FLOOR_SPAN_NAME = "chat gpt-4o-mini"
FLOOR_REQUEST_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.request.max_tokens": 64,
    "gen_ai.request.temperature": 0.2,
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "server.address": "llm.test",
    "server.port": 80,
}
FLOOR_RESPONSE_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.response.id": "chatcmpl-bench0001",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 24,
    "gen_ai.usage.output_tokens": 9,
    "gen_ai.usage.cache_read.input_tokens": 0,
    "gen_ai.usage.reasoning.output_tokens": 0,
    "gen_ai.usage.cost.amount": 9e-06,
    "gen_ai.usage.cost.currency": "USD",
    "openai.response.service_tier": "default",
    "openai.response.system_fingerprint": "fp_bench",
}
FLOOR_METRIC_ATTRIBUTES: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "server.address": "llm.test",
    "server.port": 80,
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
}
FLOOR_INPUT_ATTRIBUTES = {**FLOOR_METRIC_ATTRIBUTES, "gen_ai.token.type": "input"}
FLOOR_OUTPUT_ATTRIBUTES = {**FLOOR_METRIC_ATTRIBUTES, "gen_ai.token.type": "output"}
FLOOR_METRICS = (
    "gen_ai.client.operation.duration",
    "gen_ai.client.token.usage",
    "gen_ai.client.operation.cost",
)

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
COST_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Floor:
    """The floor of one non-streaming call, and its parts, on providers of its own."""

    def __init__(self) -> None:
        from opentelemetry.trace import SpanKind

        self.signals = make_signals()
        self.kind = SpanKind.CLIENT
        self.tracer = self.signals.tracer_provider.get_tracer("bench.floor")
        meter = self.signals.meter_provider.get_meter("bench.floor")

        def histogram(name: str, unit: str, buckets: tuple[float, ...]) -> Any:
            return meter.create_histogram(name, unit=unit, explicit_bucket_boundaries_advisory=buckets)

        self.duration = histogram("gen_ai.client.operation.duration", "s", DURATION_BUCKETS)
        self.tokens = histogram("gen_ai.client.token.usage", "{token}", TOKEN_BUCKETS)
        self.cost = histogram("gen_ai.client.operation.cost", "USD", COST_BUCKETS)
        self.chunk = histogram("gen_ai.client.operation.time_per_output_chunk", "s", DURATION_BUCKETS)
        self.tool_tracer = self.signals.tracer_provider.get_tracer("bench.tool")

    def call(self) -> None:
        """One span (request attributes at start, response attributes at end) + four records."""
        span = self.tracer.start_span(FLOOR_SPAN_NAME, kind=self.kind, attributes=FLOOR_REQUEST_ATTRIBUTES)
        span.set_attributes(FLOOR_RESPONSE_ATTRIBUTES)
        span.end()
        self.duration.record(0.42, FLOOR_METRIC_ATTRIBUTES)
        self.tokens.record(24, FLOOR_INPUT_ATTRIBUTES)
        self.tokens.record(9, FLOOR_OUTPUT_ATTRIBUTES)
        self.cost.record(9e-06, FLOOR_METRIC_ATTRIBUTES)

    def span_only(self) -> None:
        span = self.tracer.start_span(FLOOR_SPAN_NAME, kind=self.kind, attributes=FLOOR_REQUEST_ATTRIBUTES)
        span.set_attributes(FLOOR_RESPONSE_ATTRIBUTES)
        span.end()

    def one_record(self) -> None:
        """One histogram record with the 7-attribute token set (the SDK's per-record cost)."""
        self.tokens.record(24, FLOOR_INPUT_ATTRIBUTES)

    def chunk_record(self) -> None:
        """One ``time_per_output_chunk`` record (6 attributes): what each stream chunk costs at its end."""
        self.chunk.record(0.001, FLOOR_METRIC_ATTRIBUTES)

    def clear(self) -> None:
        self.signals.clear()
