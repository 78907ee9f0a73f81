"""The LangChain methods agentwatch wraps: ``BaseTool.run``/``arun`` (tools, through their policy)
and the chat-model entry points of ``BaseChatModel`` (see ``_chat``)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation.langchain._chat import chat_patches
from agentwatch.resilience import Pipeline, ToolUnavailable, lookup_policy
from agentwatch.tools._content import to_json
from agentwatch.tools._execution import ToolSpec, ToolTelemetry, run_async, run_sync

if TYPE_CHECKING:
    from agentwatch.resilience import Policy

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


class ToolPolicies:
    """The pipelines of LangChain tools by name (``tool_policies``/``[tools.NAME]``), built once per
    name and policy: a tool's circuit, bulkhead and retry budget are shared by all its calls."""

    def __init__(self, policies: Mapping[str, Policy]) -> None:
        self._policies = policies
        self._pipelines: dict[str, tuple[Policy, Pipeline]] = {}
        self._lock = threading.Lock()

    def pipeline(self, name: str) -> Pipeline | None:
        if not self._policies:
            return None
        policy = lookup_policy(self._policies, name)
        if policy is None:
            return None
        cached = self._pipelines.get(name)
        if cached is None or cached[0] is not policy:
            with self._lock:
                cached = self._pipelines.get(name)
                if cached is None or cached[0] is not policy:
                    cached = self._pipelines[name] = (policy, Pipeline(policy, name=name, kind="tool"))
        return cached[1]


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
        pipeline = _pipeline(policies, spec)
        result = run_sync(
            telemetry,
            spec,
            lambda: wrapped(*args, **kwargs),
            arguments=tool_input,
            call_id=call_id,
            pipeline=pipeline,
        )
        return result if pipeline is None else _degraded(result, spec, call_id)

    return traced


def _arun(telemetry: ToolTelemetry, policies: ToolPolicies) -> Callable[..., Any]:
    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        tool_input, call_id = _call(args, kwargs)
        spec = _spec(instance)
        pipeline = _pipeline(policies, spec)

        def invoke() -> Any:
            return wrapped(*args, **kwargs)

        result = await run_async(
            telemetry, spec, invoke, arguments=tool_input, call_id=call_id, pipeline=pipeline
        )
        return result if pipeline is None else _degraded(result, spec, call_id)

    return traced


def _pipeline(policies: ToolPolicies, spec: ToolSpec) -> Pipeline | None:
    try:
        return policies.pipeline(spec.name)
    except Exception:  # noqa: BLE001 - a policy validated at start-up; the call runs without it
        report_internal_error("building a LangChain tool policy")
        return None


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    tools = ToolTelemetry(telemetry)
    policies = ToolPolicies(telemetry.settings.tool_policies)
    yield _MODULE, "BaseTool.run", _run(tools, policies)
    yield _MODULE, "BaseTool.arun", _arun(tools, policies)
    yield from chat_patches(telemetry)
