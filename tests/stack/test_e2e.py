"""End to end, with the real binaries on 127.0.0.1: workload -> collector -> Jaeger / Tempo leg /
Prometheus (+ the shipped rules), asserted through Jaeger's and Prometheus's HTTP APIs, at the
shipped intervals (15 s scrape and evaluation, 15 s span-metrics flush).

Needs ``scripts/setup-stack.sh`` to have run; a missing binary fails the tests. About 2 minutes,
most of it waiting for the alert's ``for: 1m``; the other tests run while the alert is pending
(the alert test is last). The stack is shared with the other e2e modules (conftest.py): every
assertion selects this module's service.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from _redis import RedisServer, private_redis

from ._dashboards import iter_targets, load_dashboards, parse_label_values, substitute
from ._harness import LOOPBACK, http_get, http_json, listening_addresses, wait_until
from ._stack import Stack
from ._workload import WorkloadSummary, run_workload
from .metric_names import KNOWN_LABELS, KNOWN_METRICS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

SERVICE = "agentwatch-e2e"
# For data to travel app -> collector -> backends: 15 s scrapes, 15 s span-metrics flushes.
DATA_TIMEOUT = 90.0
ALERT_TIMEOUT = 180.0  # the burst starts ~3 s into the workload; `for: 1m` + 15 s evaluations
JAEGER_SELF_TRACE_DELAY = 6.0  # Jaeger's own span batches leave after 5 s
# The workload's sessions take 12 s after start-up: its shared-state Redis stops in the middle.
STATE_OUTAGE_AFTER = 6.0


@pytest.fixture(scope="module")
def state_redis() -> Iterator[RedisServer]:
    with private_redis() as server:
        yield server


@pytest.fixture(scope="module")
def workload(stack: Stack, state_redis: RedisServer) -> WorkloadSummary:
    return run_workload(
        stack.otlp_grpc_endpoint,
        SERVICE,
        state_redis=state_redis,
        state_outage_after=STATE_OUTAGE_AFTER,
    )


@pytest.fixture(autouse=True)
def _attach_process_logs(request: pytest.FixtureRequest, stack: Stack) -> None:
    request.node.stack_log_tails = stack.log_tails  # shown by conftest.py when a test fails


# ----------------------------------------------------------------------------- processes


def test_every_process_listens_on_loopback_only(stack: Stack, workload: WorkloadSummary) -> None:
    for process in stack.processes:
        assert process.alive(), process.log_tail()
        addresses = listening_addresses(process.pid)
        assert addresses, f"{process.name} listens on nothing?"
        outside = {a for a in addresses if a[0] != LOOPBACK}
        assert not outside, f"{process.name} listens beyond 127.0.0.1: {sorted(outside)}"


# ----------------------------------------------------------------------------- traces


def _tags(span_or_process: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span_or_process.get("tags", [])}


def _search_traces(base_url: str, summary: WorkloadSummary) -> dict[str, dict[str, Any]]:
    start_us = int((summary.started_at - 300) * 1_000_000)  # spans are laid out up to 30 s in the past
    end_us = int((time.time() + 60) * 1_000_000)
    body = http_json(
        f"{base_url}/api/traces",
        {"service": SERVICE, "limit": str(summary.sessions * 3), "start": str(start_us), "end": str(end_us)},
        timeout=10,
    )
    return {t["traceID"]: t for t in body["data"] or []}


def _wait_for_all_traces(base_url: str, summary: WorkloadSummary) -> dict[str, dict[str, Any]]:
    expected_spans = summary.sessions + summary.chat_calls + summary.tool_calls

    def arrived() -> dict[str, dict[str, Any]] | None:
        traces = _search_traces(base_url, summary)
        if (
            set(summary.trace_ids) <= set(traces)
            and sum(len(t["spans"]) for t in traces.values()) >= expected_spans
        ):
            return traces
        return None

    return wait_until(
        arrived,
        timeout=DATA_TIMEOUT,
        what=f"{summary.sessions} traces ({expected_spans} spans) in {base_url}",
    )


def test_traces_reach_jaeger_with_session_structure(stack: Stack, workload: WorkloadSummary) -> None:
    traces = _wait_for_all_traces(stack.jaeger_url, workload)
    assert set(traces) == set(workload.trace_ids)  # nothing else, nothing missing

    services = http_json(f"{stack.jaeger_url}/api/services")["data"]
    assert SERVICE in services
    operations = {
        o["name"] for o in http_json(f"{stack.jaeger_url}/api/operations", {"service": SERVICE})["data"]
    }
    expected_ops = (
        {f"invoke_agent {a}" for a in workload.agent_names}
        | {f"chat {m}" for m in workload.models}
        | {f"execute_tool {t}" for t in workload.tools}
    )
    assert operations == expected_ops

    session_of = dict(zip(workload.trace_ids, workload.session_ids, strict=True))
    kinds: Counter[str] = Counter()
    failed_tool_spans: Counter[str] = Counter()
    for trace_id, trace in traces.items():
        processes = trace["processes"]
        assert {p["serviceName"] for p in processes.values()} == {SERVICE}
        spans = trace["spans"]
        roots = [s for s in spans if not s["references"]]
        assert len(roots) == 1, f"trace {trace_id}: {len(roots)} root spans"
        root = roots[0]
        root_tags = _tags(root)
        agent = root_tags["gen_ai.agent.name"]
        assert root["operationName"] == f"invoke_agent {agent}"
        assert root_tags["gen_ai.operation.name"] == "invoke_agent"
        assert root_tags["span.kind"] == "internal"
        assert root_tags["gen_ai.conversation.id"] == session_of[trace_id]
        assert root_tags["agentwatch.session.outcome"] in {"completed", "error", "max_iterations"}
        assert root_tags["user.id"].startswith("user-")
        for key in (
            "agentwatch.session.iterations",
            "agentwatch.session.tool_calls",
            "agentwatch.session.tool_errors",
        ):
            assert isinstance(root_tags[key], int | float), (trace_id, key)
        children = [s for s in spans if s is not root]
        # Usage and cost describe the LLM calls that answered: a session whose only call failed
        # (e.g. a request no model could serve) has none, rather than zeros.
        answered = any(
            _tags(s).get("gen_ai.operation.name") == "chat" and "error.type" not in _tags(s) for s in children
        )
        for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.cost.amount"):
            if answered:
                assert isinstance(root_tags[key], int | float), (trace_id, key)
            else:
                assert key not in root_tags, (trace_id, key)
        tool_children = 0
        for span in children:
            assert span["traceID"] == trace_id
            assert [(r["refType"], r["spanID"]) for r in span["references"]] == [
                ("CHILD_OF", root["spanID"])
            ], f"{span['operationName']} is not a child of the session span"
            # a child starts and ends inside its session (the v1 API truncates ns to µs: 1 µs slack)
            assert root["startTime"] <= span["startTime"]
            assert span["startTime"] + span["duration"] <= root["startTime"] + root["duration"] + 1
            tags = _tags(span)
            assert tags["gen_ai.conversation.id"] == session_of[trace_id]
            op = tags["gen_ai.operation.name"]
            kinds[op] += 1
            if op == "chat":
                assert span["operationName"] == f"chat {tags['gen_ai.request.model']}"
                assert tags["span.kind"] == "client"
                assert tags["gen_ai.provider.name"] in {"openai", "anthropic", "azure.ai.openai"}
                assert tags["server.address"] == workload.server_address
                assert tags["server.port"] == workload.server_port
                if "error.type" in tags:
                    assert tags["otel.status_code"] == "ERROR"
                    assert tags["error"] is True
                else:
                    assert tags["gen_ai.usage.input_tokens"] > 0
                    assert tags["gen_ai.usage.output_tokens"] > 0
                    assert tags["gen_ai.usage.cost.currency"] == "USD"
                    assert tags["gen_ai.usage.cost.amount"] > 0
                    assert tags["gen_ai.response.model"]
            elif op == "execute_tool":
                tool_children += 1
                tool = tags["gen_ai.tool.name"]
                assert span["operationName"] == f"execute_tool {tool}"
                assert tags["span.kind"] == "internal"
                assert tags["gen_ai.tool.type"] == "function"
                assert tags["gen_ai.tool.call.id"].startswith("call_")
                if "error.type" in tags:
                    failed_tool_spans[tool] += 1
                    assert tags["error"] is True
                    events = {
                        f["value"] for log in span["logs"] for f in log["fields"] if f["key"] == "event"
                    }
                    assert events & {"fallback", "bulkhead_rejected"}, (
                        f"failed {tool} span without resilience events"
                    )
            else:
                raise AssertionError(f"unexpected child operation {op}")
        assert tool_children == root_tags["agentwatch.session.tool_calls"]

    assert kinds == {"chat": workload.chat_calls, "execute_tool": workload.tool_calls}
    assert dict(failed_tool_spans) == workload.tool_failures_by_tool
    assert failed_tool_spans[workload.failing_tool] >= 5


def test_trace_by_id_through_the_v3_api(stack: Stack, workload: WorkloadSummary) -> None:
    _wait_for_all_traces(stack.jaeger_url, workload)
    trace_id = workload.trace_ids[-1]
    body = http_json(f"{stack.jaeger_url}/api/v3/traces/{trace_id}")
    resource_spans = body["result"]["resourceSpans"]
    attrs = {a["key"]: a["value"] for rs in resource_spans for a in rs["resource"]["attributes"]}
    assert attrs["service.name"] == {"stringValue": SERVICE}
    spans = [s for rs in resource_spans for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert {s["traceId"] for s in spans} == {trace_id}
    root = next(s for s in spans if not s.get("parentSpanId"))
    assert root["name"].startswith("invoke_agent ")
    assert all(s["parentSpanId"] == root["spanId"] for s in spans if s is not root)


def test_tempo_leg_receives_the_same_traces(stack: Stack, workload: WorkloadSummary) -> None:
    """The collector fans traces out to Jaeger and to the Tempo exporter (a Jaeger stands in)."""
    traces = _wait_for_all_traces(stack.tempo_standin_url, workload)
    assert set(traces) == set(workload.trace_ids)


# ----------------------------------------------------------------------------- metrics


def test_metric_names_in_prometheus_are_the_documented_ones(stack: Stack, workload: WorkloadSummary) -> None:
    """Every name in metric_names.py (which the dashboards and rules must use) really exists."""

    def missing() -> set[str]:
        present = set(
            stack.prometheus_api("/api/v1/label/__name__/values", [("match[]", f'{{job="{SERVICE}"}}')])
        )
        return set(KNOWN_METRICS - present)

    wait_until(
        lambda: not missing(),
        timeout=DATA_TIMEOUT,
        what="every documented metric name in Prometheus",
        on_timeout=lambda: f"missing: {sorted(missing())}",
    )
    labels = set(stack.prometheus_api("/api/v1/labels", [("match[]", f'{{job="{SERVICE}"}}')]))
    assert labels >= KNOWN_LABELS | {"job", "instance", "error_type", "le"}
    assert not {"exported_job", "exported_instance"} & labels, "honor_labels lost: job/instance were renamed"
    # job = service.name, instance = service.instance.id (set by the workload's resource)
    # (the stack is shared: select this module's run by its service.instance.id)
    series = stack.prometheus_api(
        "/api/v1/series", [("match[]", f'agentwatch_sessions_total{{instance=~"{SERVICE}-.*"}}')]
    )
    assert series
    assert {s["job"] for s in series} == {SERVICE}
    assert all(s["instance"].startswith(f"{SERVICE}-") for s in series)
    spans = stack.prometheus_api(
        "/api/v1/series",
        [
            (
                "match[]",
                f'traces_span_metrics_calls_total{{job="{SERVICE}", gen_ai_operation_name="execute_tool"}}',
            )
        ],
    )
    assert {s["service_name"] for s in spans} == {SERVICE}
    assert {s["span_kind"] for s in spans} == {"SPAN_KIND_INTERNAL"}
    assert {"STATUS_CODE_UNSET", "STATUS_CODE_ERROR"} <= {s["status_code"] for s in spans}


def _finite_nonzero(value: str) -> bool:
    number = float(value)
    return math.isfinite(number) and number != 0.0


def _query_series(
    stack: Stack, expr: str, instant: bool, since: float
) -> list[tuple[dict[str, str], list[str]]]:
    """(labels, values) of every series the query returns: instant at now, or over [since, now]."""
    if instant:
        result = stack.prometheus_api("/api/v1/query", {"query": expr})["result"]
        return [(r["metric"], [r["value"][1]]) for r in result]
    result = stack.prometheus_api(
        "/api/v1/query_range",
        {"query": expr, "start": f"{since:.3f}", "end": f"{time.time():.3f}", "step": "2"},
    )["result"]
    return [(r["metric"], [v for _, v in r["values"]]) for r in result]


def _grouping_labels(expr: str) -> set[str]:
    return {
        label.strip() for group in re.findall(r"\bby\s*\(([^)]*)\)", expr) for label in group.split(",")
    } - {"le", ""}


def test_every_dashboard_panel_query_returns_data(stack: Stack, workload: WorkloadSummary) -> None:
    """Each query of each panel, as Grafana would send it with every variable on "All", returns a
    finite non-zero value at some point of the workload's time range, and no series whose legend
    label is empty (a selector like tool=~".*" also matches series without the label)."""
    values = {
        "service": SERVICE,
        "model": ".*",
        "tool": ".*",
        "agent": ".*",
        "__rate_interval": "1m",
        "__interval": "2s",
        "__range": "1h",
    }
    queries: dict[str, tuple[str, bool]] = {}
    for path, dashboard in load_dashboards().items():
        for panel, target in iter_targets(dashboard):
            where = f"{path.name} / {panel['title']} / {target['refId']}"
            queries[where] = (substitute(target["expr"], values), bool(target.get("instant")))
    assert len(queries) >= 30
    since = workload.started_at - 30

    pending = dict(queries)
    unlabelled: dict[str, list[dict[str, str]]] = {}

    def all_answered() -> bool:
        for where, (expr, instant) in list(pending.items()):
            series = _query_series(stack, expr, instant, since)
            if any(_finite_nonzero(v) for _, values in series for v in values):
                del pending[where]
                grouping = _grouping_labels(expr)
                bad = [labels for labels, _ in series if any(not labels.get(g) for g in grouping)]
                if bad:
                    unlabelled[where] = bad
        return not pending

    wait_until(
        all_answered,
        timeout=DATA_TIMEOUT,
        interval=2.0,
        what="data for every dashboard query",
        on_timeout=lambda: "no data for:\n" + "\n".join(f"  {w}: {q[0]}" for w, q in pending.items()),
    )
    assert not unlabelled, f"series with an empty grouping label: {unlabelled}"


def test_dashboard_variables_resolve_to_the_workload(stack: Stack, workload: WorkloadSummary) -> None:
    expected = {
        "service": {SERVICE},
        "model": set(workload.models),
        "tool": set(workload.tools),
        "agent": set(workload.agent_names),
    }
    for path, dashboard in load_dashboards().items():
        for variable in dashboard["templating"]["list"]:
            selector, label = parse_label_values(variable["definition"])
            assert selector is not None, f"{path.name}: ${variable['name']} lists values across all metrics"
            selector = substitute(selector, {"service": SERVICE})
            values = set(stack.prometheus_api(f"/api/v1/label/{label}/values", [("match[]", selector)]))
            assert values >= expected[variable["name"]], (
                f"{path.name}: ${variable['name']} = {sorted(values)}"
            )


def test_jaeger_monitor_tab_reads_span_metrics_from_prometheus(
    stack: Stack, workload: WorkloadSummary
) -> None:
    """Jaeger's SPM (the Monitor tab) is configured against the spanmetrics names in Prometheus."""
    now_ms = int(time.time() * 1000)
    params = {
        "service": SERVICE,
        "spanKind": "internal",
        "endTs": str(now_ms),
        "lookback": str(now_ms - int((workload.started_at - 60) * 1000)),
        "step": "5000",
        "ratePer": "60000",
    }

    def calls() -> bool:
        status, body = http_get(f"{stack.jaeger_url}/api/metrics/calls", params, timeout=10)
        return status == 200 and b'"metricPoints"' in body and b'"gaugeValue"' in body

    wait_until(calls, timeout=DATA_TIMEOUT, what="Jaeger SPM call rates for the service")


