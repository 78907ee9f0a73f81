"""Tools and sessions: one agent run, its LLM calls and its tool calls in one trace.

Runs offline against agentwatch's fake LLM server, scripted inside this process::

    .venv/bin/python examples/tools_and_sessions.py

With ``OPENAI_BASE_URL`` set it talks to that server instead: ``agentwatch fake-llm`` in another
terminal (``OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-fake``), or a real
provider. In your own code, build the client as usual and call ``agentwatch.instrument()``
(which exports OTLP as ``OTEL_*`` variables say).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import openai
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch
from agentwatch.resilience import Policy, ToolUnavailable

registry = agentwatch.ToolRegistry()


@registry.register
def get_weather(city: str) -> dict[str, Any]:
    """Current weather for a city."""
    return {"city": city, "forecast": "sunny", "temperature_c": 21}


# An optional tool: when its backend is down the model gets a note instead of an exception.
@registry.register(policy=Policy(critical=False, timeout=2.0))
def get_user_preferences(user_id: str) -> dict[str, Any]:
    """The user's preferred units."""
    raise ConnectionError("preferences service unreachable")


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_user_preferences",
            "description": "The user's preferred units.",
            "parameters": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}},
                "required": ["user_id"],
            },
        },
    },
]
MAX_ITERATIONS = 8


def agent_loop(client: openai.OpenAI, question: str) -> str | None:
    messages: list[Any] = [{"role": "user", "content": question}]
    for _ in range(MAX_ITERATIONS):
        response = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
        message = response.choices[0].message
        if not message.tool_calls:
            return message.content or ""
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            # The model's call id becomes gen_ai.tool.call.id on the execute_tool span.
            result = registry.call_tool_call(call)
            if isinstance(result, ToolUnavailable):
                result = result.to_dict()
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)})
    return None


def run_agent(client: openai.OpenAI, question: str, *, user_id: str) -> str:
    with agentwatch.session(user_id=user_id, agent_name="weather-agent") as session:
        answer = agent_loop(client, question)
        if answer is None:
            session.outcome = "max_iterations"
    cost = "unknown" if session.cost is None else f"${session.cost:.6f}"
    print(
        f"session {session.session_id}: {session.iterations} LLM calls, "
        f"{session.input_tokens}+{session.output_tokens} tokens, cost {cost}, "
        f"{session.tool_calls} tool calls ({session.tool_errors} failed)"
    )
    return answer or "Sorry, I could not finish."


def print_tree(spans: tuple[ReadableSpan, ...]) -> None:
    by_id = {s.context.span_id: s for s in spans}

    def depth(span: ReadableSpan) -> int:
        parent = span.parent
        return 0 if parent is None or parent.span_id not in by_id else 1 + depth(by_id[parent.span_id])

    for span in sorted(spans, key=lambda s: s.start_time or 0):
        attributes = span.attributes or {}
        notes = [
            f"{key}={attributes[key]}" for key in ("gen_ai.tool.call.id", "error.type") if key in attributes
        ]
        print("  " * depth(span) + span.name, *notes)
    conversations = {(s.attributes or {}).get("gen_ai.conversation.id") for s in spans}
    print("gen_ai.conversation.id on every span:", conversations.pop() if len(conversations) == 1 else "no")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s (%(argument_keys)s)")
    logging.getLogger().handlers[0].addFilter(lambda r: r.name == "agentwatch.tool_calls")

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    agentwatch.instrument(tracer_provider=provider, configure_sdk=False)
    question = "What's the weather in Paris?"
    try:
        if os.environ.get("OPENAI_BASE_URL"):  # `agentwatch fake-llm`, or a real provider
            with openai.OpenAI() as client:
                answer = run_agent(client, question, user_id="u-42")
        else:
            # agentwatch's test server, scripted here (a private module: fine for an example).
            from agentwatch._fakellm import FakeLLMServer, Reply

            with FakeLLMServer() as llm:
                llm.enqueue(
                    Reply.tool_calls(
                        [("get_weather", {"city": "Paris"}), ("get_user_preferences", {"user_id": "u-42"})]
                    ),
                    Reply.text("It is sunny in Paris, 21 °C."),
                )
                client = openai.OpenAI(base_url=llm.openai_base_url, api_key="offline")
                answer = run_agent(client, question, user_id="u-42")
    finally:
        agentwatch.uninstrument()

    print("answer:", answer)
    print_tree(spans.get_finished_spans())


if __name__ == "__main__":
    main()
