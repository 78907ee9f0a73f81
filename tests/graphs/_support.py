"""Helpers of the LangChain/LangGraph tests (import as ``graphs._support``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from langchain_core.tools import tool
from langgraph.graph import MessagesState
from opentelemetry.sdk.trace import ReadableSpan

from support import Signals

T = TypeVar("T")
Tree = list[tuple[str, "Tree"]]


def tree(signals: Signals) -> Tree:
    """Every finished span as ``(name, children)``, children in start order; roots first."""
    spans = signals.spans.get_finished_spans()
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def build(parent: int | None) -> Tree:
        return [(s.name, build(s.context.span_id)) for s in sorted(children.get(parent, []), key=_start)]

    return build(None)


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def one(signals: Signals, name: str) -> ReadableSpan:
    found = [s for s in signals.spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in signals.spans.get_finished_spans()]
    return found[0]


class Preferences:
    """A flaky tool dependency: each call fails while ``down`` (counting the attempts it saw)."""

    def __init__(self) -> None:
        self.down = True
        self.attempts = 0
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def tool(self) -> Any:
        @tool
        def get_user_preferences(user_id: str) -> str:
            """The user's saved preferences (optional: the answer can do without them)."""
            with self._lock:
                self.attempts += 1
                self.threads.append(threading.current_thread().name)
            if self.down:
                raise ConnectionError("preferences service unreachable")
            return "units: celsius"

        return get_user_preferences


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


@tool
async def get_forecast(city: str) -> str:
    """Tomorrow's forecast for a city."""
    return f"rain in {city}"


# -- versions: the compat run uses langgraph 0.2 / langchain-core 0.3 --------------------------

try:  # langgraph >= 0.2.57
    from langgraph.types import interrupt as _interrupt
except ImportError:  # pragma: no cover - the oldest supported langgraph
    _interrupt = None

HAS_INTERRUPT = _interrupt is not None


def run_async(main: Awaitable[T], *models: Any) -> T:
    """``asyncio.run(main)``, closing the async HTTP clients of ``models`` before the loop ends."""

    async def scope() -> T:
        try:
            return await main
        finally:
            for model in models:
                client = getattr(model, "http_async_client", None)
                if client is not None:
                    await client.aclose()

    return asyncio.run(scope())


def looping_agent(model: Any, name: str) -> Any:
    """A graph that asks the model again after every answer: it ends only at the recursion limit
    (prebuilt agents of langgraph 0.2 stop one step short of it instead of raising)."""
    from langgraph.graph import START, StateGraph

    def think(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("think", think)
    builder.add_edge(START, "think")
    builder.add_edge("think", "think")
    return compiled(builder, name)


def make_agent(model: Any, tools: list[Any], name: str) -> Any:
    """The current prebuilt ReAct agent: ``langchain.agents.create_agent`` (langchain 1.x), else
    ``langgraph.prebuilt.create_react_agent``, whose tool node then lets tool errors propagate as
    ``create_agent``'s does."""
    try:
        from langchain.agents import create_agent
    except ImportError:
        create_agent = None
    if create_agent is not None:
        return create_agent(model, tools, name=name)
    from langgraph.prebuilt import ToolNode

    return react_agent(model, ToolNode(tools, handle_tool_errors=False), name)


def react_agent(model: Any, tools: Any, name: str) -> Any:
    """``langgraph.prebuilt.create_react_agent`` named ``name`` (its ``name=`` is langgraph 0.3+)."""
    import inspect
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in langgraph 1.x
        from langgraph.prebuilt import create_react_agent

        if "name" in inspect.signature(create_react_agent).parameters:
            return create_react_agent(model, tools, name=name)
        agent = create_react_agent(model, tools)
    agent.name = name
    return agent


def compiled(builder: Any, name: str | None = None, **kwargs: Any) -> Any:
    """``builder.compile(...)`` named ``name`` (``compile(name=)`` is langgraph 0.3+)."""
    graph = builder.compile(**kwargs)
    if name is not None:
        graph.name = name
    return graph
