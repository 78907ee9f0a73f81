"""``ToolRegistry``: tools by name, called with model-provided arguments and model tool-call objects."""

from __future__ import annotations

import inspect
import json
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.trace import StatusCode

from agentwatch._fakellm import FakeLLMServer, Reply, ToolCall
from agentwatch.resilience import Policy
from agentwatch.tools import ToolRegistry, UnknownToolError, get_tool, tool
from support import ANTHROPIC_MODEL, OPENAI_MODEL, Signals, user
from tools._support import attrs, duration_points, tool_records, tool_spans


def make_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @registry.register
    def get_weather(city: str, unit: str = "C") -> dict[str, Any]:
        """Current weather."""
        return {"city": city, "unit": unit}

    @registry.register(name="search", description="Search the knowledge base.")
    async def search_kb(query: str) -> list[str]:
        return [query]

    return registry


def test_register_forms_and_lookup() -> None:
    registry = make_registry()

    @tool(name="decorated")
    def already() -> str:
        return "x"

    assert registry.register(already) is already
    plain = registry.register(lambda: 1, name="one")
    assert get_tool(plain) is not None
    assert registry.names == ["decorated", "get_weather", "one", "search"]
    assert "search" in registry and "nope" not in registry and len(registry) == 4
    assert registry.get("search").description == "Search the knowledge base."
    assert registry.get("search").is_async
    with pytest.raises(ValueError, match="already registered as 'one'"):
        registry.register(lambda: 2, name="one")
    registry.unregister("one")
    assert "one" not in registry


def test_registering_a_decorated_tool_keeps_the_settings_not_given(tele: Signals) -> None:
    registry = ToolRegistry()

    @tool(name="orders", description="Looks orders up.")
    def find_order(order_id: str) -> str:
        return order_id

    registry.register(find_order, tool_type="datastore")
    made = registry.get("orders")
    assert (made.name, made.description, made.tool_type) == ("orders", "Looks orders up.", "datastore")
    registry.call("orders", {"order_id": "o-1"})
    assert attrs(tool_spans(tele, "orders")[0])["gen_ai.tool.type"] == "datastore"

    policy = Policy()
    registry.register(find_order, policy=policy)
    made = registry.get("orders")
    assert (made.name, made.tool_type, made.policy) == ("orders", "function", policy)


def test_registered_async_tool_stays_async() -> None:
    registry = ToolRegistry()

    async def fetch(url: str) -> str:
        return url

    assert inspect.iscoroutinefunction(registry.register(fetch))


def test_call_with_a_mapping_or_json_text(tele: Signals) -> None:
    registry = make_registry()
    assert registry.call("get_weather", {"city": "Paris"}, call_id="call_a") == {"city": "Paris", "unit": "C"}
    assert registry.call("get_weather", '{"city": "Rome", "unit": "F"}') == {"city": "Rome", "unit": "F"}

    first, second = tool_spans(tele, "get_weather")
    assert attrs(first)["gen_ai.tool.call.id"] == "call_a"
    assert attrs(first)["gen_ai.tool.description"] == "Current weather."
    assert attrs(first)["agentwatch.tool.argument_keys"] == ("city",)
    assert "gen_ai.tool.call.id" not in attrs(second)
    assert attrs(second)["agentwatch.tool.argument_keys"] == ("city", "unit")


@pytest.mark.anyio
async def test_acall_runs_async_and_sync_tools(tele: Signals) -> None:
    registry = make_registry()
    assert await registry.acall("search", {"query": "q"}, call_id="c1") == ["q"]
    assert await registry.acall("get_weather", {"city": "Oslo"}) == {"city": "Oslo", "unit": "C"}
    assert [s.name for s in tool_spans(tele)] == ["execute_tool search", "execute_tool get_weather"]


def test_calling_an_async_tool_synchronously_is_refused(tele: Signals) -> None:
    with pytest.raises(TypeError, match="is async"):
        make_registry().call("search", {"query": "q"})
    assert tool_spans(tele) == []


def test_unknown_tool_lists_the_known_names(tele: Signals, caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry()
    with pytest.raises(UnknownToolError) as caught:
        registry.call("get_wether", {"city": "Paris"}, call_id="call_x")

    assert str(caught.value) == "unknown tool 'get_wether'; known tools: 'get_weather', 'search'"
    assert caught.value.name == "get_wether" and caught.value.known == ["get_weather", "search"]
    assert isinstance(caught.value, LookupError)
    span = tool_spans(tele, "get_wether")[0]
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "agentwatch.UnknownToolError"
    assert attrs(span)["gen_ai.tool.call.id"] == "call_x"
    # The name comes from model output: it is not a metric dimension.
    assert duration_points(tele) == [
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "_OTHER",
            "error.type": "agentwatch.UnknownToolError",
            "count": 1,
        }
    ]
    assert [r.tool for r in tool_records(caplog)] == ["get_wether"]


@pytest.mark.anyio
async def test_unknown_tool_async(tele: Signals) -> None:
    with pytest.raises(UnknownToolError, match="known tools: 'get_weather', 'search'"):
        await make_registry().acall("nope")
    with pytest.raises(UnknownToolError, match="none are registered"):
        await ToolRegistry().acall("nope")


def test_invalid_arguments_fail_inside_the_span(tele: Signals) -> None:
    registry = make_registry()
    # Still a ValueError and a TypeError, for handlers written before validation existed.
    with pytest.raises(ValueError, match="Not valid JSON"):
        registry.call("get_weather", '{"city": ')
    with pytest.raises(TypeError, match="Should be a JSON object"):
        registry.call("get_weather", "[1, 2]")
    with pytest.raises(TypeError, match="town: Not an argument of this tool"):
        registry.call("get_weather", {"town": "Paris"})
    spans = tool_spans(tele, "get_weather")
    assert [attrs(s)["error.type"] for s in spans] == ["invalid_arguments"] * 3


