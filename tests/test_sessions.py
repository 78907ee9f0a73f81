"""``agentwatch.session``: one ``invoke_agent`` span per agent run, its totals, outcomes and metrics."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Sampler
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._session import (
    ITERATION_BUCKETS,
    SESSION_COST_BUCKETS,
    SESSION_DURATION_BUCKETS,
    Session,
    session,
)
from agentwatch._telemetry._context import current_session
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.tools import ToolRegistry, tool
from support import OPENAI_MODEL, Signals, make_signals, user


@pytest.fixture
def tele(signals: Signals) -> Iterator[Signals]:
    set_default_telemetry(**signals.providers)
    yield signals
    set_default_telemetry()


@pytest.fixture(autouse=True)
def _no_internal_faults(no_internal_faults: None) -> None:
    """Every session test: agentwatch reports no fault of its own (tests/conftest.py)."""


@tool
def lookup(key: str) -> str:
    return key.upper()


@tool
async def alookup(key: str) -> str:
    await asyncio.sleep(random.random() / 1000)
    return key.upper()


def agent_spans(signals: Signals) -> list[ReadableSpan]:
    return signals.finished("invoke_agent")


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def session_points(signals: Signals, name: str) -> list[dict[str, Any]]:
    points = []
    for p in signals.points(name):
        value = p.count if hasattr(p, "count") else p.value
        points.append({**dict(p.attributes), "value": value, **({"sum": p.sum} if hasattr(p, "sum") else {})})
    return points


def test_a_session_is_an_invoke_agent_span(tele: Signals) -> None:
    with session("conv-1", user_id="user-7", agent_name="support-bot") as s:
        assert lookup("a") == "A"
        assert Session.current() is s and current_session.get() is s

    (span,) = agent_spans(tele)
    assert span.name == "invoke_agent support-bot"
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.conversation.id": "conv-1",
        "gen_ai.agent.name": "support-bot",
        "user.id": "user-7",
        "agentwatch.session.outcome": "completed",
        "agentwatch.session.iterations": 0,
        "agentwatch.session.tool_calls": 1,
        "agentwatch.session.tool_errors": 0,
    }
    (tool_span,) = tele.finished("execute_tool")
    assert tool_span.parent is not None and tool_span.parent.span_id == span.context.span_id
    assert attrs(tool_span)["gen_ai.conversation.id"] == "conv-1"
    assert attrs(tool_span)["user.id"] == "user-7"
    assert attrs(tool_span)["gen_ai.agent.name"] == "support-bot"
    assert current_session.get() is None
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_defaults_generate_an_id_and_name_the_span_invoke_agent(tele: Signals) -> None:
    with session() as first, session(user_id=42) as second:  # type: ignore[arg-type]
        pass
    assert first.session_id != second.session_id and len(first.session_id) == 36
    assert second.user_id == "42"
    names = sorted(s.name for s in agent_spans(tele))
    assert names == ["invoke_agent", "invoke_agent"]
    assert all("gen_ai.agent.name" not in attrs(s) for s in agent_spans(tele))


def test_llm_and_tool_spans_inside_carry_the_conversation_and_add_up(
    instrumented: Signals, fake_llm: FakeLLMServer, openai_client: openai.OpenAI
) -> None:
    registry = ToolRegistry()
    registry.register(lookup)
    fake_llm.enqueue(
        Reply.tool_calls([("lookup", {"key": "x"})], input_tokens=100, output_tokens=20),
        Reply.text("Done.", input_tokens=150, output_tokens=30),
    )
    with session("conv-llm", user_id="u-9", agent_name="agent") as s:
        first = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        for call in first.choices[0].message.tool_calls or []:
            registry.call_tool_call(call)
        assert (s.iterations, s.input_tokens, s.output_tokens, s.tool_calls) == (1, 100, 20, 1)
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        live_cost = s.cost

    (agent,) = agent_spans(instrumented)
    chats = instrumented.finished("chat")
    assert len(chats) == 2
    for child in [*chats, *instrumented.finished("execute_tool")]:
        assert attrs(child)["gen_ai.conversation.id"] == "conv-llm"
        assert attrs(child)["user.id"] == "u-9"
        assert child.parent is not None and child.parent.span_id == agent.context.span_id
        assert child.context.trace_id == agent.context.trace_id

    chat_costs = [attrs(c)["gen_ai.usage.cost.amount"] for c in chats]
    assert s.iterations == 2 and s.input_tokens == 250 and s.output_tokens == 50
    assert s.cost == pytest.approx(sum(chat_costs)) and live_cost == s.cost
    a = attrs(agent)
    assert a["gen_ai.usage.input_tokens"] == 250 and a["gen_ai.usage.output_tokens"] == 50
    assert a["gen_ai.usage.cost.amount"] == pytest.approx(sum(chat_costs))
    assert a["gen_ai.usage.cost.currency"] == "USD"
    assert a["agentwatch.session.iterations"] == 2 and a["agentwatch.session.tool_calls"] == 1

    labels = {"gen_ai.agent.name": "agent", "agentwatch.session.outcome": "completed"}
    (cost,) = session_points(instrumented, "agentwatch.session.cost")
    assert cost["sum"] == pytest.approx(sum(chat_costs)) and cost["value"] == 1
    (iterations,) = session_points(instrumented, "agentwatch.session.iterations")
    assert iterations["sum"] == 2
    assert session_points(instrumented, "agentwatch.sessions") == [{**labels, "value": 1}]
    for name in ("agentwatch.session.cost", "agentwatch.session.iterations", "agentwatch.session.duration"):
        (point,) = session_points(instrumented, name)
        assert {k: point[k] for k in labels} == labels and set(point) - {"value", "sum"} == set(labels)


def test_an_unpriced_call_makes_the_cost_unknown(
    instrumented: Signals, fake_llm: FakeLLMServer, openai_client: openai.OpenAI
) -> None:
    with session() as s:
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
        assert s.cost is not None
        openai_client.chat.completions.create(model="my-private-finetune", messages=user())
        assert s.cost is None

    a = attrs(agent_spans(instrumented)[0])
    assert "gen_ai.usage.cost.amount" not in a and a["agentwatch.usage.cost.unpriced"] is True
    assert session_points(instrumented, "agentwatch.session.cost") == []
    assert s.iterations == 2


def test_a_failed_llm_call_is_an_iteration(
    instrumented: Signals, fake_llm: FakeLLMServer, openai_client: openai.OpenAI
) -> None:
    fake_llm.enqueue(Reply.error(500, message="boom"))
    with session() as s, pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    assert s.iterations == 1 and s.cost is None and s.input_tokens == 0
    a = attrs(agent_spans(instrumented)[0])
    assert "gen_ai.usage.input_tokens" not in a and "agentwatch.usage.cost.unpriced" not in a


def test_no_llm_calls_no_cost(tele: Signals) -> None:
    with session() as s:
        pass
    assert s.cost is None and s.iterations == 0
    assert session_points(tele, "agentwatch.session.cost") == []
    assert [p["sum"] for p in session_points(tele, "agentwatch.session.iterations")] == [0]


class Overloaded(Exception):
    pass


def test_an_escaping_exception_is_outcome_error(tele: Signals) -> None:
    error = Overloaded("x")
    with pytest.raises(Overloaded) as caught, session(agent_name="a"):
        raise error
    assert caught.value is error

    (span,) = agent_spans(tele)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["agentwatch.session.outcome"] == "error"
    assert attrs(span)["error.type"] == f"{Overloaded.__module__.partition('.')[0]}.Overloaded"
    assert session_points(tele, "agentwatch.sessions") == [
        {"gen_ai.agent.name": "a", "agentwatch.session.outcome": "error", "value": 1}
    ]
    assert current_session.get() is None and trace.get_current_span() is trace.INVALID_SPAN


def test_a_cancelled_session_is_outcome_cancelled_not_error(tele: Signals) -> None:
    interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt) as caught, session(agent_name="a"):
        raise interrupt
    assert caught.value is interrupt

    (span,) = agent_spans(tele)
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)["agentwatch.session.outcome"] == "cancelled"
    assert "error.type" not in attrs(span)
    assert session_points(tele, "agentwatch.sessions") == [
        {"gen_ai.agent.name": "a", "agentwatch.session.outcome": "cancelled", "value": 1}
    ]


@pytest.mark.anyio
async def test_a_cancelled_async_session_with_a_cancelled_tool_call(tele: Signals) -> None:
    started = asyncio.Event()

    @tool
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    @session()
    async def agent() -> None:
        await slow()

    task = asyncio.ensure_future(agent())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (span,) = agent_spans(tele)
    assert span.status.status_code is StatusCode.UNSET and "error.type" not in attrs(span)
    assert attrs(span)["agentwatch.session.outcome"] == "cancelled"
    assert attrs(span)["agentwatch.session.tool_calls"] == 1
    assert attrs(span)["agentwatch.session.tool_errors"] == 0


def test_a_declared_outcome_wins(tele: Signals) -> None:
    with session() as s:
        s.outcome = "max_iterations"
    with pytest.raises(Overloaded), session() as t:
        t.outcome = "refused"
        raise Overloaded
    with pytest.raises(TypeError), session() as u:
        u.outcome = ""  # a typo should not become a metric label

    outcomes = [attrs(x)["agentwatch.session.outcome"] for x in agent_spans(tele)]
    assert outcomes == ["max_iterations", "refused", "error"]
    assert "error.type" in attrs(agent_spans(tele)[1])  # the exception is still recorded
    counts = {
        p["agentwatch.session.outcome"]: p["value"] for p in session_points(tele, "agentwatch.sessions")
    }
    assert counts == {"max_iterations": 1, "refused": 1, "error": 1}


@pytest.mark.anyio
async def test_async_with(tele: Signals) -> None:
    async with session("conv-async") as s:
        assert await alookup("b") == "B"
        assert Session.current() is s
    assert s.tool_calls == 1
    (tool_span,) = tele.finished("execute_tool")
    assert attrs(tool_span)["gen_ai.conversation.id"] == "conv-async"


def test_decorator_opens_a_new_session_per_call(tele: Signals) -> None:
    seen: list[Session | None] = []

    @session(agent_name="decorated")
    def run(key: str) -> str:
        seen.append(Session.current())
        return lookup(key)

    assert run.__name__ == "run" and not inspect.iscoroutinefunction(run)
    assert run("a") == "A" and run("b") == "B"
    assert seen[0] is not None and seen[1] is not None and seen[0] is not seen[1]
    assert seen[0].session_id != seen[1].session_id
    assert [attrs(s)["gen_ai.agent.name"] for s in agent_spans(tele)] == ["decorated", "decorated"]

    @session("fixed-id")
    def fixed() -> str | None:
        current = Session.current()
        return current.session_id if current else None

    assert fixed() == fixed() == "fixed-id"


@pytest.mark.anyio
async def test_async_decorator(tele: Signals) -> None:
    @session(agent_name="adec")
    async def run(key: str) -> str:
        return await alookup(key)

    assert inspect.iscoroutinefunction(run)
    assert await run("c") == "C"
    (span,) = agent_spans(tele)
    assert attrs(span)["agentwatch.session.tool_calls"] == 1


@pytest.mark.anyio
async def test_decorating_an_object_with_an_async_call_runs_it_inside_the_session(tele: Signals) -> None:
    class Agent:
        async def __call__(self, key: str) -> str | None:
            await asyncio.sleep(0)
            current = Session.current()
            return current.session_id if current else None

    run = session("conv-obj")(Agent())
    assert inspect.iscoroutinefunction(run)
    assert await run("a") == "conv-obj"
    (span,) = agent_spans(tele)
    assert attrs(span)["gen_ai.conversation.id"] == "conv-obj"


def test_a_session_is_single_use_and_nests(tele: Signals) -> None:
    outer = session("outer")
    with outer:
        with session("inner") as inner:
            assert Session.current() is inner
            lookup("x")
        assert Session.current() is outer
        lookup("y")
    with pytest.raises(RuntimeError, match="only once"), outer:
        pass
    with pytest.raises(RuntimeError):
        outer(lambda: None)

    spans = {attrs(s)["gen_ai.conversation.id"]: s for s in agent_spans(tele)}
    assert (
        spans["inner"].parent is not None and spans["inner"].parent.span_id == spans["outer"].context.span_id
    )
    assert [attrs(s)["gen_ai.conversation.id"] for s in tele.finished("execute_tool")] == ["inner", "outer"]
    assert (
        attrs(spans["outer"])["agentwatch.session.tool_calls"],
        attrs(spans["inner"])["agentwatch.session.tool_calls"],
    ) == (1, 1)


@pytest.mark.anyio
async def test_threads_that_receive_the_context_share_the_session(tele: Signals) -> None:
    with session("conv-threads") as s:
        await asyncio.to_thread(lookup, "a")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda k: contextvars.copy_context().run(lookup, k), ["b", "c"]))
            # copy_context() above runs in the worker: it copies the worker's (empty) context.
        with ThreadPoolExecutor(4) as pool:
            context = contextvars.copy_context()
            pool.submit(context.run, lookup, "d").result()
    spans = tele.finished("execute_tool")
    by_key = {s.context.span_id: attrs(s).get("gen_ai.conversation.id") for s in spans}
    assert sorted(v or "" for v in by_key.values()) == ["", "", "conv-threads", "conv-threads"]
    assert s.tool_calls == 2


@pytest.mark.anyio
async def test_asyncio_tasks_started_inside_a_session_belong_to_it(tele: Signals) -> None:
    @tool
    async def afail(key: str) -> str:
        await asyncio.sleep(0)
        raise Overloaded(key)

    async def fan_out(keys: list[str]) -> list[str]:
        # A task started by a task started inside the session.
        return list(await asyncio.gather(*(asyncio.create_task(alookup(k)) for k in keys)))

    async with session("conv-tasks", user_id="u-3", agent_name="fan-out") as s:
        first = asyncio.create_task(alookup("a"))
        results = await asyncio.gather(
            alookup("b"),
            asyncio.to_thread(lookup, "c"),
            afail("d"),
            asyncio.create_task(fan_out(["e", "f", "g"])),
            return_exceptions=True,
        )
        assert await first == "A"
        # Still the session of this task when the tasks are done.
        assert Session.current() is s and (s.tool_calls, s.tool_errors) == (7, 1)

    assert results[:2] == ["B", "C"] and isinstance(results[2], Overloaded)
    assert results[3] == ["E", "F", "G"]
    (agent,) = agent_spans(tele)
    tools = tele.finished("execute_tool")
    assert sorted(t.name for t in tools) == sorted(
        ["execute_tool afail", "execute_tool lookup"] + ["execute_tool alookup"] * 5
    )
    for span in tools:
        assert attrs(span)["gen_ai.conversation.id"] == "conv-tasks", span.name
        assert attrs(span)["user.id"] == "u-3" and attrs(span)["gen_ai.agent.name"] == "fan-out"
        assert span.parent is not None and span.parent.span_id == agent.context.span_id, span.name
        assert span.context.trace_id == agent.context.trace_id
    assert (s.tool_calls, s.tool_errors) == (7, 1)
    assert attrs(agent)["agentwatch.session.tool_calls"] == 7
    assert attrs(agent)["agentwatch.session.tool_errors"] == 1


def test_accounting_is_thread_safe(tele: Signals) -> None:
    calls_per_thread, threads = 300, 8

    @tool
    def sometimes_fails(i: int) -> int:
        if i % 3 == 0:
            raise ValueError(i)
        return i

    def work(context: contextvars.Context) -> None:
        for i in range(calls_per_thread):
            try:
                context.run(sometimes_fails, i)
            except ValueError:
                pass

    with session() as s:
        workers = [threading.Thread(target=work, args=(contextvars.copy_context(),)) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    assert s.tool_calls == calls_per_thread * threads
    assert s.tool_errors == threads * len(range(0, calls_per_thread, 3))
    assert attrs(agent_spans(tele)[0])["agentwatch.session.tool_errors"] == s.tool_errors


@pytest.mark.anyio
async def test_100_parallel_sessions_keep_their_own_conversation_ids(tele: Signals) -> None:
    async def one(i: int) -> tuple[str, Session]:
        async with session(f"conv-{i}", user_id=f"user-{i}") as s:
            await asyncio.sleep(random.random() / 100)
            result = await alookup(f"k{i}")
            await asyncio.sleep(random.random() / 100)
            return result, s

    results = await asyncio.gather(*(one(i) for i in range(100)))

    assert [r for r, _ in results] == [f"K{i}" for i in range(100)]
    assert all(s.tool_calls == 1 for _, s in results)
    agents = {s.context.span_id: s for s in agent_spans(tele)}
    tools = tele.finished("execute_tool")
    assert len(agents) == 100 and len(tools) == 100
    for span in tools:
        assert span.parent is not None
        parent = agents[span.parent.span_id]
        assert attrs(span)["gen_ai.conversation.id"] == attrs(parent)["gen_ai.conversation.id"]
        assert attrs(span)["user.id"] == attrs(parent)["user.id"]
        assert span.context.trace_id == parent.context.trace_id
    assert len({s.context.trace_id for s in agents.values()}) == 100


def test_session_metrics_buckets_and_units(
    instrumented: Signals, fake_llm: FakeLLMServer, openai_client: openai.OpenAI
) -> None:
    with session(agent_name="b") as s:
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    assert s.cost is not None  # priced: the cost histogram has a point

    # README "Telemetry reference": unit, first and last bucket, boundaries the SLOs and alerts need.
    documented = {
        "agentwatch.session.duration": ("s", SESSION_DURATION_BUCKETS, 0.1, 600.0, {15.0}),
        "agentwatch.session.cost": ("USD", SESSION_COST_BUCKETS, 0.00001, 100.0, {0.1, 0.5}),
        "agentwatch.session.iterations": ("{iteration}", ITERATION_BUCKETS, 1.0, 50.0, set()),
    }
    for name, (unit, buckets, first, last, included) in documented.items():
        metric = instrumented.metric(name)
        assert metric.unit == unit, name
        (point,) = metric.data.data_points
        bounds = tuple(point.explicit_bounds)
        assert bounds == tuple(float(b) for b in buckets), name
        assert (bounds[0], bounds[-1]) == (first, last) and included <= set(bounds), name
        assert list(bounds) == sorted(set(bounds)), name
    # The session cost buckets are the per-call cost buckets, extended up to $100.
    call_cost = instrumented.metric("gen_ai.client.operation.cost")
    assert call_cost.unit == "USD"
    call_bounds = tuple(call_cost.data.data_points[0].explicit_bounds)
    session_bounds = tuple(instrumented.metric("agentwatch.session.cost").data.data_points[0].explicit_bounds)
    assert session_bounds[: len(call_bounds)] == call_bounds and session_bounds[-1] == 100.0
    assert instrumented.metric("agentwatch.sessions").unit == "{session}"


def test_sampled_out_sessions_still_count() -> None:
    signals = make_signals(sampler=ALWAYS_OFF)
    set_default_telemetry(**signals.providers)
    try:
        with session(agent_name="quiet") as s:
            lookup("x")
    finally:
        set_default_telemetry()
    assert signals.finished() == []
    assert s.tool_calls == 1
    assert [p["value"] for p in session_points(signals, "agentwatch.sessions")] == [1]


class _BrokenTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("tracing broken")


def test_a_telemetry_fault_never_reaches_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    set_default_telemetry(tracer_provider=_BrokenTracerProvider())
    try:
        with session("conv-broken") as s:
            assert Session.current() is s
            s.outcome = "completed"
        assert current_session.get() is None
    finally:
        set_default_telemetry()
    faults = [
        r.getMessage()
        for r in caplog.records
        if r.name == "agentwatch" and "internal error" in r.getMessage()
    ]
    assert len(faults) == 2
    assert "starting a session span" in faults[0] and "ending a session span" in faults[1]
    caplog.clear()  # the expected faults: the autouse guard must not flag them


# -- totals do not depend on spans (issue 11, item 11) ----------------------------------------------


class _RaisingSampler(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("sampler failed")

    def get_description(self) -> str:
        return "raising"


class _RaisingOnStart(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if not span.name.startswith("invoke_agent"):
            raise RuntimeError("on_start failed")


@pytest.mark.parametrize("fault", ["sampler", "on_start"])
def test_session_totals_count_calls_whose_span_could_not_start(
    fault: str, fake_llm: FakeLLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    signals = make_signals(sampler=_RaisingSampler() if fault == "sampler" else None)
    if fault == "on_start":
        signals.tracer_provider.add_span_processor(_RaisingOnStart())
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    fake_llm.enqueue(Reply.text(input_tokens=10, output_tokens=5), Reply.error(500))
    try:
        with (
            openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", max_retries=0) as client,
            session(agent_name="resilient") as s,
        ):
            reply = client.chat.completions.create(model=OPENAI_MODEL, messages=user())
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model=OPENAI_MODEL, messages=user())
            assert lookup("x") == "X"
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert reply.choices[0].message.content
    assert (s.iterations, s.input_tokens, s.output_tokens, s.tool_calls) == (2, 10, 5, 1)
    # The calls' metrics are recorded too: they never depended on spans either.
    assert [p.count for p in signals.points("gen_ai.client.operation.duration")] == [1, 1]
    assert [p.count for p in signals.points("gen_ai.execute_tool.duration")] == [1]
    assert [p["value"] for p in session_points(signals, "agentwatch.session.iterations")] == [1]
    faults = {r.getMessage().split(";")[0] for r in caplog.records if "internal error" in r.getMessage()}
    assert faults  # reported, once per site
    caplog.clear()  # the expected faults: the autouse guard must not flag them
