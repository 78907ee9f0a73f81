"""agentwatch: OpenTelemetry instrumentation and resilience for tool-using LLM agents.

One call at start-up instruments every supported LLM client that is installed::

    import agentwatch

    agentwatch.instrument()

or, with no code change: ``opentelemetry-instrument python app.py``. Tools, agent sessions and
resilience policies are in this namespace too; the README has the whole journey.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The public names are imported when first used (PEP 562): ``import agentwatch`` costs almost
# nothing, and ``agentwatch.instrument()`` loads only what instrumenting needs, not the resilience
# policies, tools and sessions an application may never use (docs/architecture.md, "Start-up").
_EXPORTS = {
    "ConfigError": "agentwatch._errors",
    "Session": "agentwatch._session",
    "session": "agentwatch._session",
    "instrument": "agentwatch._setup",
    "uninstrument": "agentwatch._setup",
    "trace_headers": "agentwatch.propagation",
    **dict.fromkeys(
        (
            "Bulkhead",
            "BulkheadFullError",
            "Cache",
            "CircuitBreaker",
            "CircuitOpenError",
            "InvalidArguments",
            "InvalidArgumentsError",
            "Policy",
            "RateLimit",
            "RateLimitedError",
            "ResilienceError",
            "Retry",
            "SharedState",
            "ToolDisabledError",
            "ToolTimeoutError",
            "ToolUnavailable",
            "circuits",
            "disable_tool",
            "enable_tool",
        ),
        "agentwatch.resilience",
    ),
    **dict.fromkeys(
        (
            "Tool",
            "ToolRegistry",
            "UnknownToolError",
            "instrument_registry",
            "tool",
            "uninstrument_registry",
        ),
        "agentwatch.tools",
    ),
}

if TYPE_CHECKING:
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
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups are plain attribute reads
        return value
    if name == "__version__":
        from importlib.metadata import version

        return version("agentwatch")
    raise AttributeError(f"module 'agentwatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
