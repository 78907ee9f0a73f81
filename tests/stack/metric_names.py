"""The Prometheus names of agentwatch's telemetry after the collector's Prometheus exporter.

Observed with the real binaries (the ocb-built Collector: contrib v0.140.1 prometheus exporter and
spanmetrics connector, default settings; Prometheus 3.16): dots become underscores; unit ``s`` adds
``_seconds``, ``USD`` adds ``_USD`` (case kept), ``1`` adds ``_ratio`` to a gauge; ``{...}``
annotation units add nothing; counters get ``_total``; histograms are ``_bucket``/``_sum``/
``_count``. ``job`` is service.name (or
service.namespace/service.name), ``instance`` is service.instance.id, every series also carries
``otel_scope_name``/``otel_scope_version``; resource attributes go to ``target_info``.

The dashboards and rules may use only these names (test_configs.py); the e2e test checks that every
one of them exists in the live Prometheus after the workload, so this list cannot drift from reality.
"""

from __future__ import annotations

OTEL_TO_PROMETHEUS: dict[str, str] = {
    "gen_ai.client.operation.duration": "gen_ai_client_operation_duration_seconds",
    "gen_ai.client.token.usage": "gen_ai_client_token_usage",
    "gen_ai.client.operation.time_to_first_chunk": "gen_ai_client_operation_time_to_first_chunk_seconds",
    "gen_ai.client.operation.time_per_output_chunk": "gen_ai_client_operation_time_per_output_chunk_seconds",
    "gen_ai.client.operation.cost": "gen_ai_client_operation_cost_USD",
    "gen_ai.execute_tool.duration": "gen_ai_execute_tool_duration_seconds",
    "agentwatch.session.duration": "agentwatch_session_duration_seconds",
    "agentwatch.session.cost": "agentwatch_session_cost_USD",
    "agentwatch.session.iterations": "agentwatch_session_iterations",
    "agentwatch.sessions": "agentwatch_sessions_total",
    "agentwatch.resilience.events": "agentwatch_resilience_events_total",
    "agentwatch.resilience.attempts": "agentwatch_resilience_attempts",
    "agentwatch.circuit.state": "agentwatch_circuit_state",
    # A gauge of unit "1" gets `_ratio` (the translator's suffix for dimensionless gauges).
    "agentwatch.state.shared": "agentwatch_state_shared_ratio",
}

HISTOGRAMS = {
    "gen_ai_client_operation_duration_seconds",
    "gen_ai_client_token_usage",
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "gen_ai_client_operation_time_per_output_chunk_seconds",
    "gen_ai_client_operation_cost_USD",
    "gen_ai_execute_tool_duration_seconds",
    "agentwatch_session_duration_seconds",
    "agentwatch_session_cost_USD",
    "agentwatch_session_iterations",
    "agentwatch_resilience_attempts",
}

# The spanmetrics connector (namespace traces.span.metrics, histogram unit s). Labels:
# service_name, span_name, span_kind (SPAN_KIND_*), status_code (STATUS_CODE_*), the configured
# dimensions, plus job/instance from the span's resource.
SPANMETRICS = {
    "traces_span_metrics_calls_total",
    "traces_span_metrics_duration_seconds_bucket",
    "traces_span_metrics_duration_seconds_sum",
    "traces_span_metrics_duration_seconds_count",
}

KNOWN_METRICS: frozenset[str] = frozenset(
    {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
    | {
        "agentwatch_sessions_total",
        "agentwatch_resilience_events_total",
        "agentwatch_circuit_state",
        "agentwatch_state_shared_ratio",
    }
    | SPANMETRICS
)

# Attribute -> label (dots become underscores).
KNOWN_LABELS: frozenset[str] = frozenset(
    {
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "gen_ai_response_model",
        "gen_ai_token_type",
        "gen_ai_tool_name",
        "gen_ai_agent_name",
        "agentwatch_session_outcome",
        "agentwatch_resilience_event",
        "agentwatch_resilience_policy",
        "agentwatch_circuit_name",
        "agentwatch_state_backend",
    }
)

# Recording rules in collector/prometheus/rules/agentwatch-slo.yml.
RECORDED_METRICS: frozenset[str] = frozenset(
    {f"agentwatch:session_failure:ratio_rate{w}" for w in ("5m", "30m", "1h", "6h")}
    | {f"agentwatch:tool_failure:ratio_rate{w}" for w in ("5m", "30m", "1h", "6h")}
    | {
        "agentwatch:session_completion:slo_target",
        "agentwatch:session_duration_seconds:p95_5m",
        "agentwatch:session_duration_seconds:p95_1h",
        "agentwatch:session_cost_usd:p95_5m",
        "agentwatch:session_cost_usd:p95_1h",
        "agentwatch:tool_availability:ratio_rate1h",
        "agentwatch:tool_availability:slo_target",
    }
)
