"""A LangGraph agent, observed and made resilient without touching its code.

The agent is plain LangChain/LangGraph: ``create_agent`` with ``ChatOpenAI`` and two tools, one of
them flaky. ``agentwatch.instrument()`` turns each run into an agentwatch session (an
``invoke_agent`` span with live totals and the session metrics), keeps one ``chat`` span per model
call and one ``execute_tool`` span per tool call, and applies a resilience policy to the flaky
tool by its name. Runs offline against agentwatch's fake LLM server::

    python examples/langgraph_app.py

With no code at all, the same comes from ``opentelemetry-instrument python app.py`` with the
policy in the file named by ``AGENTWATCH_CONFIG``::

    [tools.get_user_preferences]
    critical = false
    timeout = 2.0
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}, 21 °C"


@tool
def get_user_preferences(user_id: str) -> str:
    """The user's preferred units (optional: the answer can do without them)."""
    raise ConnectionError("preferences service unreachable")


def print_tree(spans: tuple[ReadableSpan, ...]) -> None:
    children: dict[int | None, list[ReadableSpan]] = defaultdict(list)
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        children[span.parent.span_id if span.parent else None].append(span)

    def show(parent: int | None, indent: str) -> None:
        for span in children[parent]:
            attributes = span.attributes or {}
            notes = [
                f"{k}={attributes[k]}" for k in ("gen_ai.conversation.id", "error.type") if k in attributes
            ]
            print(indent + span.name, *notes)
            if span.name.startswith("invoke_agent"):
                totals = {
                    k.rpartition(".")[2]: v
                    for k, v in attributes.items()
                    if k.startswith("agentwatch.session.")
                }
                cost = attributes.get("gen_ai.usage.cost.amount")
                print(indent + "  session:", totals, f"cost ${cost:.6f}" if cost is not None else "")
            show(span.context.span_id, indent + "  ")

    show(None, "")


def session_counts(reader: InMemoryMetricReader) -> dict[str, Any]:
    data = reader.get_metrics_data()
    counts: dict[str, Any] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "agentwatch.sessions":
                    for point in metric.data.data_points:
                        counts[str(point.attributes["agentwatch.session.outcome"])] = point.value
    return counts


def main() -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = InMemoryMetricReader()
    agentwatch.instrument(
        tracer_provider=tracer_provider,
        meter_provider=MeterProvider(metric_readers=[metrics]),
        configure_sdk=False,
        # The flaky tool is optional: when it fails, the model reads a note instead of the run failing.
        tool_policies={"get_user_preferences": agentwatch.Policy(critical=False, timeout=2.0)},
    )
    try:
        with FakeLLMServer() as llm:
            llm.enqueue(
                Reply.tool_calls(
                    [("get_weather", {"city": "Paris"}), ("get_user_preferences", {"user_id": "u-42"})]
                ),
                Reply.text("It is sunny in Paris, 21 °C."),
            )
            model = ChatOpenAI(model="gpt-4o-mini", base_url=llm.openai_base_url, api_key="offline")
            agent = create_agent(model, [get_weather, get_user_preferences], name="weather-agent")
            result = agent.invoke(
                {"messages": [("user", "What's the weather in Paris?")]},
                {"configurable": {"thread_id": "conversation-42"}},  # gen_ai.conversation.id
            )
    finally:
        agentwatch.uninstrument()

    print("answer:", result["messages"][-1].content)
    print("the model read:", result["messages"][3].content)
    print_tree(spans.get_finished_spans())
    print("agentwatch.sessions by outcome:", session_counts(metrics))


if __name__ == "__main__":
    main()
