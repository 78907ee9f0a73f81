"""The instrumented agent workload the stack e2e test sends through the collector.

For now it emits agentwatch's telemetry contract *synthetically* with the OpenTelemetry SDK
(real OTLP/gRPC export to the collector under test); once the package's instrumentation, tools
and session APIs land, this module is replaced by the package driving a fake LLM server. The
interface the test relies on stays: ``run_workload(otlp_endpoint, service_name) -> WorkloadSummary``.

What it produces, over ~``duration`` seconds of wall time (so that Prometheus sees counters *grow*
across several scrapes; a series that appears once with its final value has ``rate() == 0``):

* sessions (``invoke_agent {agent}``) with ``chat {model}`` CLIENT and ``execute_tool {tool}``
  children, the session attributes, cost and iterations;
* streaming chats (time to first chunk / per output chunk), LLM failures (``error.type``);
* after a warm-up, a burst of failures of one tool (``FAILING_TOOL``) with retry/timeout/
  circuit/fallback span events and resilience counters, bulkhead rejections of another tool,
  and the circuit-state gauge reporting that tool's circuit open.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

AGENTS = ("support-agent", "research-agent")
# (provider, request model, response model, server.address)
MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "api.openai.com"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", "api.anthropic.com"),
)
CRITICAL_TOOL = "search_knowledge_base"
FAILING_TOOL = "get_user_preferences"  # optional tool: fails in the burst, falls back
REJECTING_TOOL = "fetch_related_content"  # optional tool: bulkhead rejections in the burst
TOOLS = (CRITICAL_TOOL, FAILING_TOOL, REJECTING_TOOL)

# Bucket advisories: the package's (gen_ai durations follow the semantic conventions).
DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
COST_BUCKETS = [
    0.00001,
    0.00005,
    0.0001,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    5,
]
ITERATION_BUCKETS = [1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20]

PRICES = {  # USD per token (input, output)
    "gpt-4o-mini": (0.15e-6, 0.60e-6),
    "claude-3-5-haiku-latest": (0.80e-6, 4.0e-6),
}


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


class _Emitter:
    def __init__(self, tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
        self.tracer = tracer_provider.get_tracer("agentwatch", "0.0.0")
        meter = meter_provider.get_meter("agentwatch", "0.0.0")
        self.op_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to first chunk",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.tpoc = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            "Time per output chunk",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.op_cost = meter.create_histogram(
            "gen_ai.client.operation.cost",
            "USD",
            "Cost of a GenAI operation",
            explicit_bucket_boundaries_advisory=COST_BUCKETS,
        )
        self.tool_duration = meter.create_histogram(
            "gen_ai.execute_tool.duration",
            "s",
            "Tool execution duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.session_duration = meter.create_histogram(
            "agentwatch.session.duration",
            "s",
            "Agent session duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.session_cost = meter.create_histogram(
            "agentwatch.session.cost",
            "USD",
            "Agent session cost",
            explicit_bucket_boundaries_advisory=COST_BUCKETS,
        )
        self.session_iterations = meter.create_histogram(
            "agentwatch.session.iterations",
            "{iteration}",
            "LLM calls per session",
            explicit_bucket_boundaries_advisory=ITERATION_BUCKETS,
        )
        self.sessions = meter.create_counter("agentwatch.sessions", "{session}", "Agent sessions")
        self.resilience = meter.create_counter(
            "agentwatch.resilience.events", "{event}", "Resilience policy events"
        )
        # circuit name -> (state, extra attributes)
        self.circuits: dict[str, tuple[int, dict[str, str]]] = {
            tool: (0, {"gen_ai.tool.name": tool}) for tool in TOOLS
        }
        for provider, model, _, _ in MODELS:  # circuit keys: the tool name, or provider:model
            self.circuits[f"{provider}:{model}"] = (0, {"gen_ai.request.model": model})
        meter.create_observable_gauge(
            "agentwatch.circuit.state", [self._observe_circuits], "{state}", "Circuit breaker state"
        )
        self.resilience_counts: Counter[str] = Counter()
        self.burst_calls: Counter[str] = Counter()

    def _observe_circuits(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(state, {"agentwatch.circuit.name": name, **attrs})
            for name, (state, attrs) in list(self.circuits.items())
        ]

    def resilience_event(
        self, event: str, policy: str, subject: dict[str, str], error_type: str | None = None
    ) -> None:
        attrs = {"agentwatch.resilience.event": event, "agentwatch.resilience.policy": policy, **subject}
        if error_type:
            attrs["error.type"] = error_type
        self.resilience.add(1, attrs)
        self.resilience_counts[event] += 1


def run_workload(
    otlp_endpoint: str,
    service_name: str,
    *,
    duration: float = 12.0,
    sessions: int = 40,
    burst_after: float = 0.25,
    seed: int = 7,
) -> WorkloadSummary:
    """Run ``sessions`` agent sessions spread over ``duration`` s, exporting OTLP/gRPC to ``otlp_endpoint``.

    ``otlp_endpoint`` is a gRPC endpoint such as ``http://127.0.0.1:4317``. The tool-failure
    burst starts after ``burst_after`` of the sessions. Providers are flushed and shut down before
    returning, so everything has left the process when this returns.
    """
    rng = random.Random(seed)
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.version": "0.0.0-e2e",
            "service.instance.id": f"{service_name}-{uuid.uuid4().hex[:8]}",
        }
    )
    span_exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True, timeout=10)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=200))
    metric_reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=otlp_endpoint, insecure=True, timeout=10), export_interval_millis=500
    )
    meter_provider = MeterProvider(metric_readers=[metric_reader], resource=resource)
    em = _Emitter(tracer_provider, meter_provider)

    trace_ids: list[str] = []
    session_ids: list[str] = []
    chat_calls = tool_call_count = llm_failures = streamed = 0
    calls_by_tool: Counter[str] = Counter()
    failures_by_tool: Counter[str] = Counter()
    started = time.time()
    burst_start = int(sessions * burst_after)
    interval = duration / sessions
    try:
        for index in range(sessions):
            in_burst = index >= burst_start
            if in_burst and index == burst_start:
                em.circuits[FAILING_TOOL] = (2, {"gen_ai.tool.name": FAILING_TOOL})
            if index == int(sessions * 0.6):  # a model's circuit probing after rate limits
                provider, model = MODELS[1][0], MODELS[1][1]
                em.circuits[f"{provider}:{model}"] = (1, {"gen_ai.request.model": model})
            result = _session(em, rng, index, in_burst)
            trace_ids.append(result["trace_id"])
            session_ids.append(result["conversation_id"])
            chat_calls += result["chats"]
            llm_failures += result["llm_failures"]
            streamed += result["streamed"]
            for tool, failed in result["tools"]:
                tool_call_count += 1
                calls_by_tool[tool] += 1
                if failed:
                    failures_by_tool[tool] += 1
            # Pace the sessions in real time: the metric reader exports every 0.5 s.
            next_at = started + (index + 1) * interval
            time.sleep(max(0.0, next_at - time.time()))
        # Let the last cumulative values be exported at least twice after the final change.
        time.sleep(1.2)
    finally:
        tracer_provider.force_flush(timeout_millis=10_000)
        meter_provider.force_flush(timeout_millis=10_000)
        tracer_provider.shutdown()
        meter_provider.shutdown(timeout_millis=10_000)
    return WorkloadSummary(
        service_name=service_name,
        trace_ids=tuple(trace_ids),
        session_ids=tuple(session_ids),
        agent_names=frozenset(AGENTS),
        models=frozenset(m for _, m, _, _ in MODELS),
        tools=frozenset(TOOLS),
        failing_tool=FAILING_TOOL,
        sessions=sessions,
        chat_calls=chat_calls,
        tool_calls=tool_call_count,
        llm_failures=llm_failures,
        streamed_chats=streamed,
        tool_calls_by_tool=dict(calls_by_tool),
        tool_failures_by_tool=dict(failures_by_tool),
        resilience_events=dict(em.resilience_counts),
        started_at=started,
        finished_at=time.time(),
    )


def _session(em: _Emitter, rng: random.Random, index: int, in_burst: bool) -> dict[str, Any]:
    agent = AGENTS[index % len(AGENTS)]
    provider, model, response_model, server = MODELS[index % len(MODELS)]
    conversation_id = f"conv-{uuid.uuid4()}"
    user_id = f"user-{index % 5}"
    # Synthetic timeline (nanoseconds), laid out in the recent past so every span is "finished".
    cursor = time.time_ns() - 30 * 1_000_000_000
    session_start = cursor
    session_span = em.tracer.start_span(
        f"invoke_agent {agent}",
        kind=SpanKind.INTERNAL,
        start_time=session_start,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            "gen_ai.conversation.id": conversation_id,
            "user.id": user_id,
        },
    )
    ctx = set_span_in_context(session_span)
    base_attrs: dict[str, str | int] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.response.model": response_model,
        "server.address": server,
        "server.port": 443,
    }
    total_in = total_out = 0
    total_cost = 0.0
    tools_done: list[tuple[str, bool]] = []
    llm_failures = streamed = chats = 0
    outcome = "completed"
    iterations = 2 if index % 5 == 4 else 3  # 3 iterations = 2 tool calls
    plan = [CRITICAL_TOOL, FAILING_TOOL if index % 2 == 0 else REJECTING_TOOL]

    for iteration in range(iterations):
        # ---- chat call
        fail = index % 9 == 4 and iteration == iterations - 1  # every 9th session's last call: 429
        stream = iteration % 2 == 1 or index % 3 == 0
        dur = rng.uniform(0.3, 2.5)
        start, cursor = cursor, cursor + int(dur * 1e9)
        chats += 1
        span = em.tracer.start_span(
            f"chat {model}",
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=start,
            attributes={**base_attrs, "gen_ai.conversation.id": conversation_id},
        )
        metric_attrs: dict[str, str | int] = dict(base_attrs)
        if fail:
            llm_failures += 1
            outcome = "error"
            span.set_attribute("error.type", "openai.RateLimitError")
            span.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))
            metric_attrs["error.type"] = "openai.RateLimitError"
            em.op_duration.record(dur, metric_attrs)
            em.resilience_event("retry", "retry", {"gen_ai.request.model": model}, "openai.RateLimitError")
            span.end(end_time=cursor)
            break
        tokens_in, tokens_out = rng.randint(300, 2500), rng.randint(40, 600)
        price_in, price_out = PRICES[model]
        cost = tokens_in * price_in + tokens_out * price_out
        total_in, total_out, total_cost = total_in + tokens_in, total_out + tokens_out, total_cost + cost
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
                "gen_ai.response.finish_reasons": ["tool_calls" if iteration < iterations - 1 else "stop"],
                "gen_ai.usage.cost.amount": cost,
                "gen_ai.usage.cost.currency": "USD",
            }
        )
        em.op_duration.record(dur, metric_attrs)
        em.token_usage.record(tokens_in, {**metric_attrs, "gen_ai.token.type": "input"})
        em.token_usage.record(tokens_out, {**metric_attrs, "gen_ai.token.type": "output"})
        em.op_cost.record(cost, metric_attrs)
        if stream:
            streamed += 1
            em.ttfc.record(rng.uniform(0.15, 0.9), metric_attrs)
            em.tpoc.record(rng.uniform(0.005, 0.04), metric_attrs)
        span.end(end_time=cursor)

        # ---- tool call after every chat but the last
        if iteration < iterations - 1:
            tool = plan[iteration % len(plan)]
            failed = _tool_call(em, rng, ctx, tool, conversation_id, in_burst, cursor)
            tools_done.append((tool, failed[0]))
            cursor = failed[1]

    session_dur = (cursor - session_start) / 1e9
    tool_errors = sum(1 for _, f in tools_done if f)
    session_span.set_attributes(
        {
            "agentwatch.session.outcome": outcome,
            "agentwatch.session.iterations": iterations,
            "agentwatch.session.tool_calls": len(tools_done),
            "agentwatch.session.tool_errors": tool_errors,
            "gen_ai.usage.input_tokens": total_in,
            "gen_ai.usage.output_tokens": total_out,
            "gen_ai.usage.cost.amount": total_cost,
        }
    )
    if outcome == "error":
        session_span.set_attribute("error.type", "openai.RateLimitError")
        session_span.set_status(Status(StatusCode.ERROR))
    session_span.end(end_time=cursor)
    session_attrs = {"gen_ai.agent.name": agent, "agentwatch.session.outcome": outcome}
    em.session_duration.record(session_dur, session_attrs)
    em.session_cost.record(total_cost, session_attrs)
    em.session_iterations.record(iterations, session_attrs)
    em.sessions.add(1, session_attrs)
    trace_id = format(session_span.get_span_context().trace_id, "032x")
    return {
        "trace_id": trace_id,
        "conversation_id": conversation_id,
        "chats": chats,
        "llm_failures": llm_failures,
        "streamed": streamed,
        "tools": tools_done,
    }


def _tool_call(
    em: _Emitter,
    rng: random.Random,
    ctx: Context,
    tool: str,
    conversation_id: str,
    in_burst: bool,
    cursor: int,
) -> tuple[bool, int]:
    dur = rng.uniform(0.05, 0.8)
    start = cursor
    call_id = f"call_{uuid.uuid4().hex[:12]}"
    span = em.tracer.start_span(
        f"execute_tool {tool}",
        context=ctx,
        kind=SpanKind.INTERNAL,
        start_time=start,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
            "gen_ai.conversation.id": conversation_id,
        },
    )
    subject = {"gen_ai.tool.name": tool}
    error_type: str | None = None
    t = start
    burst_call = 0
    if in_burst:
        em.burst_calls[tool] += 1
        burst_call = em.burst_calls[tool]
    # Deterministic shares so the alert assertions cannot flake: in the burst FAILING_TOOL fails
    # 5 calls in 6 (well above the 25% critical threshold), REJECTING_TOOL rejects 1 in 4 (overall
    # below 25%: it may reach the 10% warning, never the critical alert), CRITICAL_TOOL never fails.
    if in_burst and tool == FAILING_TOOL and burst_call % 6 != 0:
        error_type = "timeout" if burst_call % 2 else "ConnectionError"
        dur = rng.uniform(1.0, 3.0)
        t += int(dur * 0.4e9)
        span.add_event(
            "timeout" if error_type == "timeout" else "retry", {"error.type": error_type}, timestamp=t
        )
        if error_type == "timeout":
            em.resilience_event("timeout", "timeout", subject, error_type)
        em.resilience_event("retry", "retry", subject, error_type)
        span.add_event("retry", {"attempt": 2, "error.type": error_type}, timestamp=t + 1000)
        if burst_call == 3:
            span.add_event("circuit_opened", {"agentwatch.circuit.name": tool}, timestamp=t + 2000)
            em.resilience_event("circuit_opened", "circuit_breaker", subject, error_type)
        span.add_event("fallback", {"error.type": error_type}, timestamp=t + 3000)
        em.resilience_event("fallback", "fallback", subject, error_type)
    elif in_burst and tool == REJECTING_TOOL and burst_call % 4 == 0:
        error_type = "bulkhead_full"
        dur = 0.001
        span.add_event("bulkhead_rejected", {"error.type": error_type}, timestamp=start)
        em.resilience_event("bulkhead_rejected", "bulkhead", subject, error_type)
    end = start + int(dur * 1e9)
    attrs: dict[str, str] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}
    if error_type:
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR, error_type))
        attrs["error.type"] = error_type
    em.tool_duration.record(dur, attrs)
    span.end(end_time=end)
    return error_type is not None, end
