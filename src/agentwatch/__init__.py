"""agentwatch: OpenTelemetry instrumentation and resilience for tool-using LLM agents.

One call at start-up instruments every supported LLM client that is installed::

    import agentwatch

    agentwatch.instrument()

or, with no code change: ``opentelemetry-instrument python app.py``. Tools, agent sessions and
resilience policies are in this namespace too; the README has the whole journey.
"""

from __future__ import annotations

from typing import Any

from agentwatch._errors import ConfigError
from agentwatch._session import Session, session
from agentwatch._setup import instrument, uninstrument
from agentwatch.propagation import trace_headers
from agentwatch.resilience import (
    Bulkhead,
    BulkheadFullError,
    Cache,
    CircuitBreaker,
    CircuitOpenError,
    InvalidArguments,
    InvalidArgumentsError,
    Policy,
    RateLimit,
    RateLimitedError,
    ResilienceError,
    Retry,
    SharedState,
    ToolDisabledError,
    ToolTimeoutError,
    ToolUnavailable,
    circuits,
    disable_tool,
    enable_tool,
)
from agentwatch.tools import (
    Tool,
    ToolRegistry,
    UnknownToolError,
    instrument_registry,
    tool,
    uninstrument_registry,
)

__all__ = [
    "Bulkhead",
    "BulkheadFullError",
    "Cache",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "InvalidArguments",
    "InvalidArgumentsError",
    "Policy",
    "RateLimit",
    "RateLimitedError",
    "ResilienceError",
    "Retry",
    "Session",
    "SharedState",
    "Tool",
    "ToolDisabledError",
    "ToolRegistry",
    "ToolTimeoutError",
    "ToolUnavailable",
    "UnknownToolError",
    "__version__",
    "circuits",
    "disable_tool",
    "enable_tool",
    "instrument",
    "instrument_registry",
    "session",
    "tool",
    "trace_headers",
    "uninstrument",
    "uninstrument_registry",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("agentwatch")
    raise AttributeError(f"module 'agentwatch' has no attribute {name!r}")
