"""Which session a run belongs to, and the conversation id its spans carry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from agents import Agent, RunConfig, SQLiteSession, trace

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from openai_agents._support import attrs, client, helper, model, run, support_agents, support_script, tree
from support import OPENAI_MODEL, Signals

pytestmark = pytest.mark.anyio

CHAT = f"chat {OPENAI_MODEL}"


async def test_a_run_joins_the_applications_session(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(*support_script())
    async with client(fake_llm) as openai_client:
        with agentwatch.session("conv-7", user_id="u-42", agent_name="support-desk") as session:
            await run(support_agents(model("responses", openai_client)))
    spans = signals.spans.get_finished_spans()
    assert tree(spans)[:3] == [(0, "invoke_agent support-desk"), (1, "invoke_agent Triage"), (2, CHAT)]
    assert [name for _, name in tree(spans)].count("invoke_agent Triage") == 1
    assert {attrs(s)["gen_ai.conversation.id"] for s in spans} == {"conv-7"}
    assert {attrs(s).get("user.id") for s in spans if s.name.startswith(("execute_tool", "chat"))} == {"u-42"}
    # The application's session has the run's totals; no second session was counted.
    assert (session.iterations, session.tool_calls, session.tool_errors) == (4, 4, 1)
    (point,) = signals.points("agentwatch.sessions")
    assert dict(point.attributes) == {
        "agentwatch.session.outcome": "completed",
        "gen_ai.agent.name": "support-desk",
    }


async def test_the_group_id_is_the_conversation(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.text("hi"))
    async with client(fake_llm) as openai_client:
        agent = helper("chat", openai_client)
        await run(agent, run_config=RunConfig(group_id="thread-9"))
    assert {attrs(s)["gen_ai.conversation.id"] for s in signals.spans.get_finished_spans()} == {"thread-9"}


async def test_the_memory_session_is_the_conversation(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    memory = SQLiteSession("chat-42")
    fake_llm.enqueue(Reply.text("one"), Reply.text("two"))
    async with client(fake_llm) as openai_client:
        agent = helper("chat", openai_client)
        await run(agent, "first", session=memory)
        await run(agent, "second", session=memory)
    memory.close()
    spans = signals.spans.get_finished_spans()
    assert {attrs(s)["gen_ai.conversation.id"] for s in spans} == {"chat-42"}
    assert len({s.context.trace_id for s in spans}) == 2  # still one trace per run


async def test_runs_inside_an_sdk_trace_share_one_workflow_trace(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.text("one"), Reply.text("two"))
    async with client(fake_llm) as openai_client:
        agent = helper("chat", openai_client)
        with trace("Support desk", group_id="thread-1"):
            await run(agent, "first")
            await run(agent, "second")
    spans = signals.spans.get_finished_spans()
    assert tree(spans) == [
        (0, "invoke_workflow Support desk"),
        (1, "invoke_agent Helper"),
        (2, CHAT),
        (1, "invoke_agent Helper"),
        (2, CHAT),
    ]
    workflow = signals.only_span("invoke_workflow")
    assert attrs(workflow)["gen_ai.workflow.name"] == "Support desk"
    assert {attrs(s)["gen_ai.conversation.id"] for s in spans} == {"thread-1"}
    assert signals.points("agentwatch.sessions")[0].value == 2  # two runs, two sessions


async def test_an_agent_used_as_a_tool_runs_inside_the_tool_call(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(
        Reply.tool_calls([("ask_expert", {"input": "What is 6 x 7?"})]),
        Reply.text("42"),  # the expert's answer
        Reply.text("The expert says 42."),
    )
    async with client(fake_llm) as openai_client:
        llm = model("responses", openai_client)
        expert = Agent(name="Expert", instructions="Answer.", model=llm)
        lead = Agent(
            name="Lead",
            instructions="Delegate.",
            model=llm,
            tools=[expert.as_tool(tool_name="ask_expert", tool_description="Ask the expert.")],
        )
        result = await run(lead)
    assert result.final_output == "The expert says 42."
    assert tree(signals.spans.get_finished_spans()) == [
        (0, "invoke_agent Lead"),
        (1, CHAT),
        (1, "execute_tool ask_expert"),
        (2, "invoke_agent Expert"),
        (3, CHAT),
        (1, CHAT),
    ]
    lead_span = signals.only_span("invoke_agent Lead")
    assert attrs(lead_span)["agentwatch.session.iterations"] == 3  # the expert's call counts too
    assert signals.points("agentwatch.sessions")[0].value == 1
