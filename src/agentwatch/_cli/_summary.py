"""The end-of-run report, computed from the SDK's own metric data (what the exporters sent).

Counts are histogram counts; error rates split them by the presence of ``error.type``; p95 values
are interpolated inside histogram buckets exactly like Prometheus' ``histogram_quantile`` (so the
numbers match the dashboards'); retries, fallbacks and breaker transitions are the
``agentwatch.resilience.events`` counter; sessions are ``agentwatch.sessions`` and the session
histograms. Nothing here counts on the side.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import HistogramDataPoint, MetricsData, NumberDataPoint

from agentwatch import _semconv as sc

__all__ = ["Histogram", "ModelRow", "SessionStats", "Summary", "ToolRow", "histogram_quantile", "summarize"]

_EVENT = "agentwatch.resilience.event"
_CIRCUIT = "agentwatch.circuit.name"
_ATTEMPTS = "agentwatch.resilience.attempts"
_EVENTS = "agentwatch.resilience.events"
_TRANSITIONS = {"circuit_opened": "opened", "circuit_half_opened": "half-opened", "circuit_closed": "closed"}
_REJECTIONS = frozenset({"circuit_rejected", "bulkhead_rejected", "tool_disabled"})


def histogram_quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float | None:
    """Prometheus' ``histogram_quantile`` on one histogram: linear interpolation inside the bucket
    holding the rank; the lowest bucket starts at 0; a rank in the overflow bucket gives the
    highest finite bound. ``None`` without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            if index >= len(bounds):
                return bounds[-1] if bounds else None
            upper = bounds[index]
            lower = bounds[index - 1] if index > 0 else min(0.0, upper)
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return bounds[-1] if bounds else None


@dataclass
class Histogram:
    bounds: tuple[float, ...] = ()
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def add(self, point: HistogramDataPoint) -> None:
        bounds = tuple(point.explicit_bounds)
        if not self.counts:
            self.bounds, self.counts = bounds, [0] * len(point.bucket_counts)
        if bounds != self.bounds:
            return  # never happens with one meter provider; merging across layouts would be wrong
        for index, value in enumerate(point.bucket_counts):
            self.counts[index] += value
        self.total += point.sum
        self.count += point.count

    def quantile(self, q: float) -> float | None:
        return histogram_quantile(q, self.bounds, self.counts)


@dataclass
class ModelRow:
    model: str
    calls: int = 0
    errors: int = 0
    p95_seconds: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


@dataclass
class LLMStats:
    p95_seconds: float | None = None  # all chat calls, whatever the model
    requests: int = 0  # attempts: what the provider received
    streamed: int = 0  # calls that received a first chunk
    retries: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)  # failed model -> count
    circuits: dict[str, dict[str, int]] = field(default_factory=dict)  # circuit -> transition -> count
    error_types: dict[str, int] = field(default_factory=dict)


@dataclass
class ToolRow:
    tool: str
    calls: int = 0
    errors: int = 0
    p95_seconds: float | None = None
    retries: int = 0
    timeouts: int = 0
    fallbacks: int = 0
    rejections: int = 0
    breaker: dict[str, int] = field(default_factory=dict)  # opened / half-opened / closed -> count
    error_types: dict[str, int] = field(default_factory=dict)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


@dataclass
class SessionStats:
    total: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    p95_seconds: float | None = None
    p95_cost_usd: float | None = None
    p95_iterations: float | None = None

    @property
    def completion_rate(self) -> float | None:
        """Answered sessions / sessions with a verdict, as the completion SLO counts them."""
        judged = sum(n for outcome, n in self.outcomes.items() if outcome not in sc.SLO_EXCLUDED_OUTCOMES)
        answered = sum(self.outcomes.get(outcome, 0) for outcome in sc.SLO_ANSWERED_OUTCOMES)
        return answered / judged if judged else None


@dataclass
class Summary:
    models: list[ModelRow]
    llm: LLMStats
    tools: list[ToolRow]
    sessions: SessionStats

    @property
    def llm_calls(self) -> int:
        return sum(row.calls for row in self.models)

    @property
    def llm_errors(self) -> int:
        return sum(row.errors for row in self.models)

    def to_dict(self) -> dict[str, Any]:
        def rated(row: ModelRow | ToolRow) -> dict[str, Any]:
            return {**asdict(row), "error_rate": row.error_rate}

        return {
            "models": [rated(row) for row in self.models],
            "llm": asdict(self.llm),
            "tools": [rated(row) for row in self.tools],
            "sessions": {**asdict(self.sessions), "completion_rate": self.sessions.completion_rate},
        }


def _points(data: MetricsData | None, name: str) -> Iterator[Any]:
    if data is None:
        return
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name == name:
                    yield from metric.data.data_points


def _histograms(data: MetricsData | None, name: str) -> Iterator[HistogramDataPoint]:
    for point in _points(data, name):
        if isinstance(point, HistogramDataPoint):
            yield point


def _numbers(data: MetricsData | None, name: str) -> Iterator[NumberDataPoint]:
    for point in _points(data, name):
        if isinstance(point, NumberDataPoint):
            yield point


