"""OpenTelemetry instrumentation of the OpenAI Agents SDK (``openai-agents`` 0.11+).

Usage::

    from agentwatch.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    OpenAIAgentsInstrumentor().instrument(tracer_provider=..., meter_provider=...)

or ``agentwatch.instrument()``, or, with no code, ``opentelemetry-instrument python app.py``
(entry point ``agentwatch_openai_agents``). Model calls are the OpenAI instrumentor's
(``agentwatch_openai``): one ``chat`` span per call, under the agent that made it.

What a run gives (``Runner.run``, ``run_sync``, ``run_streamed``):

* a session (:func:`agentwatch.session`'s span, totals and ``agentwatch.session.*`` metrics) named
  after the starting agent, ``invoke_agent {agent}``, unless one is current already (the
  application's ``agentwatch.session()``, or the outer run of an agent used as a tool), which it
  joins. ``gen_ai.conversation.id``: the run's ``conversation_id``, its memory session's id, the
  trace's ``group_id``, else the SDK's trace id. Outcome ``max_iterations`` when
  ``MaxTurnsExceeded`` ends it, ``refused`` for a guardrail tripwire, else ``completed`` /
  ``error`` / ``cancelled``;
* an ``invoke_agent {agent}`` span for each further agent (after a handoff, or an agent used as a
  tool), an ``execute_tool`` span for each function tool call and each handoff, a ``run_guardrail
  {guardrail}`` span for each guardrail (from the SDK's tracing processor interface, see
  ``_processor``);
* the resilience policy of each function tool by name (``tool_policies=`` of
  ``agentwatch.instrument()`` or ``[tools.NAME]`` in ``AGENTWATCH_CONFIG``); an optional tool that
  cannot run returns the policy's message to the model as the tool's output.

The SDK's default trace export to OpenAI's backend is replaced by agentwatch's OpenTelemetry
export while instrumented; ``instrument(keep_openai_trace_export=True)`` keeps both. With the SDK's
tracing disabled (``OPENAI_AGENTS_DISABLE_TRACING``, ``RunConfig(tracing_disabled=True)``) runs,
tools and model calls are still recorded; agent, handoff and guardrail spans are not.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any, ClassVar

from wrapt import register_post_import_hook

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.openai_agents.package import _instruments

__all__ = ["OpenAIAgentsInstrumentor"]


class OpenAIAgentsInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.openai_agents"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.openai_agents._patch import AgentsTelemetry, patches

        self._state = AgentsTelemetry(telemetry)
        return patches(self._state)

    def _instrument(self, **kwargs: Any) -> None:
        """Keywords besides those of every agentwatch instrumentor (the providers,
        ``tool_policies``): ``keep_openai_trace_export`` (default ``False``)."""
        self._registration: Any = None
        super()._instrument(**kwargs)
        self._keep_openai_export = bool(kwargs.get("keep_openai_trace_export", False))
        self._wants_processor = True
        # When the SDK is imported (now, if it already is): patching may become lazy, and the
        # processor must then follow the SDK's import, not the instrumentor's.
        register_post_import_hook(self._register_processor, "agents")

    def _register_processor(self, _module: object = None) -> None:
        if not getattr(self, "_wants_processor", False) or self._registration is not None:
            return
        try:
            from agentwatch.instrumentation.openai_agents._patch import Registration
            from agentwatch.instrumentation.openai_agents._processor import AgentsProcessor

            processor = AgentsProcessor(self._state.telemetry, self._state.tools)
            self._registration = Registration(processor, keep_openai_export=self._keep_openai_export)
        except Exception:  # noqa: BLE001 - without it runs, tools and model calls are still recorded
            report_internal_error("registering the OpenAI Agents tracing processor")

    def _uninstrument(self, **kwargs: Any) -> None:
        self._wants_processor = False
        registration = getattr(self, "_registration", None)
        self._registration = None
        if registration is not None:
            registration.undo()
        super()._uninstrument(**kwargs)
