"""LangGraph runs as agentwatch sessions: real graphs and prebuilt agents whose model calls go over
HTTP (``ChatOpenAI``, the instrumented openai SDK) to the fake LLM server."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import MemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph import END, START, MessagesState, StateGraph
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from agentwatch import Policy
from agentwatch._fakellm import FakeLLMServer, RecordedRequest, Reply
from graphs._support import (
    HAS_INTERRUPT,
    Preferences,
    attrs,
    compiled,
    get_forecast,
    get_weather,
    looping_agent,
    make_agent,
    one,
    react_agent,
    run_async,
    tree,
)
from graphs.conftest import Instrument, openai_model
from support import OPENAI_MODEL, Signals

OPTIONAL = {"get_user_preferences": Policy(critical=False, timeout=5.0)}
AGENT = "invoke_agent weather-agent"
CHAT = f"chat {OPENAI_MODEL}"


def _question(text: str = "Weather in Paris?") -> dict[str, Any]:
    return {"messages": [("user", text)]}


def _thread(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def _script(server: FakeLLMServer) -> None:
    """Three model calls: weather tool, preferences tool, answer."""
    server.enqueue(
        Reply.tool_calls([("get_weather", {"city": "Paris"})], input_tokens=20, output_tokens=5),
        Reply.tool_calls([("get_user_preferences", {"user_id": "u-1"})], input_tokens=30, output_tokens=6),
        Reply.text("Sunny in Paris.", input_tokens=40, output_tokens=7),
    )


@pytest.fixture
def prefs() -> Preferences:
    return Preferences()


@pytest.fixture
def agent(chat_openai: ChatOpenAI, prefs: Preferences) -> Any:
    return make_agent(chat_openai, [get_weather, prefs.tool()], "weather-agent")


def test_a_react_agent_run_is_one_session_with_its_model_and_tool_calls(
    instrument: Instrument, fake_llm: FakeLLMServer, agent: Any
) -> None:
    signals = instrument(tool_policies=OPTIONAL)
    _script(fake_llm)

    result = agent.invoke(_question(), _thread("thread-1"))

    assert result["messages"][-1].content == "Sunny in Paris."
    assert tree(signals) == [
        (
            AGENT,
            [
                (CHAT, []),
                ("execute_tool get_weather", []),
                (CHAT, []),
                ("execute_tool get_user_preferences", []),
                (CHAT, []),
            ],
        )
    ]
    spans = signals.spans.get_finished_spans()
    assert {s.context.trace_id for s in spans} == {spans[0].context.trace_id}  # one trace per run
    # One span per model call: the openai instrumentor's, none from LangChain on top of it.
    chats = [s for s in spans if s.name == CHAT]
    assert len(chats) == len(fake_llm.requests) == 3
    assert {s.instrumentation_scope.name for s in chats} == {"agentwatch.instrumentation.openai"}
    assert {attrs(s)["gen_ai.conversation.id"] for s in spans} == {"thread-1"}

    run = one(signals, AGENT)
    cost = sum(attrs(s)["gen_ai.usage.cost.amount"] for s in chats)
    assert run.kind is SpanKind.INTERNAL and run.status.status_code is StatusCode.UNSET
    assert attrs(run) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "weather-agent",
        "gen_ai.conversation.id": "thread-1",
        "agentwatch.session.outcome": "completed",
        "agentwatch.session.iterations": 3,
        "agentwatch.session.tool_calls": 2,
        "agentwatch.session.tool_errors": 1,
        "gen_ai.usage.input_tokens": 90,
        "gen_ai.usage.output_tokens": 18,
        "gen_ai.usage.cost.amount": pytest.approx(cost),
        "gen_ai.usage.cost.currency": "USD",
    }

    # The optional tool failed; the model read a degradation result, not an exception.
    failed = one(signals, "execute_tool get_user_preferences")
    assert attrs(failed)["error.type"] == "ConnectionError"
    assert failed.status.status_code is StatusCode.ERROR
    degraded = result["messages"][4]
    assert isinstance(degraded, ToolMessage) and degraded.status == "error"
    assert json.loads(str(degraded.content)) == {
        "status": "unavailable",
        "tool": "get_user_preferences",
        "reason": "dependency",
        "message": "The tool 'get_user_preferences' is unavailable (its dependency failed); proceed without it.",
    }
    sent = _tool_messages(fake_llm.requests[2])
    assert json.loads(sent[-1]["content"])["status"] == "unavailable"


def _tool_messages(request: RecordedRequest) -> list[dict[str, Any]]:
    return [m for m in request.json["messages"] if m["role"] == "tool"]


def _points(signals: Signals, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
    return {tuple(sorted(p.attributes.items())): p for p in signals.points(name)}


def test_session_metrics_feed_the_slos(
    instrument: Instrument, fake_llm: FakeLLMServer, agent: Any, chat_openai: ChatOpenAI
) -> None:
    signals = instrument(tool_policies=OPTIONAL)
    _script(fake_llm)
    agent.invoke(_question(), _thread("t-ok"))
    with pytest.raises(GraphRecursionError):
        looping_agent(chat_openai, "weather-agent").invoke(_question(), {"recursion_limit": 2})

    completed = (("agentwatch.session.outcome", "completed"), ("gen_ai.agent.name", "weather-agent"))
    capped = (("agentwatch.session.outcome", "max_iterations"), ("gen_ai.agent.name", "weather-agent"))
    sessions = _points(signals, "agentwatch.sessions")
    assert set(sessions) == {completed, capped}
    assert sessions[completed].value == sessions[capped].value == 1
    iterations = _points(signals, "agentwatch.session.iterations")
    assert (iterations[completed].sum, iterations[capped].sum) == (3, len(fake_llm.requests) - 3)
    assert _points(signals, "agentwatch.session.duration")[completed].count == 1
    (ok,) = [s for s in signals.finished(AGENT) if attrs(s)["agentwatch.session.outcome"] == "completed"]
    assert _points(signals, "agentwatch.session.cost")[completed].sum == pytest.approx(
        attrs(ok)["gen_ai.usage.cost.amount"]
    )


async def _collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


@pytest.mark.parametrize(
    "entry", ["invoke", "stream", "stream-messages", "ainvoke", "astream", "astream_events"]
)
def test_every_entry_point_makes_the_same_tree(
    instrument: Instrument, fake_llm: FakeLLMServer, agent: Any, chat_openai: ChatOpenAI, entry: str
) -> None:
    model = chat_openai
    signals = instrument(tool_policies=OPTIONAL)
    _script(fake_llm)
    question, config = _question(), _thread(f"t-{entry}")
    if entry == "invoke":
        agent.invoke(question, config)
    elif entry == "stream":
        list(agent.stream(question, config, stream_mode="updates"))
    elif entry == "stream-messages":  # the model streams: LangChain's internal streaming path
        list(agent.stream(question, config, stream_mode="messages"))
    elif entry == "ainvoke":
        run_async(agent.ainvoke(question, config), model)
    elif entry == "astream":
        run_async(_collect(agent.astream(question, config)), model)
    else:
        run_async(_collect(agent.astream_events(question, config, version="v2")), model)

    (root,) = tree(signals)
    assert root[0] == AGENT
    assert [name for name, _ in root[1]] == [
        CHAT,
        "execute_tool get_weather",
        CHAT,
        "execute_tool get_user_preferences",
        CHAT,
    ]
    assert attrs(one(signals, AGENT))["agentwatch.session.iterations"] == 3
    assert len(fake_llm.requests) == 3


def test_parallel_sync_and_async_tools_of_an_async_run_keep_the_context(
    instrument: Instrument, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI, prefs: Preferences
) -> None:
    """Sync tools run in LangGraph's thread pool, async ones as tasks: all inside the run."""
    signals = instrument(tool_policies=OPTIONAL)
    agent = make_agent(chat_openai, [get_weather, get_forecast, prefs.tool()], "weather-agent")
    fake_llm.enqueue(
        Reply.tool_calls(
            [
                ("get_weather", {"city": "Paris"}),
                ("get_forecast", {"city": "Paris"}),
                ("get_user_preferences", {"user_id": "u-1"}),
            ]
        ),
        Reply.text("Sunny, then rain."),
    )

    run_async(_collect(agent.astream(_question(), _thread("t-par"))), chat_openai)

    (root,) = tree(signals)
    assert root[0] == AGENT
    names = [name for name, _ in root[1]]
    assert names[0] == names[-1] == CHAT
    assert sorted(names[1:-1]) == [
        "execute_tool get_forecast",
        "execute_tool get_user_preferences",
        "execute_tool get_weather",
    ]
    assert prefs.threads and threading.main_thread().name not in prefs.threads
    assert {attrs(s)["gen_ai.conversation.id"] for s in signals.spans.get_finished_spans()} == {"t-par"}
    run = attrs(one(signals, AGENT))
    assert (run["agentwatch.session.tool_calls"], run["agentwatch.session.tool_errors"]) == (3, 1)


