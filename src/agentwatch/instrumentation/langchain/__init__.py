"""OpenTelemetry instrumentation of LangChain tools and chat models (``langchain-core`` 0.3+).

Usage::

    from agentwatch.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=..., meter_provider=...)

or ``agentwatch.instrument()``, or, with no code, ``opentelemetry-instrument python app.py``
(entry point ``agentwatch_langchain``; LangGraph runs are ``agentwatch_langgraph``'s).

**Tools**: every ``BaseTool`` (``@tool`` functions, ``StructuredTool``, ``Tool`` and
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

A tool named in ``instrument(tool_policies=...)`` or ``[tools.NAME]`` of ``AGENTWATCH_CONFIG``
(``"*"``: every tool) runs through that resilience policy inside its span: timeouts, retries,
circuit breaker, bulkhead. An optional tool (``critical = false``) that the policy stops answers
as LangChain reports a handled tool error: a ``ToolMessage(status="error")`` whose content is the
``agentwatch.ToolUnavailable`` JSON for a model's tool call, that text alone otherwise; the model
reads it and carries on. The policy sees the exceptions the tool raises; an error the tool handles
itself is a result, never retried.

**Chat models**: exactly one ``chat {model}`` span per model call of any ``BaseChatModel``
(``invoke``, ``ainvoke``, ``batch``, ``stream``, ``astream``, and the calls of agents and graphs).
A model whose SDK agentwatch instruments (``ChatOpenAI`` and others built on the openai SDK,
``ChatAnthropic``) gets the span of that SDK's instrumentor, with the provider's exact usage and
cost, and none here. Any other (``ChatGroq``, ``ChatOllama``, ``ChatMistralAI``...) gets a span
made here from what LangChain reports: ``gen_ai.provider.name`` from the model's ``ls_provider``
(mapped to the semconv values), the request model, temperature, max tokens and stop sequences,
the response model, id and finish reason, and the ``usage_metadata`` tokens priced like any other
call; the ``gen_ai.client.*`` metrics and the session's iterations, tokens and cost count it
once. A model call that LangChain's LLM cache may answer makes no such span (a cache hit is no
model call, and cannot be told from one).
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
