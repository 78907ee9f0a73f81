"""How a run ends: its session's outcome, the exception the application gets (unchanged), and the
``agentwatch.sessions`` point the completion-rate SLO counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import openai
import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    MaxTurnsExceeded,
    input_guardrail,
)
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from openai_agents._support import attrs, client, helper, lookup_order, model, run
from support import OPENAI_MODEL, Signals

pytestmark = pytest.mark.anyio


def _session(signals: Signals) -> dict[str, Any]:
    (span,) = [s for s in signals.spans.get_finished_spans() if s.parent is None]
    return attrs(span) | {"status": span.status.status_code}


def _outcomes(signals: Signals) -> dict[str, int]:
    return {
        p.attributes["agentwatch.session.outcome"]: p.value for p in signals.points("agentwatch.sessions")
    }


@pytest.mark.parametrize("stream", [False, True], ids=["run", "streamed"])
async def test_max_turns_is_max_iterations(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, stream: bool
) -> None:
    signals = watch()
    fake_llm.enqueue(*[Reply.tool_calls([("lookup_order", {"order_id": "A-1"})]) for _ in range(3)])
    async with client(fake_llm) as openai_client:
        agent = Agent(
            name="Looper", instructions="Loop.", model=model("responses", openai_client), tools=[lookup_order]
        )
        with pytest.raises(MaxTurnsExceeded):
            await run(agent, stream=stream, max_turns=2)
    session = _session(signals)
    assert session["agentwatch.session.outcome"] == "max_iterations"
    assert session["error.type"] == "agents.MaxTurnsExceeded"
    assert session["agentwatch.session.iterations"] == 2
    assert _outcomes(signals) == {"max_iterations": 1}


@pytest.mark.parametrize("stream", [False, True], ids=["run", "streamed"])
async def test_a_failing_model_call_ends_the_run_in_error(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, stream: bool
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.error(500, message="upstream exploded"))
    async with client(fake_llm) as openai_client:
        agent = helper("responses", openai_client)
        with pytest.raises(openai.InternalServerError):
            await run(agent, stream=stream)
    session = _session(signals)
    assert session["agentwatch.session.outcome"] == "error"
    assert session["error.type"] == "openai.InternalServerError"
    assert session["status"] is StatusCode.ERROR
    chat = signals.only_span(f"chat {OPENAI_MODEL}")
    assert dict(chat.attributes or {})["error.type"] == "openai.InternalServerError"
    assert _outcomes(signals) == {"error": 1}


@pytest.mark.parametrize("stream", [False, True], ids=["run", "streamed"])
async def test_a_cancelled_run_is_cancelled_not_an_error(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, stream: bool
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.hang(10))
    async with client(fake_llm) as openai_client:
        agent = helper("responses", openai_client)
        task = asyncio.create_task(run(agent, stream=stream))
        while not fake_llm.requests:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(100):  # a streamed run ends in its own task, just after
            if signals.points("agentwatch.sessions"):
                break
            await asyncio.sleep(0.01)
    session = _session(signals)
    assert session["agentwatch.session.outcome"] == "cancelled"
    assert "error.type" not in session and session["status"] is StatusCode.UNSET
    assert _outcomes(signals) == {"cancelled": 1}


@input_guardrail
async def no_refunds(ctx: Any, agent: Any, text: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered="refund" in str(text))


@pytest.mark.parametrize("stream", [False, True], ids=["run", "streamed"])
async def test_a_tripped_guardrail_is_refused(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, stream: bool
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.text("no"))
    async with client(fake_llm) as openai_client:
        agent = helper("responses", openai_client, input_guardrails=[no_refunds])
        with pytest.raises(InputGuardrailTripwireTriggered):
            await run(agent, "I want a refund", stream=stream)
    guardrail = signals.only_span("run_guardrail")
    assert guardrail.name == "run_guardrail no_refunds"
    assert attrs(guardrail)["agentwatch.guardrail.triggered"] is True
    assert attrs(guardrail)["gen_ai.operation.name"] == "run_guardrail"
    assert guardrail.status.status_code is StatusCode.UNSET  # the guardrail worked: it said no
    session = _session(signals)
    assert session["agentwatch.session.outcome"] == "refused"
    assert session["error.type"] == "agents.InputGuardrailTripwireTriggered"
    assert _outcomes(signals) == {"refused": 1}


async def test_a_passing_guardrail_is_a_child_of_the_run(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.text("Sure."))
    async with client(fake_llm) as openai_client:
        agent = helper("chat", openai_client, input_guardrails=[no_refunds])
        await run(agent, "Where is my parcel?")
    guardrail = signals.only_span("run_guardrail")
    session = signals.only_span("invoke_agent")
    assert guardrail.parent is not None and guardrail.parent.span_id == session.context.span_id
    assert attrs(guardrail)["agentwatch.guardrail.triggered"] is False
    assert _session(signals)["agentwatch.session.outcome"] == "completed"
