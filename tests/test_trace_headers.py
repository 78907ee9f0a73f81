"""Trace-context headers on LLM requests: every attempt, caller's dict untouched, host policy."""

from __future__ import annotations

import anthropic
import openai
import pytest
from opentelemetry.propagate import set_global_textmap
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from support import ANTHROPIC_KEY, ANTHROPIC_MODEL, NO_NATIVE, OPENAI_KEY, OPENAI_MODEL, Signals, user


def _ids(traceparent: str) -> tuple[str, str]:
    _version, trace_id, span_id, _flags = traceparent.split("-")
    return trace_id, span_id


def test_every_retry_attempt_carries_the_inference_span(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.error(500), Reply.error(503), Reply.text())
    headers = {"x-caller": "kept"}
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=2) as client:
        client.with_options(timeout=5).chat.completions.create(
            model=OPENAI_MODEL, messages=user(), extra_headers=headers
        )

    span = instrumented.only_span()
    assert span.context is not None
    expected = (format(span.context.trace_id, "032x"), format(span.context.span_id, "016x"))
    requests = fake_llm.requests
    assert len(requests) == 3
    assert [_ids(r.headers["traceparent"]) for r in requests] == [expected] * 3
    assert all(r.headers["x-caller"] == "kept" for r in requests)
    # The caller's dict is not mutated.
    assert headers == {"x-caller": "kept"}


def test_anthropic_requests_carry_the_span(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    with anthropic.Anthropic(
        base_url=fake_llm.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    ) as client:
        client.messages.create(model=ANTHROPIC_MODEL, max_tokens=32, messages=user())
    span = instrumented.only_span()
    assert span.context is not None
    assert _ids(fake_llm.requests[0].headers["traceparent"])[1] == format(span.context.span_id, "016x")


@pytest.mark.parametrize(
    ("hosts", "sent"),
    [
        ("*", True),
        ("none", False),
        ("api.openai.com, llm.internal", False),
        ("127.0.0.1", True),
        ("*.example.com", False),
    ],
)
def test_host_policy(
    signals: Signals, fake_llm: FakeLLMServer, hosts: str, sent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_PROPAGATE_HOSTS", hosts)
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
            client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    finally:
        agentwatch.uninstrument()
    assert ("traceparent" in fake_llm.requests[0].headers) is sent
    assert len(signals.finished()) == 1  # the span exists either way


def test_uses_the_global_propagator(instrumented: Signals, fake_llm: FakeLLMServer) -> None:
    class Marker(TraceContextTextMapPropagator):
        def inject(self, carrier, context=None, setter=None):  # type: ignore[no-untyped-def]
            carrier["x-marker"] = "1"

    from opentelemetry import propagate

    previous = propagate.get_global_textmap()
    set_global_textmap(CompositePropagator([TraceContextTextMapPropagator(), Marker()]))
    try:
        with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
            client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    finally:
        set_global_textmap(previous)
    assert fake_llm.requests[0].headers["x-marker"] == "1"
    assert "traceparent" in fake_llm.requests[0].headers


def test_uninstrumented_calls_of_the_same_client_get_no_header(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    """Only requests made inside an instrumented call are touched (e.g. not models.list)."""
    with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
        with pytest.raises(openai.NotFoundError):
            client.models.list()
        client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    assert "traceparent" not in fake_llm.requests[0].headers
    assert "traceparent" in fake_llm.requests[1].headers
