"""OpenTelemetry instrumentation for LiteLLM (``litellm``).

Usage::

    from agentwatch.instrumentation.litellm import LiteLLMInstrumentor

    LiteLLMInstrumentor().instrument(tracer_provider=..., meter_provider=..., logger_provider=...)

or, with no code, ``opentelemetry-instrument python app.py`` (entry point ``agentwatch_litellm``).

Instrumented: ``litellm.completion``, ``acompletion``, ``embedding`` and ``aembedding``, streamed
or not. Each call is one span named and attributed with the provider LiteLLM actually calls
(``gen_ai.provider.name`` ``anthropic``, ``groq``, ``aws.bedrock``...; the model without LiteLLM's
``provider/`` prefix), although LiteLLM often calls it through the openai SDK: while a LiteLLM call
is open, the openai and anthropic instrumentors stand aside, so there is one span, one set of
metrics, one cost and one entry in the session's totals (see ``_patch``). ``traceparent`` goes on
every request the call makes, whichever HTTP client LiteLLM uses for it.

Instrumenting never imports LiteLLM (as every agentwatch instrumentor: ``_base``): importing it
takes seconds, and LiteLLM fetches its model cost map from GitHub when imported unless
``LITELLM_LOCAL_MODEL_COST_MAP=True`` (or ``LITELLM_OFFLINE_MODE=true``), which an application
that never uses it must not pay for. It is patched when the application imports it.

Configuration: see :mod:`agentwatch.environment_variables`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.litellm.package import _instruments

__all__ = ["LiteLLMInstrumentor"]


class LiteLLMInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.litellm"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.litellm._patch import patches

        return patches(telemetry)
