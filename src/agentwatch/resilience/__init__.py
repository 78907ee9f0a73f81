"""Resilience policies for tool and LLM calls: timeouts, retries, circuit breakers, bulkheads,
rate limits, graceful degradation and a tool-result cache, each decision visible as span events
and metrics; operator state and rate limits optionally shared by every replica (``SharedState``).

Configure with :class:`Policy`; integrations run calls through a :class:`Pipeline`. See
``agentwatch.resilience._pipeline`` for the integration contract.
"""

from agentwatch.resilience._breaker import Circuit, CircuitSnapshot, CircuitState
from agentwatch.resilience._classify import (
    Classification,
    Classifier,
    ErrorCategory,
    default_classifier,
    parse_retry_after,
)
from agentwatch.resilience._config import (
    AGENTWATCH_CACHE_REDIS_URL,
    AGENTWATCH_STATE_REDIS_URL,
    Bulkhead,
    Cache,
    CircuitBreaker,
    Duration,
    Policy,
    RateLimit,
    Retry,
    RetryBudget,
    SharedState,
)
from agentwatch.resilience._errors import (
    BulkheadFullError,
    CallKind,
    CircuitOpenError,
    FieldProblem,
    InvalidArgumentsError,
    RateLimitedError,
    ResilienceError,
    TimeoutScope,
    ToolDisabledError,
    ToolTimeoutError,
)
from agentwatch.resilience._file import (
    AGENTWATCH_CONFIG,
    ResilienceConfig,
    config_from_env,
    load_config,
    lookup_policy,
)
from agentwatch.resilience._pipeline import (
    AttemptContext,
    InvalidArguments,
    Pipeline,
    ToolUnavailable,
    error_type_of,
)
from agentwatch.resilience._registry import (
    Registry,
    circuit,
    circuits,
    configure_shared_state,
    default_registry,
    disable_tool,
    disabled_tools,
    enable_tool,
    reset_registry,
)
from agentwatch.resilience._spans import BreakerSpanProcessor
from agentwatch.resilience._telemetry import (
    ResilienceTelemetry,
    configure_resilience_telemetry,
    current_telemetry,
)

__all__ = [
    "AGENTWATCH_CACHE_REDIS_URL",
    "AGENTWATCH_CONFIG",
    "AGENTWATCH_STATE_REDIS_URL",
    "AttemptContext",
    "BreakerSpanProcessor",
    "Bulkhead",
    "BulkheadFullError",
    "Cache",
    "CallKind",
    "Circuit",
    "CircuitBreaker",
    "CircuitOpenError",
    "CircuitSnapshot",
    "CircuitState",
    "Classification",
    "Classifier",
    "Duration",
    "ErrorCategory",
    "FieldProblem",
    "InvalidArguments",
    "InvalidArgumentsError",
    "Pipeline",
    "Policy",
    "RateLimit",
    "RateLimitedError",
    "Registry",
    "ResilienceConfig",
    "ResilienceError",
    "ResilienceTelemetry",
    "Retry",
    "RetryBudget",
    "SharedState",
    "TimeoutScope",
    "ToolDisabledError",
    "ToolTimeoutError",
    "ToolUnavailable",
    "circuit",
    "circuits",
    "config_from_env",
    "configure_resilience_telemetry",
    "configure_shared_state",
    "current_telemetry",
    "default_classifier",
    "default_registry",
    "disable_tool",
    "disabled_tools",
    "enable_tool",
    "error_type_of",
    "load_config",
    "lookup_policy",
    "parse_retry_after",
    "reset_registry",
]
