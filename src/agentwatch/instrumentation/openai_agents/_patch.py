"""What agentwatch wraps in the OpenAI Agents SDK, and its processor's registration."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._common import sdk_attribute
from agentwatch.instrumentation._policies import ToolPolicies
from agentwatch.instrumentation.openai_agents._runs import RunState, run_streamed_wrapper, run_wrapper
from agentwatch.instrumentation.openai_agents._tools import hand_built_invocation, invoker_call
from agentwatch.tools._execution import ToolTelemetry

__all__ = ["AgentsTelemetry", "Registration", "patches"]

_TOOL = "agents.tool"
_TOOL_EXECUTION = "agents.run_internal.tool_execution"


class AgentsTelemetry:
    """Built once per instrumentation from the instrumentor's telemetry."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.tools = ToolTelemetry(telemetry)
        self.policies = ToolPolicies(telemetry.settings.tool_policies)
        self.runs = RunState(telemetry)


def patches(state: AgentsTelemetry) -> Iterable[Patch]:
    """Built without importing the SDK (the classes the wrappers need are looked up at their first
    call), so the patches can be applied whenever ``agents`` is imported."""
    yield "agents.run", "AgentRunner.run", run_wrapper(state.runs)
    yield "agents.run", "AgentRunner.run_streamed", run_streamed_wrapper(state.runs)
    yield _TOOL, "_FailureHandlingFunctionToolInvoker.__call__", invoker_call(state.tools, state.policies)
    # Hand-built FunctionTools: the run loop's own reference to the invocation function (it
    # imported the name, so agents.tool's attribute is not the one called). Named
    # invoke_function_tool before 0.20, returning the output rather than a result object.
    yield (
        _TOOL_EXECUTION,
        "_invoke_function_tool_with_metadata",
        hand_built_invocation(state.tools, state.policies, returns_result=True),
    )
    yield (
        _TOOL_EXECUTION,
        "invoke_function_tool",
        hand_built_invocation(state.tools, state.policies, returns_result=False),
    )


class Registration:
    """The processor in the SDK's trace provider, and the SDK's default exporter it replaced."""

    def __init__(self, processor: Any, *, keep_openai_export: bool) -> None:
        from agents import tracing

        self.processor = processor
        self.removed: Any = None
        provider = tracing.get_trace_provider()
        current = _processors(provider)
        default = sdk_attribute("agents.tracing.processors", "_global_processor")
        if not keep_openai_export and current is not None and any(p is default for p in current):
            # The SDK's default processor sends every trace to OpenAI's backend, with model
            # inputs and outputs unless the run says otherwise: agentwatch's OTel pipeline
            # replaces it (docs/architecture.md, "OpenAI Agents SDK").
            self.removed = default
            tracing.set_trace_processors([*(p for p in current if p is not default), processor])
        else:
            tracing.add_trace_processor(processor)

    def undo(self) -> None:
        from agents import tracing

        self.processor.enabled = False
        current = _processors(tracing.get_trace_provider())
        if current is None:
            return  # a provider of the application's: the disabled processor stays, inert
        kept = [p for p in current if p is not self.processor]
        if self.removed is not None and not any(p is self.removed for p in kept):
            kept.insert(0, self.removed)
        tracing.set_trace_processors(kept)


def _processors(provider: Any) -> list[Any] | None:
    """The processors of the SDK's default trace provider (None for another provider)."""
    found = getattr(getattr(provider, "_multi_processor", None), "_processors", None)
    return list(found) if isinstance(found, tuple) else None
