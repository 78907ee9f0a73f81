"""The LangChain methods agentwatch wraps: ``BaseTool.run``/``arun`` (tools, through their policy),
``BaseTool._parse_input`` to see LangChain's own validation of the arguments against
``args_schema``, which runs before the tool and which agentwatch does not duplicate, and the
chat-model entry points of ``BaseChatModel`` (see ``_chat``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._policies import ToolPolicies
from agentwatch.instrumentation.langchain._chat import chat_patches
from agentwatch.resilience import ToolUnavailable
from agentwatch.resilience._errors import FieldProblem, InvalidArgumentsError
from agentwatch.tools._content import to_json
from agentwatch.tools._execution import ToolCall, ToolSpec, ToolTelemetry, run_async, run_sync
from agentwatch.tools._validation import pydantic_problems

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


class _Running:
    """The instrumented call whose arguments LangChain is about to parse."""

    __slots__ = ("call", "tool")

    def __init__(self, tool: object) -> None:
        self.tool = tool
        self.call: ToolCall | None = None

    def started(self, call: ToolCall) -> None:
        self.call = call


_running: ContextVar[_Running | None] = ContextVar("agentwatch_langchain_tool_call", default=None)


def _parse_input(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """LangChain's validation of the input against ``args_schema``: a failure is the call's
    ``invalid_arguments`` (LangChain raises or handles it as configured; the tool never runs)."""
    try:
        return wrapped(*args, **kwargs)
    except Exception as exc:
        running = _running.get()
        if running is not None and running.tool is instance and running.call is not None:
            running.call.invalid = _as_invalid(running.call.spec.name, exc)
        raise


def _as_invalid(name: str, exc: Exception) -> InvalidArgumentsError:
    try:
        problems = pydantic_problems(exc) if callable(getattr(exc, "errors", None)) else []
    except Exception:  # noqa: BLE001 - pydantic v1 errors, or anything else: the kind only
        report_internal_error("reading a LangChain validation error")
        problems = []
    if not problems:
        problems = [FieldProblem("", type(exc).__name__, "The input does not match the tool's args_schema")]
    return InvalidArgumentsError(name=name, problems=problems)


def _degraded(result: object, spec: ToolSpec, call_id: str | None) -> object:
    """An optional tool the policy stopped answers the way LangChain reports a handled tool error:
    a ``ToolMessage(status="error")`` for a model's tool call, the text alone otherwise."""
    if not isinstance(result, ToolUnavailable):
        return result
    content = to_json(result.to_dict()) or result.message
    if call_id is None:
        return content
    from langchain_core.messages import ToolMessage

    return ToolMessage(content=content, tool_call_id=call_id, name=spec.name, status="error")


def _run(telemetry: ToolTelemetry, policies: ToolPolicies) -> Callable[..., Any]:
    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tool_input, call_id = _call(args, kwargs)
        spec = _spec(instance)
        pipeline = policies.pipeline(spec.name)
        running = _Running(instance)
        token = _running.set(running)
        try:
            result = run_sync(
                telemetry,
                spec,
                lambda: wrapped(*args, **kwargs),
                arguments=tool_input,
                call_id=call_id,
                pipeline=pipeline,
                on_start=running.started,
            )
        finally:
            _running.reset(token)
        return result if pipeline is None else _degraded(result, spec, call_id)

    return traced


def _arun(telemetry: ToolTelemetry, policies: ToolPolicies) -> Callable[..., Any]:
    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tool_input, call_id = _call(args, kwargs)
        spec = _spec(instance)
        pipeline = policies.pipeline(spec.name)

        def invoke() -> Any:
            return wrapped(*args, **kwargs)

        running = _Running(instance)
        token = _running.set(running)
        try:
            result = await run_async(
                telemetry,
                spec,
                invoke,
                arguments=tool_input,
                call_id=call_id,
                pipeline=pipeline,
                on_start=running.started,
            )
        finally:
            _running.reset(token)
        return result if pipeline is None else _degraded(result, spec, call_id)

    return traced


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    tools = ToolTelemetry(telemetry)
    policies = ToolPolicies(telemetry.settings.tool_policies)
    yield _MODULE, "BaseTool.run", _run(tools, policies)
    yield _MODULE, "BaseTool.arun", _arun(tools, policies)
    yield _MODULE, "BaseTool._parse_input", _parse_input
    yield from chat_patches(telemetry)
