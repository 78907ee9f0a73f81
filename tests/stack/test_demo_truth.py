"""What the dashboards and alerts show matches what happened: ``agentwatch demo`` as the README runs
it (30 sessions in about 15 s, nothing but ``OTEL_EXPORTER_OTLP_ENDPOINT`` set) against the
shipped stack at its shipped intervals (SDK export every 2 s, Collector batch 1 s, Prometheus
scrape and rule evaluation every 15 s), compared with the demo's own ``--json`` summary.

Each run of a process is a new set of series. Prometheus 3 with created-timestamp zero ingestion
starts each of them with a 0 at its start time, so the dashboards' ``rate()``/``increase()`` count
everything from the first call on (Prometheus 2, or 3 without the flag, loses everything counted
before a series' first scrape: 0 % tool errors instead of 34 %, 59 of 82 LLM calls).

Tolerances. The panels' queries are evaluated as Grafana sends them (``$__rate_interval`` = 1m,
four 15 s scrapes) at the scrape that holds the run's final values: there every window starts with
the series' 0 sample and ends on a scrape, Prometheus extrapolates nothing, and the numbers are
exact: counts within 0.01 (floating point), ratios within 0.001. Between two scrapes Prometheus
extrapolates each series to the window's edges by up to half an average sample interval; ratios
of series born at different moments then drift, which the second test bounds (5 percentage points,
where the broken stack was off by 34).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ._dashboards import panel_query
from ._harness import wait_until
from ._stack import Stack
from ._workload import DemoRun, clean_env, run_demo_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SERVICE = "agentwatch-demo"  # the README's (the demo's default service.name)
SCRAPE = 15.0  # collector/prometheus/prometheus.yml
RATE_INTERVAL = "1m"  # Grafana's $__rate_interval for a 15 s data source: 4 scrapes
CRITICAL = 0.25  # AgentwatchToolErrorRateCritical
COUNT_TOLERANCE = 0.01
RATIO_TOLERANCE = 0.001
BETWEEN_SCRAPES_TOLERANCE = 0.05


@dataclass(frozen=True)
class Observed:
    run: DemoRun
    final_scrape: float  # timestamp of the first scrape holding every final value of the run


@pytest.fixture(scope="module")
def observed(stack: Stack) -> Observed:
    run = run_demo_cli(env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=stack.otlp_grpc_endpoint))
    assert run.document["service_name"] == SERVICE
    assert run.document["sessions_finished"] == 30, run.document
    selector = (
        f'{{instance="{run.instance}", __name__=~"agentwatch_sessions_total|agentwatch_resilience_events_total'
        '|gen_ai_execute_tool_duration_seconds_count|gen_ai_client_operation_duration_seconds_count"}'
    )
    total = run.summary["sessions"]["total"]

    def complete() -> bool:
        found = stack.query(f'sum(agentwatch_sessions_total{{instance="{run.instance}"}})')
        return bool(found) and float(found[0]["value"][1]) == total

    wait_until(complete, timeout=3 * SCRAPE + 10, interval=1.0, what=f"{total} sessions of {run.instance}")
    # Every series' raw samples: the scrape at which the last of them reached its final value.
    series = stack.prometheus_api("/api/v1/query", {"query": f"{selector}[5m]"})["result"]
    final_scrape = max(min(float(t) for t, v in s["values"] if v == s["values"][-1][1]) for s in series)
    return Observed(run, final_scrape)


@pytest.fixture(autouse=True)
def _attach_process_logs(request: pytest.FixtureRequest, stack: Stack) -> None:
    request.node.stack_log_tails = stack.log_tails


VALUES = {"service": SERVICE, "model": ".*", "tool": ".*", "agent": ".*", "__rate_interval": RATE_INTERVAL}


def _by(result: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in result}


def _expected(observed: Observed) -> dict[str, dict[Any, float]]:
    summary = observed.run.summary
    sessions = summary["sessions"]
    return {
        "tool_error_rate": {(row["tool"],): row["error_rate"] for row in summary["tools"]},
        "llm_calls": {row["model"]: float(row["calls"]) for row in summary["models"]},
        "completion": {("support-agent",): sessions["completion_rate"]},
    }


def _observed_at(stack: Stack, at: float) -> dict[str, dict[Any, float]]:
    tool_error_rate = _by(
        stack.query(panel_query("agentwatch-tools", "Tool error rate", VALUES), at), "gen_ai_tool_name"
    )
    completion = _by(
        stack.query(panel_query("agentwatch-sessions", "Session completion rate", VALUES), at),
        "gen_ai_agent_name",
    )
    # LLM calls per model as the demo's summary groups them: the model that answered, else the
    # requested one (a failed call has no response model).
    calls = stack.query(
        "sum by (gen_ai_request_model, gen_ai_response_model) (increase(gen_ai_client_operation_duration_seconds_count"
        f'{{job="{SERVICE}", gen_ai_operation_name="chat"}}[{RATE_INTERVAL}]))',
        at,
    )
    llm_calls: dict[Any, float] = {}
    for row in calls:
        model = row["metric"].get("gen_ai_response_model") or row["metric"]["gen_ai_request_model"]
        llm_calls[model] = llm_calls.get(model, 0.0) + float(row["value"][1])
    return {"tool_error_rate": tool_error_rate, "llm_calls": llm_calls, "completion": completion}


def _compare(
    expected: dict[str, dict[Any, float]], seen: dict[str, dict[Any, float]], tolerance: dict[str, float]
) -> list[str]:
    problems = []
    for what, values in expected.items():
        if set(values) != set(seen[what]):
            problems.append(f"{what}: keys {sorted(seen[what])} != demo's {sorted(values)}")
            continue
        for key, value in values.items():
            if abs(seen[what][key] - value) > tolerance[what]:
                problems.append(f"{what} {key}: Prometheus {seen[what][key]:.4f}, demo {value:.4f}")
    return problems


def test_dashboards_match_the_demo_summary_at_the_final_scrape(stack: Stack, observed: Observed) -> None:
    at = observed.final_scrape
    assert at - float(RATE_INTERVAL[:-1]) * 60 < observed.run.started_at, (
        "the run does not fit in one rate interval before its final scrape; the test's premise broke"
    )
    tolerance = {
        "tool_error_rate": RATIO_TOLERANCE,
        "llm_calls": COUNT_TOLERANCE,
        "completion": RATIO_TOLERANCE,
    }
    problems = _compare(_expected(observed), _observed_at(stack, at), tolerance)
    assert not problems, "\n".join(problems)


def test_dashboards_stay_close_between_scrapes(stack: Stack, observed: Observed) -> None:
    """Mid-way between scrapes (the worst case for extrapolation), the ratios Grafana shows stay
    within the stated tolerance of the demo's."""
    at = observed.final_scrape + SCRAPE / 2
    while time.time() < at + 1:
        time.sleep(0.5)
    expected = _expected(observed)
    del expected["llm_calls"]  # a count over a window that does not end on a scrape is extrapolated
    tolerance = {"tool_error_rate": BETWEEN_SCRAPES_TOLERANCE, "completion": BETWEEN_SCRAPES_TOLERANCE}
    problems = _compare(expected, _observed_at(stack, at), tolerance)
    assert not problems, "\n".join(problems)


