"""MCP tool calls through the real ``mcp`` client and server (in-process transports of the SDK)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mcp.client.client
import mcp.client.session
import mcp.shared._otel
import mcp.shared.jsonrpc_dispatcher
import pytest
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from agentwatch._config import ContentCapture, Settings
from agentwatch._session import session
from agentwatch.instrumentation.mcp import MCPInstrumentor
from support import Signals
from tools._support import attrs, duration_points, tool_records, tool_spans

# "legacy": initialize handshake over the SDK's in-memory streams (JSON-RPC dispatcher, which
# makes its own client span per request); "auto": the SDK's in-process direct dispatcher (no
# client span, no _meta injection of its own).
MODES = ["legacy", "auto"]


def make_server(received: list[dict[str, Any]]) -> MCPServer:
    server = MCPServer("weather")

    @server.tool()
    def get_weather(city: str, ctx: Context) -> str:
        received.append(dict(ctx.request_context.meta or {}))
        return f"sunny in {city}"

    @server.tool()
    def broken() -> str:
        raise RuntimeError("tool crashed")

    @server.tool()
    def bad_params() -> str:
        raise MCPError(-32602, "city is required")

    return server


@pytest.fixture
def sdk_spans(signals: Signals, monkeypatch: pytest.MonkeyPatch) -> Signals:
    """The MCP SDK's own spans (client and server) go to the test's provider instead of the global one."""
    monkeypatch.setattr(mcp.shared._otel, "_tracer", signals.tracer_provider.get_tracer("mcp-python-sdk"))
    return signals


@pytest.fixture
def instrumented_mcp(sdk_spans: Signals) -> Iterator[Signals]:
    MCPInstrumentor().instrument(**sdk_spans.providers)
    try:
        yield sdk_spans
    finally:
        MCPInstrumentor().uninstrument()


def server_span(signals: Signals, tool_name: str) -> ReadableSpan:
    (span,) = [s for s in signals.finished(f"tools/call {tool_name}") if s.kind is SpanKind.SERVER]
    return span


@pytest.mark.anyio
async def test_without_agentwatch_the_sdk_makes_its_own_client_span(sdk_spans: Signals) -> None:
    # The baseline the next test relies on: the duplicate it must avoid does exist.
    async with Client(make_server([]), mode="legacy") as client:
        await client.call_tool("get_weather", {"city": "Paris"})
    assert [s.name for s in sdk_spans.finished("MCP send tools/call")] == ["MCP send tools/call get_weather"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_one_execute_tool_span_parents_the_server_span(instrumented_mcp: Signals, mode: str) -> None:
    received: list[dict[str, Any]] = []
    async with Client(make_server(received), mode=mode) as client:
        result = await client.call_tool("get_weather", {"city": "Paris"})
        version = client.protocol_version

    assert result.content[0].text == "sunny in Paris"  # type: ignore[union-attr]
    (span,) = tool_spans(instrumented_mcp)
    assert instrumented_mcp.finished("MCP send tools/call") == []  # enriched, not duplicated
    assert span.name == "execute_tool get_weather" and span.kind is SpanKind.INTERNAL
    a = attrs(span)
    assert a["gen_ai.operation.name"] == "execute_tool"
    assert a["gen_ai.tool.name"] == "get_weather"
    assert a["gen_ai.tool.type"] == "extension"
    assert a["mcp.method.name"] == "tools/call"
    assert a["mcp.protocol.version"] == version
    assert a["agentwatch.tool.argument_keys"] == ("city",)
    assert a["agentwatch.tool.result.bytes"] > 0
    if mode == "legacy":
        assert (
            a["jsonrpc.request.id"]
            == server_span(instrumented_mcp, "get_weather").attributes["jsonrpc.request.id"]
        )

    served = server_span(instrumented_mcp, "get_weather")
    assert served.context.trace_id == span.context.trace_id
    assert served.parent is not None and served.parent.span_id == span.context.span_id
    (meta,) = received
    _, trace_id, parent_id, _flags = meta["traceparent"].split("-")
    assert (trace_id, parent_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    # Other requests made during the call (the output-schema check lists tools) keep the SDK's spans.
    listed = instrumented_mcp.finished("MCP send tools/list")
    assert len(listed) == (1 if mode == "legacy" else 0)
    for other in listed:
        assert other.parent is not None and other.parent.span_id == span.context.span_id


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_is_error_results_are_tool_errors(instrumented_mcp: Signals, mode: str) -> None:
    async with Client(make_server([]), mode=mode) as client:
        result = await client.call_tool("broken", {})

    assert result.is_error is True  # returned unchanged
    (span,) = tool_spans(instrumented_mcp)
    assert attrs(span)["error.type"] == "tool_error"
    assert span.status.status_code is StatusCode.ERROR
    assert duration_points(instrumented_mcp)[0]["error.type"] == "tool_error"


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_json_rpc_errors_raise_unchanged_and_are_named_by_code(
    instrumented_mcp: Signals, mode: str
) -> None:
    async with Client(make_server([]), mode=mode) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("bad_params", {})

    assert caught.value.error.code == -32602
    (span,) = tool_spans(instrumented_mcp)
    assert attrs(span)["error.type"] == "-32602"
    assert span.status.status_code is StatusCode.ERROR
    # The server's message is free text that may quote the arguments: not exported with capture off.
    assert span.status.description is None
    assert [p["error.type"] for p in duration_points(instrumented_mcp)] == ["-32602"]


@pytest.mark.anyio
async def test_client_session_calls_and_sessions(
    instrumented_mcp: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(make_server([]), mode="legacy") as client, session("conv-mcp", user_id="u1") as s:
        await client.session.call_tool("get_weather", {"city": "Oslo"})
        await client.call_tool("get_weather", {"city": "Rome"})

    spans = tool_spans(instrumented_mcp)
    assert len(spans) == 2
    assert {attrs(x)["gen_ai.conversation.id"] for x in spans} == {"conv-mcp"}
    assert s.tool_calls == 2 and s.tool_errors == 0
    assert [r.session_id for r in tool_records(caplog)] == ["conv-mcp", "conv-mcp"]


@pytest.mark.anyio
async def test_content_capture_records_mcp_arguments_and_result(sdk_spans: Signals) -> None:
    MCPInstrumentor().instrument(**sdk_spans.providers, settings=Settings(capture=ContentCapture(True, True)))
    try:
        async with Client(make_server([]), mode="auto") as client:
            await client.call_tool("get_weather", {"city": "Lima"})
    finally:
        MCPInstrumentor().uninstrument()
    a = attrs(tool_spans(sdk_spans)[0])
    assert a["gen_ai.tool.call.arguments"] == '{"city":"Lima"}'
    assert "sunny in Lima" in a["gen_ai.tool.call.result"]


SECRET_CITY = "Zanzibar-7f3c"  # an argument value that must never leave the process by default
SECRET_RESULT = "forecast-91ab"


def secret_server() -> MCPServer:
    server = MCPServer("secrets")

    @server.tool()
    def get_forecast(city: str) -> str:
        return SECRET_RESULT if city == SECRET_CITY else "unknown"

    return server


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("capture", [False, True], ids=["capture off", "capture on"])
async def test_argument_values_and_results_are_exported_only_with_content_capture(
    sdk_spans: Signals, caplog: pytest.LogCaptureFixture, mode: str, capture: bool
) -> None:
    settings = Settings(capture=ContentCapture(span=capture, event=capture))
    MCPInstrumentor().instrument(**sdk_spans.providers, settings=settings)
    try:
        async with Client(secret_server(), mode=mode) as client:
            result = await client.call_tool("get_forecast", {"city": SECRET_CITY})
    finally:
        MCPInstrumentor().uninstrument()

    assert result.content[0].text == SECRET_RESULT  # type: ignore[union-attr]
    (span,) = tool_spans(sdk_spans)
    assert attrs(span)["agentwatch.tool.argument_keys"] == ("city",)
    exported = sdk_spans.dump()
    (record,) = tool_records(caplog)
    logged = record.getMessage() + json.dumps(vars(record), default=str)
    for secret in (SECRET_CITY, SECRET_RESULT):
        assert (secret in exported) is capture, secret
        assert (secret in logged) is capture, secret
    if capture:
        assert json.loads(attrs(span)["gen_ai.tool.call.arguments"]) == {"city": SECRET_CITY}
        assert SECRET_RESULT in attrs(span)["gen_ai.tool.call.result"]
        assert json.loads(record.arguments) == {"city": SECRET_CITY} and SECRET_RESULT in record.result


PATCHED = [
    (mcp.client.session.ClientSession, "call_tool"),
    (mcp.client.client.Client, "call_tool"),
    (mcp.shared.jsonrpc_dispatcher, "otel_span"),
]


def originals() -> list[object]:
    return [vars(owner)[name] for owner, name in PATCHED]


@pytest.mark.anyio
async def test_uninstrument_restores_and_instrumenting_twice_is_harmless(sdk_spans: Signals) -> None:
    before = originals()
    MCPInstrumentor().instrument(**sdk_spans.providers)
    MCPInstrumentor().instrument(**sdk_spans.providers)
    try:
        assert all(d is not b for d, b in zip(originals(), before, strict=True))
        async with Client(make_server([]), mode="legacy") as client:
            await client.call_tool("get_weather", {"city": "Paris"})
        assert len(tool_spans(sdk_spans)) == 1
    finally:
        MCPInstrumentor().uninstrument()
    assert originals() == before

    async with Client(make_server([]), mode="legacy") as client:
        await client.call_tool("get_weather", {"city": "Paris"})
    assert len(tool_spans(sdk_spans)) == 1  # no new execute_tool span once uninstrumented
