"""The MCP methods agentwatch wraps: ``call_tool`` (the execute_tool span) and the SDK's span helper."""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._errors import error_type as default_error_type
from agentwatch.instrumentation._base import Patch, sdk_type
from agentwatch.resilience._errors import FieldProblem, InvalidArgumentsError
from agentwatch.resilience._pipeline import InvalidArguments
from agentwatch.tools._execution import ToolCall, ToolSpec, ToolTelemetry, run_async
from agentwatch.tools._validation import jsonschema_validator

__all__ = ["patches"]


class _ActiveCall:
    """The instrumented ``call_tool`` running in this context."""

    __slots__ = ("adopted", "owner", "span")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.span: Span | None = None
        self.adopted = False


_active: ContextVar[_ActiveCall | None] = ContextVar("agentwatch_mcp_tool_call", default=None)


# -- argument validation against the inputSchema the server listed -----------------------------

Checker = Callable[[object], list[FieldProblem]]
# Per client session: tool name -> (the listed schema, its compiled checker or None). Weak, so a
# closed session's schemas go with it; filled by list_tools, read by call_tool.
_schemas: weakref.WeakKeyDictionary[object, dict[str, tuple[object, Checker | None]]] = (
    weakref.WeakKeyDictionary()
)


def _input_schema(tool: object) -> object:
    schema = getattr(tool, "input_schema", None)  # mcp 2.x
    return getattr(tool, "inputSchema", None) if schema is None else schema  # mcp 1.x


