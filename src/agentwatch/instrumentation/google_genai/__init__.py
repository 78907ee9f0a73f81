"""OpenTelemetry instrumentation for the Google Gen AI SDK (``google-genai``: Gemini API and Vertex AI).

Usage::

    from agentwatch.instrumentation.google_genai import GoogleGenAIInstrumentor

    GoogleGenAIInstrumentor().instrument(tracer_provider=..., meter_provider=..., logger_provider=...)

or, with no code, ``opentelemetry-instrument python app.py`` (entry point ``agentwatch_google_genai``).

Instrumented: ``client.models.generate_content``, ``generate_content_stream`` and ``embed_content``
and their ``client.aio.models`` twins, chats included (they call them): one span per request to
the model (see ``_patch``). ``gen_ai.provider.name`` is ``gcp.vertex_ai`` for ``vertexai=True``
clients, ``gcp.gemini`` otherwise; ``gen_ai.operation.name`` is ``generate_content`` (v1.41's
value for Gemini's Generate Content) and ``embeddings``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.google_genai.package import _instruments

__all__ = ["GoogleGenAIInstrumentor"]


class GoogleGenAIInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.google_genai"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.google_genai._patch import patches

        return patches(telemetry)
