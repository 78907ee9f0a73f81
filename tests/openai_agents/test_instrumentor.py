"""Instrumenting and uninstrumenting: originals restored, instrumenting twice harmless, the SDK's
own export to OpenAI replaced (never reached from here: its endpoint is the fake server), faults
contained, and the SDK's tracing switched off."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from agents import RunConfig, tracing
from agents.run import AgentRunner
from agents.tracing.processors import BackendSpanExporter, BatchTraceProcessor

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from openai_agents._support import client, helper, model, run, support_agents, support_script, tree
from support import OPENAI_MODEL, Signals

pytestmark = pytest.mark.anyio

CHAT = f"chat {OPENAI_MODEL}"
_INVOCATIONS = ("_invoke_function_tool_with_metadata", "invoke_function_tool")


def _processors() -> list[Any]:
    return list(tracing.get_trace_provider()._multi_processor._processors)  # type: ignore[attr-defined]


def _originals() -> list[object]:
    from agents import tool
    from agents.run_internal import tool_execution

    # The invocation of hand-built tools is named differently before 0.20.
    invocation = [tool_execution.__dict__[name] for name in _INVOCATIONS if name in tool_execution.__dict__]
    assert invocation
    return [
        AgentRunner.__dict__["run"],
        AgentRunner.__dict__["run_streamed"],
        tool._FailureHandlingFunctionToolInvoker.__dict__["__call__"],
        *invocation,
    ]


def test_uninstrument_restores_every_original(watch: Callable[..., Signals]) -> None:
    other = BatchTraceProcessor(BackendSpanExporter(api_key="sk-unused"))  # an application's own
    tracing.set_trace_processors([other])
    before = _originals()
    watch()
    assert all(now is not then for now, then in zip(_originals(), before, strict=True))
    assert len(_processors()) == 2 and _processors()[0] is other
    agentwatch.uninstrument()
    assert all(now is then for now, then in zip(_originals(), before, strict=True))
    assert _processors() == [other]


def test_instrumenting_twice_is_harmless(signals: Signals) -> None:
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(**signals.providers)
    try:
        wrapped = AgentRunner.__dict__["run"]
        instrumentor.instrument(**signals.providers)
        assert AgentRunner.__dict__["run"] is wrapped
        assert len(_processors()) == 1
    finally:
        instrumentor.uninstrument()
    assert _processors() == []


@pytest.fixture
def sdk_default_export(
    fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[BatchTraceProcessor]:
    """The SDK's default processor, exporting to the fake server instead of api.openai.com."""
    exporter = BackendSpanExporter(api_key="sk-test", endpoint=fake_llm.url + "/v1/traces/ingest")
    default = BatchTraceProcessor(exporter, schedule_delay=60.0)
    monkeypatch.setattr("agents.tracing.processors._global_processor", default)
    tracing.set_trace_processors([default])
    yield default
    default.shutdown()
    exporter.close()


def _ingested(server: FakeLLMServer) -> int:
    return sum(1 for r in server.requests if r.path.endswith("/traces/ingest"))


async def test_the_sdks_export_to_openai_is_replaced_while_instrumented(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, sdk_default_export: BatchTraceProcessor
) -> None:
    signals = watch()
    assert sdk_default_export not in _processors()
    fake_llm.enqueue(*support_script())
    async with client(fake_llm) as openai_client:
        await run(support_agents(model("responses", openai_client)))
    sdk_default_export.force_flush()
    assert _ingested(fake_llm) == 0
    assert signals.finished("invoke_agent")
    agentwatch.uninstrument()
    assert _processors() == [sdk_default_export]


async def test_keep_openai_trace_export_keeps_both(
    signals: Signals, fake_llm: FakeLLMServer, sdk_default_export: BatchTraceProcessor
) -> None:
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(**signals.providers, keep_openai_trace_export=True)
    try:
        assert _processors()[0] is sdk_default_export
        fake_llm.enqueue(Reply.text("hi"))
        async with client(fake_llm) as openai_client:
            await run(helper("chat", openai_client))
        sdk_default_export.force_flush()
    finally:
        instrumentor.uninstrument()
    assert _ingested(fake_llm) >= 1
    assert signals.finished("invoke_agent Helper")


async def test_with_the_sdks_tracing_off_runs_tools_and_model_calls_are_still_recorded(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(*support_script())
    async with client(fake_llm) as openai_client:
        await run(
            support_agents(model("responses", openai_client)), run_config=RunConfig(tracing_disabled=True)
        )
    names = [name for _, name in tree(signals.spans.get_finished_spans())]
    # No agent or handoff spans (they come from the SDK's tracing), everything else is there.
    assert names == [
        "invoke_agent Triage",
        CHAT,
        "execute_tool lookup_order",
        CHAT,
        CHAT,
        "execute_tool get_invoice",
        "execute_tool get_loyalty_points",
        CHAT,
    ]


async def test_a_fault_in_agentwatch_never_reaches_the_run(
    watch: Callable[..., Signals],
    fake_llm: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from agentwatch.instrumentation.openai_agents import _processor

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("agentwatch bug")

    monkeypatch.setattr(_processor, "handoff_tool_name", broken)
    monkeypatch.setattr(_processor.AgentsProcessor, "_agent_started", broken)
    watch()
    fake_llm.enqueue(*support_script())
    async with client(fake_llm) as openai_client:
        result = await run(support_agents(model("responses", openai_client)))
    assert result.final_output == "Your invoice is on its way."
    faults = [r.getMessage() for r in caplog.records if "internal error" in r.getMessage()]
    assert any("OpenAI Agents" in fault for fault in faults)
    caplog.clear()  # expected here: the autouse guard must not fail the test for them
