"""The OpenAI Agents SDK under agentwatch: one run, a handoff, two tools (one flaky and optional).

Runs offline against agentwatch's fake LLM server::

    python examples/openai_agents_app.py

It prints the answer, the run's session totals and its one trace. With a real model, drop the fake
server and the explicit client. With no agentwatch code at all, run the application under
``opentelemetry-instrument`` and give the policy in the file named by ``AGENTWATCH_CONFIG``::

    [tools.get_loyalty_points]
    critical = false
    retry = { attempts = 2, backoff = 0.0 }
"""

from __future__ import annotations

import asyncio

from agents import Agent, Runner, function_tool
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply


@function_tool
def get_invoice(order_id: str) -> str:
    """The invoice of an order."""
    return f"invoice {order_id}: 42 EUR, paid"


@function_tool
def get_loyalty_points(customer_id: str) -> int:
    """Loyalty points of a customer (its service is down today)."""
    raise ConnectionError("loyalty service unreachable")


def agents(client: AsyncOpenAI) -> Agent[None]:
    model = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
    billing = Agent(
        name="Billing",
        instructions="Answer billing questions.",
        model=model,
        tools=[get_invoice, get_loyalty_points],
    )
    return Agent(name="Triage", instructions="Route the customer.", model=model, handoffs=[billing])


SCRIPT = [
    Reply.tool_calls([("transfer_to_billing", {})]),
    Reply.tool_calls([("get_invoice", {"order_id": "A-1"}), ("get_loyalty_points", {"customer_id": "c-7"})]),
    Reply.text("Your invoice A-1 is paid; loyalty points are unavailable right now."),
]
NOTES = ("gen_ai.tool.call.id", "gen_ai.agent.handoff.target.name", "error.type")
TOTALS = (
    "agentwatch.session.iterations",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "agentwatch.session.tool_calls",
    "agentwatch.session.tool_errors",
)


def print_trace(spans: tuple[ReadableSpan, ...]) -> None:
    by_id = {s.context.span_id: s for s in spans}

    def depth(span: ReadableSpan) -> int:
        parent = span.parent
        return 0 if parent is None or parent.span_id not in by_id else 1 + depth(by_id[parent.span_id])

    for span in sorted(spans, key=lambda s: (s.start_time or 0, s.name)):
        attributes = span.attributes or {}
        notes = [f"{key}={attributes[key]}" for key in NOTES if key in attributes]
        print("  " * depth(span) + span.name, *notes)
    print("traces:", len({s.context.trace_id for s in spans}))


async def main() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    agentwatch.instrument(
        tracer_provider=provider,
        configure_sdk=False,
        # The optional tool: retried once, then the model is told to do without it.
        tool_policies={
            "get_loyalty_points": agentwatch.Policy(
                critical=False, retry=agentwatch.Retry(attempts=2, backoff=0)
            )
        },
    )
    try:
        with FakeLLMServer() as llm:
            llm.enqueue(*SCRIPT)
            async with AsyncOpenAI(base_url=llm.openai_base_url, api_key="offline") as client:
                result = await Runner.run(agents(client), "Is my order A-1 paid?")
    finally:
        agentwatch.uninstrument()

    print("answer:", result.final_output)
    (session,) = [s for s in spans.get_finished_spans() if s.parent is None]
    attributes = session.attributes or {}
    print(
        "session", attributes["gen_ai.conversation.id"], "outcome", attributes["agentwatch.session.outcome"]
    )
    print("  ".join(f"{key.rsplit('.', 1)[-1]}={attributes.get(key)}" for key in TOTALS))
    print_trace(spans.get_finished_spans())


if __name__ == "__main__":
    asyncio.run(main())
