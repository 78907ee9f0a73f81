"""A run of the real OpenAI Agents SDK, its model calls over HTTP to the fake LLM server: one trace
with the structure of the run, one span per model call and per tool call, and a session."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from agents import Agent, Runner
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from openai_agents._support import (
    CALLS,
    OPTIONAL_FLAKY,
    attrs,
    client,
    helper,
    model,
    parent_of,
    run,
    support_agents,
    support_script,
    tool_outputs,
    tree,
)
from support import OPENAI_MODEL, Signals, make_signals

pytestmark = pytest.mark.anyio

CHAT = f"chat {OPENAI_MODEL}"
RUN_TREE = [
    (0, "invoke_agent Triage"),
    (1, CHAT),
    (1, "execute_tool lookup_order"),
    (1, CHAT),
    (1, "execute_tool transfer_to_billing"),
    (1, "invoke_agent Billing"),
    (2, CHAT),
    (2, "execute_tool get_invoice"),
    (2, "execute_tool get_loyalty_points"),
    (2, CHAT),
]


@pytest.mark.parametrize("stream", [False, True], ids=["run", "streamed"])
@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_run_is_one_trace_with_the_structure_of_the_run(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, api: str, stream: bool
) -> None:
    signals = watch(tool_policies=OPTIONAL_FLAKY)
    CALLS.clear()
    fake_llm.enqueue(*support_script())
    async with client(fake_llm) as openai_client:
        result = await run(support_agents(model(api, openai_client)), stream=stream)
    assert result.final_output == "Your invoice is on its way."

    spans = signals.spans.get_finished_spans()
    assert tree(spans) == RUN_TREE
    assert len({s.context.trace_id for s in spans}) == 1
    by_name = {s.name: s for s in spans}
    session, billing = by_name["invoke_agent Triage"], by_name["invoke_agent Billing"]

    # One span per model call, each under the agent that made it.
    chats = [s for s in spans if s.name == CHAT]
    assert len(chats) == len(fake_llm.requests) == 4
    assert [parent_of(s, spans) for s in chats] == [session, session, billing, billing]
    assert {(s.kind, attrs(s).get("gen_ai.request.stream", False)) for s in chats} == {
        (SpanKind.CLIENT, stream)
    }
    conversation = attrs(session)["gen_ai.conversation.id"]
    assert conversation.startswith("trace_")  # the SDK's trace id: the run set no group_id
    assert {attrs(s)["gen_ai.conversation.id"] for s in spans} == {conversation}

    # Tools: call ids from the model, the optional one degraded after its two attempts.
    lookup, invoice, points = (
        by_name[f"execute_tool {n}"] for n in ("lookup_order", "get_invoice", "get_loyalty_points")
    )
    assert attrs(lookup)["gen_ai.tool.call.id"] == "call_1"
    assert attrs(lookup)["gen_ai.tool.description"] == "Look up an order."
    assert attrs(lookup)["agentwatch.tool.argument_keys"] == ("order_id",)
    assert invoice.status.status_code is StatusCode.UNSET
    assert attrs(points)["error.type"] == "ConnectionError"
    assert attrs(points)["agentwatch.resilience.attempts"] == 2
    assert [e.name for e in points.events] == ["retry", "fallback"]
    assert CALLS == {"lookup_order": 1, "get_invoice": 1, "get_loyalty_points": 2}
    outputs = tool_outputs(fake_llm)
    assert (
        "The tool 'get_loyalty_points' is unavailable (its dependency failed); proceed without it." in outputs
    )

    # The handoff is the tool call the model made, from one agent to the other.
    handoff = attrs(by_name["execute_tool transfer_to_billing"])
    assert handoff["gen_ai.agent.handoff.source.name"] == "Triage"
    assert handoff["gen_ai.agent.handoff.target.name"] == "Billing"
    assert handoff["gen_ai.tool.type"] == "function"

    # The session: the starting agent's span carries the run's totals.
    totals = attrs(session)
    assert totals["gen_ai.operation.name"] == "invoke_agent"
    assert totals["gen_ai.agent.name"] == "Triage"
    assert totals["agentwatch.session.outcome"] == "completed"
    assert totals["agentwatch.session.iterations"] == 4
    assert totals["agentwatch.session.tool_calls"] == 4  # lookup, handoff, invoice, loyalty points
    assert totals["agentwatch.session.tool_errors"] == 1
    assert (
        totals["gen_ai.usage.input_tokens"] == sum(attrs(s)["gen_ai.usage.input_tokens"] for s in chats) == 48
    )
    assert totals["gen_ai.usage.output_tokens"] == 28
    assert totals["gen_ai.usage.cost.amount"] == pytest.approx(
        sum(attrs(s)["gen_ai.usage.cost.amount"] for s in chats)
    )
    assert attrs(billing)["gen_ai.agent.name"] == "Billing"


async def test_tokens_and_cost_are_counted_once_per_model_call(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch(tool_policies=OPTIONAL_FLAKY)
    fake_llm.enqueue(*support_script())
    async with client(fake_llm) as openai_client:
        await run(support_agents(model("responses", openai_client)))
    usage = signals.points("gen_ai.client.token.usage")
    assert sum(p.sum for p in usage if p.attributes["gen_ai.token.type"] == "input") == 48
    assert sum(p.count for p in signals.points("gen_ai.client.operation.duration")) == 4
    # Only the model calls and the session carry usage: no second span per call from the SDK's
    # own generation/response spans.
    with_usage = [
        s.name for s in signals.spans.get_finished_spans() if "gen_ai.usage.input_tokens" in attrs(s)
    ]
    assert sorted(with_usage) == sorted([CHAT] * 4 + ["invoke_agent Triage"])


async def test_session_metrics_feed_the_slo_dashboards(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch(tool_policies=OPTIONAL_FLAKY)
    async with client(fake_llm) as openai_client:
        agent = support_agents(model("responses", openai_client))
        for _ in range(2):
            fake_llm.enqueue(*support_script())
            await run(agent)
    labels = {"agentwatch.session.outcome": "completed", "gen_ai.agent.name": "Triage"}
    (sessions,) = signals.points("agentwatch.sessions")
    assert dict(sessions.attributes) == labels and sessions.value == 2
    (iterations,) = signals.points("agentwatch.session.iterations")
    assert dict(iterations.attributes) == labels and iterations.count == 2 and iterations.sum == 8
    (duration,) = signals.points("agentwatch.session.duration")
    assert duration.count == 2 and duration.sum > 0
    (cost,) = signals.points("agentwatch.session.cost")
    assert cost.count == 2 and cost.sum > 0
    assert len({s.context.trace_id for s in signals.spans.get_finished_spans()}) == 2  # one trace per run


def test_run_sync_in_a_thread_is_a_session(watch: Callable[..., Signals], fake_llm: FakeLLMServer) -> None:
    signals = watch()
    fake_llm.enqueue(*support_script()[3:])

    def in_thread() -> object:
        openai_client = client(fake_llm)
        agent = helper("chat", openai_client)
        try:
            return Runner.run_sync(agent, "hi").final_output
        finally:
            # run_sync leaves its loop open for later calls: close the client in it, then it.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                loop = asyncio.get_event_loop_policy().get_event_loop()
            loop.run_until_complete(openai_client.close())
            loop.close()
            asyncio.set_event_loop(None)

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(in_thread).result() == "Your invoice is on its way."
    assert tree(signals.spans.get_finished_spans()) == [(0, "invoke_agent Helper"), (1, CHAT)]


async def test_concurrent_runs_stay_apart(watch: Callable[..., Signals], fake_llm: FakeLLMServer) -> None:
    """Three runs in one event loop: each its own trace, session and totals (contexts per task)."""
    signals = watch()
    fake_llm.responder = lambda request: Reply.text("done", chunk_delay=0.01)
    async with client(fake_llm) as openai_client:
        llm = model("responses", openai_client)
        agents = [Agent(name=f"Agent{i}", instructions="Answer.", model=llm) for i in range(3)]
        await asyncio.gather(*(run(agent, stream=i == 1) for i, agent in enumerate(agents)))
    spans = signals.spans.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert sorted(s.name for s in roots) == [
        "invoke_agent Agent0",
        "invoke_agent Agent1",
        "invoke_agent Agent2",
    ]
    for root in roots:
        members = [s for s in spans if s.context.trace_id == root.context.trace_id]
        assert [s.name for s in members if s is not root] == [CHAT]
        assert attrs(root)["agentwatch.session.iterations"] == 1
        assert {attrs(s)["gen_ai.conversation.id"] for s in members} == {
            attrs(root)["gen_ai.conversation.id"]
        }
    assert len({attrs(r)["gen_ai.conversation.id"] for r in roots}) == 3


async def test_a_sampled_out_run_still_feeds_the_session_metrics(fake_llm: FakeLLMServer) -> None:
    signals = make_signals(ALWAYS_OFF)
    agentwatch.instrument(**signals.providers, configure_sdk=False, tool_policies=OPTIONAL_FLAKY)
    try:
        fake_llm.enqueue(*support_script())
        async with client(fake_llm) as openai_client:
            result = await run(support_agents(model("responses", openai_client)))
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert result.final_output == "Your invoice is on its way."
    assert signals.spans.get_finished_spans() == ()
    (point,) = signals.points("agentwatch.sessions")
    assert point.value == 1
    assert sum(p.count for p in signals.points("gen_ai.execute_tool.duration")) == 4
