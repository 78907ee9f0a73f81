"""The fleet shape on loopback, with the ocb-built Collector: one agent-tier Collector
(``collector/fleet/agent.yaml`` + ``agent-resolver-static.yaml``) load-balancing by trace id to two
gateway Collectors (``collector/fleet/gateway.yaml``) that compute span metrics and tail-sample into
one Jaeger; a few hundred ``agentwatch demo`` sessions go through it.

The demo also writes every span to its OTLP JSON Lines file: that is the ground truth (all spans,
before sampling). Asserted:

* every trace arrives whole at exactly one gateway: over both gateways, the tail sampler saw as
  many new trace ids, and decided as many traces, as the run had traces (a trace split across
  gateways counts twice), their receivers accepted exactly the run's spans, both gateways got a
  share, and no span arrived after its trace was decided;
* every trace with an error or a resilience event, and every session slower or costlier than the
  thresholds (lowered here so that some sessions cross them), is kept, whole;
* of the rest, exactly the traces the probabilistic policy's trace-id hash selects are kept, and
  their share is within 4 standard deviations of the configured 30 % (binomial);
* the span metrics of the two gateways add up to every span of the run, per span name and status.

The shipped settings are used except: 10 s decision wait (the longest session here takes ~6 s),
a 30 % share, thresholds of 2.2 s and $0.00032 (so that a dozen sessions or more cross each with
no other reason to be kept), and a 5 s span-metrics flush. About 50 s.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import _paths
from ._fleet import TraceFacts, probabilistic_keeps, read_traces, scrape, total
from ._harness import LOOPBACK, ManagedProcess, free_ports, http_get, http_json, wait_until
from ._stack import START_TIMEOUT, CollectorPorts, JaegerPorts
from ._workload import DemoRun, clean_env, run_demo_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SERVICE = "agentwatch-fleet"
SESSIONS = 300
SAMPLING_PERCENTAGE = 30.0
DECISION_WAIT = 10.0
SLOW_SESSION_MS = 2200
COSTLY_SESSION_USD = 0.00032
FLUSH = 5.0


def _scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    status, body = http_get(url, timeout=10)
    assert status == 200, f"GET {url}: HTTP {status}"
    return scrape(body.decode())


@dataclass
class Fleet:
    jaeger: JaegerPorts
    agent: CollectorPorts
    gateways: list[CollectorPorts]
    processes: list[ManagedProcess]

    @property
    def jaeger_url(self) -> str:
        return f"http://{LOOPBACK}:{self.jaeger.query_http}"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, jaeger_bin: Path, otelcol_bin: Path) -> Iterator[Fleet]:
    workdir = tmp_path_factory.mktemp("fleet")
    ports = iter(free_ports(22))
    fleet = Fleet(
        jaeger=JaegerPorts(*(next(ports) for _ in range(6))),
        agent=CollectorPorts(*(next(ports) for _ in range(5))),
        gateways=[CollectorPorts(*(next(ports) for _ in range(5))) for _ in range(2)],
        processes=[],
    )
    logs = workdir / "logs"
    try:
        jaeger = ManagedProcess(
            "jaeger",
            [str(jaeger_bin), "--config", str(_paths.JAEGER_CONFIG)],
            logs / "jaeger.log",
            env=fleet.jaeger.env(f"http://{LOOPBACK}:{next(ports)}"),  # no Prometheus: SPM unused
            cwd=workdir,
        )
        fleet.processes.append(jaeger.start())
        health = [f"http://{LOOPBACK}:{fleet.jaeger.health}/status"]
        for number, gateway in enumerate(fleet.gateways, 1):
            env = {
                **gateway.env(),
                "OTELCOL_INSTANCE": f"gateway-{number}",
                "TRACES_OTLP_ENDPOINT": f"{LOOPBACK}:{fleet.jaeger.otlp_grpc}",
                "OTELCOL_DECISION_WAIT": f"{DECISION_WAIT:g}s",
                "OTELCOL_SAMPLING_PERCENTAGE": f"{SAMPLING_PERCENTAGE:g}",
                "AGENTWATCH_SLO_SESSION_LATENCY_MS": str(SLOW_SESSION_MS),
                "AGENTWATCH_SLO_SESSION_COST_USD": str(COSTLY_SESSION_USD),
                "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": f"{FLUSH:g}s",
            }
            process = ManagedProcess(
                f"gateway-{number}",
                [str(otelcol_bin), f"--config={_paths.FLEET_GATEWAY_CONFIG}"],
                logs / f"gateway-{number}.log",
                env=env,
                cwd=workdir,
            )
            fleet.processes.append(process.start())
            health.append(f"http://{LOOPBACK}:{gateway.health}/status")
        agent_env = {
            **fleet.agent.env(),
            "OTELCOL_INSTANCE": "agent-1",
            "OTELCOL_GATEWAYS": "[" + ", ".join(f"{LOOPBACK}:{g.otlp_grpc}" for g in fleet.gateways) + "]",
        }
        agent = ManagedProcess(
            "agent",
            [
                str(otelcol_bin),
                f"--config={_paths.FLEET_AGENT_CONFIG}",
                f"--config={_paths.FLEET_AGENT_STATIC_RESOLVER}",
            ],
            logs / "agent.log",
            env=agent_env,
            cwd=workdir,
        )
        fleet.processes.append(agent.start())
        health.append(f"http://{LOOPBACK}:{fleet.agent.health}/status")
        for process, url in zip(fleet.processes, health, strict=True):
            process.wait_http_ok(url, START_TIMEOUT)
        yield fleet
    finally:
        for process in reversed(fleet.processes):
            process.stop()


@pytest.fixture(autouse=True)
def _attach_process_logs(request: pytest.FixtureRequest, fleet: Fleet) -> None:
    request.node.stack_log_tails = lambda: [p.log_tail() for p in fleet.processes]


@dataclass(frozen=True)
class Outcome:
    run: DemoRun
    truth: dict[str, TraceFacts]
    kept: dict[str, dict[str, Any]]  # trace id -> Jaeger trace
    gateway_telemetry: list[list[tuple[str, dict[str, str], float]]]


def _reasons(facts: TraceFacts) -> Counter[str]:
    """Why the gateways must keep this trace (empty: only the share may keep it)."""
    return Counter(
        reason
        for reason, hit in (
            ("error", facts.error),
            ("resilience", facts.resilience),
            ("slow", facts.duration_ms >= SLOW_SESSION_MS),
            ("costly", facts.session_cost is not None and facts.session_cost > COSTLY_SESSION_USD),
        )
        if hit
    )


def _must_keep(facts: TraceFacts) -> bool:
    return bool(_reasons(facts))


@pytest.fixture(scope="module")
def outcome(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    output = tmp_path_factory.mktemp("fleet-run") / "spans.jsonl"
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{LOOPBACK}:{fleet.agent.otlp_grpc}",
        OTEL_SERVICE_NAME=SERVICE,
    )
    args = ("--sessions", str(SESSIONS), "--concurrency", "16", "--fault-rate", "0.02", "--seed", "11")
    run = run_demo_cli(*args, "--output", str(output), env=env, timeout=300)
    truth = read_traces(output)
    assert len(truth) == SESSIONS

    def decided() -> list[list[tuple[str, dict[str, str], float]]] | None:
        telemetry = [_scrape(f"http://{LOOPBACK}:{g.telemetry}/metrics") for g in fleet.gateways]
        count = sum(
            total(t, "otelcol_processor_tail_sampling_global_count_traces_sampled_total") for t in telemetry
        )
        return telemetry if count >= len(truth) else None

    telemetry = wait_until(
        decided,
        timeout=DECISION_WAIT + 60,
        interval=1.0,
        what=f"tail-sampling decisions for {len(truth)} traces",
    )
    # Everything the gateways say they kept must reach Jaeger; the tests compare it with the truth.
    sampled = sum(
        total(t, "otelcol_processor_tail_sampling_global_count_traces_sampled_total", sampled="true")
        for t in telemetry
    )

    def kept_traces() -> dict[str, dict[str, Any]] | None:
        body = http_json(
            f"{fleet.jaeger_url}/api/traces",
            {
                "service": SERVICE,
                "limit": str(SESSIONS * 2),
                "start": str(int((run.started_at - 60) * 1e6)),
                "end": str(int((time.time() + 60) * 1e6)),
            },
            timeout=20,
        )
        traces = {t["traceID"]: t for t in body["data"] or []}
        return traces if len(traces) >= sampled else None

    kept = wait_until(kept_traces, timeout=60, interval=2.0, what=f"{sampled:g} kept traces in Jaeger")
    return Outcome(run, truth, kept, telemetry)


def test_every_trace_arrives_whole_at_exactly_one_gateway(outcome: Outcome) -> None:
    traces, spans = len(outcome.truth), sum(f.spans for f in outcome.truth.values())
    per_gateway = [
        (
            total(t, "otelcol_processor_tail_sampling_new_trace_id_received_total"),
            total(t, "otelcol_processor_tail_sampling_global_count_traces_sampled_total"),
            total(t, "otelcol_receiver_accepted_spans_total", receiver="otlp"),
            total(t, "otelcol_processor_tail_sampling_sampling_late_span_age_count"),
        )
        for t in outcome.gateway_telemetry
    ]
    new_ids, decisions, accepted, late = (sum(column) for column in zip(*per_gateway, strict=True))
    assert new_ids == traces, f"trace ids seen per gateway {per_gateway}: a trace reached two gateways"
    assert decisions == traces, per_gateway
    assert accepted == spans, f"spans accepted per gateway {per_gateway}, the run had {spans}"
    assert late == 0, "spans arrived after their trace was decided"
    assert all(row[0] > traces * 0.2 for row in per_gateway), f"unbalanced: {per_gateway}"
    for trace_id, trace in outcome.kept.items():
        assert len(trace["spans"]) == outcome.truth[trace_id].spans, f"kept trace {trace_id} is not whole"


def test_errors_resilience_events_slow_and_costly_sessions_are_all_kept(outcome: Outcome) -> None:
    must = {t for t, f in outcome.truth.items() if _must_keep(f)}
    reasons: Counter[str] = Counter()
    for facts in outcome.truth.values():
        reasons.update(_reasons(facts))
    assert all(reasons[r] for r in ("error", "resilience", "slow", "costly")), (
        f"the run lacks a case: {reasons}"
    )
    assert must - set(outcome.kept) == set(), f"dropped although they must be kept ({reasons})"
    # Each threshold policy on its own: traces with no other reason to be kept, not in the share.
    for reason in ("slow", "costly"):
        only = {
            t
            for t, f in outcome.truth.items()
            if set(_reasons(f)) == {reason} and not probabilistic_keeps(t, SAMPLING_PERCENTAGE)
        }
        assert only, f"no trace was {reason} and nothing else: the {reason} policy is not exercised"
        assert only <= set(outcome.kept), f"{reason} sessions dropped"


def test_the_rest_is_kept_at_the_configured_share(outcome: Outcome) -> None:
    rest = {t for t, f in outcome.truth.items() if not _must_keep(f)}
    kept_rest = rest & set(outcome.kept)
    assert set(outcome.kept) <= set(outcome.truth), "Jaeger holds traces the run did not make"
    assert kept_rest == {t for t in rest if probabilistic_keeps(t, SAMPLING_PERCENTAGE)}
    n, p = len(rest), SAMPLING_PERCENTAGE / 100
    assert n >= 60, f"only {n} traces without a reason to keep them: the share is not measurable"
    tolerance = 4 * math.sqrt(p * (1 - p) / n)
    share = len(kept_rest) / n
    assert abs(share - p) <= tolerance, f"kept {share:.1%} of {n}, configured {p:.0%} ± {tolerance:.1%}"


def test_span_metrics_count_every_span(fleet: Fleet, outcome: Outcome) -> None:
    expected: Counter[tuple[str, str]] = Counter()
    for facts in outcome.truth.values():
        expected.update(facts.spans_by_name_status)

    def counted() -> Counter[tuple[str, str]] | None:
        seen: Counter[tuple[str, str]] = Counter()
        instances = set()
        for gateway in fleet.gateways:
            for name, labels, value in _scrape(f"http://{LOOPBACK}:{gateway.prometheus}/metrics"):
                if name == "traces_span_metrics_calls_total" and labels.get("service_name") == SERVICE:
                    seen[(labels["span_name"], labels["status_code"])] += int(value)
                    instances.add(labels["otelcol_instance"])
        return seen if seen == expected and instances == {"gateway-1", "gateway-2"} else None

    wait_until(
        counted,
        timeout=3 * FLUSH + 10,
        interval=1.0,
        what=f"span metrics of both gateways adding up to the run's {sum(expected.values())} spans",
    )
