"""The SDK's function tools: one ``execute_tool`` span per call, the policy of the tool's name
(``AGENTWATCH_CONFIG`` or ``tool_policies=``), and what the model reads unchanged otherwise."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, FunctionTool, function_tool, handoff
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch.resilience import reset_registry
from openai_agents._support import CALLS, attrs, client, get_invoice, model, run, tool_outputs
from support import Signals

pytestmark = pytest.mark.anyio

FLAKES = {"remaining": 0}


@function_tool
async def check_stock(sku: str) -> str:
    """Stock level of a product."""
    CALLS["check_stock"] += 1
    if FLAKES["remaining"] > 0:
        FLAKES["remaining"] -= 1
        raise ConnectionError("warehouse API unreachable")
    return f"{sku}: 3 left"


@function_tool
async def slow_recommendations(sku: str) -> str:
    """Related products."""
    CALLS["slow_recommendations"] += 1
    await asyncio.sleep(5)
    return "nothing"


@function_tool
def validate_coupon(code: str) -> str:
    """Whether a coupon is valid."""
    CALLS["validate_coupon"] += 1
    raise ValueError(f"coupon {code} is malformed")


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    path = tmp_path / "agentwatch.toml"
    path.write_text(text)
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(path))


def _agent(openai_client: Any, *tools: Any, api: str = "responses") -> Agent[Any]:
    return Agent(name="Shop", instructions="Sell.", model=model(api, openai_client), tools=list(tools))


def _span(signals: Signals, tool: str) -> Any:
    return signals.only_span(f"execute_tool {tool}")


async def test_agentwatch_config_retries_a_flaky_tool_inside_one_span(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(
        tmp_path,
        monkeypatch,
        "[tools.check_stock]\nretry = { attempts = 3, backoff = 0.0, max_delay = 0.0 }\n",
    )
    signals = watch()
    CALLS.clear()
    FLAKES["remaining"] = 2
    fake_llm.enqueue(Reply.tool_calls([("check_stock", {"sku": "mug"})]), Reply.text("3 mugs left."))
    async with client(fake_llm) as openai_client:
        await run(_agent(openai_client, check_stock))
    span = _span(signals, "check_stock")
    assert CALLS["check_stock"] == 3
    assert attrs(span)["agentwatch.resilience.attempts"] == 3
    assert [e.name for e in span.events] == ["retry", "retry"]
    assert span.status.status_code is StatusCode.UNSET
    assert tool_outputs(fake_llm) == ["mug: 3 left"]  # the model got the real result


async def test_an_optional_tool_that_times_out_degrades(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(tmp_path, monkeypatch, "[tools.slow_recommendations]\ncritical = false\ntimeout = 0.2\n")
    signals = watch()
    fake_llm.enqueue(Reply.tool_calls([("slow_recommendations", {"sku": "mug"})]), Reply.text("Here you go."))
    async with client(fake_llm) as openai_client:
        result = await run(_agent(openai_client, slow_recommendations))
    assert result.final_output == "Here you go."
    span = _span(signals, "slow_recommendations")
    assert attrs(span)["error.type"] == "timeout"
    assert tool_outputs(fake_llm) == [
        "The tool 'slow_recommendations' is unavailable (timed out); proceed without it."
    ]
    assert signals.only_span("invoke_agent")  # the run completed
    assert attrs(signals.only_span("invoke_agent"))["agentwatch.session.tool_errors"] == 1


async def test_an_open_circuit_stops_calling_the_tool(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(
        tmp_path,
        monkeypatch,
        "[tools.check_stock]\ncritical = false\nbreaker = { failure_threshold = 2, break_duration = 60.0 }\n",
    )
    reset_registry()
    signals = watch()
    CALLS.clear()
    FLAKES["remaining"] = 10
    async with client(fake_llm) as openai_client:
        agent = _agent(openai_client, check_stock)
        for _ in range(3):
            fake_llm.enqueue(Reply.tool_calls([("check_stock", {"sku": "mug"})]), Reply.text("Sorry."))
            await run(agent)
    assert CALLS["check_stock"] == 2  # the third call never reached the warehouse
    errors = [attrs(s)["error.type"] for s in signals.finished("execute_tool check_stock")]
    assert sorted(errors) == ["ConnectionError", "ConnectionError", "circuit_open"]
    assert "The tool 'check_stock' is unavailable (circuit open); proceed without it." in tool_outputs(
        fake_llm
    )


async def test_a_bulkhead_sheds_parallel_calls(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(
        tmp_path,
        monkeypatch,
        "[tools.slow_recommendations]\ncritical = false\ntimeout = 0.3\n"
        "bulkhead = { max_concurrent = 1, max_queue = 0 }\n",
    )
    reset_registry()
    signals = watch()
    fake_llm.enqueue(
        Reply.tool_calls(
            [("slow_recommendations", {"sku": "mug"}), ("slow_recommendations", {"sku": "cup"})]
        ),
        Reply.text("Done."),
    )
    async with client(fake_llm) as openai_client:
        await run(_agent(openai_client, slow_recommendations))
    errors = sorted(attrs(s)["error.type"] for s in signals.finished("execute_tool slow_recommendations"))
    assert errors == ["bulkhead_full", "timeout"]


async def test_a_critical_failure_reaches_the_model_as_the_sdk_would_say_it(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    script = [Reply.tool_calls([("validate_coupon", {"code": "X"})]), Reply.text("That coupon is invalid.")]

    async def once() -> tuple[object, list[str]]:
        fake_llm.reset()
        fake_llm.enqueue(*script)
        async with client(fake_llm) as openai_client:
            result = await run(_agent(openai_client, validate_coupon))
        return result.final_output, tool_outputs(fake_llm)

    plain = await once()
    signals = watch()
    assert await once() == plain  # the SDK's own error message, unchanged
    (message,) = plain[1]
    assert message.startswith("An error occurred while running the tool.")  # worded per SDK release
    span = _span(signals, "validate_coupon")
    assert attrs(span)["error.type"] == "ValueError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is None  # the message quotes the argument: content, off


async def test_a_hand_built_function_tool(watch: Callable[..., Signals], fake_llm: FakeLLMServer) -> None:
    attempts: list[str] = []

    async def invoke(ctx: Any, raw: str) -> str:
        attempts.append(raw)
        if len(attempts) == 1:
            raise ConnectionError("flaky")
        return "pong " + json.loads(raw)["host"]

    ping = FunctionTool(
        name="ping",
        description="Ping a host.",
        params_json_schema={
            "type": "object",
            "properties": {"host": {"type": "string"}},
            "required": ["host"],
            "additionalProperties": False,
        },
        on_invoke_tool=invoke,
    )
    from agentwatch import Policy, Retry

    signals = watch(tool_policies={"ping": Policy(retry=Retry(attempts=2, backoff=0, max_delay=0))})
    fake_llm.enqueue(Reply.tool_calls([("ping", {"host": "db"})]), Reply.text("db is up"))
    async with client(fake_llm) as openai_client:
        await run(_agent(openai_client, ping))
    span = _span(signals, "ping")
    assert len(attempts) == 2 and attrs(span)["agentwatch.resilience.attempts"] == 2
    assert attrs(span)["gen_ai.tool.call.id"] == "call_1"
    assert tool_outputs(fake_llm) == ["pong db"]


async def test_a_renamed_handoff_is_named_as_the_model_called_it(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(Reply.tool_calls([("escalate", {})]), Reply.text("Billing here."))
    async with client(fake_llm) as openai_client:
        llm = model("chat", openai_client)
        billing = Agent(name="Billing", instructions="Bill.", model=llm, tools=[get_invoice])
        triage = Agent(
            name="Triage",
            instructions="Route.",
            model=llm,
            handoffs=[handoff(billing, tool_name_override="escalate")],
        )
        await run(triage)
    span = _span(signals, "escalate")
    assert attrs(span)["gen_ai.agent.handoff.target.name"] == "Billing"
    assert (
        span.parent is not None
        and span.parent.span_id == signals.only_span("invoke_agent Triage").context.span_id
    )


async def test_no_content_is_recorded_by_default(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch()
    fake_llm.enqueue(
        Reply.tool_calls([("validate_coupon", {"code": "SECRET-COUPON-77"})]),
        Reply.tool_calls([("get_invoice", {"order_id": "ORDER-PRIVATE-5"})]),
        Reply.text("Final words about the invoice."),
    )
    async with client(fake_llm) as openai_client:
        await run(_agent(openai_client, validate_coupon, get_invoice), "My coupon SECRET-COUPON-77 please")
    dump = signals.dump()
    for text in ("SECRET-COUPON-77", "ORDER-PRIVATE-5", "42 EUR", "Final words", "malformed"):
        assert text not in dump
    assert attrs(_span(signals, "get_invoice"))["agentwatch.tool.argument_keys"] == ("order_id",)


async def test_content_capture_records_tool_arguments_and_results(
    watch: Callable[..., Signals], fake_llm: FakeLLMServer
) -> None:
    signals = watch(capture_message_content="SPAN_ONLY")
    fake_llm.enqueue(Reply.tool_calls([("get_invoice", {"order_id": "A-9"})]), Reply.text("ok"))
    async with client(fake_llm) as openai_client:
        await run(_agent(openai_client, get_invoice))
    span_attributes = attrs(_span(signals, "get_invoice"))
    assert json.loads(span_attributes["gen_ai.tool.call.arguments"]) == {"order_id": "A-9"}
    assert span_attributes["gen_ai.tool.call.result"] == "invoice for A-9: 42 EUR"
