"""LangChain tools (real ``langchain-core``) through the LangChain instrumentor."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from langchain_core.tools import tool as lc_tool
from opentelemetry.trace import SpanKind, StatusCode

from agentwatch._config import ContentCapture, Settings
from agentwatch._session import session
from agentwatch.instrumentation.langchain import LangChainInstrumentor
from agentwatch.instrumentation.langchain._patch import _spec
from support import Signals
from tools._support import attrs, duration_points, tool_records, tool_spans


@lc_tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


@lc_tool
async def search(query: str) -> list[str]:
    """Search the knowledge base."""
    return [query, "result"]


class NotFound(Exception):
    pass


@lc_tool
def lookup(key: str) -> str:
    """Look a key up."""
    raise NotFound(key)


def _refuse(key: str) -> str:
    raise ToolException(f"cannot look up {key}")


picky = StructuredTool.from_function(_refuse, name="picky", description="Refuses.", handle_tool_error=True)


@pytest.fixture
def lc(signals: Signals) -> Iterator[Signals]:
    LangChainInstrumentor().instrument(**signals.providers)
    try:
        yield signals
    finally:
        LangChainInstrumentor().uninstrument()


def test_invoke_is_one_execute_tool_span(lc: Signals) -> None:
    assert get_weather.invoke({"city": "Paris"}) == "sunny in Paris"

    (span,) = tool_spans(lc)
    assert span.name == "execute_tool get_weather" and span.kind is SpanKind.INTERNAL
    assert attrs(span) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Current weather for a city.",
        "agentwatch.tool.argument_keys": ("city",),
        "agentwatch.tool.result.bytes": len(b"sunny in Paris"),
    }
    assert duration_points(lc) == [
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather", "count": 1}
    ]


def test_a_model_tool_call_links_its_id_and_returns_a_tool_message(lc: Signals) -> None:
    call = {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_rome", "type": "tool_call"}
    message = get_weather.invoke(call)

    assert isinstance(message, ToolMessage) and message.tool_call_id == "call_rome"
    (span,) = tool_spans(lc)
    assert attrs(span)["gen_ai.tool.call.id"] == "call_rome"
    assert attrs(span)["agentwatch.tool.result.bytes"] == len(
        b"sunny in Rome"
    )  # the content, not the envelope


@pytest.mark.anyio
async def test_ainvoke_of_async_and_sync_tools(lc: Signals) -> None:
    assert await search.ainvoke({"query": "otel"}) == ["otel", "result"]
    # A tool without a coroutine runs invoke() in an executor: still exactly one span.
    assert await get_weather.ainvoke({"city": "Lima"}) == "sunny in Lima"
    assert [s.name for s in tool_spans(lc)] == ["execute_tool search", "execute_tool get_weather"]


def test_exceptions_propagate_unchanged(lc: Signals, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(NotFound) as caught:
        lookup.invoke({"key": "k1"})
    assert caught.value.args == ("k1",)

    (span,) = tool_spans(lc)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"{NotFound.__module__.partition('.')[0]}.NotFound"
    (record,) = tool_records(caplog)
    assert record.success is False


def test_handled_tool_errors_reported_by_langchain_are_tool_errors(lc: Signals) -> None:
    call = {"name": "picky", "args": {"key": "k"}, "id": "call_k", "type": "tool_call"}
    message = picky.invoke(call)
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert attrs(tool_spans(lc)[0])["error.type"] == "tool_error"

    # Without a tool call LangChain returns the text alone: nothing marks it as an error.
    assert picky.invoke({"key": "k"}) == "cannot look up k"
    assert "error.type" not in attrs(tool_spans(lc)[1])


def test_structured_tools_subclasses_and_sessions(lc: Signals) -> None:
    def multiply(a: int, b: int) -> int:
        return a * b

    class Echo(BaseTool):
        name: str = "echo"
        description: str = "Echoes."

        def _run(self, text: str) -> str:
            return text

    structured = StructuredTool.from_function(multiply, description="Multiplies.")
    with session("conv-lc", agent_name="calc") as s:
        assert structured.invoke({"a": 3, "b": 4}) == 12
        assert Echo().invoke("hi") == "hi"

    spans = tool_spans(lc)
    assert [x.name for x in spans] == ["execute_tool multiply", "execute_tool echo"]
    assert {attrs(x)["gen_ai.conversation.id"] for x in spans} == {"conv-lc"}
    assert "agentwatch.tool.argument_keys" not in attrs(spans[1])  # a plain string input has no names
    assert s.tool_calls == 2


def test_a_tool_keeps_its_spec_across_calls_until_it_is_renamed(lc: Signals) -> None:
    class Echo(BaseTool):
        name: str = "echo"
        description: str = "Echoes."

        def _run(self, text: str) -> str:
            return text

    echo = Echo()
    assert _spec(echo) is _spec(Echo())
    echo.invoke("a")
    echo.name, echo.description = "echo2", "Echoes again."
    echo.invoke("b")
    assert [(x.name, attrs(x)["gen_ai.tool.description"]) for x in tool_spans(lc)] == [
        ("execute_tool echo", "Echoes."),
        ("execute_tool echo2", "Echoes again."),
    ]


SECRET_CITY = "Zanzibar-7f3c"  # an argument value that must never leave the process by default
SECRET_RESULT = "forecast-91ab"


@lc_tool
def get_forecast(city: str) -> str:
    """Forecast for a city."""
    return SECRET_RESULT if city == SECRET_CITY else "unknown"


@lc_tool
async def aget_forecast(city: str) -> dict[str, str]:
    """Forecast for a city, asynchronously."""
    return {"forecast": SECRET_RESULT if city == SECRET_CITY else "unknown"}


@pytest.mark.anyio
@pytest.mark.parametrize("capture", [False, True], ids=["capture off", "capture on"])
async def test_argument_values_and_results_are_exported_only_with_content_capture(
    signals: Signals, caplog: pytest.LogCaptureFixture, capture: bool
) -> None:
    settings = Settings(capture=ContentCapture(span=capture, event=capture))
    LangChainInstrumentor().instrument(**signals.providers, settings=settings)
    try:
        assert get_forecast.invoke({"city": SECRET_CITY}) == SECRET_RESULT
        call = {"name": "get_forecast", "args": {"city": SECRET_CITY}, "id": "call_1", "type": "tool_call"}
        assert get_forecast.invoke(call).content == SECRET_RESULT
        assert await aget_forecast.ainvoke({"city": SECRET_CITY}) == {"forecast": SECRET_RESULT}
    finally:
        LangChainInstrumentor().uninstrument()

    spans = tool_spans(signals)
    assert len(spans) == 3 and all(attrs(x)["agentwatch.tool.argument_keys"] == ("city",) for x in spans)
    exported = signals.dump()
    records = tool_records(caplog)
    assert len(records) == 3
    for secret in (SECRET_CITY, SECRET_RESULT):
        assert (secret in exported) is capture, secret
        for record in records:
            logged = record.getMessage() + json.dumps(vars(record), default=str)
            assert (secret in logged) is capture, (secret, record.tool)
    for span in spans if capture else ():
        assert json.loads(attrs(span)["gen_ai.tool.call.arguments"]) == {"city": SECRET_CITY}
        assert SECRET_RESULT in attrs(span)["gen_ai.tool.call.result"]


def test_uninstrument_restores_and_instrumenting_twice_is_harmless(signals: Signals) -> None:
    before = (vars(BaseTool)["run"], vars(BaseTool)["arun"])
    LangChainInstrumentor().instrument(**signals.providers)
    LangChainInstrumentor().instrument(**signals.providers)
    try:
        get_weather.invoke({"city": "Paris"})
        assert len(tool_spans(signals)) == 1
    finally:
        LangChainInstrumentor().uninstrument()
    assert (vars(BaseTool)["run"], vars(BaseTool)["arun"]) == before
    assert not inspect.iscoroutinefunction(BaseTool.run) and inspect.iscoroutinefunction(BaseTool.arun)
    get_weather.invoke({"city": "Paris"})
    assert len(tool_spans(signals)) == 1