def _text(attributes: Mapping[str, Any] | None, key: str) -> str | None:
    value = (attributes or {}).get(key)
    return value if isinstance(value, str) and value else None


def _model_of(attributes: Mapping[str, Any] | None) -> str:
    # The model that answered; a call that failed never got one, so it counts for the requested model.
    return _text(attributes, sc.RESPONSE_MODEL) or _text(attributes, sc.REQUEST_MODEL) or "(unknown)"


def _models(data: MetricsData | None, llm: LLMStats) -> list[ModelRow]:
    rows: dict[str, ModelRow] = {}
    latency: dict[str, Histogram] = defaultdict(Histogram)
    overall = Histogram()
    for point in _histograms(data, sc.METRIC_OPERATION_DURATION):
        if (point.attributes or {}).get(sc.OPERATION_NAME) != sc.OP_CHAT:
            continue
        overall.add(point)
        model = _model_of(point.attributes)
        row = rows.setdefault(model, ModelRow(model))
        row.calls += point.count
        error = _text(point.attributes, sc.ERROR_TYPE)
        if error:
            row.errors += point.count
            llm.error_types[error] = llm.error_types.get(error, 0) + point.count
        latency[model].add(point)
    for model, histogram in latency.items():
        rows[model].p95_seconds = histogram.quantile(0.95)
    llm.p95_seconds = overall.quantile(0.95)
    for point in _histograms(data, sc.METRIC_TOKEN_USAGE):
        row = rows.setdefault(_model_of(point.attributes), ModelRow(_model_of(point.attributes)))
        kind = (point.attributes or {}).get(sc.TOKEN_TYPE)
        if kind == sc.TOKEN_INPUT:
            row.input_tokens += round(point.sum)
        elif kind == sc.TOKEN_OUTPUT:
            row.output_tokens += round(point.sum)
    for point in _histograms(data, sc.METRIC_OPERATION_COST):
        row = rows.setdefault(_model_of(point.attributes), ModelRow(_model_of(point.attributes)))
        row.cost_usd += point.sum
    return sorted(rows.values(), key=lambda r: (-r.calls, r.model))


def _tools(data: MetricsData | None) -> dict[str, ToolRow]:
    rows: dict[str, ToolRow] = {}
    latency: dict[str, Histogram] = defaultdict(Histogram)
    for point in _histograms(data, sc.METRIC_EXECUTE_TOOL_DURATION):
        tool = _text(point.attributes, sc.TOOL_NAME) or "(unknown)"
        row = rows.setdefault(tool, ToolRow(tool))
        row.calls += point.count
        error = _text(point.attributes, sc.ERROR_TYPE)
        if error:
            row.errors += point.count
            row.error_types[error] = row.error_types.get(error, 0) + point.count
        latency[tool].add(point)
    for tool, histogram in latency.items():
        rows[tool].p95_seconds = histogram.quantile(0.95)
    return rows


def _events(data: MetricsData | None, tools: dict[str, ToolRow], llm: LLMStats) -> None:
    for point in _numbers(data, _EVENTS):
        attributes = point.attributes or {}
        event = _text(attributes, _EVENT) or ""
        count = int(point.value)
        tool = _text(attributes, sc.TOOL_NAME)
        if tool is not None:
            row = tools.setdefault(tool, ToolRow(tool))
            if event == "retry":
                row.retries += count
            elif event == "timeout":
                row.timeouts += count
            elif event == "fallback":
                row.fallbacks += count
            elif event in _REJECTIONS:
                row.rejections += count
            elif event in _TRANSITIONS:
                key = _TRANSITIONS[event]
                row.breaker[key] = row.breaker.get(key, 0) + count
            continue
        model = _text(attributes, sc.REQUEST_MODEL)
        if model is None:
            continue
        if event == "retry":
            llm.retries += count
        elif event == "fallback":
            llm.fallbacks[model] = llm.fallbacks.get(model, 0) + count
        elif event in _TRANSITIONS:
            circuit = _text(attributes, _CIRCUIT) or model
            transitions = llm.circuits.setdefault(circuit, {})
            transitions[_TRANSITIONS[event]] = transitions.get(_TRANSITIONS[event], 0) + count


def _sessions(data: MetricsData | None) -> SessionStats:
    stats = SessionStats()
    for number in _numbers(data, sc.METRIC_SESSIONS):
        outcome = _text(number.attributes, sc.SESSION_OUTCOME) or "(unknown)"
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + int(number.value)
        stats.total += int(number.value)
    for name, attribute in (
        (sc.METRIC_SESSION_DURATION, "p95_seconds"),
        (sc.METRIC_SESSION_COST, "p95_cost_usd"),
        (sc.METRIC_SESSION_ITERATIONS, "p95_iterations"),
    ):
        histogram = Histogram()
        for point in _histograms(data, name):
            histogram.add(point)
        setattr(stats, attribute, histogram.quantile(0.95))
    return stats


