"""OpenTelemetry instrumentation for the official ``openai`` SDK (1.x through 3.x).

Usage::

    from agentwatch.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=..., meter_provider=..., logger_provider=...)

or, with no code, ``opentelemetry-instrument python app.py`` (entry point ``agentwatch_openai``).

Instrumented: ``chat.completions.create`` (and ``parse``), ``responses.create`` and
``embeddings.create``, sync and async, streaming included, also through ``with_raw_response``
and ``with_streaming_response``. ``AzureOpenAI`` clients report
``gen_ai.provider.name = azure.ai.openai``; a client pointed at another provider's OpenAI-compatible
API reports that provider when its host is a well-known one (Groq, DeepSeek, Mistral, xAI,
Perplexity, Azure AI Inference...: ``_hosts``), and its calls are priced as that provider's; any
other base URL (a local Ollama or vLLM, a gateway) keeps ``openai``. Calls LiteLLM makes through
the SDK are the LiteLLM call's (``agentwatch.instrumentation.litellm``): they make no span here.

Configuration: see :mod:`agentwatch.environment_variables`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.openai.package import _instruments

__all__ = ["OpenAIInstrumentor"]


class OpenAIInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.openai"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.openai._patch import patches

        return patches(telemetry)
