"""``instrument_registry``: the plain dict of name -> callable, made observable in place."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from agentwatch._errors import ConfigError
from agentwatch.resilience import Policy, ToolUnavailable, disable_tool, enable_tool
from agentwatch.tools import get_tool, instrument_registry, tool, uninstrument_registry
from support import Signals
from tools._support import attrs, tool_spans


def weather(city: str) -> str:
    return f"sunny in {city}"


async def search(query: str) -> list[str]:
    return [query]


def test_wraps_in_place_and_returns_the_same_mapping(tele: Signals) -> None:
    tools: dict[str, Any] = {"get_weather": weather, "search": search, "version": "1.2"}
    assert instrument_registry(tools) is tools

    assert tools["version"] == "1.2"  # not callable: left alone
    assert tools["get_weather"] is not weather and tools["get_weather"].__wrapped__ is weather
    assert inspect.iscoroutinefunction(tools["search"])
    assert not inspect.iscoroutinefunction(tools["get_weather"])
    assert tools["get_weather"]("Paris") == "sunny in Paris"
    assert [s.name for s in tool_spans(tele)] == ["execute_tool get_weather"]


@pytest.mark.anyio
async def test_async_tools_of_a_dict(tele: Signals) -> None:
    tools = instrument_registry({"kb": search})
    assert await tools["kb"](query="otel") == ["otel"]
    # The key names the tool, not the function.
    assert attrs(tool_spans(tele)[0])["gen_ai.tool.name"] == "kb"


def test_instrumenting_twice_is_harmless(tele: Signals) -> None:
    tools: dict[str, Any] = {"get_weather": weather}
    instrument_registry(tools)
    first = tools["get_weather"]
    instrument_registry(tools)
    assert tools["get_weather"] is first
    tools["get_weather"]("Oslo")
    assert len(tool_spans(tele)) == 1


def test_plain_dict_later_additions_need_another_call(tele: Signals) -> None:
    tools: dict[str, Any] = instrument_registry({})
    tools["late"] = weather  # a builtin dict cannot be watched
    assert tools["late"] is weather
    instrument_registry(tools)
    tools["late"]("Paris")
    assert [s.name for s in tool_spans(tele)] == ["execute_tool late"]


class ToolDict(dict[str, Any]):
    pass


class ToolMap(MutableMapping[str, Any]):
    def __init__(self) -> None:
        self._data: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_dict_subclass_instruments_later_additions(tele: Signals) -> None:
    tools = instrument_registry(ToolDict(first=weather))
    assert isinstance(tools, ToolDict) and type(tools).__name__ == "ToolDict"
    tools["second"] = weather
    tools.update(third=weather)
    tools.update({"fourth": weather})
    tools.setdefault("fifth", weather)
    tools |= {"sixth": weather}
    for name in ("first", "second", "third", "fourth", "fifth", "sixth"):
        assert get_tool(tools[name]) is not None, name
        tools[name]("x")
    assert len(tool_spans(tele)) == 6


def test_mutable_mapping_instruments_later_additions(tele: Signals) -> None:
    tools = ToolMap()
    tools["first"] = weather
    instrument_registry(tools)
    tools["second"] = weather
    assert get_tool(tools["first"]) is not None and get_tool(tools["second"]) is not None


def test_uninstrument_restores_every_original() -> None:
    @tool
    def own() -> None:
        pass

    tools = instrument_registry(ToolDict(get_weather=weather, search=search, own=own, n=1))
    tools["late"] = weather
    uninstrument_registry(tools)
    assert type(tools) is ToolDict
    assert tools == {"get_weather": weather, "search": search, "own": own, "n": 1, "late": weather}
    tools["after"] = weather
    assert tools["after"] is weather


def test_policies_by_name_with_a_default(tele: Signals) -> None:
    def down() -> str:
        raise ConnectionError("backend down")

    tools = instrument_registry(
        {"prefs": down, "related": down, "search": down},
        policies={"search": Policy(), "*": Policy(critical=False)},
    )
    assert isinstance(tools["prefs"](), ToolUnavailable)
    assert isinstance(tools["related"](), ToolUnavailable)
    with pytest.raises(ConnectionError):
        tools["search"]()


def test_a_disabled_optional_tool_degrades_without_being_called(tele: Signals) -> None:
    calls: list[str] = []

    def prefs() -> str:
        calls.append("called")
        return "prefs"

    tools = instrument_registry({"prefs": prefs}, policies={"*": Policy(critical=False)})
    disable_tool("prefs")
    try:
        result = tools["prefs"]()
    finally:
        enable_tool("prefs")
    assert isinstance(result, ToolUnavailable) and result.reason == "tool_disabled"
    assert calls == []
    assert attrs(tool_spans(tele)[0])["error.type"] == "tool_disabled"


def test_invalid_policies_fail_at_start_up() -> None:
    with pytest.raises(ConfigError, match="policies"):
        instrument_registry({"a": weather}, policies={"a": {"timeout": 1}})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        instrument_registry([("a", weather)])  # type: ignore[type-var]
