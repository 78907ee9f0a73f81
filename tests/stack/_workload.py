"""The instrumented agent workload the stack e2e test sends through the collector: the real package.

``run_workload`` runs the demo engine (:func:`agentwatch._demo.run_demo`) in a subprocess with
``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at the collector under test, exactly as a user runs
``agentwatch demo`` against ``docker compose up``: the real ``openai`` SDK against the fake LLM
server, agentwatch's instrumentation, tools, sessions and resilience policies, and the OTLP/gRPC
exporters configured from the standard variables. Nothing here emits telemetry itself.

The engine's fault model is turned so that every dashboard panel has data and exactly one
application alert fires, and the run is paced (a session start every ``arrival_interval`` s, metrics exported every
0.5 s) so that Prometheus sees counters *grow* across several scrapes (a series that appears once
with its final value has ``rate() == 0``):

* ``fetch_related_content`` (``FAILING_TOOL``) has its dependency down from 20% of the sessions to
  the end: failures, then its breaker opens and rejects; every call degrades (``fallback``), so
  its error ratio is far above the 25% of ``AgentwatchToolErrorRateCritical``;
* ``search_knowledge_base`` is flaky but every flaky call succeeds on its retry (no failure at
  all: it must not even go pending on the 10% alert); ``get_user_preferences`` is sometimes slow
  (timeouts, retries, a few degraded calls, below 25%);
* the main model is rate limited (by the server's 429s, and by a client-side ``RateLimit`` that
  delays some calls) and fails now and then (retries), has a brownout mid-run (its
  breaker opens, the fallback model answers) and sometimes gets a request no model can serve
  (failed chats and sessions, for the LLM error panels and the completion burn rate); some
  sessions loop until the iteration cap; about a third of the sessions stream.

The replica shares its operator state through a real Redis (``AGENTWATCH_STATE_REDIS_URL``, as a
fleet runs), which is stopped mid-run (``state_outage_after``): the replica falls back to its local
state, so ``agentwatch.state.shared`` is exported and its last value, 0, fires the shared-state
alert (the Collector keeps exporting a series' last value, as for a replica still running).

The plan is seeded, so these properties are checked on the plan before anything runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from _redis import RedisServer
from agentwatch._demo import AGENT_NAME, MAIN_MODEL, TOOL_NAMES, FaultModel, build_plan

CRITICAL_TOOL = "search_knowledge_base"
FAILING_TOOL = "fetch_related_content"
TOOLS = TOOL_NAMES
SEED = 5
FAULTS: dict[str, Any] = {
    "rate": 0.15,
    "tool_rates": {CRITICAL_TOOL: 0.1, "get_user_preferences": 0.12},
    "critical_can_fail": False,
    "outage": (0.2, 1.0),
    "llm_brownout": (0.45, 0.65),
    "loop_rate": 0.1,
    "llm_fault_mix": {"rate_limit": 0.4, "server_error": 0.25, "exhausted": 0.1, "bad_request": 0.25},
}

# About 10 chat calls a second on average, in bursts (a session's calls follow each other): a
# three-request burst allowance delays some of them (rate_limit_delayed), never for long.
LLM_RATE_LIMIT: dict[str, float] = {"requests": 600, "period": 60.0, "burst": 0.005}

# Runs in the subprocess: the engine, then one JSON line with what the assertions need.
_SCRIPT = """
import dataclasses, json, sys
from agentwatch import RateLimit
from agentwatch._cli._summary import summarize
from agentwatch._demo import DemoOptions, FaultModel, _run, run_demo

