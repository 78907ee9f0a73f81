"""Argument validation before a tool runs: @tool type hints (pydantic), MCP inputSchema (jsonschema),
LangChain args_schema; the structured error, the model-readable result, and the telemetry."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any, Literal

import mcp.client.session
import pytest
from langchain_core.tools import StructuredTool
from mcp import Client
from mcp.server.mcpserver import MCPServer
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

import agentwatch
from agentwatch import CircuitBreaker, InvalidArguments, InvalidArgumentsError, Policy, Retry, ToolRegistry
from agentwatch.instrumentation.langchain import LangChainInstrumentor
from agentwatch.instrumentation.mcp import MCPInstrumentor
from agentwatch.resilience import ResilienceTelemetry, configure_resilience_telemetry
from resilience._support import events
from support import Signals
from tools._support import attrs, duration_points, tool_records, tool_spans


@pytest.fixture
def rt(tele: Signals) -> Iterator[ResilienceTelemetry]:
    telemetry = configure_resilience_telemetry(tele.meter_provider)
    yield telemetry
    configure_resilience_telemetry(None)


class Address(BaseModel):
    city: str
    zip_code: int


@dataclasses.dataclass
class Window:
    days: int


def make_registry(calls: list[dict[str, Any]], **policy: Any) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.register(policy=Policy(**policy) if policy else None)
    def ship(address: Address, window: Window, mode: Literal["air", "sea"] = "sea", count: int = 1) -> str:
        calls.append({"address": address, "window": window, "mode": mode, "count": count})
        return f"{count} to {address.city}"

    return registry


VALID = {"address": {"city": "Oslo", "zip_code": "150"}, "window": {"days": 3}, "count": "2"}
INVALID = {"address": {"city": "Oslo"}, "window": {"days": "soon"}, "mode": "rail", "colour": "crimson"}


def test_model_arguments_are_converted_to_the_declared_types(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[dict[str, Any]] = []
    assert make_registry(calls).call("ship", VALID) == "2 to Oslo"
    (call,) = calls
    assert call["address"] == Address(city="Oslo", zip_code=150)
    assert call["window"] == Window(days=3) and call["count"] == 2


def test_invalid_arguments_never_reach_the_tool_and_every_bad_field_is_named(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    calls: list[dict[str, Any]] = []
    with pytest.raises(InvalidArgumentsError) as caught:
        make_registry(calls).call("ship", INVALID, call_id="call_1")
    assert calls == []
    error = caught.value
    assert error.fields == ("address.zip_code", "window.days", "mode", "colour")
    assert [p.kind for p in error.problems] == ["missing", "int_parsing", "literal_error", "unexpected"]
    assert error.category.value == "validation" and error.error_type == "invalid_arguments"
    assert isinstance(error, TypeError) and isinstance(error, ValueError)
    for value in ("soon", "rail", "crimson"):  # field names and kinds, never values
        assert value not in str(error)

    (span,) = tool_spans(tele, "ship")
    assert attrs(span)["error.type"] == "invalid_arguments"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == str(error)
    (event,) = events(span, "arguments_invalid")
    assert event["agentwatch.validation.fields"] == ("address.zip_code", "window.days", "mode", "colour")
    assert duration_points(tele)[0]["error.type"] == "invalid_arguments"
    points = [
        dict(p.attributes)
        for p in tele.points("agentwatch.resilience.events")
        if p.attributes["agentwatch.resilience.policy"] == "validation"
    ]
    assert points == [
        {
            "agentwatch.resilience.event": "arguments_invalid",
            "agentwatch.resilience.policy": "validation",
            "gen_ai.tool.name": "ship",
            "error.type": "invalid_arguments",
        }
    ]


def test_call_tool_call_returns_a_result_the_model_can_read_and_correct(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    calls: list[dict[str, Any]] = []
    registry = make_registry(calls)
    result = registry.call_tool_call(
        {"type": "function", "id": "call_9", "function": {"name": "ship", "arguments": '{"window": {}}'}}
    )
    assert isinstance(result, InvalidArguments) and calls == []
    as_dict = result.to_dict()
    assert as_dict["status"] == "invalid_arguments" and as_dict["tool"] == "ship"
    assert [e["field"] for e in as_dict["errors"]] == ["address", "window.days"]
    assert "Correct them and call the tool again" in as_dict["message"]
    assert attrs(tool_spans(tele, "ship")[0])["gen_ai.tool.call.id"] == "call_9"
    # Not JSON at all is invalid arguments too.
    garbled = registry.call_tool_call(
        {"type": "function", "id": "c", "function": {"name": "ship", "arguments": "{"}}
    )
    assert isinstance(garbled, InvalidArguments) and garbled.errors[0].kind == "json_invalid"


@pytest.mark.anyio
async def test_acall_tool_call_too(tele: Signals, rt: ResilienceTelemetry) -> None:
    registry = ToolRegistry()

    @registry.register
    async def add(a: int, b: int) -> int:
        return a + b

    assert await registry.acall_tool_call({"name": "add", "args": {"a": 1, "b": "2"}, "id": "x"}) == 3
    result = await registry.acall_tool_call({"name": "add", "args": {"a": 1}, "id": "x"})
    assert isinstance(result, InvalidArguments) and result.errors[0].field == "b"


def test_invalid_arguments_are_never_retried_counted_by_the_breaker_or_degraded(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    calls: list[dict[str, Any]] = []
    registry = make_registry(
        calls, retry=Retry(attempts=3, backoff=0), breaker=CircuitBreaker(failure_threshold=1), critical=False
    )
    for _ in range(3):
        with pytest.raises(InvalidArgumentsError):
            registry.call("ship", INVALID)
    assert calls == []
    assert agentwatch.circuits()[0].state.value == "closed"
    assert registry.call("ship", VALID) == "2 to Oslo"
    assert all("retry" not in [e["name"] for e in events(s)] for s in tool_spans(tele, "ship"))


def test_an_invalid_arguments_error_raised_inside_an_attempt_is_not_retried(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    attempts: list[int] = []

    @agentwatch.tool(
        policy=Policy(retry=Retry(attempts=3, backoff=0), breaker=CircuitBreaker(failure_threshold=1))
    )
    def inner(x: int) -> int:
        attempts.append(x)
        raise InvalidArgumentsError(name="other", problems=[])

    with pytest.raises(InvalidArgumentsError):
        inner(1)
    assert attempts == [1]
    assert agentwatch.circuits()[0].state.value == "closed"


def test_direct_calls_are_checked_and_never_converted(tele: Signals, rt: ResilienceTelemetry) -> None:
    received: list[object] = []

    @agentwatch.tool
    def scale(factor: float, items: list[int], *rest: Any, **options: Any) -> int:
        received.append(items)
        return len(items)

    values = [1, 2]
    assert scale(2, values, "extra", colour="red") == 2
    assert received[0] is values  # the caller's own object
    with pytest.raises(InvalidArgumentsError, match="factor: Input should be a valid number"):
        scale("big", [1])
    with pytest.raises(TypeError, match="items"):  # still a TypeError, like Python's own
        scale(2.0)
    assert len(received) == 1


def test_methods_and_untyped_parameters(tele: Signals, rt: ResilienceTelemetry) -> None:
    class Service:
        @agentwatch.tool
        def lookup(self, key, limit: int = 3):  # type: ignore[no-untyped-def]
            return (key, limit)

    assert Service().lookup(object(), 5)[1] == 5
    with pytest.raises(InvalidArgumentsError):
        Service().lookup("k", limit="many")


def test_validation_can_be_switched_off(tele: Signals, rt: ResilienceTelemetry) -> None:
    @agentwatch.tool(validate=False)
    def echo(n: int) -> object:
        return n

    assert echo("not a number") == "not a number"
    registry = ToolRegistry()
    registry.register(echo)
    assert registry.call("echo", {"n": "x"}) == "x"
    assert not registry.get("echo").validates


def test_hints_that_cannot_be_validated_accept_anything_and_say_so_once(
    tele: Signals, rt: ResilienceTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    class Local:
        pass

    @agentwatch.tool
    def use(thing: Local, n: int) -> str:  # "Local" cannot be resolved at module level
        return "ok"

    assert use(thing="anything", n=1) == "ok"
    with pytest.raises(InvalidArgumentsError):
        use(thing="anything", n="x")
    assert len([r for r in caplog.records if "cannot be validated" in r.getMessage()]) == 1


def test_values_appear_nowhere_without_content_capture(
    tele: Signals, rt: ResilienceTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    registry = make_registry([])
    caplog.set_level(logging.INFO, logger="agentwatch.tool_calls")
    with pytest.raises(InvalidArgumentsError):
        registry.call("ship", {"address": {"city": 12345678}, "window": {"days": "Zanzibar-secret"}})
    assert "Zanzibar-secret" not in tele.dump() and "12345678" not in tele.dump()
    assert "Zanzibar-secret" not in caplog.text
    (record,) = tool_records(caplog)
    assert record.error_type == "invalid_arguments"  # type: ignore[attr-defined]


def test_with_content_capture_the_values_may_appear(tele_capture: Signals) -> None:
    configure_resilience_telemetry(tele_capture.meter_provider)
    try:
        with pytest.raises(InvalidArgumentsError):
            make_registry([]).call(
                "ship", {"address": {"city": "Oslo", "zip_code": 1}, "window": {"days": "later"}}
            )
    finally:
        configure_resilience_telemetry(None)
    (span,) = tool_spans(tele_capture, "ship")
    assert "later" in attrs(span)["gen_ai.tool.call.arguments"]


# -- MCP: the inputSchema the server listed ------------------------------------------------------------


def weather_server(received: list[dict[str, Any]]) -> MCPServer:
    server = MCPServer("weather")

    @server.tool()
    def get_weather(city: str, days: int = 1) -> str:
        received.append({"city": city, "days": days})
        return f"sunny in {city}"

    return server


@pytest.fixture
def mcp_instrumented(signals: Signals) -> Iterator[Signals]:
    configure_resilience_telemetry(signals.meter_provider)
    MCPInstrumentor().instrument(**signals.providers)
    try:
        yield signals
    finally:
        MCPInstrumentor().uninstrument()
        configure_resilience_telemetry(None)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_arguments_are_checked_against_the_listed_input_schema(
    mcp_instrumented: Signals, mode: str
) -> None:
    received: list[dict[str, Any]] = []
    async with Client(weather_server(received), mode=mode) as client:
        await client.list_tools()
        result = await client.call_tool("get_weather", {"days": "three", "units": "metric"})
        assert await client.call_tool("get_weather", {"city": "Oslo"})

    assert received == [{"city": "Oslo", "days": 1}]  # the invalid call was never sent
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    # The server's schema allows extra properties, so "units" is no problem of its.
    assert "city: Field required" in text and "days: Should be of type integer" in text
    assert "three" not in text and "units" not in text
    spans = tool_spans(mcp_instrumented, "get_weather")
    assert attrs(spans[0])["error.type"] == "invalid_arguments"
    assert events(spans[0], "arguments_invalid")[0]["agentwatch.validation.fields"] == ("days", "city")
    assert "error.type" not in attrs(spans[1])


@pytest.mark.anyio
async def test_mcp_without_a_listing_the_server_decides(mcp_instrumented: Signals) -> None:
    async with Client(weather_server([]), mode="legacy") as client:
        result = await client.call_tool("get_weather", {"days": 2})  # not listed: sent as is
    assert result.is_error is True
    assert attrs(tool_spans(mcp_instrumented, "get_weather")[0])["error.type"] == "tool_error"


def test_mcp_list_tools_is_restored_by_uninstrument(signals: Signals) -> None:
    original = vars(mcp.client.session.ClientSession)["list_tools"]
    MCPInstrumentor().instrument(**signals.providers)
    assert vars(mcp.client.session.ClientSession)["list_tools"] is not original
    MCPInstrumentor().uninstrument()
    assert vars(mcp.client.session.ClientSession)["list_tools"] is original


# -- LangChain: its own args_schema ---------------------------------------------------------------------


@pytest.fixture
def lc_instrumented(signals: Signals) -> Iterator[Signals]:
    configure_resilience_telemetry(signals.meter_provider)
    LangChainInstrumentor().instrument(**signals.providers)
    try:
        yield signals
    finally:
        LangChainInstrumentor().uninstrument()
        configure_resilience_telemetry(None)


def test_langchain_validation_failures_are_invalid_arguments(lc_instrumented: Signals) -> None:
    calls: list[int] = []

    def forecast(city: str, days: int) -> str:
        calls.append(days)
        return city

    strict = StructuredTool.from_function(forecast, name="forecast", description="Forecast.")
    lenient = StructuredTool.from_function(
        forecast, name="lenient", description="Forecast.", handle_validation_error=True
    )
    with pytest.raises(Exception, match="days") as caught:
        strict.invoke({"city": "Oslo", "days": "many"})
    assert type(caught.value).__name__ == "ValidationError"  # LangChain's own, unchanged
    handled = lenient.invoke({"city": "Oslo"})
    assert isinstance(handled, str)  # LangChain's handled message, unchanged
    assert strict.invoke({"city": "Oslo", "days": 2}) == "Oslo"
    assert calls == [2]

    spans = tool_spans(lc_instrumented)
    assert [attrs(s).get("error.type") for s in spans] == ["invalid_arguments", "invalid_arguments", None]
    assert events(spans[0], "arguments_invalid")[0]["agentwatch.validation.fields"] == ("days",)
    assert events(spans[1], "arguments_invalid")[0]["agentwatch.validation.fields"] == ("days",)
