"""Real provider traffic (tests/fixtures/replay/litellm, see SOURCES.md there) replayed to LiteLLM
and to the openai SDK pointed at the provider: the same results with and without agentwatch, one
span, the attributes the recorded response implies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import openai
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

import agentwatch
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.tools import ToolRegistry
from instrumentation._litellm_support import KEY, litellm, replay
from instrumentation.test_openai_hosts import ToFakeServer
from support import Signals, make_signals, user

pytestmark = pytest.mark.usefixtures("litellm_setup")

T = TypeVar("T")


@pytest.fixture
def signals_and_server() -> Callable[[Callable[[FakeLLMServer], T]], tuple[T, T, Signals]]:
    def run(scenario: Callable[[FakeLLMServer], T]) -> tuple[T, T, Signals]:
        """``scenario`` bare, then instrumented, each against a fresh server serving the same replay."""
        with FakeLLMServer() as server:
            bare = scenario(server)
        signals = make_signals()
        agentwatch.instrument(**signals.providers, configure_sdk=False)
        try:
            with FakeLLMServer() as server:
                instrumented = scenario(server)
                trace_headers = [r.headers.get("traceparent") for r in server.requests]
        finally:
            agentwatch.uninstrument()
            set_default_telemetry()
        (span,) = signals.finished()
        ids = f"{span.context.trace_id:032x}-{span.context.span_id:016x}"
        assert [h.split("-", 1)[1].rsplit("-", 1)[0] if h else None for h in trace_headers] == [ids]
        return bare, instrumented, signals

    return run


def _dump(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _chunks(stream: Any) -> list[Any]:
    return [_dump(chunk) for chunk in stream]


def _attrs(signals: Signals) -> dict[str, Any]:
    return dict(signals.only_span().attributes or {})


def _price(tokens_in: int, tokens_out: int, model: str, provider_id: str) -> float:
    return float(
        calc_price(
            GPUsage(input_tokens=tokens_in, output_tokens=tokens_out),
            model_ref=model,
            provider_id=provider_id,
        ).total_price
    )


def _litellm_stream(server: FakeLLMServer, model: str) -> list[Any]:
    return _chunks(
        litellm.completion(
            model=model, messages=user(), api_base=server.openai_base_url, api_key=KEY, stream=True
        )
    )


def _openai_at(server: FakeLLMServer, base_url: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url,
        api_key=KEY,
        max_retries=0,
        http_client=httpx.Client(transport=ToFakeServer(server)),
    )


# -- Groq ----------------------------------------------------------------------------------------


def test_groq_chat_through_litellms_openai_provider_at_groqs_host(
    signals_and_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``openai/<model>`` with Groq's base URL: LiteLLM calls it with the openai SDK, and the call
    is Groq's. (LiteLLM's own ``groq/`` provider cannot read this recorded response: it expects a
    ``service_tier`` that Groq did not send then.)"""

    def scenario(server: FakeLLMServer) -> Any:
        server.enqueue(replay("groq_chat.json"))
        # LiteLLM's openai provider sends through litellm.client_session when one is set. It caches
        # its openai clients by their settings: a key of this server's own gets a new one.
        with httpx.Client(transport=ToFakeServer(server)) as session:
            monkeypatch.setattr(litellm, "client_session", session)
            return _dump(
                litellm.completion(
                    model="openai/llama3-8b-8192",
                    messages=user(),
                    api_base="https://api.groq.com/openai/v1",
                    api_key=f"{KEY}-{server.url}",
                )
            )

    bare, instrumented, signals = signals_and_server(scenario)
    assert instrumented == bare
    found = _attrs(signals)
    assert {k: v for k, v in found.items() if k != "gen_ai.usage.cost.amount"} == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "groq",
        "gen_ai.request.model": "llama3-8b-8192",
        "server.address": "api.groq.com",
        "server.port": 443,
        "gen_ai.response.id": "chatcmpl-645691ff-34af-4d0f-a1c1-fe888f8685cc",
        "gen_ai.response.model": "llama3-8b-8192",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 18,
        "gen_ai.usage.output_tokens": 43,
        "gen_ai.usage.cost.currency": "USD",
    }
    assert found["gen_ai.usage.cost.amount"] == pytest.approx(
        _price(18, 43, "llama3-8b-8192", "groq"), rel=1e-9
    )


def test_groq_chat_through_the_openai_sdk_at_groqs_host(signals_and_server: Any) -> None:
    def scenario(server: FakeLLMServer) -> Any:
        server.enqueue(replay("groq_chat.json"))
        with _openai_at(server, "https://api.groq.com/openai/v1") as client:
            return _dump(client.chat.completions.create(model="llama3-8b-8192", messages=user()))

    bare, instrumented, signals = signals_and_server(scenario)
    assert instrumented == bare
    found = _attrs(signals)
    assert found["gen_ai.provider.name"] == "groq"
    assert (found["server.address"], found["server.port"]) == ("api.groq.com", 443)
    assert (found["gen_ai.usage.input_tokens"], found["gen_ai.usage.output_tokens"]) == (18, 43)
    assert found["gen_ai.usage.cost.amount"] == pytest.approx(
        _price(18, 43, "llama3-8b-8192", "groq"), rel=1e-9
    )


