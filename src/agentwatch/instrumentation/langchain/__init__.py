"""OpenTelemetry instrumentation of LangChain tools (``langchain-core`` 0.3+).

Usage::

    from agentwatch.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=..., meter_provider=...)

or ``agentwatch.instrument()``, or, with no code, ``opentelemetry-instrument python app.py``
(entry point ``agentwatch_langchain``).

Instrumented: every ``BaseTool`` (``@tool`` functions, ``StructuredTool``, ``Tool`` and
subclasses) through ``BaseTool.run``/``BaseTool.arun``, which ``invoke``/``ainvoke`` (and the
legacy ``run``/``arun`` API) go through; the sync fallback of ``ainvoke`` for tools without a
coroutine runs ``invoke`` in an executor and is one call too. Each call is the ``execute_tool
{tool}`` span every agentwatch tool integration makes (``gen_ai.tool.type = function``,
``gen_ai.tool.description`` from the tool), with ``gen_ai.tool.call.id`` taken from an invoked
``ToolCall``, the ``gen_ai.execute_tool.duration`` metric and the ``agentwatch.tool_calls`` log record.

An exception raised by the tool is re-raised unchanged. An error the tool handles itself
(``handle_tool_error``/``handle_validation_error``) is a failed call (``error.type = tool_error``)
when LangChain reports it, i.e. when the tool was invoked with a ``ToolCall`` and returns a
``ToolMessage`` with ``status="error"``; invoked with plain arguments, LangChain returns the error
text like any result and the call counts as a success. Result sizes and captured results are those
of ``ToolMessage.content``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.langchain.package import _instruments

__all__ = ["LangChainInstrumentor"]


class LangChainInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.langchain"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.langchain._patch import patches

        return patches(telemetry)
