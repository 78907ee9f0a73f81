"""The LangChain methods agentwatch wraps: ``BaseTool.run`` and ``BaseTool.arun``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from agentwatch import _semconv as sc
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import Patch
from agentwatch.tools._execution import ToolSpec, ToolTelemetry, run_async, run_sync

__all__ = ["patches"]

_MODULE = "langchain_core.tools.base"


def _result_error(result: Any) -> str | None:
    """A ``ToolMessage`` with ``status="error"``: the tool handled its own error."""
    return (
        sc.ERROR_TOOL
        if getattr(result, "type", None) == "tool" and getattr(result, "status", None) == "error"
        else None
    )


def _present(result: Any) -> object:
    """What the model reads: a ``ToolMessage``'s content, anything else as is."""
    if getattr(result, "type", None) == "tool" and hasattr(result, "content"):
        return result.content
    return result


@functools.lru_cache(maxsize=512)
def _spec_for(name: str, description: str | None) -> ToolSpec:
    return ToolSpec(name, description, sc.TOOL_TYPE_FUNCTION, result_error=_result_error, present=_present)


def _spec(instance: Any) -> ToolSpec:
    # Keyed by what the spec holds, not by the tool object: BaseTool is an unhashable pydantic
    # model whose name and description may change between calls.
    name = getattr(instance, "name", None)
    description = getattr(instance, "description", None)
    return _spec_for(
        name if isinstance(name, str) and name else type(instance).__name__,
        description if isinstance(description, str) and description else None,
    )


def _call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[object, str | None]:
    tool_input = args[0] if args else kwargs.get("tool_input")
    call_id = kwargs.get("tool_call_id")
    return tool_input, call_id if isinstance(call_id, str) and call_id else None


def _run(telemetry: ToolTelemetry) -> Callable[..., Any]:
    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tool_input, call_id = _call(args, kwargs)
        return run_sync(
            telemetry,
            _spec(instance),
            lambda: wrapped(*args, **kwargs),
            arguments=tool_input,
            call_id=call_id,
        )

    return traced


def _arun(telemetry: ToolTelemetry) -> Callable[..., Any]:
    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tool_input, call_id = _call(args, kwargs)

        def invoke() -> Any:
            return wrapped(*args, **kwargs)

        return await run_async(telemetry, _spec(instance), invoke, arguments=tool_input, call_id=call_id)

    return traced


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    tools = ToolTelemetry(telemetry)
    yield _MODULE, "BaseTool.run", _run(tools)
    yield _MODULE, "BaseTool.arun", _arun(tools)
