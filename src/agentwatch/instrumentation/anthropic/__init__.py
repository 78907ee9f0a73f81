"""OpenTelemetry instrumentation for the official ``anthropic`` SDK (0.x through 2.x).

Usage::

    from agentwatch.instrumentation.anthropic import AnthropicInstrumentor

    AnthropicInstrumentor().instrument(tracer_provider=..., meter_provider=..., logger_provider=...)

or, with no code, ``opentelemetry-instrument python app.py`` (entry point ``agentwatch_anthropic``).

Instrumented: ``messages.create`` (streamed or not), ``messages.parse`` and the
``messages.stream()`` helper, and the same of ``beta.messages``, sync and async, also through
``with_raw_response``/``with_streaming_response``. With anthropic 2.x's own tracing on
(``ANTHROPIC_OPEN_TELEMETRY``), each call still has exactly one span: the SDK's, enriched by
agentwatch (see ``_patch``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.anthropic.package import _instruments

__all__ = ["AnthropicInstrumentor"]


class AnthropicInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.anthropic"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.anthropic._patch import patches

        return patches(telemetry)