def test_jaeger_does_not_trace_itself(stack: Stack, workload: WorkloadSummary) -> None:
    """Run natively, Jaeger's query service exported its own spans to the SDK's default OTLP
    endpoint (localhost:4317: the agents' Collector). Both Jaegers point that endpoint at a
    canary listener; after the queries above, nothing connected to it."""
    _wait_for_all_traces(stack.jaeger_url, workload)
    http_json(f"{stack.jaeger_url}/api/services")
    http_json(f"{stack.tempo_standin_url}/api/services")
    time.sleep(JAEGER_SELF_TRACE_DELAY)
    assert stack.otlp_canary_connections() == 0, "a Jaeger exported its own traces over OTLP"


# ----------------------------------------------------------------------------- alerts (last: waits for `for:`)


def test_tool_failure_burst_fires_the_tool_error_rate_alert(stack: Stack, workload: WorkloadSummary) -> None:
    def ours() -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = stack.prometheus_api("/api/v1/alerts", {})["alerts"]
        return [a for a in alerts if a["labels"].get("job") == SERVICE]

    def firing(alertname: str) -> list[dict[str, Any]]:
        return [a for a in ours() if a["labels"]["alertname"] == alertname and a["state"] == "firing"]

    alerts = wait_until(
        lambda: firing("AgentwatchToolErrorRateCritical"),
        timeout=ALERT_TIMEOUT,
        interval=1.0,
        what="AgentwatchToolErrorRateCritical to fire",
        on_timeout=lambda: f"alerts: {ours()}",
    )
    # Only the tool with the failure burst; the healthy tool and the one below 25% do not page.
    assert {(a["labels"]["job"], a["labels"]["gen_ai_tool_name"]) for a in alerts} == {
        (SERVICE, workload.failing_tool)
    }
    alert = alerts[0]
    assert alert["labels"]["severity"] == "critical"
    assert workload.failing_tool in alert["annotations"]["summary"]
    assert "%" in alert["annotations"]["summary"]
    assert float(alert["value"]) >= 0.25
    # The same burst is at least pending for the 10% warning and the availability burn alerts.
    states = {(a["labels"]["alertname"], a["labels"].get("gen_ai_tool_name")): a["state"] for a in ours()}
    assert states.get(("AgentwatchToolErrorRateHigh", workload.failing_tool)) in {"pending", "firing"}
    assert states.get(("AgentwatchToolAvailabilityBudgetBurnFast", workload.failing_tool)) in {
        "pending",
        "firing",
    }
    assert ("AgentwatchToolErrorRateHigh", "search_knowledge_base") not in states