def test_error_rate_panels_show_zero_not_no_data(stack: Stack, observed: Observed) -> None:
    """A tool or model with calls and no failures reads 0 %, not "No data"."""
    summary = observed.run.summary
    at = observed.final_scrape
    tools = _by(
        stack.query(panel_query("agentwatch-tools", "Tool error rate", VALUES), at), "gen_ai_tool_name"
    )
    clean_tools = [row["tool"] for row in summary["tools"] if row["calls"] and not row["errors"]]
    assert clean_tools, "the README run had no tool without failures; the test's premise broke"
    for tool in clean_tools:
        assert tools.get((tool,)) == 0.0, f"Tool error rate for {tool}: {tools.get((tool,))}"
    # The LLM panels group by the requested model (the summary by the one that answered).
    assert not any(row["errors"] for row in summary["models"]), "the README run had LLM errors"
    requested = _by(
        stack.query(panel_query("agentwatch-llm", "LLM calls per second", VALUES), at), "gen_ai_request_model"
    )
    assert requested, "no LLM calls in Prometheus"
    models = _by(
        stack.query(panel_query("agentwatch-llm", "LLM error rate", VALUES), at), "gen_ai_request_model"
    )
    assert models == dict.fromkeys(requested, 0.0), f"LLM error rate: {models}"


def _circuit_openings(summary: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(dashboard, panel, label, name) of every circuit the demo saw open."""
    for row in summary["tools"]:
        if row["breaker"].get("opened"):
            yield "agentwatch-tools", "Circuit state", "gen_ai_tool_name", row["tool"]
    for circuit, transitions in summary["llm"]["circuits"].items():
        if transitions.get("opened"):
            yield "agentwatch-llm", "LLM circuit state", "gen_ai_request_model", circuit.split(":", 1)[1]


def test_circuit_state_panels_show_every_circuit_that_opened(stack: Stack, observed: Observed) -> None:
    """A breaker open for 1-2 s between two 15 s scrapes still shows as open (2) on the timeline."""
    openings = list(_circuit_openings(observed.run.summary))
    assert openings, "no circuit opened in the README run; the test's premise broke"
    start, end = observed.run.started_at - SCRAPE, observed.final_scrape + 2 * SCRAPE
    while time.time() < end:
        time.sleep(0.5)
    for uid, title, label, name in openings:
        result = stack.prometheus_api(
            "/api/v1/query_range",
            {
                "query": panel_query(uid, title, VALUES),
                "start": f"{start:.3f}",
                "end": f"{end:.3f}",
                "step": "5",
            },
        )["result"]
        states = {float(v) for r in result if r["metric"].get(label) == name for _, v in r["values"]}
        assert 2.0 in states, f"{title}: {name} opened but the panel shows only {sorted(states)}"


def test_critical_tool_error_alert_goes_pending(stack: Stack, observed: Observed) -> None:
    """The README run's failing tool crosses 25 %: AgentwatchToolErrorRateCritical goes pending
    (then fires) for it, and for no tool clearly below the threshold."""
    rates = {row["tool"]: row["error_rate"] or 0.0 for row in observed.run.summary["tools"]}
    above = {tool for tool, rate in rates.items() if rate >= CRITICAL + 0.05}
    below = {tool for tool, rate in rates.items() if rate < CRITICAL - 0.05}
    assert above, f"no tool of the README run crossed {CRITICAL:.0%} clearly: {rates}"

    def alerting() -> set[str]:
        alerts = stack.prometheus_api("/api/v1/alerts", {})["alerts"]
        return {
            a["labels"]["gen_ai_tool_name"]
            for a in alerts
            if a["labels"]["alertname"] == "AgentwatchToolErrorRateCritical"
            and a["labels"]["job"] == SERVICE
            and a["state"] in {"pending", "firing"}
        }

    seen = wait_until(
        lambda: alerting() >= above and alerting(),
        timeout=3 * SCRAPE + 10,
        interval=1.0,
        what=f"AgentwatchToolErrorRateCritical pending for {sorted(above)}",
        on_timeout=lambda: f"alerting for {sorted(alerting())}; demo error rates {rates}",
    )
    assert seen
    assert not alerting() & below, f"alert for tools below the threshold: {sorted(alerting() & below)}"