def test_concurrent_runs_keep_their_own_sessions(instrument: Instrument) -> None:
    """Runs started together (``asyncio.gather``) each get their own trace, session and totals."""
    signals = instrument()

    def respond(request: RecordedRequest) -> Reply:
        messages = request.json["messages"]
        if messages[-1]["role"] == "tool":
            return Reply.text("Done.", input_tokens=10, output_tokens=2)
        city = messages[-1]["content"]
        return Reply.tool_calls([("get_weather", {"city": city})], input_tokens=5, output_tokens=1)

    with FakeLLMServer(respond) as server:
        model = openai_model(server.openai_base_url)
        agent = make_agent(model, [get_weather], "weather-agent")
        cities = [f"city-{i}" for i in range(6)]

        async def main() -> None:
            await asyncio.gather(*(agent.ainvoke(_question(c), _thread(c)) for c in cities))

        run_async(main(), model)

    runs = signals.finished(AGENT)
    assert sorted(attrs(s)["gen_ai.conversation.id"] for s in runs) == cities
    for run in runs:
        members = [
            s for s in signals.spans.get_finished_spans() if s.context.trace_id == run.context.trace_id
        ]
        assert len(members) == 4  # the run, two model calls, one tool call
        assert {attrs(s)["gen_ai.conversation.id"] for s in members} == {attrs(run)["gen_ai.conversation.id"]}
        assert attrs(run)["agentwatch.session.iterations"] == 2
        assert attrs(run)["gen_ai.usage.input_tokens"] == 15


