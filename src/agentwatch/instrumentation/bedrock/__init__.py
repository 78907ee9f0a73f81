"""OpenTelemetry instrumentation for AWS Bedrock Runtime through botocore (and so boto3).

Usage::

    from agentwatch.instrumentation.bedrock import BedrockInstrumentor

    BedrockInstrumentor().instrument(tracer_provider=..., meter_provider=..., logger_provider=...)

or, with no code, ``opentelemetry-instrument python app.py`` (entry point ``agentwatch_bedrock``).

Instrumented, on ``bedrock-runtime`` clients: ``converse``, ``converse_stream``, ``invoke_model``
and ``invoke_model_with_response_stream`` (request and response bodies read for the Anthropic,
Amazon Nova and Meta Llama families; usage from Bedrock's token-count headers for every model).
``gen_ai.provider.name`` is ``aws.bedrock``. How the hooks are placed, why ``traceparent`` is
added after signing, and how botocore's retries stay off under a retrying policy: see ``_patch``.

Configuration: see :mod:`agentwatch.environment_variables`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.bedrock.package import _instruments

if TYPE_CHECKING:
    from agentwatch.instrumentation.bedrock._patch import BedrockHooks

__all__ = ["BedrockInstrumentor"]


class BedrockInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.bedrock"
    _hooks: BedrockHooks | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.bedrock._patch import BedrockHooks

        hooks = self._hooks = BedrockHooks(telemetry)
        return hooks.patches()

    def _instrument(self, **kwargs: Any) -> None:
        super()._instrument(**kwargs)
        if self._hooks is not None:
            self._hooks.install_existing()

    def _uninstrument(self, **kwargs: Any) -> None:
        super()._uninstrument(**kwargs)
        if self._hooks is not None:
            self._hooks.remove()
            self._hooks = None
