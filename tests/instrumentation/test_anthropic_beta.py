"""``client.beta.messages`` (create, stream, parse) and ``messages.parse``: one span per call.

The beta resource posts to ``/v1/messages?beta=true`` without going through ``messages.create``,
so it needs its own wrappers; with anthropic's own tracing on, its span (also named
``anthropic.messages.create``) is adopted like that of ``messages``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import anthropic
import pydantic
import pytest

from agentwatch._fakellm import FakeLLMServer, Reply
from support import ANTHROPIC_KEY, ANTHROPIC_MODEL, ANTHROPIC_NATIVE_TRACING, Signals, user

HAS_BETA_MESSAGES = importlib.util.find_spec("anthropic.resources.beta") is not None and hasattr(
    importlib.import_module("anthropic.resources.beta"), "Messages"
)
pytestmark = [
    pytest.mark.usefixtures("instrumented"),
    pytest.mark.skipif(not HAS_BETA_MESSAGES, reason="this anthropic version has no beta messages"),
]

REQUEST: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": user()}


class City(pydantic.BaseModel):
    city: str


def _has(method: str) -> bool:
    return HAS_BETA_MESSAGES and hasattr(importlib.import_module("anthropic.resources.beta").Messages, method)


def _parse(resource: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        # Some versions deprecate output_format for output_config (the request is the same).
        warnings.simplefilter("ignore", DeprecationWarning)
        return resource.parse(**kwargs, output_format=City)


def _json_schema_kwargs(method: Any) -> dict[str, Any]:
    """A raw JSON schema for structured output, in whichever form this SDK version takes."""
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    params = inspect.signature(method).parameters
    if "output_config" in params:
        return {"output_config": {"format": {"type": "json_schema", "schema": schema}}}
    if "output_format" in params:
        return {"output_format": {"type": "json_schema", "schema": schema}}
    pytest.skip("this anthropic version has no structured outputs")


@pytest.fixture(params=["sdk tracing off", "sdk tracing on"])
def client(request: pytest.FixtureRequest, fake_llm: FakeLLMServer, instrumented: Signals) -> Iterator[Any]:
    native = request.param == "sdk tracing on"
    if native and not ANTHROPIC_NATIVE_TRACING:
        pytest.skip("this anthropic version has no tracing of its own")
    options: dict[str, Any] = {}
    if ANTHROPIC_NATIVE_TRACING:
        options["open_telemetry"] = {"tracer_provider": instrumented.tracer_provider} if native else False
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **options
    ) as c:
        c.native = native  # type: ignore[attr-defined]
        yield c


def test_beta_messages_get_one_span_per_call(
    client: Any, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(
        Reply.text("one", output_tokens=1),
        Reply.text("two", output_tokens=2),
        Reply.text("three", output_tokens=3),
        Reply.text('{"city": "Oslo"}', output_tokens=4),
    )
    client.beta.messages.create(**REQUEST)
    for _ in client.beta.messages.create(**REQUEST, stream=True):
        pass
    with client.beta.messages.stream(**REQUEST) as stream:
        stream.get_final_message()
    calls = 3
    if _has("parse"):
        parsed = _parse(client.beta.messages, **REQUEST)
        assert parsed.parsed_output == City(city="Oslo")
        calls = 4

    spans = instrumented.finished()
    assert len(spans) == calls
    expected_scope = "com.anthropic" if client.native else "agentwatch.instrumentation.anthropic"
    for n, span in enumerate(spans, start=1):
        attrs = dict(span.attributes or {})
        assert span.name == f"chat {ANTHROPIC_MODEL}"
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name.startswith(expected_scope)
        assert attrs["gen_ai.request.max_tokens"] == 64
        assert attrs["gen_ai.usage.output_tokens"] == n
        assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
        assert attrs["gen_ai.usage.cost.amount"] > 0
    streamed = [dict(s.attributes or {}) for s in spans[1:3]]
    assert [a["gen_ai.request.stream"] for a in streamed] == [True, True]
    if calls == 4:
        assert dict(spans[3].attributes or {})["gen_ai.output.type"] == "json"
    # Every request carried the trace context of its (one) span.
    for request, span in zip(fake_llm.requests, spans, strict=True):
        assert request.path == "/v1/messages"
        assert span.context is not None
        assert request.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.count == calls


def test_beta_structured_outputs_are_json(
    client: Any, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text('{"city": "Oslo"}'), Reply.text('{"city": "Rome"}'))
    client.beta.messages.create(**REQUEST, **_json_schema_kwargs(client.beta.messages.create))
    with client.beta.messages.stream(**REQUEST, **_json_schema_kwargs(client.beta.messages.stream)) as stream:
        stream.get_final_message()

    for span in instrumented.finished():
        assert dict(span.attributes or {})["gen_ai.output.type"] == "json"
    assert len(instrumented.finished()) == 2


@pytest.mark.skipif(not _has("parse"), reason="this anthropic version has no beta.messages.parse")
@pytest.mark.anyio
async def test_async_beta_messages(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("one"), Reply.text("two"), Reply.text('{"city": "Oslo"}'))
    options: dict[str, Any] = {"open_telemetry": False} if ANTHROPIC_NATIVE_TRACING else {}
    async with anthropic.AsyncAnthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **options
    ) as client:
        await client.beta.messages.create(**REQUEST)
        async with client.beta.messages.stream(**REQUEST) as stream:
            _ = [text async for text in stream.text_stream]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            await client.beta.messages.parse(**REQUEST, output_format=City)

    spans = instrumented.finished()
    assert [s.name for s in spans] == [f"chat {ANTHROPIC_MODEL}"] * 3
    assert dict(spans[1].attributes or {})["agentwatch.stream.outcome"] == "completed"
    assert dict(spans[2].attributes or {})["gen_ai.output.type"] == "json"


@pytest.mark.skipif(
    not hasattr(anthropic.resources.messages.Messages, "parse"), reason="no messages.parse in this version"
)
def test_messages_parse_is_instrumented(
    anthropic_client: anthropic.Anthropic, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text('{"city": "Oslo"}', output_tokens=6))
    parsed = _parse(anthropic_client.messages, **REQUEST)

    assert parsed.parsed_output == City(city="Oslo")
    attrs = dict(instrumented.only_span().attributes or {})
    assert attrs["gen_ai.output.type"] == "json"
    assert attrs["gen_ai.usage.output_tokens"] == 6
    assert "gen_ai.request.stream" not in attrs
