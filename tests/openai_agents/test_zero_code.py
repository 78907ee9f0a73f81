"""The issue's "done when": an Agents SDK agent with two tools, one flaky and optional, run under
``opentelemetry-instrument`` with no agentwatch code and policies from ``AGENTWATCH_CONFIG``."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from agentwatch._fakellm import FakeLLMServer, Reply
from support import OPENAI_KEY, OPENAI_MODEL, run_zero_code

APP = f'''
import asyncio
import os
import sys

from agents import Agent, Runner, function_tool, set_default_openai_key

# The key goes to the model client only: the SDK's own trace exporter, were it still on, would have
# no key and skip exporting (and say so) rather than reach api.openai.com.
set_default_openai_key(os.environ["FAKE_OPENAI_KEY"], use_for_tracing=False)

loyalty_calls = 0


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order."""
    return f"{{order_id}}: shipped"


@function_tool
def get_loyalty_points(customer_id: str) -> str:
    """Loyalty points of a customer, from a flaky service."""
    global loyalty_calls
    loyalty_calls += 1
    if loyalty_calls != 2:
        raise ConnectionError("loyalty service unreachable")
    return "120 points"


agent = Agent(
    name="Support", instructions="Help.", model="{OPENAI_MODEL}", tools=[lookup_order, get_loyalty_points]
)


async def main() -> None:
    for question in ("Where is order A-1?", "How many points do I have?"):
        result = await Runner.run(agent, question)
        print("ANSWER", result.final_output, file=sys.stderr)
    print("LOYALTY_CALLS", loyalty_calls, file=sys.stderr)


asyncio.run(main())
'''

CONFIG = """
[tools.get_loyalty_points]
critical = false
retry = { attempts = 2, backoff = 0.0, max_delay = 0.0 }
"""

DEGRADED = "The tool 'get_loyalty_points' is unavailable (its dependency failed); proceed without it."


def _points(metrics: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    last = metrics[-1]  # cumulative: the export at shutdown has the totals
    return [
        point
        for resource in last["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        if metric["name"] == name
        for point in metric["data"]["data_points"]
    ]


class Outcome:
    def __init__(self, stderr: str, documents: list[Any], requests: list[Any]) -> None:
        self.stderr = stderr
        self.requests = requests
        self.spans = [o for o in documents if "context" in o]
        self.metrics = [o for o in documents if "resource_metrics" in o]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """The application, run once for the module's tests (a subprocess takes seconds)."""
    with FakeLLMServer() as fake_llm:
        for _ in range(2):  # per run: both tools in one turn, then the answer
            fake_llm.enqueue(
                Reply.tool_calls(
                    [("lookup_order", {"order_id": "A-1"}), ("get_loyalty_points", {"customer_id": "c-7"})]
                ),
                Reply.text("Here is what I found."),
            )
        stderr, documents = run_zero_code(
            tmp_path_factory.mktemp("zero-code"),
            APP,
            CONFIG,
            OPENAI_BASE_URL=fake_llm.openai_base_url,
            FAKE_OPENAI_KEY=OPENAI_KEY,
            OTEL_SERVICE_NAME="support-agent",
        )
        assert fake_llm.errors == []
        requests = fake_llm.requests
    return Outcome(stderr, documents, requests)


def _by_trace(spans: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        traces[span["context"]["trace_id"]].append(span)
    return sorted(traces.values(), key=lambda t: min(s["start_time"] for s in t))


def _named(trace: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in trace if s["name"] == name]


def test_one_trace_per_run(outcome: Outcome) -> None:
    traces = _by_trace(outcome.spans)
    assert len(traces) == 2
    for trace in traces:
        roots = [s for s in trace if s["parent_id"] is None]
        assert [r["name"] for r in roots] == ["invoke_agent Support"]
        root_id = roots[0]["context"]["span_id"]
        assert all(s["parent_id"] == root_id for s in trace if s is not roots[0])


def test_one_span_per_model_call_and_per_tool_call(outcome: Outcome) -> None:
    assert len(outcome.requests) == 4
    for trace in _by_trace(outcome.spans):
        assert sorted(s["name"] for s in trace) == [
            f"chat {OPENAI_MODEL}",
            f"chat {OPENAI_MODEL}",
            "execute_tool get_loyalty_points",  # one span, whatever the policy retried inside it
            "execute_tool lookup_order",
            "invoke_agent Support",
        ]


def test_session_totals(outcome: Outcome) -> None:
    expected_errors = [0, 1]  # the first run's retry succeeded; the second run's did not
    for trace, tool_errors in zip(_by_trace(outcome.spans), expected_errors, strict=True):
        (root,) = _named(trace, "invoke_agent Support")
        totals = root["attributes"]
        assert totals["agentwatch.session.outcome"] == "completed"
        assert totals["agentwatch.session.iterations"] == 2
        assert totals["agentwatch.session.tool_calls"] == 2
        assert totals["agentwatch.session.tool_errors"] == tool_errors
        assert totals["gen_ai.usage.input_tokens"] == 24 and totals["gen_ai.usage.output_tokens"] == 14
        assert totals["gen_ai.conversation.id"].startswith("trace_")
        assert {s["attributes"]["gen_ai.conversation.id"] for s in trace} == {
            totals["gen_ai.conversation.id"]
        }


def test_the_policy_from_agentwatch_config(outcome: Outcome) -> None:
    assert "LOYALTY_CALLS 4" in outcome.stderr  # two attempts in each run
    first, second = (_named(t, "execute_tool get_loyalty_points")[0] for t in _by_trace(outcome.spans))
    assert first["attributes"]["agentwatch.resilience.attempts"] == 2
    assert [e["name"] for e in first["events"]] == ["retry"]
    assert "error.type" not in first["attributes"]
    assert second["attributes"]["error.type"] == "ConnectionError"
    assert [e["name"] for e in second["events"]] == ["retry", "fallback"]
    # What the model read: the retried result, then the optional tool's degradation message.
    outputs = [
        item.get("output")
        for request in outcome.requests
        for item in (request.json or {}).get("input", [])
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    ]
    assert "120 points" in outputs and DEGRADED in outputs
    # The SDK's own exporter never ran (it would have said it had no key to export with).
    assert "skipping trace export" not in outcome.stderr


def test_session_metrics(outcome: Outcome) -> None:
    metrics = outcome.metrics
    labels = {"agentwatch.session.outcome": "completed", "gen_ai.agent.name": "Support"}
    (sessions,) = _points(metrics, "agentwatch.sessions")
    assert sessions["attributes"] == labels and sessions["value"] == 2
    (duration,) = _points(metrics, "agentwatch.session.duration")
    assert duration["attributes"] == labels and duration["count"] == 2
    (iterations,) = _points(metrics, "agentwatch.session.iterations")
    assert iterations["count"] == 2 and iterations["sum"] == 4
    tool_points = _points(metrics, "gen_ai.execute_tool.duration")
    assert sum(p["count"] for p in tool_points) == 4
    assert sum(p["count"] for p in tool_points if p["attributes"].get("error.type") == "ConnectionError") == 1
