"""``@tool``: the decorated function behaves exactly like the original and each call is observable."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from agentwatch._config import ContentCapture, Settings
from agentwatch._errors import ConfigError
from agentwatch._session import session
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch._telemetry._instruments import DURATION_BUCKETS
from agentwatch.resilience import Policy
from agentwatch.tools import get_tool, tool
from agentwatch.tools._content import render
from support import Signals, make_signals
from tools._support import attrs, duration_points, tool_records, tool_spans

SECRET_CITY = "Zanzibar-7f3c"  # an argument value that must never leave the process by default
SECRET_RESULT = "forecast-91ab"


@tool
def get_weather(city: str, unit: str = "C") -> dict[str, Any]:
    """Current weather for a city.

    Longer explanation that is not part of the description.
    """
    return {"city": city, "forecast": SECRET_RESULT, "unit": unit}


@tool(name="lookup_async", description="Looks things up.")
async def lookup(query: str) -> list[str]:
    await asyncio.sleep(0)
    return [query, SECRET_RESULT]


class LookupFailed(Exception):
    pass


@tool
def failing(city: str) -> None:
    raise LookupFailed(f"no data for {city}")


@tool
async def failing_async(city: str) -> None:
    await asyncio.sleep(0)
    raise LookupFailed(f"no data for {city}")


def test_sync_stays_sync_and_keeps_its_metadata() -> None:
    def original(city: str, unit: str = "C") -> dict[str, Any]:
        """Docs."""
        return {}

    decorated = tool(original)
    assert not inspect.iscoroutinefunction(decorated)
    assert decorated.__name__ == "original"
    assert decorated.__qualname__ == original.__qualname__
    assert decorated.__doc__ == "Docs."
    assert decorated.__module__ == __name__
    assert decorated.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(decorated) == inspect.signature(original)
    assert get_tool(decorated) is not None and get_tool(decorated).fn is original  # type: ignore[union-attr]


def test_async_stays_async_and_keeps_its_metadata() -> None:
    assert inspect.iscoroutinefunction(lookup)
    assert lookup.__name__ == "lookup"
    assert list(inspect.signature(lookup).parameters) == ["query"]
    made = get_tool(lookup)
    assert made is not None and made.name == "lookup_async" and made.is_async


def test_returns_exactly_what_the_tool_returns(tele: Signals) -> None:
    sentinel = object()

    @tool
    def give() -> object:
        return sentinel

    assert give() is sentinel
    assert len(tool_spans(tele, "give")) == 1


@pytest.mark.anyio
async def test_async_returns_exactly_what_the_tool_returns(tele: Signals) -> None:
    sentinel = object()

    @tool
    async def give() -> object:
        return sentinel

    assert await give() is sentinel
    assert len(tool_spans(tele, "give")) == 1


def test_span_of_a_successful_call(tele: Signals) -> None:
    result = get_weather(SECRET_CITY, unit="F")

    span = tool_spans(tele, "get_weather")[0]
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "get_weather",
        "gen_ai.tool.type": "function",
        "gen_ai.tool.description": "Current weather for a city.",
        "agentwatch.tool.argument_keys": ("city", "unit"),
        "agentwatch.tool.result.bytes": len(json.dumps(result, separators=(",", ":")).encode()),
    }


def test_no_argument_values_or_results_leave_the_process_by_default(
    tele: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    get_weather(SECRET_CITY)
    with pytest.raises(LookupFailed):
        failing(SECRET_CITY)

    exported = tele.dump()
    assert SECRET_CITY not in exported and SECRET_RESULT not in exported
    for record in tool_records(caplog):
        text = record.getMessage() + json.dumps(vars(record), default=str)
        assert SECRET_CITY not in text and SECRET_RESULT not in text
    # The failure's message quotes the argument: it is not the status description either.
    assert tool_spans(tele, "failing")[0].status.description is None


def test_content_capture_records_arguments_and_result(
    tele_capture: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    get_weather(SECRET_CITY, unit="F")

    span = tool_spans(tele_capture, "get_weather")[0]
    assert json.loads(attrs(span)["gen_ai.tool.call.arguments"]) == {"city": SECRET_CITY, "unit": "F"}
    assert json.loads(attrs(span)["gen_ai.tool.call.result"]) == {
        "city": SECRET_CITY,
        "forecast": SECRET_RESULT,
        "unit": "F",
    }
    (record,) = tool_records(caplog)
    assert json.loads(record.arguments) == {"city": SECRET_CITY, "unit": "F"}
    assert SECRET_RESULT in record.result


def test_a_failing_tool_raises_the_same_exception(tele: Signals, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(LookupFailed) as caught:
        failing("Paris")
    assert caught.value.__traceback__ is not None

    span = tool_spans(tele, "failing")[0]
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"{LookupFailed.__module__.partition('.')[0]}.LookupFailed"
    assert "agentwatch.tool.result.bytes" not in attrs(span)
    (point,) = duration_points(tele)
    assert point["error.type"] == attrs(span)["error.type"]
    (record,) = tool_records(caplog)
    assert record.success is False and record.error_type == attrs(span)["error.type"]


@pytest.mark.anyio
async def test_an_async_failing_tool_raises_the_same_exception(tele: Signals) -> None:
    error = LookupFailed("x")

    @tool
    async def fails() -> None:
        raise error

    with pytest.raises(LookupFailed) as caught:
        await fails()
    assert caught.value is error
    assert tool_spans(tele, "fails")[0].status.status_code is StatusCode.ERROR


def test_same_exception_object_sync(tele: Signals) -> None:
    error = LookupFailed("x")

    @tool
    def fails() -> None:
        raise error

    with pytest.raises(LookupFailed) as caught:
        fails()
    assert caught.value is error


@pytest.mark.anyio
async def test_a_cancelled_tool_call_is_ended_not_failed_and_cancellation_propagates(
    tele: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    started = asyncio.Event()

    @tool
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    counts: list[tuple[int, int]] = []

    async def agent() -> None:
        with session() as s:
            try:
                await slow()
            finally:
                counts.append((s.tool_calls, s.tool_errors))

    task = asyncio.ensure_future(agent())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert counts == [(1, 0)]
    span = tool_spans(tele, "slow")[0]
    assert span.end_time is not None
    assert "error.type" not in attrs(span) and span.status.status_code is StatusCode.UNSET
    assert [p["count"] for p in duration_points(tele) if "error.type" not in p] == [1]
    (record,) = tool_records(caplog)
    assert record.success is False and record.error_type is None
    assert "cancelled" in record.getMessage()


def test_keyboard_interrupt_in_a_tool_is_not_a_tool_error(tele: Signals) -> None:
    interrupt = KeyboardInterrupt()

    @tool
    def interrupted() -> None:
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as caught, session() as s:
        try:
            interrupted()
        finally:
            assert (s.tool_calls, s.tool_errors) == (1, 0)
    assert caught.value is interrupt
    span = tool_spans(tele, "interrupted")[0]
    assert "error.type" not in attrs(span) and span.status.status_code is StatusCode.UNSET
    assert duration_points(tele) == [
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "interrupted", "count": 1}
    ]


@pytest.mark.parametrize("policy", [None, Policy()], ids=["no policy", "own policy"])
def test_a_bad_agentwatch_config_fails_when_the_tool_is_defined(
    policy: Policy | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text("[tools.search]\nretry = { attempts = 0 }\n")
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(config))
    set_default_telemetry()  # forget the settings read from the environment so far
    try:
        with pytest.raises(ConfigError, match=r"tools\.search\.retry\.attempts"):

            @tool(policy=policy)
            def search(query: str) -> str:
                return query
    finally:
        monkeypatch.delenv("AGENTWATCH_CONFIG")
        set_default_telemetry()


def test_duration_metric(tele: Signals) -> None:
    get_weather("Paris")
    get_weather("Rome")
    with pytest.raises(LookupFailed):
        failing("Oslo")

    points = sorted(duration_points(tele), key=lambda p: p["gen_ai.tool.name"])
    error_type = attrs(tool_spans(tele, "failing")[0])["error.type"]
    assert points == [
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "failing",
            "error.type": error_type,
            "count": 1,
        },
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather", "count": 2},
    ]
    metric = tele.metric("gen_ai.execute_tool.duration")
    assert metric.unit == "s"
    assert tuple(metric.data.data_points[0].explicit_bounds) == DURATION_BUCKETS


def test_one_log_record_per_call_with_the_fields_on_call(
    tele: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    result = get_weather("Paris")

    (record,) = tool_records(caplog)
    span = tool_spans(tele, "get_weather")[0]
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith("tool call get_weather succeeded in ")
    assert record.tool == "get_weather"
    assert record.success is True and record.error_type is None
    assert record.argument_keys == ["city"]
    assert record.result_bytes == len(json.dumps(result, separators=(",", ":")).encode())
    assert isinstance(record.duration_ms, float) and record.duration_ms >= 0
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.span_id == format(span.context.span_id, "016x")
    assert record.session_id is None and record.user_id is None and record.tool_call_id is None
    assert not hasattr(record, "arguments") and not hasattr(record, "result")


@pytest.mark.anyio
async def test_the_log_record_names_the_session_user_and_agent(
    tele: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    with session("s-1", user_id="u-7", agent_name="a"):
        get_weather("Paris")
    async with session("s-2", user_id="u-8", agent_name="b"):
        await lookup("q")

    spans = {s.name: s for s in tool_spans(tele)}
    records = {r.tool: r for r in tool_records(caplog)}
    for tool_name, (session_id, user_id, agent_name) in {
        "get_weather": ("s-1", "u-7", "a"),
        "lookup_async": ("s-2", "u-8", "b"),
    }.items():
        record, span = records[tool_name], spans[f"execute_tool {tool_name}"]
        assert (record.session_id, record.user_id, record.agent_name) == (session_id, user_id, agent_name)
        assert record.trace_id == format(span.context.trace_id, "032x")
        assert record.span_id == format(span.context.span_id, "016x")
        assert record.success is True


def test_unserialisable_results_are_returned_untouched(tele_capture: Signals) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    circular: list[Any] = []
    circular.append(circular)
    hostile = Hostile()

    @dataclasses.dataclass
    class Point:
        x: int

    @tool
    def odd(kind: str) -> object:
        return {"hostile": hostile, "circular": circular, "point": Point(1), "set": {1}}[kind]

    assert odd("hostile") is hostile
    assert odd("circular") is circular
    assert odd("point") == Point(1)
    assert odd("set") == {1}

    spans = {
        json.loads(attrs(s)["gen_ai.tool.call.arguments"])["kind"]: attrs(s)
        for s in tool_spans(tele_capture, "odd")
    }
    assert "agentwatch.tool.result.bytes" not in spans["hostile"]
    assert spans["circular"]["agentwatch.tool.result.bytes"] > 0  # recorded as its text
    assert json.loads(spans["point"]["gen_ai.tool.call.result"]) == {"x": 1}
    assert json.loads(spans["set"]["gen_ai.tool.call.result"]) == [1]
    assert all(s.status.status_code is StatusCode.UNSET for s in tool_spans(tele_capture, "odd"))


@pytest.mark.anyio
async def test_async_unserialisable_results_are_returned_untouched(
    tele_capture: Signals, caplog: pytest.LogCaptureFixture
) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        __repr__ = __str__

    circular: list[Any] = []
    circular.append(circular)
    hostile = Hostile()

    @dataclasses.dataclass
    class Point:
        x: int

    @tool
    async def odd(kind: str) -> object:
        await asyncio.sleep(0)
        return {"hostile": hostile, "circular": circular, "point": Point(1), "set": {1}}[kind]

    assert await odd("hostile") is hostile
    assert await odd("circular") is circular
    assert await odd("point") == Point(1)
    assert await odd("set") == {1}

    spans = {
        json.loads(attrs(s)["gen_ai.tool.call.arguments"])["kind"]: attrs(s)
        for s in tool_spans(tele_capture, "odd")
    }
    assert "agentwatch.tool.result.bytes" not in spans["hostile"]
    assert json.loads(spans["circular"]["gen_ai.tool.call.result"]) == str(circular)  # recorded as its text
    assert spans["circular"]["agentwatch.tool.result.bytes"] == len(
        spans["circular"]["gen_ai.tool.call.result"]
    )
    assert json.loads(spans["point"]["gen_ai.tool.call.result"]) == {"x": 1}
    assert json.loads(spans["set"]["gen_ai.tool.call.result"]) == [1]
    assert all(s.status.status_code is StatusCode.UNSET for s in tool_spans(tele_capture, "odd"))
    records = {json.loads(r.arguments)["kind"]: r for r in tool_records(caplog)}
    assert records["hostile"].success is True and records["hostile"].result_bytes is None
    assert json.loads(records["point"].result) == {"x": 1}


def test_string_and_bytes_results_are_measured_as_sent(tele: Signals) -> None:
    @tool
    def text() -> str:
        return "héllo"

    @tool
    def raw() -> bytes:
        return b"\x00\x01\x02"

    text()
    raw()
    assert attrs(tool_spans(tele, "text")[0])["agentwatch.tool.result.bytes"] == 6
    assert attrs(tool_spans(tele, "raw")[0])["agentwatch.tool.result.bytes"] == 3


def test_methods_record_their_arguments_not_the_instance(tele: Signals) -> None:
    class Service:
        @tool
        def find(self, name: str, *extra: str) -> str:
            return name

    assert Service().find("a", "b", "c") == "a"
    assert attrs(tool_spans(tele, "find")[0])["agentwatch.tool.argument_keys"] == ("name", "extra")


def test_nested_tool_calls_nest_their_spans(tele: Signals) -> None:
    @tool
    def outer() -> dict[str, Any]:
        return get_weather("Paris")

    outer()
    inner, parent = tool_spans(tele, "get_weather")[0], tool_spans(tele, "outer")[0]
    assert inner.parent is not None and inner.parent.span_id == parent.context.span_id


def test_a_sampled_out_call_does_not_render_its_arguments() -> None:
    rendered: list[str] = []

    class Query:
        def __str__(self) -> str:
            rendered.append("arguments")
            return "query"

    @tool
    def search(query: Query) -> str:
        return "found"

    signals = make_signals(sampler=ALWAYS_OFF)
    set_default_telemetry(**signals.providers, settings=Settings(capture=ContentCapture(span=True)))
    try:
        assert search(Query()) == "found"
    finally:
        set_default_telemetry()
    assert rendered == []


@pytest.mark.parametrize(
    ("value", "text", "size"),
    [
        ("plain", "plain", 5),
        ("héllo", "héllo", 6),
        (b"\x00\xff", "\x00\ufffd", 2),
        (bytearray(b"ab"), "ab", 2),
        (memoryview(b"abc"), "abc", 3),
        ({"k": "é"}, '{"k":"é"}', 10),
    ],
)
def test_results_are_measured_the_same_without_their_text(value: object, text: str, size: int) -> None:
    assert render(value) == (text, size)
    assert render(value, text=False) == (None, size)


def test_sampled_out_calls_still_count_in_the_metric(caplog: pytest.LogCaptureFixture) -> None:
    signals = make_signals(sampler=ALWAYS_OFF)
    set_default_telemetry(**signals.providers)
    try:
        assert get_weather("Paris")["city"] == "Paris"
    finally:
        set_default_telemetry()
    assert signals.finished() == []
    assert [p["count"] for p in duration_points(signals)] == [1]
    assert len(tool_records(caplog)) == 1


def test_suppressed_instrumentation_runs_the_tool_without_telemetry(tele: Signals) -> None:
    with suppress_instrumentation():
        assert get_weather("Paris")["city"] == "Paris"
    assert tool_spans(tele) == [] and duration_points(tele) == []


def test_redecorating_never_doubles_the_span(tele: Signals) -> None:
    again = tool(name="weather2")(get_weather)
    again("Paris")
    assert [s.name for s in tool_spans(tele)] == ["execute_tool weather2"]


def test_tool_type_and_invalid_names() -> None:
    made = get_tool(tool(tool_type="datastore")(lambda: None))
    assert made is not None and made.tool_type == "datastore" and made.name == "<lambda>"

    class NoName:
        def __call__(self) -> None:
            pass

    with pytest.raises(ValueError, match="give the tool a name"):
        tool(NoName())
    assert get_tool(tool(name="callable_object")(NoName())) is not None


class _BrokenTracer(trace.Tracer):
    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        raise RuntimeError("tracer broken")

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("tracer broken")


class _BrokenTracerProvider(trace.TracerProvider):
    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        return _BrokenTracer()


class _FailingOnEnd(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter broken")


@pytest.mark.anyio
async def test_telemetry_faults_never_reach_the_tool_caller(caplog: pytest.LogCaptureFixture) -> None:
    set_default_telemetry(tracer_provider=_BrokenTracerProvider())
    try:
        assert get_weather("Paris")["city"] == "Paris"
        assert await lookup("q") == ["q", SECRET_RESULT]
        with pytest.raises(LookupFailed):
            failing("Oslo")
    finally:
        set_default_telemetry()
    broken_end = make_signals()
    broken_end.tracer_provider.add_span_processor(_FailingOnEnd())
    set_default_telemetry(**broken_end.providers)
    try:
        assert get_weather("Rome")["city"] == "Rome"
    finally:
        set_default_telemetry()

    faults = [r for r in caplog.records if r.name == "agentwatch" and "internal error" in r.getMessage()]
    assert [
        r.getMessage().split(" in ")[1].split(";")[0] for r in faults if r.levelno == logging.WARNING
    ] == [
        "starting an execute_tool span",
        "ending an execute_tool span",
    ]
    caplog.clear()  # expected faults: the autouse guard must not flag them


def test_the_duration_is_recorded_in_the_callers_context_without_an_exemplar_of_the_tool_span(
    tele: Signals,
) -> None:
    # With the tool's own span current, the metric SDK would sample an exemplar of it on every
    # call (its default filter keeps sampled spans): the record is made in the caller's context.
    @tool
    def alone(city: str) -> str:
        return city

    @tool
    def inside(city: str) -> str:
        return city

    alone("Paris")
    tracer = tele.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("agent turn") as parent:
        inside("Rome")
    points = {p.attributes["gen_ai.tool.name"]: p for p in tele.points("gen_ai.execute_tool.duration")}
    assert list(points["alone"].exemplars) == []
    (exemplar,) = points["inside"].exemplars  # the caller's span, as for an LLM call's metrics
    assert exemplar.span_id == parent.get_span_context().span_id
    (tool_span,) = tool_spans(tele, "inside")
    assert exemplar.span_id != tool_span.context.span_id