settings = json.loads(sys.argv[1])
# The main model's policy gets a client-side rate limit (fleet-wide through the shared-state Redis
# while it answers): the LLM overview's rate-limit panel needs its decisions.
_run.LLM_POLICY = dataclasses.replace(_run.LLM_POLICY, rate_limit=RateLimit(**settings.pop("llm_rate_limit")))
faults = settings.pop("faults")
faults["outage"] = tuple(faults["outage"])
faults["llm_brownout"] = tuple(faults["llm_brownout"])
result = run_demo(DemoOptions(faults=FaultModel(**faults), keep_sessions=True, **settings))
summary = summarize(result.metrics)
print(json.dumps({
    "llm_server": result.llm_server,
    "llm_requests": result.llm_requests,
    "outcomes": result.outcomes,
    "started_at": result.started_at,
    "finished_at": result.finished_at,
    "otlp_endpoint": result.otlp_endpoint,
    "output": None if result.output_path is None else str(result.output_path),
    "sessions": [[r.trace_id, r.session_id, r.outcome] for r in result.sessions],
    "summary": summary.to_dict(),
}))
"""


@dataclass(frozen=True)
class WorkloadSummary:
    service_name: str
    trace_ids: tuple[str, ...]  # 32 lowercase hex digits, one per session
    session_ids: tuple[str, ...]  # gen_ai.conversation.id, same order as trace_ids
    agent_names: frozenset[str]
    models: frozenset[str]  # gen_ai.request.model values
    tools: frozenset[str]
    failing_tool: str
    sessions: int
    chat_calls: int
    tool_calls: int
    llm_failures: int
    streamed_chats: int
    tool_calls_by_tool: dict[str, int] = field(default_factory=dict)
    tool_failures_by_tool: dict[str, int] = field(default_factory=dict)
    resilience_events: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0  # epoch seconds
    finished_at: float = 0.0
    server_address: str = ""  # the fake LLM server, as the chat spans report it
    server_port: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    state_outage_at: float | None = None  # epoch seconds: when the state Redis was stopped


def _check_plan(sessions: int) -> None:
    """The seeded plan must script what the panels and alerts need (fails fast if the engine changes)."""
    plans = build_plan(SEED, sessions, FaultModel(**FAULTS))
    failing = [
        p.index for p in plans if any(t.fault is not None and t.fault.kind == "bad_request" for t in p.turns)
    ]
    slow = sum(c.slow_attempts for p in plans for t in p.turns for c in t.calls)
    half = sessions // 2
    problems = []
    if len([i for i in failing if i < half]) < 2 or len([i for i in failing if i >= half]) < 2:
        problems.append(f"unrecoverable LLM requests in sessions {failing}: want 2+ in each half")
    if slow < 4:
        problems.append(f"{slow} slow get_user_preferences attempts: want 4+")
    if not any(p.loops for p in plans):
        problems.append("no session loops to the iteration cap")
    if sum(p.stream for p in plans) < 5:
        problems.append("fewer than 5 streaming sessions")
    assert not problems, f"seed {SEED} no longer scripts the stack workload: {'; '.join(problems)}"


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OTEL_*/AGENTWATCH_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_"))}
    env.update(extra)
    return env


@dataclass(frozen=True)
class DemoRun:
    """One ``agentwatch demo --json`` run: its JSON document and when it ran (epoch seconds)."""

    document: dict[str, Any]
    started_at: float
    finished_at: float
    stderr: str

    @property
    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = self.document["summary"]
        return summary

    @property
    def instance(self) -> str:
        return str(self.document["service_instance_id"])


def _python(*args: str, env: dict[str, str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a subprocess (this interpreter); fails with its stderr unless it exits 0."""
    completed = subprocess.run(
        [sys.executable, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if completed.returncode != 0:
        raise AssertionError(f"{what} failed ({completed.returncode}):\n{completed.stderr[-5000:]}")
    return completed


def run_demo_cli(*args: str, env: dict[str, str], timeout: float = 180.0) -> DemoRun:
    """``agentwatch demo --json --no-progress *args`` as a user runs it, in a subprocess."""
    started = time.time()
    argv = ("-m", "agentwatch", "demo", "--json", "--no-progress", *args)
    completed = _python(*argv, env=env, timeout=timeout, what="agentwatch demo")
    return DemoRun(json.loads(completed.stdout), started, time.time(), completed.stderr)


def run_workload(
    otlp_endpoint: str,
    service_name: str,
    *,
    sessions: int = 40,
    arrival_interval: float = 0.3,
    concurrency: int = 6,
    timeout: float = 180.0,
    state_redis: RedisServer | None = None,
    state_outage_after: float | None = None,
) -> WorkloadSummary:
    """Run ``sessions`` demo sessions, one starting every ``arrival_interval`` s, exporting OTLP/gRPC
    to ``otlp_endpoint`` (e.g. ``http://127.0.0.1:4317``). Returns once the subprocess has flushed
    and shut its providers down, so everything has left it.

    With ``state_redis`` the run shares its operator state through that Redis, which is stopped
    ``state_outage_after`` s after the run was launched (before it ends: the sessions alone take
    ``sessions * arrival_interval`` s after start-up)."""
    _check_plan(sessions)
    settings = {
        "sessions": sessions,
        "concurrency": concurrency,
        "seed": SEED,
        "arrival_interval": arrival_interval,
        "faults": FAULTS,
        "llm_rate_limit": LLM_RATE_LIMIT,
    }
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_SERVICE_NAME=service_name,
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_BSP_SCHEDULE_DELAY="200",
        **({} if state_redis is None else {"AGENTWATCH_STATE_REDIS_URL": state_redis.url}),
    )
    outage_at: list[float] = []

    def outage() -> None:
        assert state_redis is not None
        outage_at.append(time.time())
        state_redis.stop()

    timer = None
    if state_redis is not None and state_outage_after is not None:
        timer = threading.Timer(state_outage_after, outage)
        timer.start()
    try:
        completed = _python(
            "-c", _SCRIPT, json.dumps(settings), env=env, timeout=timeout, what="the demo workload"
        )
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["otlp_endpoint"] == otlp_endpoint and result["output"] is None, result
    summary = result["summary"]
    tools = {row["tool"]: row for row in summary["tools"]}
    events: dict[str, int] = {}
    for row in summary["tools"]:
        for name, key in (("retry", "retries"), ("timeout", "timeouts"), ("fallback", "fallbacks")):
            events[name] = events.get(name, 0) + row[key]
    events["llm_retry"] = summary["llm"]["retries"]
    events["llm_fallback"] = sum(summary["llm"]["fallbacks"].values())
    server = urlsplit(result["llm_server"])
    records = result["sessions"]
    return WorkloadSummary(
        service_name=service_name,
        trace_ids=tuple(r[0] for r in records),
        session_ids=tuple(r[1] for r in records),
        agent_names=frozenset({AGENT_NAME}),
        models=frozenset({MAIN_MODEL}),
        tools=frozenset(tools),
        failing_tool=FAILING_TOOL,
        sessions=summary["sessions"]["total"],
        chat_calls=sum(row["calls"] for row in summary["models"]),
        tool_calls=sum(row["calls"] for row in summary["tools"]),
        llm_failures=sum(row["errors"] for row in summary["models"]),
        streamed_chats=summary["llm"]["streamed"],
        tool_calls_by_tool={name: row["calls"] for name, row in tools.items()},
        tool_failures_by_tool={name: row["errors"] for name, row in tools.items() if row["errors"]},
        resilience_events=events,
        started_at=result["started_at"],
        finished_at=result["finished_at"],
        server_address=server.hostname or "",
        server_port=server.port or 0,
        outcomes=result["outcomes"],
        state_outage_at=outage_at[0] if outage_at else None,
    )