def summarize(data: MetricsData | None, *, tool_order: Iterable[str] = ()) -> Summary:
    """The report of everything ``data`` (cumulative metric data of one run) holds."""
    llm = LLMStats()
    models = _models(data, llm)
    for point in _histograms(data, _ATTEMPTS):
        if _text(point.attributes, sc.REQUEST_MODEL) is not None:
            llm.requests += round(point.sum)
    llm.streamed = sum(point.count for point in _histograms(data, sc.METRIC_TIME_TO_FIRST_CHUNK))
    tools = _tools(data)
    _events(data, tools, llm)
    order = {name: index for index, name in enumerate(tool_order)}
    rows = sorted(tools.values(), key=lambda r: (order.get(r.tool, len(order)), r.tool))
    return Summary(models=models, llm=llm, tools=rows, sessions=_sessions(data))


# ------------------------------------------------------------------------------------------------
# Text
# ------------------------------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def usd(value: float | None) -> str:
    return "–" if value is None else f"${value:.6f}" if value < 1 else f"${value:,.2f}"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: Iterable[int] = (0,), indent: str = "  "
) -> list[str]:
    """Columns padded to their widest cell; the ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    left_aligned = set(left)

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(cell).ljust(width) if index in left_aligned else str(cell).rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=False))
        ]
        return (indent + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def render_models(summary: Summary) -> list[str]:
    rows = [
        [
            row.model,
            f"{row.calls:,}",
            f"{row.errors:,}",
            percent(row.error_rate),
            seconds(row.p95_seconds),
            f"{row.input_tokens:,}",
            f"{row.output_tokens:,}",
            usd(row.cost_usd),
        ]
        for row in summary.models
    ]
    if len(summary.models) > 1:
        calls = summary.llm_calls
        rows.append(
            [
                "all models",
                f"{calls:,}",
                f"{summary.llm_errors:,}",
                percent(summary.llm_errors / calls if calls else None),
                seconds(summary.llm.p95_seconds),
                f"{sum(r.input_tokens for r in summary.models):,}",
                f"{sum(r.output_tokens for r in summary.models):,}",
                usd(sum(r.cost_usd for r in summary.models)),
            ]
        )
    headers = [
        "model",
        "calls",
        "errors",
        "error rate",
        "p95 latency",
        "input tokens",
        "output tokens",
        "cost",
    ]
    lines = table(headers, rows)
    llm = summary.llm
    notes = [
        f"{llm.requests:,} requests sent for {summary.llm_calls:,} calls ({llm.streamed:,} streamed)",
        f"{llm.retries:,} retries",
    ]
    fallbacks = sum(llm.fallbacks.values())
    notes.append(
        f"{fallbacks:,} fallbacks"
        + (
            " (from " + ", ".join(f"{m} ×{n}" for m, n in sorted(llm.fallbacks.items())) + ")"
            if fallbacks
            else ""
        )
    )
    lines.append("  " + ", ".join(notes))
    for circuit, transitions in sorted(llm.circuits.items()):
        lines.append(
            f"  circuit {circuit}: " + ", ".join(f"{k} {v}×" for k, v in sorted(transitions.items()))
        )
    if llm.error_types:
        lines.append("  errors: " + ", ".join(f"{k} ×{v}" for k, v in sorted(llm.error_types.items())))
    return lines


def _breaker(row: ToolRow) -> str:
    order = ("opened", "half-opened", "closed")
    return ", ".join(f"{k} {row.breaker[k]}" for k in order if row.breaker.get(k)) or "–"


def render_tools(summary: Summary) -> list[str]:
    rows = [
        [
            row.tool,
            f"{row.calls:,}",
            f"{row.errors:,}",
            percent(row.error_rate),
            seconds(row.p95_seconds),
            f"{row.retries:,}",
            f"{row.timeouts:,}",
            f"{row.fallbacks:,}",
            f"{row.rejections:,}",
            _breaker(row),
        ]
        for row in summary.tools
    ]
    headers = [
        "tool",
        "calls",
        "errors",
        "error rate",
        "p95 latency",
        "retries",
        "timeouts",
        "fallbacks",
        "rejected",
        "breaker",
    ]
    lines = table(headers, rows, left=(0, len(headers) - 1))
    for row in summary.tools:
        if row.error_types:
            lines.append(
                f"  {row.tool} errors: " + ", ".join(f"{k} ×{v}" for k, v in sorted(row.error_types.items()))
            )
    return lines


def render_sessions(summary: Summary) -> list[str]:
    stats = summary.sessions
    order = {"completed": 0, "error": 1, "max_iterations": 2}
    outcomes = ", ".join(
        f"{count:,} {outcome}"
        for outcome, count in sorted(stats.outcomes.items(), key=lambda i: (order.get(i[0], 9), i[0]))
    )
    iterations = "–" if stats.p95_iterations is None else f"{stats.p95_iterations:.1f}"
    return [
        f"  {stats.total:,} sessions: {outcomes or 'none'}",
        f"  completion rate {percent(stats.completion_rate)} (SLO 95%)",
        f"  p95 latency {seconds(stats.p95_seconds)} (SLO 15 s), p95 cost {usd(stats.p95_cost_usd)} "
        f"(SLO $0.10), p95 iterations {iterations} (alert at 7)",
    ]
