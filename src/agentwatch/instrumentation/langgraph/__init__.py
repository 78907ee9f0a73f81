"""OpenTelemetry instrumentation of LangGraph runs (``langgraph`` 0.2.17+).

Usage::

    from agentwatch.instrumentation.langgraph import LangGraphInstrumentor

    LangGraphInstrumentor().instrument(tracer_provider=..., meter_provider=...)

or ``agentwatch.instrument()``, or, with no code, ``opentelemetry-instrument python app.py``
(entry point ``agentwatch_langgraph``).

Instrumented: every run of a compiled graph (``invoke``, ``ainvoke``, ``stream``, ``astream``,
``stream_events``/``astream_events``; prebuilt agents such as ``langchain.agents.create_agent``
and ``langgraph.prebuilt.create_react_agent`` are compiled graphs) through ``Pregel.stream`` and
``Pregel.astream``. A run that starts outside any agentwatch session is a session: an
``invoke_agent {graph name}`` span (INTERNAL) with ``gen_ai.conversation.id`` from the
``thread_id`` of ``config["configurable"]``, the live totals of :class:`agentwatch.Session`
(``agentwatch.Session.current()`` inside a node or tool), and the ``agentwatch.session.*``
metrics at its end. Its outcome: ``completed``; ``max_iterations`` on ``GraphRecursionError``
(``recursion_limit``), which is re-raised unchanged; ``interrupted`` when it stopped at an
``interrupt()`` (to be resumed with ``Command(resume=...)``); ``error`` when another exception
escapes; ``cancelled`` when the caller stops reading its stream or cancels it. Inside an
application's ``agentwatch.session()`` a run joins that session; inside another run (a subgraph,
a sub-agent) it is a child ``invoke_agent {graph name}`` span counted in the same session.

The model calls and tool calls of its nodes are the provider instrumentors' ``chat`` spans (or
the LangChain instrumentor's, for providers agentwatch does not patch) and the LangChain
instrumentor's ``execute_tool`` spans, children of the run's span in whatever thread or task
LangGraph runs the node.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import ClassVar

from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._base import AgentwatchInstrumentor, Patch
from agentwatch.instrumentation.langgraph.package import _instruments

__all__ = ["LangGraphInstrumentor"]


class LangGraphInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "agentwatch.instrumentation.langgraph"

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        from agentwatch.instrumentation.langgraph._patch import patches

        return patches(telemetry)
