"""Typical uses of the public API; checked by mypy --strict (never run). A change that breaks
users' type checking breaks this file first."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import agentwatch
from agentwatch import (
    Bulkhead,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    ResilienceError,
    Retry,
    Session,
    ToolRegistry,
    ToolTimeoutError,
    ToolUnavailable,
)
from agentwatch.instrumentation.anthropic import AnthropicInstrumentor
from agentwatch.instrumentation.langgraph import LangGraphInstrumentor
from agentwatch.instrumentation.openai import OpenAIInstrumentor
from agentwatch.instrumentation.openai_agents import OpenAIAgentsInstrumentor

agentwatch.instrument()
agentwatch.instrument(
    configure_sdk=False,
    capture_message_content="SPAN_ONLY",
    propagate_hosts=["api.openai.com"],
    openai_include_usage=True,
    time_per_output_chunk=False,
    prices={"my-model": {"input_mtok": 1.0, "output_mtok": 2.0}},
    llm_policies={"gpt-4o": Policy(timeout=60, fallback_models=["gpt-4o-mini"])},
    tool_policies={"get_user_preferences": Policy(critical=False, timeout=2.0), "*": Policy(timeout=10)},
)
agentwatch.uninstrument()
LangGraphInstrumentor().instrument()
OpenAIInstrumentor().instrument()
AnthropicInstrumentor().uninstrument()
OpenAIAgentsInstrumentor().instrument(keep_openai_trace_export=True)

policy = Policy(
    timeout=5.0,
    attempt_timeout=timedelta(seconds=2),
    retry=Retry(attempts=3, backoff=0.5, max_delay=8.0),
    breaker=CircuitBreaker(failure_threshold=5, break_duration=30.0),
    bulkhead=Bulkhead(max_concurrent=25),
    critical=True,
)


@agentwatch.tool(policy=policy)
def search(query: str) -> list[str]:
    return [query]


@agentwatch.tool
async def lookup(key: str) -> dict[str, str]:
    return {"key": key}


hits: list[str] = search("otel")
found: dict[str, str] = asyncio.run(lookup("k"))

registry = ToolRegistry()
registry.register(search)
result: object = registry.call("search", {"query": "x"}, call_id="call_1")
if isinstance(result, ToolUnavailable):
    payload: dict[str, str] = result.to_dict()

tools = agentwatch.instrument_registry({"search": search}, policies={"*": Policy(timeout=10.0)})

with agentwatch.session(user_id="u-1", agent_name="agent") as s:
    running: Session = s
    iterations: int = s.iterations
    cost: float | None = s.cost
    s.outcome = "max_iterations"

headers: dict[str, str] = agentwatch.trace_headers()
for snapshot in agentwatch.circuits():
    key: str = snapshot.key
agentwatch.disable_tool("search")
agentwatch.enable_tool("search")

try:
    search("x")
except CircuitOpenError as exc:
    retry_in: float | None = exc.retry_in
except ToolTimeoutError as exc:
    limit: float = exc.timeout
except ResilienceError as exc:
    name: str = exc.name
