"""The agents, tools and scripts the OpenAI Agents SDK tests run, and span-tree helpers."""

from __future__ import annotations

import collections
import json
from collections.abc import Sequence
from typing import Any

from agents import Agent, ModelSettings, Runner, function_tool
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import ReadableSpan

from agentwatch import Policy, Retry
from agentwatch._fakellm import FakeLLMServer, Reply
from support import OPENAI_KEY, OPENAI_MODEL

CALLS: collections.Counter[str] = collections.Counter()
"""Executions of each tool function (reset by the tests that count)."""

OPTIONAL_FLAKY = {
    "get_loyalty_points": Policy(critical=False, retry=Retry(attempts=2, backoff=0, jitter=False))
}


@function_tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Look up an order."""
    CALLS["lookup_order"] += 1
    return {"order_id": order_id, "status": "shipped"}


@function_tool
def get_invoice(order_id: str) -> str:
    """The invoice of an order."""
    CALLS["get_invoice"] += 1
    return f"invoice for {order_id}: 42 EUR"


@function_tool
async def get_loyalty_points(customer_id: str) -> int:
    """Loyalty points of a customer (its service is down)."""
    CALLS["get_loyalty_points"] += 1
    raise ConnectionError("loyalty service unreachable")


def client(server: FakeLLMServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0)


def model(api: str, openai_client: AsyncOpenAI) -> Any:
    if api == "responses":
        return OpenAIResponsesModel(model=OPENAI_MODEL, openai_client=openai_client)
    return OpenAIChatCompletionsModel(model=OPENAI_MODEL, openai_client=openai_client)


# Chat completions streams report usage only when asked to.
USAGE = ModelSettings(include_usage=True)


def support_agents(llm: Any) -> Agent[Any]:
    """Triage looks an order up and hands off to Billing, which has a critical and an optional tool."""
    billing = Agent(
        name="Billing",
        instructions="Answer billing questions.",
        model=llm,
        model_settings=USAGE,
        tools=[get_invoice, get_loyalty_points],
    )
    return Agent(
        name="Triage",
        instructions="Route the customer.",
        model=llm,
        model_settings=USAGE,
        tools=[lookup_order],
        handoffs=[billing],
    )


def helper(api: str, openai_client: AsyncOpenAI, **kwargs: Any) -> Agent[Any]:
    """A one-agent app: ``Helper`` on the given API (``responses`` or ``chat``)."""
    return Agent(name="Helper", instructions="Help.", model=model(api, openai_client), **kwargs)


def support_script() -> list[Reply]:
    return [
        Reply.tool_calls([("lookup_order", {"order_id": "A-1"})]),
        Reply.tool_calls([("transfer_to_billing", {})]),
        Reply.tool_calls(
            [("get_invoice", {"order_id": "A-1"}), ("get_loyalty_points", {"customer_id": "c-7"})]
        ),
        Reply.text("Your invoice is on its way."),
    ]


async def run(
    agent: Agent[Any], text: str = "Where is my invoice?", *, stream: bool = False, **kwargs: Any
) -> Any:
    if stream:
        result = Runner.run_streamed(agent, text, **kwargs)
        async for _ in result.stream_events():
            pass
        return result
    return await Runner.run(agent, text, **kwargs)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def tree(spans: Sequence[ReadableSpan]) -> list[tuple[int, str]]:
    """``(depth, name)`` in depth-first order; siblings by start time, then name (parallel tools)."""
    children: dict[int | None, list[ReadableSpan]] = collections.defaultdict(list)
    ids = {s.context.span_id for s in spans}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children[parent].append(span)
    out: list[tuple[int, str]] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children[parent], key=lambda s: (s.start_time or 0, s.name)):
            out.append((depth, span.name))
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return out


def parent_of(span: ReadableSpan, spans: Sequence[ReadableSpan]) -> ReadableSpan | None:
    for candidate in spans:
        if span.parent is not None and candidate.context.span_id == span.parent.span_id:
            return candidate
    return None


def tool_outputs(server: FakeLLMServer) -> list[str]:
    """The tool results the model was sent, in order (Responses items or chat tool messages)."""
    seen: list[str] = []
    for request in server.requests:
        body = request.json if isinstance(request.json, dict) else {}
        items = body.get("input") if request.endpoint == "responses" else body.get("messages")
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                output = item.get("output")
            elif isinstance(item, dict) and item.get("role") == "tool":
                output = item.get("content")
            else:
                continue
            text = output if isinstance(output, str) else json.dumps(output)
            if text not in seen:
                seen.append(text)
    return seen