def test_a_redis_outage_fires_the_shared_state_alert(stack: Stack, workload: WorkloadSummary) -> None:
    """The workload's replica shared its state through a real Redis, stopped mid-run: agentwatch
    fell back to its local state (agentwatch.state.shared = 0) and the shipped rule fires for that
    replica only, after its `for: 1m`."""
    assert workload.state_outage_at is not None
    assert workload.started_at < workload.state_outage_at < workload.finished_at

    def firing() -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = stack.prometheus_api("/api/v1/alerts", {})["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "AgentwatchSharedStateUnavailable" and a["state"] == "firing"
        ]

    alerts = wait_until(
        firing,
        timeout=ALERT_TIMEOUT,
        interval=1.0,
        what="AgentwatchSharedStateUnavailable to fire",
        on_timeout=lambda: (
            "agentwatch_state_shared_ratio: "
            + str(stack.prometheus_api("/api/v1/query", {"query": "agentwatch_state_shared_ratio"})["result"])
        ),
    )
    ((job, instance),) = {(a["labels"]["job"], a["labels"]["instance"]) for a in alerts}
    assert job == SERVICE and instance.startswith(f"{SERVICE}-")
    assert alerts[0]["labels"]["severity"] == "warning"
    assert float(alerts[0]["value"]) == 0.0
