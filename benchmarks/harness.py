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


def per_call_us(fn: Callable[[], object], n: int, *, collect: bool = True) -> float:
    """CPU µs per call of ``fn`` over ``n`` calls (loop overhead included; it cancels in differences)."""
    if collect:
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
    """Per-call µs of each variant, one sample per round; the variant order rotates every round.

    What the process holds before the first round is frozen out of the garbage collector's view
    (``gc.freeze``): with the SDKs loaded a full collection walks hundreds of thousands of objects
    (tens of ms), which would otherwise land in whichever short segment triggers it. Collections
    of what the calls allocate still happen as they do in an application, and a full collection
    runs between rounds about 30 times per item, never inside a timed segment.
    """
    samples: dict[str, list[float]] = {v.name: [] for v in variants}
    gc.collect()
    gc.freeze()
    collect_every = max(1, rounds // 30)
    try:
        for r in range(rounds):
            if r % collect_every == 0:
                gc.collect()
            shift = r % len(variants)
            for variant in (*variants[shift:], *variants[:shift]):
                variant.enter()
                try:
                    for _ in range(warmup):
                        variant.call()
                    variant.after()
                    samples[variant.name].append(per_call_us(variant.call, n, collect=False))
                    variant.after()
                finally:
                    variant.leave()
    finally:
        gc.unfreeze()
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


# -- the ideal -----------------------------------------------------------------------------------
# The floor of the per-call comparison: what a hand-written instrumentation of this one method
# costs when it does exactly what agentwatch does by default for a non-streaming chat call (the
# same 18-attribute span, the same 4 histogram records, the W3C traceparent on the request) and
# nothing else, with the obvious caches (server per client, metric attribute sets per model and
# server, the price per model). Its attribute keys are checked against agentwatch's real span in
# the agentwatch environment (worker.item_chat).

IDEAL_PRICES = {"gpt-4o-mini": (0.15e-6, 0.6e-6)}  # USD per input / output token (genai-prices)
_IDEAL_REQUEST_PARAMETERS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
)


class Ideal:
    """A minimal wrapper of ``Completions.create``, installed and removed by plain assignment."""

    def __init__(self) -> None:
        import weakref

        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.signals = make_signals()
        self.tracer = self.signals.tracer_provider.get_tracer("bench.ideal")
        meter = self.signals.meter_provider.get_meter("bench.ideal")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", explicit_bucket_boundaries_advisory=TOKEN_BUCKETS
        )
        self.cost = meter.create_histogram(
            "gen_ai.client.operation.cost", unit="USD", explicit_bucket_boundaries_advisory=COST_BUCKETS
        )
        self.kind = SpanKind.CLIENT
        self.propagator = TraceContextTextMapPropagator()
        self.servers: weakref.WeakKeyDictionary[Any, tuple[str, int]] = weakref.WeakKeyDictionary()
        self.metric_attributes: dict[tuple[Any, ...], tuple[dict[str, Any], ...]] = {}
        self.original: Any = None
        self.owner: Any = None

    def on(self) -> None:
        from openai.resources.chat.completions import Completions

        self.owner, self.original = Completions, vars(Completions)["create"]
        original, call = self.original, self._call

        def create(instance: Any, *args: Any, **kwargs: Any) -> Any:
            return call(original, instance, args, kwargs)

        Completions.create = create  # type: ignore[method-assign]

    def off(self) -> None:
        if self.owner is not None:
            self.owner.create = self.original
            self.owner = None

    def clear(self) -> None:
        self.signals.clear()

    def _call(self, original: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from opentelemetry import trace

        client = instance._client
        server = self.servers.get(client)
        if server is None:
            url = client.base_url
            server = self.servers[client] = (url.host, url.port or (443 if url.scheme == "https" else 80))
        model = kwargs.get("model")
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "server.address": server[0],
            "server.port": server[1],
        }
        for name, key in _IDEAL_REQUEST_PARAMETERS:
            value = kwargs.get(name)
            if value is not None:
                attributes[key] = value
        span = self.tracer.start_span(f"chat {model}", kind=self.kind, attributes=attributes)
        headers: dict[str, str] = {}
        self.propagator.inject(headers, context=trace.set_span_in_context(span))
        extra = kwargs.get("extra_headers")
        kwargs["extra_headers"] = {**extra, **headers} if extra else headers
        start = time.perf_counter()
        try:
            response = original(instance, *args, **kwargs)
        except BaseException as exc:
            error = type(exc).__qualname__
            span.set_attribute("error.type", error)
            span.set_status(trace.Status(trace.StatusCode.ERROR))
            span.end()
            self.duration.record(time.perf_counter() - start, {**attributes, "error.type": error})
            raise
        duration = time.perf_counter() - start
        usage = response.usage
        input_tokens, output_tokens = usage.prompt_tokens, usage.completion_tokens
        prices = IDEAL_PRICES.get(model)
        cost = input_tokens * prices[0] + output_tokens * prices[1] if prices else None
        response_model = response.model
        span.set_attributes(
            {
                "gen_ai.response.id": response.id,
                "gen_ai.response.model": response_model,
                "gen_ai.response.finish_reasons": tuple(c.finish_reason for c in response.choices),
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.prompt_tokens_details.cached_tokens,
                "gen_ai.usage.reasoning.output_tokens": usage.completion_tokens_details.reasoning_tokens,
                "gen_ai.usage.cost.amount": cost,
                "gen_ai.usage.cost.currency": "USD",
                "openai.response.service_tier": response.service_tier,
                "openai.response.system_fingerprint": response.system_fingerprint,
            }
        )
        span.end()
        key = (model, server, response_model)
        sets = self.metric_attributes.get(key)
        if sets is None:
            base = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": model,
                "server.address": server[0],
                "server.port": server[1],
                "gen_ai.response.model": response_model,
            }
            sets = self.metric_attributes[key] = (
                base,
                {**base, "gen_ai.token.type": "input"},
                {**base, "gen_ai.token.type": "output"},
            )
        self.duration.record(duration, sets[0])
        self.tokens.record(input_tokens, sets[1])
        self.tokens.record(output_tokens, sets[2])
        if cost is not None:
            self.cost.record(cost, sets[0])
        return response
