"""The issue's "done when": a LangGraph agent with two tools, one flaky and optional, run under
``opentelemetry-instrument`` with no agentwatch code, configured by ``AGENTWATCH_CONFIG`` alone,
exported by the console exporters and parsed back."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest

from agentwatch._fakellm import FakeLLMServer, Reply
from support import run_zero_code

pytestmark = pytest.mark.slow

APP = '''
import os, sys
from langchain.agents import create_agent
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

attempts = []

@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"

@tool
def get_user_preferences(user_id: str) -> str:
    """The user's saved preferences."""
    attempts.append(user_id)
    raise ConnectionError("preferences service unreachable")

model = ChatOpenAI(model="gpt-4o-mini", base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test", max_retries=0)
agent = create_agent(model, [get_weather, get_user_preferences], name="weather-agent")
for thread in ("run-1", "run-2"):
    result = agent.invoke({"messages": [("user", "Weather in Paris?")]}, {"configurable": {"thread_id": thread}})
    print("ANSWER", thread, result["messages"][-1].content, file=sys.stderr)
print("PREFERENCE_ATTEMPTS", len(attempts), file=sys.stderr)
'''

# Retried once, then its breaker opens (each attempt counts): the second run never calls it.
CONFIG = """
[tools.get_user_preferences]
critical = false
timeout = 5.0
retry = { attempts = 2, backoff = 0.001 }
breaker = { failure_threshold = 2, break_duration = 60.0 }
"""


def _metrics(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    points: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for document in documents:
        for resource in document.get("resource_metrics", ()):
            for scope in resource["scope_metrics"]:
                for metric in scope["metrics"]:
                    points[metric["name"]].extend(metric["data"]["data_points"])
    return points


@pytest.fixture(scope="module")
def zero_code(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    with FakeLLMServer() as server:
        for _ in range(2):  # each run: both tools in one turn, then the answer
            server.enqueue(
                Reply.tool_calls(
                    [("get_weather", {"city": "Paris"}), ("get_user_preferences", {"user_id": "u-1"})],
                    input_tokens=100,
                    output_tokens=20,
                ),
                Reply.text("Sunny in Paris.", input_tokens=150, output_tokens=10),
            )
        stderr, documents = run_zero_code(
            tmp_path_factory.mktemp("zero-code"),
            APP,
            CONFIG,
            FAKE_OPENAI_URL=server.openai_base_url,
            OTEL_SERVICE_NAME="zero-code-langgraph",
        )
        requests = [r.json for r in server.requests]
        assert server.errors == []
    spans = [d for d in documents if "context" in d and "name" in d]
    return {"stderr": stderr, "spans": spans, "metrics": _metrics(documents), "requests": requests}


def _runs(spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        traces[span["context"]["trace_id"]].append(span)
    return {_root(members)["attributes"]["gen_ai.conversation.id"]: members for members in traces.values()}


def _root(members: list[dict[str, Any]]) -> dict[str, Any]:
    (root,) = [s for s in members if s["parent_id"] is None]
    return root


def test_one_trace_per_run_rooted_at_its_agent_span(zero_code: dict[str, Any]) -> None:
    runs = _runs(zero_code["spans"])
    assert sorted(runs) == ["run-1", "run-2"]
    for members in runs.values():
        root = _root(members)
        assert root["name"] == "invoke_agent weather-agent"
        ids = {s["context"]["span_id"] for s in members}
        assert all(s["parent_id"] == root["context"]["span_id"] for s in members if s is not root)
        assert len(ids) == len(members)


def test_one_span_per_model_call_and_per_tool_call(zero_code: dict[str, Any]) -> None:
    assert len(zero_code["requests"]) == 4
    for members in _runs(zero_code["spans"]).values():
        names = sorted(s["name"] for s in members)
        assert names == [
            "chat gpt-4o-mini",
            "chat gpt-4o-mini",
            "execute_tool get_user_preferences",
            "execute_tool get_weather",
            "invoke_agent weather-agent",
        ]


def test_session_totals(zero_code: dict[str, Any]) -> None:
    for members in _runs(zero_code["spans"]).values():
        totals = _root(members)["attributes"]
        chats = [s["attributes"] for s in members if s["name"].startswith("chat")]
        assert totals["agentwatch.session.outcome"] == "completed"
        assert totals["agentwatch.session.iterations"] == 2
        assert totals["agentwatch.session.tool_calls"] == 2
        assert totals["agentwatch.session.tool_errors"] == 1
        assert totals["gen_ai.usage.input_tokens"] == 250
        assert totals["gen_ai.usage.output_tokens"] == 30
        assert totals["gen_ai.usage.cost.amount"] == pytest.approx(
            sum(c["gen_ai.usage.cost.amount"] for c in chats)
        )


def test_the_policy_from_agentwatch_config(zero_code: dict[str, Any]) -> None:
    # Run 1: two attempts (one retry), then the degradation result; run 2: the open breaker
    # answers for the tool, which is never called.
    assert "PREFERENCE_ATTEMPTS 2" in zero_code["stderr"]
    assert "ANSWER run-1 Sunny in Paris." in zero_code["stderr"]
    assert "ANSWER run-2 Sunny in Paris." in zero_code["stderr"]
    runs = _runs(zero_code["spans"])
    preferences = {
        thread: next(s for s in members if s["name"] == "execute_tool get_user_preferences")
        for thread, members in runs.items()
    }
    assert preferences["run-1"]["attributes"]["error.type"] == "ConnectionError"
    assert [e["name"] for e in preferences["run-1"]["events"]].count("retry") == 1
    assert preferences["run-2"]["attributes"]["error.type"] == "circuit_open"
    # What the model read instead of an exception, in each run's second request.
    reasons = []
    for request in zero_code["requests"][1::2]:
        (tool_message,) = [
            m for m in request["messages"] if m["role"] == "tool" and "unavailable" in m["content"]
        ]
        reasons.append(json.loads(tool_message["content"])["reason"])
    assert reasons == ["dependency", "circuit_open"]


def test_the_session_metrics(zero_code: dict[str, Any]) -> None:
    metrics = zero_code["metrics"]
    labels = {"agentwatch.session.outcome": "completed", "gen_ai.agent.name": "weather-agent"}
    (sessions,) = metrics["agentwatch.sessions"]
    assert sessions["attributes"] == labels and sessions["value"] == 2
    (iterations,) = metrics["agentwatch.session.iterations"]
    assert iterations["attributes"] == labels and (iterations["count"], iterations["sum"]) == (2, 4)
    (duration,) = metrics["agentwatch.session.duration"]
    assert duration["count"] == 2
    (cost,) = metrics["agentwatch.session.cost"]
    roots = [_root(m)["attributes"]["gen_ai.usage.cost.amount"] for m in _runs(zero_code["spans"]).values()]
    assert cost["count"] == 2 and cost["sum"] == pytest.approx(sum(roots))
    tool_errors = sorted(
        (p["attributes"]["gen_ai.tool.name"], p["attributes"].get("error.type"), p["count"])
        for p in metrics["gen_ai.execute_tool.duration"]
    )
    assert tool_errors == [
        ("get_user_preferences", "ConnectionError", 1),
        ("get_user_preferences", "circuit_open", 1),
        ("get_weather", None, 2),
    ]