def test_a_recursion_limit_is_outcome_max_iterations_and_the_error_is_unchanged(
    lg: Signals, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI
) -> None:
    with pytest.raises(GraphRecursionError) as caught:
        looping_agent(chat_openai, "weather-agent").invoke(
            _question(), {**_thread("t-loop"), "recursion_limit": 3}
        )

    assert "Recursion limit of 3 reached" in str(caught.value)
    run = one(lg, AGENT)
    assert attrs(run)["agentwatch.session.outcome"] == "max_iterations"
    assert attrs(run)["error.type"] == "langgraph.GraphRecursionError"
    assert run.status.status_code is StatusCode.ERROR
    assert attrs(run)["agentwatch.session.iterations"] == len(fake_llm.requests) == 3


def _approval_graph() -> Any:
    from langgraph.types import interrupt

    def ask(state: MessagesState) -> dict[str, Any]:
        answer = interrupt("approve?")
        return {"messages": [AIMessage(f"approved: {answer}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return compiled(builder, "approvals", checkpointer=MemorySaver())


@pytest.mark.skipif(not HAS_INTERRUPT, reason="interrupt() is langgraph 0.2.57+")
@pytest.mark.parametrize("stream_mode", [None, "values", "updates", ["updates", "values"]])
def test_an_interrupted_run_is_outcome_interrupted_and_its_resumption_completes(
    lg: Signals, stream_mode: Any
) -> None:
    from langgraph.types import Command

    graph = _approval_graph()
    config = _thread("t-hitl")
    if stream_mode is None:
        assert "__interrupt__" in graph.invoke(_question(), config)
    else:
        list(graph.stream(_question(), config, stream_mode=stream_mode))
    assert graph.invoke(Command(resume="yes"), config)["messages"][-1].content == "approved: yes"

    outcomes = [attrs(s)["agentwatch.session.outcome"] for s in lg.finished("invoke_agent approvals")]
    assert outcomes == ["interrupted", "completed"]
    assert {attrs(s)["gen_ai.conversation.id"] for s in lg.finished("invoke_agent")} == {"t-hitl"}
    assert all(s.status.status_code is StatusCode.UNSET for s in lg.finished())


def test_inside_an_application_session_a_run_joins_it(
    instrument: Instrument, fake_llm: FakeLLMServer, agent: Any, chat_openai: ChatOpenAI
) -> None:
    lg = instrument(tool_policies=OPTIONAL)
    _script(fake_llm)
    with agentwatch.session("conv-app", user_id="u-1", agent_name="support") as session:
        agent.invoke(_question(), _thread("ignored"))
        with pytest.raises(GraphRecursionError):
            looping_agent(chat_openai, "looper").invoke(_question(), {"recursion_limit": 2})

    # No second invoke_agent span and no second session: the application's stands for the runs.
    (root,) = tree(lg)
    assert root[0] == "invoke_agent support"
    assert [name for name, _ in root[1]].count(CHAT) == len(fake_llm.requests) == 5
    assert session.iterations == 5 and session.tool_calls == 2
    assert session.outcome == "max_iterations"
    assert {attrs(s)["gen_ai.conversation.id"] for s in lg.spans.get_finished_spans()} == {"conv-app"}
    assert [p.value for p in lg.points("agentwatch.sessions")] == [1]


def test_a_subgraph_is_a_child_agent_span_in_the_same_session(
    lg: Signals, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI
) -> None:
    expert = make_agent(chat_openai, [get_weather], "weather-expert")

    def triage(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("asking the expert")]}

    builder = StateGraph(MessagesState)
    builder.add_node("triage", triage)
    builder.add_node("expert", expert)
    builder.add_edge(START, "triage")
    builder.add_edge("triage", "expert")
    builder.add_edge("expert", END)
    supervisor = compiled(builder, "supervisor")
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Oslo"})]), Reply.text("Cold."))

    supervisor.invoke(_question(), _thread("t-sub"))

    assert tree(lg) == [
        (
            "invoke_agent supervisor",
            [("invoke_agent weather-expert", [(CHAT, []), ("execute_tool get_weather", []), (CHAT, [])])],
        )
    ]
    expert_span = one(lg, "invoke_agent weather-expert")
    assert attrs(expert_span) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "weather-expert",
        "gen_ai.conversation.id": "t-sub",
    }
    totals = attrs(one(lg, "invoke_agent supervisor"))
    assert (totals["agentwatch.session.iterations"], totals["agentwatch.session.tool_calls"]) == (2, 1)
    assert [p.value for p in lg.points("agentwatch.sessions")] == [1]


def test_a_stream_the_caller_stops_early_is_cancelled_and_leaves_no_context_behind(
    lg: Signals, fake_llm: FakeLLMServer, agent: Any
) -> None:
    _script(fake_llm)
    before = trace.get_current_span()
    stream = agent.stream(_question(), _thread("t-stop"), stream_mode="updates")
    for _ in stream:
        # Between items the consumer's code runs in its own context, not the run's.
        assert trace.get_current_span() is before
        assert agentwatch.Session.current() is None
        break
    stream.close()

    run = one(lg, AGENT)
    assert attrs(run)["agentwatch.session.outcome"] == "cancelled"
    assert "error.type" not in attrs(run)
    assert trace.get_current_span() is before


def test_an_exception_in_a_node_is_outcome_error_and_raised_unchanged(lg: Signals) -> None:
    class Broken(Exception):
        pass

    def fail(state: MessagesState) -> dict[str, Any]:
        raise Broken("node failed")

    builder = StateGraph(MessagesState)
    builder.add_node("fail", fail)
    builder.add_edge(START, "fail")
    graph = builder.compile()

    with pytest.raises(Broken, match="node failed"):
        graph.invoke(_question())

    run = one(lg, "invoke_agent LangGraph")
    assert attrs(run)["agentwatch.session.outcome"] == "error"
    assert attrs(run)["error.type"].endswith("Broken")
    assert run.status.status_code is StatusCode.ERROR
    # No thread_id: the session mints an id, as agentwatch.session() does.
    assert len(attrs(run)["gen_ai.conversation.id"]) == 36


def test_live_totals_inside_a_tool(lg: Signals, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI) -> None:
    seen: list[tuple[str, int, int]] = []

    from langchain_core.tools import tool

    @tool
    def progress(note: str) -> str:
        """Report progress."""
        session = agentwatch.Session.current()
        assert session is not None
        seen.append((session.session_id, session.iterations, session.tool_calls))
        return "ok"

    agent = make_agent(chat_openai, [progress], "weather-agent")
    fake_llm.enqueue(Reply.tool_calls([("progress", {"note": "x"})]), Reply.text("Done."))
    agent.invoke(_question(), _thread("t-live"))
    assert seen == [("t-live", 1, 0)]


def test_create_react_agent_from_langgraph_prebuilt(
    lg: Signals, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI
) -> None:
    agent = react_agent(chat_openai, [get_weather], "react")
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Paris"})]), Reply.text("Sunny."))
    agent.invoke(_question(), _thread("t-react"))
    assert tree(lg) == [("invoke_agent react", [(CHAT, []), ("execute_tool get_weather", []), (CHAT, [])])]


@pytest.mark.parametrize(
    "config", [{"configurable": {"thread_id": ["not", "an", "id"]}}, {"configurable": None}, "not a config"]
)
def test_odd_configs_behave_as_without_agentwatch(instrument: Instrument, config: Any) -> None:
    def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("ok", id="a1")]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    graph = compiled(builder, "odd")

    def outcome() -> Any:
        try:
            return [m.content for m in graph.invoke({"messages": [("user", "hi")]}, config)["messages"]]
        except Exception as exc:
            return type(exc)

    plain = outcome()
    instrument()
    assert outcome() == plain


