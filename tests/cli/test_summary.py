"""The summary's arithmetic on the SDK's own metric data, and the progress display."""

from __future__ import annotations

import io

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from agentwatch._cli._progress import ProgressBar
from agentwatch._cli._summary import SessionStats, histogram_quantile, summarize


@pytest.mark.parametrize(
    ("bounds", "counts", "expected"),
    [
        # Prometheus: rank 9.5 of 10 falls in (1, 2]: 1 + (2 - 1) * 9.5 / 10.
        ((1.0, 2.0, 4.0), (0, 10, 0, 0), 1.95),
        # The lowest bucket starts at 0.
        ((1.0, 2.0), (20, 0, 0), 0.95),
        # A rank in the overflow bucket gives the highest finite bound.
        ((1.0, 2.0), (1, 0, 19), 2.0),
        ((1.0, 2.0), (0, 0, 0), None),
    ],
)
def test_histogram_quantile_like_prometheus(
    bounds: tuple[float, ...], counts: tuple[int, ...], expected: float | None
) -> None:
    assert histogram_quantile(0.95, bounds, counts) == (None if expected is None else pytest.approx(expected))


def test_summary_from_real_sdk_metrics() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("test")
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=[0.5, 1.0, 2.0]
    )
    tools = meter.create_histogram(
        "gen_ai.execute_tool.duration", unit="s", explicit_bucket_boundaries_advisory=[0.1, 1.0]
    )
    events = meter.create_counter("agentwatch.resilience.events")
    sessions = meter.create_counter("agentwatch.sessions")
    chat = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"}
    for _ in range(9):
        duration.record(0.7, {**chat, "gen_ai.response.model": "gpt-4o-mini"})
    duration.record(1.5, {**chat, "error.type": "openai.BadRequestError"})
    duration.record(0.7, {**chat, "gen_ai.response.model": "gpt-4.1-mini"})
    tool = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "fetch_related_content"}
    tools.record(0.05, tool)
    tools.record(0.05, {**tool, "error.type": "circuit_open"})
    for name in ("circuit_opened", "circuit_half_opened", "fallback", "fallback"):
        events.add(1, {"agentwatch.resilience.event": name, "gen_ai.tool.name": "fetch_related_content"})
    events.add(3, {"agentwatch.resilience.event": "retry", "gen_ai.request.model": "gpt-4o-mini"})
    sessions.add(3, {"agentwatch.session.outcome": "completed"})
    sessions.add(1, {"agentwatch.session.outcome": "max_iterations"})
    summary = summarize(reader.get_metrics_data())
    provider.shutdown()

    (main, fallback) = summary.models
    assert (main.model, main.calls, main.errors) == ("gpt-4o-mini", 10, 1)
    assert main.error_rate == pytest.approx(0.1)
    assert main.p95_seconds == pytest.approx(1.0 + (2.0 - 1.0) * (9.5 - 9) / 1)
    assert (fallback.model, fallback.calls) == ("gpt-4.1-mini", 1)
    assert summary.llm.retries == 3
    assert summary.llm.error_types == {"openai.BadRequestError": 1}
    (row,) = summary.tools
    assert (row.calls, row.errors, row.fallbacks) == (2, 1, 2)
    assert row.breaker == {"opened": 1, "half-opened": 1}
    assert summary.sessions.total == 4
    assert summary.sessions.completion_rate == pytest.approx(0.75)


def test_completion_rate_counts_outcomes_as_the_completion_slo_does() -> None:
    """Answered (completed, refused) / sessions with a verdict (interrupted and cancelled are
    neither); any other outcome, a declared one included, is a failure."""
    outcomes = {
        "completed": 6,
        "refused": 2,
        "interrupted": 3,
        "cancelled": 1,
        "error": 1,
        "max_iterations": 1,
        "escalated": 1,
    }
    stats = SessionStats(total=sum(outcomes.values()), outcomes=outcomes)
    assert stats.completion_rate == pytest.approx(8 / 11)
    assert SessionStats(total=2, outcomes={"interrupted": 2}).completion_rate is None


def test_progress_plain_lines_and_terminal_redraws() -> None:
    plain = io.StringIO()
    bar = ProgressBar(4, stream=plain, tty=False, interval=0.0)
    bar.start()
    bar.update(1, "1 completed")
    bar.update(2, "2 completed")
    bar.finish()
    assert plain.getvalue() == "sessions 1/4  1 completed\nsessions 2/4  2 completed\n"

    terminal = io.StringIO()
    bar = ProgressBar(4, stream=terminal, tty=True)
    bar.start()
    bar.update(4, "4 completed")
    bar.finish()
    text = terminal.getvalue()
    assert text.startswith("\r\x1b[K[") and text.endswith("sessions 4/4  4 completed\n")
    assert "\n" not in text[:-1]  # one line, redrawn in place