def test_openai_chat_tool_calls_link_their_ids(
    tele: Signals, fake_llm: FakeLLMServer, openai_client: openai.OpenAI
) -> None:
    registry = make_registry()
    fake_llm.enqueue(
        Reply.tool_calls(
            [ToolCall("get_weather", {"city": "Paris"}, id="call_paris"), ("get_weather", {"city": "Rome"})]
        )
    )
    response = openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    tool_calls = response.choices[0].message.tool_calls
    assert tool_calls is not None
    results = [registry.call_tool_call(tc) for tc in tool_calls]

    assert results == [{"city": "Paris", "unit": "C"}, {"city": "Rome", "unit": "C"}]
    assert [attrs(s)["gen_ai.tool.call.id"] for s in tool_spans(tele)] == [tc.id for tc in tool_calls]
    assert tool_calls[0].id == "call_paris"


def test_openai_responses_function_calls_link_their_call_ids(
    tele: Signals, fake_llm: FakeLLMServer, openai_client: openai.OpenAI
) -> None:
    registry = make_registry()
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Lima"})]))
    response = openai_client.responses.create(model=OPENAI_MODEL, input="weather?")
    items = [item for item in response.output if item.type == "function_call"]
    assert registry.call_tool_call(items[0]) == {"city": "Lima", "unit": "C"}
    assert attrs(tool_spans(tele)[0])["gen_ai.tool.call.id"] == items[0].call_id


@pytest.mark.anyio
async def test_anthropic_tool_use_blocks_link_their_ids(
    tele: Signals, fake_llm: FakeLLMServer, anthropic_client: anthropic.Anthropic
) -> None:
    registry = make_registry()
    fake_llm.enqueue(Reply.tool_calls([("search", {"query": "otel"})]))
    message = anthropic_client.messages.create(model=ANTHROPIC_MODEL, max_tokens=100, messages=user())
    blocks = [block for block in message.content if block.type == "tool_use"]
    assert await registry.acall_tool_call(blocks[0]) == ["otel"]
    assert attrs(tool_spans(tele)[0])["gen_ai.tool.call.id"] == blocks[0].id


@pytest.mark.usefixtures("litellm_setup")
@pytest.mark.parametrize(
    ("model", "path"),
    [("openai/gpt-4o-mini", "/v1"), ("anthropic/claude-haiku-4-5", ""), ("groq/llama-3.1-8b-instant", "/v1")],
)
def test_litellm_tool_calls_link_their_ids(
    tele: Signals, fake_llm: FakeLLMServer, model: str, path: str
) -> None:
    """LiteLLM answers in OpenAI's shape whichever provider it called (its own ``ChatCompletionMessageToolCall``)."""
    litellm = pytest.importorskip("litellm")

    registry = make_registry()
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]))
    response = litellm.completion(
        model=model, messages=user(), api_base=fake_llm.url + path, api_key="sk-test"
    )
    tool_calls = response.choices[0].message.tool_calls
    assert type(tool_calls[0]).__module__.startswith("litellm")
    assert [registry.call_tool_call(tc) for tc in tool_calls] == [
        {"city": "Oslo", "unit": "C"},
        {"city": "Rome", "unit": "C"},
    ]
    assert [attrs(s)["gen_ai.tool.call.id"] for s in tool_spans(tele)] == [tc.id for tc in tool_calls]


def test_bedrock_tool_use_blocks_link_their_ids(tele: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    registry = make_registry()
    fake_llm.enqueue(
        Reply.tool_calls([("get_weather", {"city": "Lima"}), ("get_weather", {"city": "Quito"})])
    )
    response = bedrock.converse(
        modelId="us.amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "weather?"}]}]
    )
    blocks = [block for block in response["output"]["message"]["content"] if "toolUse" in block]
    # The content block as Converse returns it, or the toolUse object inside it.
    results = [registry.call_tool_call(blocks[0]), registry.call_tool_call(blocks[1]["toolUse"])]
    assert results == [{"city": "Lima", "unit": "C"}, {"city": "Quito", "unit": "C"}]
    ids = [block["toolUse"]["toolUseId"] for block in blocks]
    assert [attrs(s)["gen_ai.tool.call.id"] for s in tool_spans(tele)] == ids


def test_dict_and_langchain_shaped_tool_calls(tele: Signals) -> None:
    registry = make_registry()
    openai_dict = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"A"}'},
    }
    anthropic_dict = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "B"}}
    langchain_dict = {"name": "get_weather", "args": {"city": "C"}, "id": "lc_1", "type": "tool_call"}
    for call in (openai_dict, anthropic_dict, langchain_dict):
        registry.call_tool_call(call)
    assert [attrs(s)["gen_ai.tool.call.id"] for s in tool_spans(tele)] == ["c1", "toolu_1", "lc_1"]
    with pytest.raises(TypeError, match="not a tool call"):
        registry.call_tool_call({"role": "assistant"})


def test_tools_called_directly_and_through_the_registry_make_the_same_span(tele: Signals) -> None:
    registry = ToolRegistry()

    @registry.register
    def add(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == registry.call("add", {"a": 1, "b": 2}) == 3
    direct, through = tool_spans(tele, "add")
    assert direct.name == through.name and attrs(direct) == attrs(through)


def test_tool_results_of_model_calls_stay_json(tele_capture: Signals) -> None:
    registry = make_registry()
    registry.call("get_weather", {"city": "Paris"}, call_id="c")
    span = tool_spans(tele_capture)[0]
    assert json.loads(attrs(span)["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
