"""The SDK's function tools as agentwatch tool calls: span, metric, log record, session count and
the resilience policy their name is given (``tool_policies=``, ``[tools.NAME]`` in
``AGENTWATCH_CONFIG``).

Two seams, one per way the SDK builds a :class:`agents.FunctionTool`:

* ``@function_tool``, ``Agent.as_tool`` and the SDK's other built tools invoke through
  ``_FailureHandlingFunctionToolInvoker``, which runs the tool function and, when it raises,
  turns the exception into the error message the model reads. agentwatch runs the tool function
  itself through ``tools._execution.run_async`` (so the policy sees, classifies and retries the
  function's own exceptions) and leaves everything after it to the SDK: a call that still fails
  reaches the SDK's failure handler exactly as before.
* A ``FunctionTool`` built by hand with its own ``on_invoke_tool`` has no such handler; its
  invocation (``_invoke_function_tool_with_metadata``, ``invoke_function_tool`` before 0.20) is the
  call.

MCP tools the SDK lists from an MCP server are left to the MCP instrumentor, whose
``execute_tool`` span (with the MCP attributes and ``traceparent`` in ``_meta``) is then the one
span of the call.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

from agentwatch import _semconv as sc
from agentwatch._internal import instrumentation_enabled, report_internal_error
from agentwatch.instrumentation._common import as_str, parse_json, sdk_attribute
from agentwatch.instrumentation._policies import ToolPolicies
from agentwatch.resilience import ToolUnavailable
from agentwatch.tools._execution import ToolSpec, ToolTelemetry, run_async

__all__ = ["hand_built_invocation", "invoker_call"]


def _readable(result: Any) -> object:
    """What the model reads: a degraded call's message."""
    return result.message if isinstance(result, ToolUnavailable) else result


@functools.lru_cache(maxsize=512)
def _spec(name: str, description: str | None) -> ToolSpec:
    return ToolSpec(name, description, sc.TOOL_TYPE_FUNCTION, present=_readable)


def _sdk_error(result: Any) -> str | None:
    """A hand-built tool's invocation result that the SDK made from a failure (its timeout)."""
    return sc.ERROR_TOOL if getattr(result, "is_sdk_generated_error", False) is True else None


def _invocation_output(result: Any) -> object:
    return _readable(getattr(result, "output", result))


@functools.lru_cache(maxsize=512)
def _hand_built_spec(name: str, description: str | None) -> ToolSpec:
    return ToolSpec(
        name, description, sc.TOOL_TYPE_FUNCTION, result_error=_sdk_error, present=_invocation_output
    )


def _describe(function_tool: Any) -> tuple[str, str | None] | None:
    name = as_str(getattr(function_tool, "name", None))
    if not name:
        return None
    return name, as_str(getattr(function_tool, "description", None)) or None


def _from_mcp(function_tool: Any, impl: Any = None) -> bool:
    """An MCP server's tool: the MCP instrumentor's span is the call's."""
    if getattr(function_tool, "_mcp_tool_binding", None) is not None:
        return True
    origin = getattr(getattr(function_tool, "_tool_origin", None), "type", None)
    if getattr(origin, "value", origin) == "mcp":
        return True
    # Before tool origins (< 0.14): the invoker is functools.partial(MCPUtil.invoke_mcp_tool, ...).
    return getattr(getattr(impl, "func", None), "__name__", None) == "invoke_mcp_tool"


def _call_id(context: Any) -> str | None:
    return as_str(getattr(context, "tool_call_id", None)) or None


def invoker_call(tools: ToolTelemetry, policies: ToolPolicies) -> Callable[..., Any]:
    """``_FailureHandlingFunctionToolInvoker.__call__(ctx, input)``.

    The SDK's own method runs on a copy of the invoker whose tool function is the traced one, so
    the SDK's failure handling (the model-readable error, its logs and trace data) is unchanged.
    """

    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        function_tool = getattr(instance, "_function_tool", None)
        impl = getattr(instance, "_invoke_tool_impl", None)
        unbound = getattr(wrapped, "__func__", None)
        described = _describe(function_tool)
        if (
            described is None
            or impl is None
            or unbound is None
            or not instrumentation_enabled()
            or _from_mcp(function_tool, impl)
        ):
            return await wrapped(*args, **kwargs)
        name, description = described
        spec = _spec(name, description)

        async def tool_function(ctx: Any, raw_input: Any) -> Any:
            result = await run_async(
                tools,
                spec,
                lambda: impl(ctx, raw_input),
                arguments=parse_json(raw_input),
                call_id=_call_id(ctx),
                pipeline=policies.pipeline(name),
            )
            # An optional tool the policy stopped: the model reads why and carries on.
            return result.message if isinstance(result, ToolUnavailable) else result

        try:
            traced_invoker = copy.copy(instance)
            traced_invoker._invoke_tool_impl = tool_function
        except Exception:  # noqa: BLE001
            report_internal_error("tracing an OpenAI Agents function tool")
            return await wrapped(*args, **kwargs)
        return await unbound(traced_invoker, *args, **kwargs)

    return traced


@functools.cache
def _invoker_class() -> type | None:
    found = sdk_attribute("agents.tool", "_FailureHandlingFunctionToolInvoker")
    return found if isinstance(found, type) else None


@functools.cache
def _invocation_result() -> Callable[[str], Any] | None:
    found = sdk_attribute("agents.tool", "_FunctionToolInvocationResult")
    return found if callable(found) else None


def hand_built_invocation(
    tools: ToolTelemetry, policies: ToolPolicies, *, returns_result: bool
) -> Callable[..., Any]:
    """The SDK's invocation of a ``FunctionTool`` (keyword arguments ``function_tool``, ``context``,
    ``arguments``) for tools whose ``on_invoke_tool`` is their own. ``returns_result``: it returns
    the SDK's invocation result object rather than the output."""

    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        function_tool = kwargs.get("function_tool")
        described = _describe(function_tool)
        invoker = _invoker_class()
        make_result = _invocation_result() if returns_result else None
        if (
            described is None
            or not instrumentation_enabled()
            or (invoker is not None and isinstance(getattr(function_tool, "on_invoke_tool", None), invoker))
            or (returns_result and make_result is None)
            or _from_mcp(function_tool)
        ):
            return await wrapped(*args, **kwargs)
        name, description = described
        result = await run_async(
            tools,
            _hand_built_spec(name, description),
            lambda: wrapped(*args, **kwargs),
            arguments=parse_json(kwargs.get("arguments")),
            call_id=_call_id(kwargs.get("context")),
            pipeline=policies.pipeline(name),
        )
        if isinstance(result, ToolUnavailable):
            return result.message if make_result is None else make_result(result.message)
        return result

    return traced
