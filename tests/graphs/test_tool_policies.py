"""Resilience policies on LangChain tools, by tool name, from ``AGENTWATCH_CONFIG`` or from code."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import StructuredTool, ToolException, tool
from langchain_openai import ChatOpenAI
from opentelemetry.trace import StatusCode

from agentwatch import ConfigError, Policy
from agentwatch._fakellm import FakeLLMServer, Reply
from graphs._support import Preferences, attrs, get_weather, make_agent, one
from graphs.conftest import Instrument
from support import Signals

Config = Callable[[str], None]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """``config(toml)``: the file ``AGENTWATCH_CONFIG`` names, for this test."""

    def write(text: str) -> None:
        path = tmp_path / "agentwatch.toml"
        path.write_text(text)
        monkeypatch.setenv("AGENTWATCH_CONFIG", str(path))

    return write


def _call(name: str, call_id: str = "call_1", **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


class Flaky:
    """Fails its first ``failures`` calls with ``ConnectionError``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def call(self, user_id: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("flaky dependency")
        return "units: celsius"


def _tool(fn: Any, name: str = "get_user_preferences") -> StructuredTool:
    return StructuredTool.from_function(fn, name=name, description="The user's preferences.")


def test_retries_from_the_config_file(config: Config, instrument: Instrument) -> None:
    config("[tools.get_user_preferences]\nretry = { attempts = 3, backoff = 0.001 }\n")
    signals = instrument()
    flaky = Flaky(failures=2)

    message = _tool(flaky.call).invoke(_call("get_user_preferences", user_id="u-1"))

    assert isinstance(message, ToolMessage) and message.content == "units: celsius"
    assert flaky.calls == 3
    span = one(signals, "execute_tool get_user_preferences")
    assert span.status.status_code is StatusCode.UNSET
    assert [e.name for e in span.events].count("retry") == 2


def test_a_timeout_degrades_an_optional_tool_in_a_run(
    config: Config,
    instrument: Instrument,
    fake_llm: FakeLLMServer,
    chat_openai: ChatOpenAI,
) -> None:
    config("[tools.get_user_preferences]\ntimeout = 0.2\ncritical = false\n")
    signals = instrument()
    release = threading.Event()

    def hang(user_id: str) -> str:
        release.wait(10)
        return "too late"

    agent = make_agent(chat_openai, [_tool(hang)], "weather-agent")
    fake_llm.enqueue(Reply.tool_calls([("get_user_preferences", {"user_id": "u-1"})]), Reply.text("Done."))
    started = time.monotonic()
    try:
        result = agent.invoke({"messages": [("user", "hi")]})
    finally:
        release.set()

    assert time.monotonic() - started < 5
    degraded = result["messages"][2]
    assert isinstance(degraded, ToolMessage) and degraded.status == "error"
    assert json.loads(str(degraded.content))["reason"] == "timeout"
    assert result["messages"][-1].content == "Done."
    assert attrs(one(signals, "execute_tool get_user_preferences"))["error.type"] == "timeout"
    assert attrs(one(signals, "invoke_agent weather-agent"))["agentwatch.session.outcome"] == "completed"


def test_an_async_tool_times_out_by_cancellation(config: Config, instrument: Instrument) -> None:
    config("[tools.slow_search]\ntimeout = 0.1\ncritical = false\n")
    signals = instrument()
    cancelled: list[bool] = []

    @tool
    async def slow_search(query: str) -> str:
        """Search slowly."""
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "found"

    message = asyncio.run(slow_search.ainvoke(_call("slow_search", query="q")))
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert json.loads(str(message.content))["reason"] == "timeout"
    assert cancelled == [True]
    assert attrs(one(signals, "execute_tool slow_search"))["error.type"] == "timeout"


def test_a_breaker_opens_and_rejects_without_calling(config: Config, instrument: Instrument) -> None:
    config(
        "[tools.get_user_preferences]\ncritical = false\nbreaker = { failure_threshold = 2, break_duration = 60 }\n",
    )
    signals = instrument()
    flaky = Flaky(failures=100)
    prefs = _tool(flaky.call)

    outcomes = [prefs.invoke(_call("get_user_preferences", f"call_{i}", user_id="u")) for i in range(3)]

    assert flaky.calls == 2  # the third call never reached the dependency
    reasons = [json.loads(str(m.content))["reason"] for m in outcomes]
    assert reasons == ["dependency", "dependency", "circuit_open"]
    assert [m.tool_call_id for m in outcomes] == ["call_0", "call_1", "call_2"]
    errors = [attrs(s)["error.type"] for s in signals.finished("execute_tool")]
    assert errors == ["ConnectionError", "ConnectionError", "circuit_open"]


def test_a_bulkhead_rejects_the_call_over_the_cap(config: Config, instrument: Instrument) -> None:
    config(
        "[tools.get_user_preferences]\ncritical = false\nbulkhead = { max_concurrent = 1 }\n",
    )
    signals = instrument()
    entered, release = threading.Event(), threading.Event()

    def busy(user_id: str) -> str:
        entered.set()
        release.wait(10)
        return "units: celsius"

    prefs = _tool(busy)
    first: list[Any] = []
    worker = threading.Thread(
        target=lambda: first.append(prefs.invoke(_call("get_user_preferences", user_id="a")))
    )
    worker.start()
    try:
        assert entered.wait(10)
        second = prefs.invoke(_call("get_user_preferences", "call_2", user_id="b"))
    finally:
        release.set()
        worker.join(10)

    assert json.loads(str(second.content))["reason"] == "bulkhead_full"
    assert first[0].content == "units: celsius"
    assert sorted(attrs(s).get("error.type", "ok") for s in signals.finished("execute_tool")) == [
        "bulkhead_full",
        "ok",
    ]


def test_a_critical_tool_raises_after_its_retries_and_the_run_ends_in_error(
    config: Config,
    instrument: Instrument,
    fake_llm: FakeLLMServer,
    chat_openai: ChatOpenAI,
) -> None:
    config('[tools."*"]\nretry = { attempts = 2, backoff = 0.001 }\n')
    signals = instrument()
    prefs = Preferences()
    agent = make_agent(chat_openai, [prefs.tool()], "weather-agent")
    fake_llm.enqueue(Reply.tool_calls([("get_user_preferences", {"user_id": "u-1"})]))

    with pytest.raises(ConnectionError, match="preferences service unreachable"):
        agent.invoke({"messages": [("user", "hi")]})

    assert prefs.attempts == 2
    tool_span = one(signals, "execute_tool get_user_preferences")
    assert attrs(tool_span)["error.type"] == "ConnectionError"
    run = attrs(one(signals, "invoke_agent weather-agent"))
    assert (run["agentwatch.session.outcome"], run["error.type"]) == ("error", "ConnectionError")
    assert run["agentwatch.session.tool_errors"] == 1


def test_a_policy_in_code_wins_over_the_file(config: Config, instrument: Instrument) -> None:
    config("[tools.get_user_preferences]\ncritical = true\n")
    instrument(tool_policies={"get_user_preferences": Policy(critical=False)})
    message = _tool(Flaky(failures=1).call).invoke(_call("get_user_preferences", user_id="u"))
    assert json.loads(str(message.content))["status"] == "unavailable"


def test_without_a_tool_call_a_degraded_tool_returns_the_text(instrument: Instrument) -> None:
    instrument(tool_policies={"*": Policy(critical=False)})
    text = _tool(Flaky(failures=1).call).invoke({"user_id": "u"})
    assert isinstance(text, str) and json.loads(text)["tool"] == "get_user_preferences"
    # Tools the policy does not stop return what they return.
    assert get_weather.invoke({"city": "Oslo"}) == "sunny in Oslo"


def test_an_error_the_tool_handles_itself_is_a_result_not_retried(instrument: Instrument) -> None:
    signals = instrument(tool_policies={"picky": Policy(retry=None, critical=False)})
    calls: list[str] = []

    def refuse(key: str) -> str:
        calls.append(key)
        raise ToolException(f"cannot look up {key}")

    picky = StructuredTool.from_function(refuse, name="picky", description="Refuses.", handle_tool_error=True)
    message = picky.invoke(_call("picky", key="k"))
    assert message.status == "error" and message.content == "cannot look up k"
    assert calls == ["k"]
    assert attrs(one(signals, "execute_tool picky"))["error.type"] == "tool_error"


def test_async_tools_retry_through_the_async_pipeline(instrument: Instrument) -> None:
    signals = instrument(tool_policies={"lookup": Policy(retry=_retry(3))})
    attempts: list[int] = []

    @tool
    async def lookup(key: str) -> str:
        """Look a key up."""
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("busy")
        return "value"

    assert asyncio.run(lookup.ainvoke({"key": "k"})) == "value"
    assert len(attempts) == 3
    assert [e.name for e in one(signals, "execute_tool lookup").events].count("retry") == 2


def _retry(attempts: int) -> Any:
    from agentwatch import Retry

    return Retry(attempts=attempts, backoff=0.001)


def test_the_langchain_instrumentor_on_its_own_takes_tool_policies(config: Config, signals: Signals) -> None:
    """``tool_policies=`` of any agentwatch instrumentor's ``instrument()``: merged over the file
    as ``agentwatch.instrument()``'s are; a bad one is refused and nothing is patched."""
    from agentwatch.instrumentation.langchain import LangChainInstrumentor

    config('[tools."*"]\ncritical = true\n')
    instrumentor = LangChainInstrumentor()
    with pytest.raises(ConfigError, match=re.escape("tool_policies['get_user_preferences']")):
        instrumentor.instrument(**signals.providers, tool_policies={"get_user_preferences": "optional"})
    assert not instrumentor.is_instrumented_by_opentelemetry
    flaky = Flaky(failures=1)
    instrumentor.instrument(
        **signals.providers, tool_policies={"get_user_preferences": Policy(critical=False)}
    )
    try:
        message = _tool(flaky.call).invoke(_call("get_user_preferences", user_id="u"))
    finally:
        instrumentor.uninstrument()
    assert json.loads(str(message.content))["status"] == "unavailable"
    assert flaky.calls == 1
    assert attrs(one(signals, "execute_tool get_user_preferences"))["error.type"] == "ConnectionError"


def test_arguments_langchain_refuses_are_not_retried_nor_degraded(instrument: Instrument) -> None:
    """LangChain's own validation (``args_schema``) fails before the tool runs: the policy does not
    retry it nor turn it into an optional tool's note; LangChain's error reaches the caller."""
    from pydantic import ValidationError

    signals = instrument(tool_policies={"add": Policy(critical=False, retry=_retry(3))})
    ran: list[int] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        ran.append(1)
        return a + b

    with pytest.raises(ValidationError):
        add.invoke(_call("add", a="not a number", b=1))
    assert ran == []
    span = attrs(one(signals, "execute_tool add"))
    assert (span["error.type"], span["agentwatch.resilience.attempts"]) == ("invalid_arguments", 1)