def test_suppressed_instrumentation_makes_no_telemetry_but_keeps_the_policies(
    instrument: Instrument, fake_llm: FakeLLMServer, agent: Any
) -> None:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    lg = instrument(tool_policies=OPTIONAL)
    _script(fake_llm)
    with suppress_instrumentation():
        result = agent.invoke(_question(), _thread("t-quiet"))
    assert result["messages"][-1].content == "Sunny in Paris."
    assert result["messages"][4].status == "error"  # degraded, not raised
    assert lg.finished() == []
    assert lg.points("agentwatch.sessions") == []


def test_uninstrument_restores_and_instrumenting_twice_is_harmless(signals: Signals) -> None:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langgraph.pregel import Pregel

    from agentwatch.instrumentation.langchain import LangChainInstrumentor
    from agentwatch.instrumentation.langgraph import LangGraphInstrumentor

    originals = {
        (Pregel, "stream"): Pregel.stream,
        (Pregel, "astream"): Pregel.astream,
        (BaseChatModel, "_generate_with_cache"): BaseChatModel._generate_with_cache,
        (BaseChatModel, "_agenerate_with_cache"): BaseChatModel._agenerate_with_cache,
        (BaseChatModel, "stream"): BaseChatModel.stream,
        (BaseChatModel, "astream"): BaseChatModel.astream,
    }
    for instrumentor in (LangGraphInstrumentor(), LangChainInstrumentor()):
        instrumentor.instrument(**signals.providers)
        instrumentor.instrument(**signals.providers)
    assert all(getattr(owner, name) is not original for (owner, name), original in originals.items())
    for instrumentor in (LangGraphInstrumentor(), LangChainInstrumentor()):
        instrumentor.uninstrument()
    assert all(getattr(owner, name) is original for (owner, name), original in originals.items())


def test_sampled_out_runs_still_count(fake_llm: FakeLLMServer, chat_openai: ChatOpenAI) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from agentwatch._telemetry._core import set_default_telemetry
    from support import make_signals

    signals = make_signals(ALWAYS_OFF)
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Oslo"})]), Reply.text("Cold."))
        make_agent(chat_openai, [get_weather], "weather-agent").invoke(_question(), _thread("t-off"))
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert signals.finished() == []
    (sessions,) = signals.points("agentwatch.sessions")
    assert sessions.value == 1 and sessions.attributes["agentwatch.session.outcome"] == "completed"
    (iterations,) = signals.points("agentwatch.session.iterations")
    assert iterations.sum == 2
