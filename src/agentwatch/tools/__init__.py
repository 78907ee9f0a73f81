"""Observable tools: ``@tool``, :class:`ToolRegistry` and :func:`instrument_registry`.

Every tool call, whichever way it is made (a decorated function called directly, a registry
call with model-provided arguments, a plain dict made observable, or the MCP and LangChain
instrumentors), is the same ``execute_tool {gen_ai.tool.name}`` span, the same
``gen_ai.execute_tool.duration`` metric point and the same ``agentwatch.tool_calls`` log record.
"""

from __future__ import annotations

from agentwatch.tools._execution import LOGGER_NAME
from agentwatch.tools._registry import (
    ToolRegistry,
    UnknownToolError,
    instrument_registry,
    uninstrument_registry,
)
from agentwatch.tools._tool import Tool, get_tool, tool

__all__ = [
    "LOGGER_NAME",
    "Tool",
    "ToolRegistry",
    "UnknownToolError",
    "get_tool",
    "instrument_registry",
    "tool",
    "uninstrument_registry",
]
