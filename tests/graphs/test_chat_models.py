"""LangChain chat models: exactly one ``chat`` span per model call.

``ChatOpenAI`` runs over the openai SDK, which agentwatch instruments: its span is the openai
instrumentor's and LangChain adds none. ``ChatGroq`` (langchain-groq) runs over the ``groq`` SDK,
which agentwatch does not patch, over real HTTP to the fake server's OpenAI-compatible endpoint
(``/openai/v1/chat/completions``): its span is made from LangChain's data. ``GenericFakeChatModel``
(langchain-core's own fake) is a model with no SDK at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import httpx
import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_groq import ChatGroq
from langchain_openai import ChatOpenAI
from langgraph.graph import START, MessagesState, StateGraph
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from graphs._support import attrs, one, run_async
from graphs.conftest import Instrument
from support import OPENAI_KEY, OPENAI_MODEL, Signals

GROQ_MODEL = "llama-3.3-70b-versatile"
LANGCHAIN_SCOPE = "agentwatch.instrumentation.langchain"
OPENAI_SCOPE = "agentwatch.instrumentation.openai"
# genai-prices: llama-3.3-70b-versatile on groq, USD per million tokens.
GROQ_INPUT, GROQ_OUTPUT = 0.59, 0.79
LANGGRAPH_STREAMS_NODE_MODELS = int(version("langgraph").split(".")[0]) >= 1


@pytest.fixture
def groq(fake_llm: FakeLLMServer) -> ChatGroq:
    return ChatGroq(
        model=GROQ_MODEL, base_url=fake_llm.url, api_key="gsk-test", max_retries=0, temperature=0.2
    )


async def _drain(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("how", ["invoke", "ainvoke", "stream", "astream", "batch"])
def test_a_model_over_an_instrumented_sdk_gets_that_sdks_span_only(
    lg: Signals, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI, how: str
) -> None:
    fake_llm.enqueue(Reply.text("one"), Reply.text("two"))
    if how == "invoke":
        chat_openai.invoke("hi")
    elif how == "ainvoke":
        run_async(chat_openai.ainvoke("hi"), chat_openai)
    elif how == "stream":
        list(chat_openai.stream("hi"))
    elif how == "astream":
        run_async(_drain(chat_openai.astream("hi")), chat_openai)
    else:
        chat_openai.batch(["hi", "there"])

    spans = lg.finished()
    assert len(spans) == len(fake_llm.requests)
    assert {(s.name, s.instrumentation_scope.name) for s in spans} == {(f"chat {OPENAI_MODEL}", OPENAI_SCOPE)}
    durations = lg.points("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == len(fake_llm.requests)


def test_chat_openai_usage_and_cost_reach_the_span(
    lg: Signals, fake_llm: FakeLLMServer, chat_openai: ChatOpenAI
) -> None:
    """ChatOpenAI calls the SDK through ``with_raw_response``; the usage is read all the same."""
    fake_llm.enqueue(Reply.text("hi", input_tokens=100, output_tokens=10))
    chat_openai.invoke("hi")
    span = attrs(lg.only_span("chat"))
    assert (span["gen_ai.usage.input_tokens"], span["gen_ai.usage.output_tokens"]) == (100, 10)
    assert span["gen_ai.usage.cost.amount"] > 0 and span["gen_ai.response.model"] == OPENAI_MODEL


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_chat_openai_stream_through_with_raw_response_is_one_span_until_its_last_chunk(
    lg: Signals, fake_llm: FakeLLMServer, how: str
) -> None:
    """``include_response_headers=True`` makes ``ChatOpenAI`` stream through ``with_raw_response``:
    the span lasts as long as the stream, and the usage comes from its last chunk."""
    model = ChatOpenAI(
        model=OPENAI_MODEL,
        base_url=fake_llm.openai_base_url,
        api_key=OPENAI_KEY,
        max_retries=0,
        http_async_client=httpx.AsyncClient(),
        include_response_headers=True,
        stream_usage=True,
    )
    fake_llm.enqueue(Reply.text("one two three", chunks=3, input_tokens=8, output_tokens=3))
    seen: list[int] = []  # when the first chunk reached the caller

    def first(chunk: Any) -> Any:
        if not seen:
            seen.append(time.time_ns())
        return chunk

    if how == "stream":
        chunks = [first(c) for c in model.stream("count")]
    else:

        async def drain() -> list[Any]:
            return [first(c) async for c in model.astream("count")]

        chunks = run_async(drain(), model)
    assert "".join(str(c.content) for c in chunks) == "one two three"
    assert "headers" in chunks[0].response_metadata  # what LangChain asked the SDK for

    span = one(lg, f"chat {OPENAI_MODEL}")
    assert span.instrumentation_scope is not None and span.instrumentation_scope.name == OPENAI_SCOPE
    assert span.end_time is not None and span.end_time > seen[0]
    values = attrs(span)
    assert values["agentwatch.stream.outcome"] == "completed"
    assert values["gen_ai.response.time_to_first_chunk"] > 0
    assert (values["gen_ai.usage.input_tokens"], values["gen_ai.usage.output_tokens"]) == (8, 3)


def test_a_provider_agentwatch_does_not_patch_gets_one_span_from_langchain(
    lg: Signals, fake_llm: FakeLLMServer, groq: ChatGroq
) -> None:
    fake_llm.enqueue(Reply.text("Bonjour", input_tokens=1000, output_tokens=200, cached_tokens=400))
    with agentwatch.session("conv-groq") as session:
        message = groq.invoke([SystemMessage("Be brief."), HumanMessage("Say hi in French")], stop=["\n"])

    assert message.content == "Bonjour"
    reported = (message.usage_metadata or {}).get("input_token_details", {}).get("cache_read")  # type: ignore[attr-defined]
    span = one(lg, f"chat {GROQ_MODEL}")
    assert span.kind is SpanKind.CLIENT and span.instrumentation_scope.name == LANGCHAIN_SCOPE
    assert span.parent is not None and span.parent.span_id == one(lg, "invoke_agent").context.span_id
    cost = (1000 * GROQ_INPUT + 200 * GROQ_OUTPUT) / 1e6
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "groq",
        "gen_ai.request.model": GROQ_MODEL,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.stop_sequences": ("\n",),
        "gen_ai.conversation.id": "conv-groq",
        "gen_ai.response.model": GROQ_MODEL,
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 200,
        "gen_ai.usage.cost.amount": pytest.approx(cost),
        "gen_ai.usage.cost.currency": "USD",
    }
    if reported is not None:  # langchain-groq >= 0.3 reports cached tokens
        assert reported == 400
        expected["gen_ai.usage.cache_read.input_tokens"] = 400
    assert attrs(span) == expected
    # No content by default: neither the prompt nor the answer is anywhere.
    assert "Bonjour" not in lg.dump() and "French" not in lg.dump()
    # The call counts once in the session and in the metrics.
    assert (session.iterations, session.input_tokens, session.output_tokens) == (1, 1000, 200)
    assert session.cost == pytest.approx(cost)
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in lg.points("gen_ai.client.token.usage")}
    assert tokens == {"input": 1000, "output": 200}
    (duration,) = lg.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and duration.attributes["gen_ai.provider.name"] == "groq"
    # The span covers the HTTP call: it starts before the request and ends after the response.
    assert span.start_time is not None and span.end_time is not None
    assert span.end_time - span.start_time >= 0


def test_a_failed_call_of_an_unpatched_provider(lg: Signals, fake_llm: FakeLLMServer, groq: ChatGroq) -> None:
    import groq as groq_sdk

    fake_llm.enqueue(Reply.error(503, message="overloaded"))
    with pytest.raises(groq_sdk.InternalServerError):
        groq.invoke("hi")
    span = lg.only_span("chat")
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "groq.InternalServerError"
    (duration,) = lg.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "groq.InternalServerError"


@pytest.mark.parametrize("mode", ["stream", "astream", "graph"])
def test_a_streamed_call_of_an_unpatched_provider(
    lg: Signals, fake_llm: FakeLLMServer, groq: ChatGroq, mode: str
) -> None:
    fake_llm.enqueue(Reply.text("one two three", chunks=3))
    if mode == "stream":
        chunks = list(groq.stream("count"))
    elif mode == "astream":

        async def drain() -> list[Any]:
            try:
                return await _drain(groq.astream("count"))
            finally:
                await groq.async_client._client.close()  # its connection, before the loop closes

        chunks = asyncio.run(drain())
    else:  # a LangGraph run streaming messages: the model streams inside invoke
        if not LANGGRAPH_STREAMS_NODE_MODELS:
            pytest.skip("langgraph < 1 does not stream a node's model for stream_mode='messages'")

        def ask(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
            return {"messages": [groq.invoke(state["messages"], config)]}

        builder = StateGraph(MessagesState)
        builder.add_node("ask", ask)
        builder.add_edge(START, "ask")
        chunks = list(builder.compile().stream({"messages": [("user", "count")]}, stream_mode="messages"))
    assert chunks and fake_llm.requests[0].stream

    span = one(lg, f"chat {GROQ_MODEL}")
    values = attrs(span)
    assert values["gen_ai.request.stream"] is True
    assert values["gen_ai.response.finish_reasons"] == ("stop",)
    # The chunks of a stream LangChain consumes inside invoke() are not seen: no time to first chunk.
    first_chunk = lg.points("gen_ai.client.operation.time_to_first_chunk")
    if mode == "graph":
        assert "gen_ai.response.time_to_first_chunk" not in values and first_chunk == []
    else:
        assert values["gen_ai.response.time_to_first_chunk"] > 0 and len(first_chunk) == 1


def test_a_stream_the_caller_closes_early_still_ends_its_span(
    lg: Signals, fake_llm: FakeLLMServer, groq: ChatGroq
) -> None:
    fake_llm.enqueue(Reply.text("one two three four", chunks=4))
    stream = groq.stream("count")
    next(stream)
    stream.close()
    span = lg.only_span("chat")
    assert attrs(span)["agentwatch.stream.outcome"] == "closed"
    assert span.status.status_code is StatusCode.UNSET


def test_a_model_with_no_sdk_at_all(lg: Signals) -> None:
    reply = AIMessage(
        "fine",
        usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
        response_metadata={"finish_reason": "stop", "model_name": "fake-1"},
    )
    model = GenericFakeChatModel(messages=iter([reply]))
    assert model.invoke("how are you?").content == "fine"
    span = attrs(lg.only_span("chat"))
    assert span["gen_ai.provider.name"] == "genericfakechatmodel"  # LangChain's default ls_provider
    assert (span["gen_ai.usage.input_tokens"], span["gen_ai.usage.output_tokens"]) == (5, 2)
    assert span["agentwatch.usage.cost.unpriced"] is True


def test_content_capture_records_the_messages_of_an_unpatched_provider(
    instrument: Instrument, fake_llm: FakeLLMServer, groq: ChatGroq
) -> None:
    signals = instrument(capture_message_content="SPAN_ONLY")
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Paris"})], content="Let me check."))
    groq.invoke([SystemMessage("Be brief."), HumanMessage("Weather?")])
    span = attrs(signals.only_span("chat"))
    import json

    assert json.loads(span["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]
    assert json.loads(span["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Weather?"}]}
    ]
    (output,) = json.loads(span["gen_ai.output.messages"])
    assert output["role"] == "assistant" and output["finish_reason"] == "tool_call"
    assert output["parts"][0] == {"type": "text", "content": "Let me check."}
    assert output["parts"][1]["type"] == "tool_call" and output["parts"][1]["name"] == "get_weather"
    assert output["parts"][1]["arguments"] == {"city": "Paris"}


def test_a_call_the_llm_cache_may_answer_makes_no_span_of_its_own(lg: Signals) -> None:
    reply = AIMessage("cached", usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7})
    model = GenericFakeChatModel(messages=iter([reply]), cache=InMemoryCache())
    model.invoke("hi")
    model.invoke("hi")  # answered from the cache: no model call
    assert lg.finished() == []


def test_uninstrumented_models_make_no_spans(
    signals: Signals, fake_llm: FakeLLMServer, groq: ChatGroq
) -> None:
    fake_llm.enqueue(Reply.text("plain"))
    assert groq.invoke("hi").content == "plain"
    assert signals.finished() == []


def test_a_model_inside_another_models_call_is_one_call(lg: Signals, fake_llm: FakeLLMServer) -> None:
    """A chat model delegating to another (router/fallback wrappers) is still one model call."""
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    inner = ChatOpenAI(model=OPENAI_MODEL, base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY)

    class Router(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "router"

        def _generate(
            self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any
        ) -> ChatResult:
            return ChatResult(generations=[ChatGeneration(message=inner.invoke(messages))])

    fake_llm.enqueue(Reply.text("routed"))
    assert Router().invoke("hi").content == "routed"
    assert [s.instrumentation_scope.name for s in lg.finished()] == [OPENAI_SCOPE]


def test_a_fault_in_agentwatch_never_reaches_the_application(
    lg: Signals,
    monkeypatch: pytest.MonkeyPatch,
    fake_llm: FakeLLMServer,
    groq: ChatGroq,
    internal_faults: Callable[[], list[str]],
) -> None:
    from agentwatch.instrumentation.langchain import _chat

    def broken(*args: Any) -> None:
        raise RuntimeError("agentwatch bug")

    monkeypatch.setattr(_chat, "read_message", broken)
    fake_llm.enqueue(Reply.text("fine", input_tokens=3, output_tokens=1), Reply.text("again"))
    with agentwatch.session() as session:
        assert groq.invoke("hi").content == "fine"
        assert groq.invoke("hi").content == "again"
    # Each span still ended, without what could not be read; the fault is logged once.
    assert [attrs(s).get("gen_ai.usage.input_tokens") for s in lg.finished("chat")] == [None, None]
    assert session.iterations == 2
    assert internal_faults() == ["reading a LangChain chat model response"]


def test_a_stream_dropped_unclosed_keeps_the_parent_and_session_of_its_start(
    lg: Signals, fake_llm: FakeLLMServer, groq: ChatGroq
) -> None:
    import gc

    fake_llm.enqueue(Reply.text("one two three four", chunks=4))
    with agentwatch.session("conv-drop"):
        stream = groq.stream("count")
        next(stream)
    del stream
    gc.collect()  # the stream is closed by the garbage collector, outside the session

    span = one(lg, f"chat {GROQ_MODEL}")
    parent = one(lg, "invoke_agent")
    assert span.parent is not None and span.parent.span_id == parent.context.span_id
    assert attrs(span)["gen_ai.conversation.id"] == "conv-drop"
    assert attrs(span)["agentwatch.stream.outcome"] == "closed"
