"""One span per Bedrock call next to opentelemetry-instrumentation-botocore, in either load order.

The botocore instrumentor wraps ``BaseClient._make_api_call`` and, for Bedrock Runtime, makes a
GenAI ``chat`` span with its own duration and token metrics. agentwatch's hook sits on each
generated client class, so it runs first whichever instrumentor loaded last, and it suppresses
the botocore instrumentor for the operations it traces. Other operations keep botocore's span.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

import agentwatch
from _bedrock import CLAUDE, NOVA, apply_guardrail, converse_user, has_operation
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import Signals


def _botocore(signals: Signals) -> None:
    BotocoreInstrumentor().instrument(
        tracer_provider=signals.tracer_provider, meter_provider=signals.meter_provider
    )


def _agentwatch(signals: Signals) -> None:
    agentwatch.instrument(**signals.providers, configure_sdk=False)


@pytest.fixture(params=["botocore first", "agentwatch first"])
def both(request: pytest.FixtureRequest, signals: Signals, aws_environment: None) -> Iterator[Signals]:
    order: list[Callable[[Signals], None]] = [_botocore, _agentwatch]
    if request.param == "agentwatch first":
        order.reverse()
    for instrument in order:
        instrument(signals)
    try:
        yield signals
    finally:
        agentwatch.uninstrument()
        BotocoreInstrumentor().uninstrument()
        set_default_telemetry()


def _scopes_of(signals: Signals, metric: str) -> set[str]:
    data = signals.metrics.get_metrics_data()
    return {
        sm.scope.name
        for rm in (data.resource_metrics if data else ())
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == metric
    }


def test_one_span_per_bedrock_call(both: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    bedrock.converse(modelId=CLAUDE, messages=converse_user())
    for _event in bedrock.converse_stream(modelId=NOVA, messages=converse_user())["stream"]:
        pass
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []})
    bedrock.invoke_model(modelId=CLAUDE, body=body)["body"].read()

    spans = both.finished()
    assert [s.name for s in spans] == [f"chat {CLAUDE}", f"chat {NOVA}", f"chat {CLAUDE}"]
    assert {s.instrumentation_scope.name for s in spans if s.instrumentation_scope} == {
        "agentwatch.instrumentation.bedrock"
    }
    # Nor are the calls measured twice.
    assert _scopes_of(both, "gen_ai.client.operation.duration") == {"agentwatch.instrumentation.bedrock"}
    assert _scopes_of(both, "gen_ai.client.token.usage") == {"agentwatch.instrumentation.bedrock"}
    for request, span in zip(fake_llm.requests, spans, strict=True):
        # The botocore instrumentor's X-Ray header still goes out, carrying agentwatch's span.
        assert format(span.context.span_id, "016x") in request.headers["x-amzn-trace-id"]
        assert request.headers["traceparent"].split("-")[2] == format(span.context.span_id, "016x")


@pytest.mark.skipif(not has_operation("ApplyGuardrail"), reason="this botocore has no apply_guardrail")
def test_operations_agentwatch_does_not_trace_keep_botocores_span(
    both: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    with pytest.raises(ClientError):
        apply_guardrail(bedrock)
    (span,) = both.finished()
    assert span.name == "Bedrock Runtime.ApplyGuardrail"
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name.startswith("opentelemetry.instrumentation.botocore")


def test_botocores_own_span_when_agentwatch_is_off(
    signals: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    # The control: without agentwatch the botocore instrumentor does make a GenAI span.
    _botocore(signals)
    try:
        fake_llm.enqueue(Reply.text("hi"))
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    finally:
        BotocoreInstrumentor().uninstrument()
    (span,) = signals.finished()
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name.startswith("opentelemetry.instrumentation.botocore")
