"""anthropic 2.x with default client options: its own tracing is on and uses the global provider.

Whether the SDK's span records depends on the process-wide tracer provider, which a test can set
only once per interpreter, so each case runs in a fresh one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from agentwatch._fakellm import FakeLLMServer, Reply
from support import ANTHROPIC_MODEL, ANTHROPIC_NATIVE_TRACING

pytestmark = pytest.mark.skipif(
    not ANTHROPIC_NATIVE_TRACING, reason="this anthropic version has no tracing of its own"
)

APP = textwrap.dedent(
    """
    import json, os
    import anthropic
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import agentwatch

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    if os.environ["APP_PROVIDER"] == "global":
        trace.set_tracer_provider(provider)
        agentwatch.instrument()
    else:
        agentwatch.instrument(tracer_provider=provider, configure_sdk=False)

    model = os.environ["APP_MODEL"]
    request = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    # No open_telemetry option: the SDK's defaults.
    with anthropic.Anthropic(
        base_url=os.environ["FAKE_ANTHROPIC_URL"], api_key="sk-ant-test", max_retries=0
    ) as client:
        client.messages.create(**request)
        for _ in client.messages.create(**request, stream=True):
            pass
        with client.messages.stream(**request) as stream:
            stream.get_final_message()
    print(json.dumps([
        {
            "name": s.name,
            "scope": s.instrumentation_scope.name,
            "span_id": format(s.context.span_id, "016x"),
            "attributes": dict(s.attributes),
        }
        for s in spans.get_finished_spans()
    ]))
    """
)


def _run(tmp_path: Path, server: FakeLLMServer, provider: str) -> list[dict[str, Any]]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    environment = {
        # Neither a developer's OTEL_* settings nor ANTHROPIC_OPEN_TELEMETRY may change the defaults.
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_", "ANTHROPIC_"))},
        "FAKE_ANTHROPIC_URL": server.anthropic_base_url,
        "APP_PROVIDER": provider,
        "APP_MODEL": ANTHROPIC_MODEL,
    }
    result = subprocess.run(
        [sys.executable, str(app)], env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    spans: list[dict[str, Any]] = json.loads(result.stdout)
    return spans


def _enqueue(server: FakeLLMServer) -> None:
    server.enqueue(Reply.text(output_tokens=10), Reply.text(output_tokens=11), Reply.text(output_tokens=12))


def _check_one_span_per_call(spans: list[dict[str, Any]], server: FakeLLMServer) -> None:
    assert len(spans) == 3, [(s["name"], s["scope"]) for s in spans]
    for span, output_tokens in zip(spans, (10, 11, 12), strict=True):
        assert span["name"] == f"chat {ANTHROPIC_MODEL}"
        assert span["attributes"]["gen_ai.usage.output_tokens"] == output_tokens
        assert span["attributes"]["gen_ai.response.finish_reasons"] == ["end_turn"]
        assert span["attributes"]["gen_ai.usage.cost.amount"] > 0
    # Each request carried the context of that one span, so the trace has no dangling parent.
    for request, span in zip(server.requests, spans, strict=True):
        assert request.headers["traceparent"].split("-")[2] == span["span_id"]


def test_no_global_provider_gives_agentwatchs_span(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    """The SDK's span goes to the unset global provider and records nothing: agentwatch's is the one."""
    _enqueue(fake_llm)
    spans = _run(tmp_path, fake_llm, "explicit")
    _check_one_span_per_call(spans, fake_llm)
    assert {s["scope"] for s in spans} == {"agentwatch.instrumentation.anthropic"}


def test_global_provider_gives_the_sdks_span_enriched(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    _enqueue(fake_llm)
    spans = _run(tmp_path, fake_llm, "global")
    _check_one_span_per_call(spans, fake_llm)
    for span in spans:
        # The SDK's own span, carrying what agentwatch adds to it.
        assert span["scope"].startswith("com.anthropic")
        assert span["attributes"]["gen_ai.request.max_tokens"] == 64