async def _list_tools(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = await wrapped(*args, **kwargs)
    try:
        known = _schemas.setdefault(instance, {})
        for tool in getattr(result, "tools", None) or ():
            name = getattr(tool, "name", None)
            schema = _input_schema(tool)
            if isinstance(name, str) and isinstance(schema, Mapping):
                previous = known.get(name)
                if previous is None or previous[0] != schema:
                    known[name] = (schema, jsonschema_validator(schema))
    except Exception:  # noqa: BLE001
        report_internal_error("recording MCP tool schemas")
    return result


def _checker(instance: object, name: str) -> Checker | None:
    """The checker of tool ``name`` for this client (a ``Client`` reads its session's)."""
    for owner in (instance, getattr(instance, "_session", None)):
        try:
            known = _schemas.get(owner) if owner is not None else None
        except TypeError:  # not weakly referenceable
            known = None
        if known is not None and name in known:
            return known[name][1]
    return None


def _invalid(instance: object, name: str, arguments: object) -> InvalidArgumentsError | None:
    try:
        checker = _checker(instance, name)
        problems = checker(arguments) if checker is not None else []
    except Exception:  # noqa: BLE001 - a validator fault must not stop the call
        report_internal_error("validating MCP tool arguments")
        return None
    return InvalidArgumentsError(name=name, problems=problems) if problems else None


def _error_result(error: InvalidArgumentsError) -> object:
    """The ``CallToolResult`` a server gives for invalid arguments: ``isError`` with a message the
    model can read and correct."""
    from mcp import types

    text = InvalidArguments.from_error(error).message
    return types.CallToolResult.model_validate({"content": [{"type": "text", "text": text}], "isError": True})


# JSON-RPC errors: MCPError in mcp 2.x, McpError in 1.x (a name the installed version lacks
# matches nothing). Resolved at the first failed call: naming them here would import mcp.
_MCP_ERRORS: tuple[type, ...] = (
    sdk_type("mcp.shared.exceptions", "MCPError"),
    sdk_type("mcp.shared.exceptions", "McpError"),
)


def _accepts_meta(method: Callable[..., Any]) -> bool:
    try:
        return "meta" in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def _result_error(result: Any) -> str | None:
    """``tool_error`` for a ``CallToolResult`` with ``isError: true`` (mcp 2.x ``is_error``, 1.x ``isError``)."""
    if isinstance(result, Mapping):
        flagged = result.get("isError") is True
    else:
        flagged = getattr(result, "is_error", None) is True or getattr(result, "isError", None) is True
    return sc.ERROR_TOOL if flagged else None


def _with_trace_context(meta: object) -> object:
    carrier: dict[str, Any] = dict(meta) if isinstance(meta, Mapping) else {}
    propagate.inject(carrier)
    if not carrier and meta is None:
        return None
    return carrier


def _is_inner(active: _ActiveCall, instance: object) -> bool:
    """Whether ``instance`` is the session under the ``Client`` whose call is running."""
    owner = active.owner
    if owner is instance:
        return True
    try:
        return getattr(owner, "_session", None) is instance or getattr(owner, "session", None) is instance
    except Exception:  # noqa: BLE001 - a property of an unconnected client may raise
        return False


def _call_tool(telemetry: ToolTelemetry) -> Callable[..., Any]:
    # Whether the SDK's call_tool takes `meta` (1.19+), per method, read at its first call: the
    # SDK is not imported when this wrapper is built.
    accepts_meta: dict[object, bool] = {}

    def error_type(exc: BaseException) -> str:
        if isinstance(exc, _MCP_ERRORS):
            code = getattr(getattr(exc, "error", None), "code", None)
            if isinstance(code, int):
                return str(code)
        return default_error_type(exc)

    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        active = _active.get()
        if (active is not None and _is_inner(active, instance)) or not is_instrumentation_enabled():
            return await wrapped(*args, **kwargs)
        name = args[0] if args else kwargs.get("name")
        if not isinstance(name, str):
            return await wrapped(*args, **kwargs)
        arguments = args[1] if len(args) > 1 else kwargs.get("arguments")

        state = _ActiveCall(instance)
        attributes: dict[str, AttributeValue] = {sc.MCP_METHOD_NAME: sc.MCP_TOOLS_CALL}
        try:
            version = getattr(instance, "protocol_version", None)
            if isinstance(version, str) and version:
                attributes[sc.MCP_PROTOCOL_VERSION] = version
        except Exception:  # noqa: BLE001 - an unconnected client's property may raise; the call will say why
            pass
        spec = ToolSpec(
            name,
            None,
            sc.TOOL_TYPE_EXTENSION,
            error_typer=error_type,
            result_error=_result_error,
        )

        def started(call: ToolCall) -> None:
            state.span = call.span

        invalid = _invalid(instance, name, arguments)
        if invalid is not None:
            # Not sent: the server would answer with an isError result; the model gets the same.
            try:
                result = _error_result(invalid)
            except Exception:  # noqa: BLE001 - cannot build the result: let the server answer
                report_internal_error("building an MCP invalid-arguments result")
            else:
                error = invalid

                async def refuse() -> Any:
                    raise error

                try:
                    await run_async(telemetry, spec, refuse, arguments=arguments, attributes=attributes)
                except InvalidArgumentsError as exc:
                    if exc is not error:
                        raise
                return result

        function = getattr(wrapped, "__func__", wrapped)
        inject_meta = accepts_meta.get(function)
        if inject_meta is None:
            inject_meta = accepts_meta[function] = _accepts_meta(wrapped)

        async def invoke() -> Any:
            call_kwargs = kwargs
            if inject_meta and state.span is not None:
                try:
                    call_kwargs = {**kwargs, "meta": _with_trace_context(kwargs.get("meta"))}
                except Exception:  # noqa: BLE001
                    report_internal_error("injecting trace context into MCP _meta")
            return await wrapped(*args, **call_kwargs)

        token = _active.set(state)
        try:
            return await run_async(
                telemetry, spec, invoke, arguments=arguments, attributes=attributes, on_start=started
            )
        finally:
            _active.reset(token)

    return traced


def _sdk_span(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """mcp 2.x ``otel_span`` as the JSON-RPC dispatcher calls it for each outgoing request.

    For the ``tools/call`` request of an instrumented call, return the ``execute_tool`` span
    (made current, never ended here) instead of a new client span: the dispatcher then injects
    that span's context into ``_meta`` and records JSON-RPC errors on it.
    """
    active = _active.get()
    if active is None or active.adopted or active.span is None:
        return wrapped(*args, **kwargs)
    attributes = kwargs.get("attributes")
    if (
        kwargs.get("kind") is not SpanKind.CLIENT
        or not isinstance(attributes, Mapping)
        or attributes.get(sc.MCP_METHOD_NAME) != sc.MCP_TOOLS_CALL
    ):
        return wrapped(*args, **kwargs)
    active.adopted = True
    span = active.span
    try:
        if span.is_recording():
            span.set_attributes(
                {str(k): v for k, v in attributes.items() if isinstance(v, (str, bool, int, float))}
            )
    except Exception:  # noqa: BLE001
        report_internal_error("adding MCP attributes to an execute_tool span")
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    tools = ToolTelemetry(telemetry)
    yield "mcp.client.session", "ClientSession.call_tool", _call_tool(tools)
    yield "mcp.client.client", "Client.call_tool", _call_tool(tools)
    yield "mcp.shared.jsonrpc_dispatcher", "otel_span", _sdk_span
    # Only to learn each tool's inputSchema for argument validation.
    yield "mcp.client.session", "ClientSession.list_tools", _list_tools
