"""agentwatch: OpenTelemetry instrumentation and resilience for tool-using LLM agents.

One call at start-up instruments every supported LLM client that is installed::

    import agentwatch

    agentwatch.instrument()

or, with no code change: ``opentelemetry-instrument python app.py``.
"""

from __future__ import annotations

from typing import Any

from agentwatch._setup import instrument, uninstrument

__all__ = ["__version__", "instrument", "uninstrument"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("agentwatch")
    raise AttributeError(f"module 'agentwatch' has no attribute {name!r}")
