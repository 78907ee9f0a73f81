"""OpenTelemetry instrumentation of MCP tool calls made with the official ``mcp`` SDK (1.19+, the
first whose ``call_tool`` takes the ``meta`` that carries the trace context).

Usage::

    from agentwatch.instrumentation.mcp import MCPInstrumentor

    MCPInstrumentor().instrument(tracer_provider=..., meter_provider=...)

or ``agentwatch.instrument()``, or, with no code, ``opentelemetry-instrument python app.py``
(entry point ``agentwatch_mcp``).

Instrumented: ``ClientSession.call_tool`` and ``Client.call_tool`` (mcp 2.x; the outer one
of the two owns the call). Each call is the ``execute_tool {tool}`` span every agentwatch tool
integration makes (``gen_ai.tool.type = extension``), with the MCP attributes of the conventions
(``mcp.method.name = tools/call``, ``jsonrpc.request.id``, ``mcp.protocol.version``), the
``gen_ai.execute_tool.duration`` metric and the ``agentwatch.tool_calls`` log record.

* A result with ``isError: true`` is a failed call: ``error.type = tool_error``, status ERROR;
  the result is returned unchanged. A JSON-RPC error raises as before; ``error.type`` is its
  code (``-32602``) and the status description its message.
* Trace context goes in ``params._meta`` (``traceparent``, plus ``tracestate``/``baggage``/
  ``X-Trace-ID`` when the configured propagators produce them), naming the ``execute_tool`` span,
  so the server's span is its child.
* mcp 2.x makes its own client span for every request (``MCP send tools/call {tool}``, on the
  global tracer provider) and injects ``_meta`` inside it. For a ``tools/call`` made inside an
  instrumented call, agentwatch hands that code the ``execute_tool`` span instead (semconv: "if
  the MCP instrumentation can reliably detect that outer GenAI instrumentation is already tracing
  the tool execution, it SHOULD NOT create a separate span") and its MCP attributes and JSON-RPC
  errors land there: one span per tool call, and ``traceparent`` in ``_meta`` once, whatever the
  transport (the in-process "direct" dispatcher of mcp 2.x makes no client span and injects
  nothing; agentwatch's own injection covers it). Other requests keep the SDK's spans.

Configuration: see :mod:`agentwatch.environment_variables` (content capture records the tool
arguments and result).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.mcp.package import _instruments

__all__ = ["MCPInstrumentor"]


class MCPInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.mcp"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.mcp._patch import patches

        return patches(telemetry)