def test_groq_stream_through_litellm(signals_and_server: Any) -> None:
    def scenario(server: FakeLLMServer) -> Any:
        server.enqueue(replay("groq_chat_stream.sse"))
        return _litellm_stream(server, "groq/llama3-8b-8192")

    bare, instrumented, signals = signals_and_server(scenario)
    assert _strip_ids(instrumented) == _strip_ids(bare)
    found = _attrs(signals)
    assert found["gen_ai.provider.name"] == "groq"
    assert found["gen_ai.response.id"] == "chatcmpl-532a6640-2e18-4a4c-8406-8437a857ce48"
    assert found["gen_ai.response.finish_reasons"] == ("stop",)
    assert found["agentwatch.stream.outcome"] == "completed"
    # Groq reported this stream's usage only in its own x_groq object, which LiteLLM does not
    # read: no usage, rather than LiteLLM's token-count estimate.
    assert "gen_ai.usage.input_tokens" not in found
    assert "gen_ai.usage.cost.amount" not in found


# -- Mistral -------------------------------------------------------------------------------------


def test_mistral_stream_through_litellm_and_the_openai_sdk(signals_and_server: Any) -> None:
    def through_litellm(server: FakeLLMServer) -> Any:
        server.enqueue(replay("mistral_chat_stream.sse"))
        return _litellm_stream(server, "mistral/mistral-tiny")

    def through_openai(server: FakeLLMServer) -> Any:
        server.enqueue(replay("mistral_chat_stream.sse"))
        with _openai_at(server, "https://api.mistral.ai/v1") as client:
            return _chunks(client.chat.completions.create(model="mistral-tiny", messages=user(), stream=True))

    for scenario in (through_litellm, through_openai):
        bare, instrumented, signals = signals_and_server(scenario)
        assert _strip_ids(instrumented) == _strip_ids(bare)
        found = _attrs(signals)
        assert found["gen_ai.provider.name"] == "mistral_ai"
        assert found["gen_ai.request.model"] == "mistral-tiny"
        # Mistral sends usage in the finishing chunk unasked.
        assert (found["gen_ai.usage.input_tokens"], found["gen_ai.usage.output_tokens"]) == (11, 80)
        assert found["agentwatch.stream.outcome"] == "completed"


# -- Gemini, through LiteLLM's own handler ------------------------------------------------------


def test_gemini_stream_sends_its_request_at_the_first_read_with_the_calls_context(
    signals_and_server: Any,
) -> None:
    """LiteLLM starts a Gemini stream when it is first read, after ``completion`` has returned."""

    def scenario(server: FakeLLMServer) -> Any:
        server.enqueue(replay("gemini_stream.sse"))
        stream = litellm.completion(
            model="gemini/gemini-2.0-flash-exp",
            messages=user(),
            api_base=server.url + "/v1beta",  # as Gemini's own base URL ends
            api_key="AIza-test",
            stream=True,
        )
        assert server.requests == []  # nothing sent yet
        return [chunk.choices[0].delta.content for chunk in stream]

    bare, instrumented, signals = signals_and_server(scenario)  # checks the request's traceparent too
    assert instrumented == bare
    assert "".join(c for c in bare if c) == "The capital of France is Paris.\n"
    found = _attrs(signals)
    assert found["gen_ai.provider.name"] == "gcp.gemini"
    assert found["gen_ai.request.model"] == "gemini-2.0-flash-exp"
    assert (found["gen_ai.usage.input_tokens"], found["gen_ai.usage.output_tokens"]) == (13, 8)
    assert found["agentwatch.stream.outcome"] == "completed"


def test_gemini_function_call_runs_through_the_tool_registry(fake_llm: FakeLLMServer) -> None:
    """LiteLLM hands Gemini's functionCall to the application in OpenAI's shape: the registry takes it."""
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    registry = ToolRegistry()

    @registry.register
    def get_user_country() -> str:
        return "France"

    try:
        fake_llm.enqueue(replay("gemini_function_call.json"))
        response = litellm.completion(
            model="gemini/gemini-2.0-flash",
            messages=user(),
            api_base=fake_llm.url + "/v1beta",
            api_key="AIza-test",
        )
        (tool_call,) = response.choices[0].message.tool_calls
        assert registry.call_tool_call(tool_call) == "France"
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    chat, tool = signals.finished()
    assert chat.name == "chat gemini-2.0-flash"
    assert dict(chat.attributes or {})["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert dict(tool.attributes or {})["gen_ai.tool.call.id"] == tool_call.id


def _strip_ids(chunks: list[Any]) -> list[Any]:
    # LiteLLM gives each stream chunk a fresh created time; ids are the provider's.
    return [{k: v for k, v in c.items() if k != "created"} if isinstance(c, dict) else c for c in chunks]
