"""Helpers shared by the test modules (importable as ``support``: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler

OPENAI_KEY = "sk-proj-TESTKEYopenai0123456789abcdefXYZ"
ANTHROPIC_KEY = "sk-ant-api03-TESTKEYanthropic0123456789abcdef"
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"

# anthropic >= 2 traces itself unless told not to; older versions have no such option.
ANTHROPIC_NATIVE_TRACING = "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters
NO_NATIVE: dict[str, Any] = {"open_telemetry": False} if ANTHROPIC_NATIVE_TRACING else {}


# APIs that only some supported SDK versions have (the compat runs use the oldest ones).
HAS_RESPONSES = importlib.util.find_spec("openai.resources.responses") is not None


def _completions_with(module: str, method: str) -> bool:
    try:
        return hasattr(importlib.import_module(module).Completions, method)
    except ImportError:
        return False


# parse() and stream() lived under `beta` from openai 1.40 to 1.91.
HAS_CHAT_PARSE = _completions_with("openai.resources.chat.completions", "parse") or _completions_with(
    "openai.resources.beta.chat.completions", "parse"
)
HAS_INCLUDE_USAGE = (
    "stream_options" in inspect.signature(openai.resources.chat.completions.Completions.create).parameters
)
needs_responses = pytest.mark.skipif(not HAS_RESPONSES, reason="this openai version has no Responses API")


def parse_api(client: Any) -> Any:
    """Where ``parse()`` and ``stream()`` of chat completions are in this openai version."""
    completions = client.chat.completions
    return completions if hasattr(completions, "parse") else client.beta.chat.completions


needs_chat_parse = pytest.mark.skipif(
    not HAS_CHAT_PARSE, reason="this openai version has no chat.completions.parse"
)


@contextmanager
def observed_in_place(*classes: type) -> Iterator[None]:
    """Streams of ``classes`` made meanwhile are observed in place, as agentwatch observes those
    whose class turns proxies away (anthropic 0.x's): that path, run with any SDK version."""
    from agentwatch._telemetry import _stream

    passes = _stream._PROXY_PASSES
    saved = {cls: passes[cls] for cls in classes if cls in passes}
    for cls in classes:
        passes[cls] = False
    try:
        yield
    finally:
        for cls in classes:
            if cls in saved:
                passes[cls] = saved[cls]
            else:
                passes.pop(cls, None)


def user(text: str = "Say hello") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@dataclass
class Signals:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    logs: InMemoryLogRecordExporter
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    @property
    def providers(self) -> dict[str, Any]:
        return {
            "tracer_provider": self.tracer_provider,
            "meter_provider": self.meter_provider,
            "logger_provider": self.logger_provider,
        }

    def finished(self, name_prefix: str = "") -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name.startswith(name_prefix)]

    def only_span(self, name_prefix: str = "") -> ReadableSpan:
        spans = self.finished(name_prefix)
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metric(self, name: str) -> Any:
        data = self.metrics.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        return m
        raise AssertionError(f"metric {name} was not recorded")

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        found: list[Any] = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        found.extend(m.data.data_points)
        return found

    def dump(self) -> str:
        """Every exported signal as text, for scanning (content, secrets)."""
        parts = [span.to_json() for span in self.spans.get_finished_spans()]
        data = self.metrics.get_metrics_data()
        if data is not None:
            parts.append(data.to_json())
        for log in self.logs.get_finished_logs():
            record = getattr(log, "log_record", log)
            parts.append(record.to_json() if hasattr(record, "to_json") else json.dumps(str(record)))
        return "\n".join(parts)


def json_documents(text: str) -> list[Any]:
    """Every top-level JSON object in ``text`` (what the console exporters print, one after another)."""
    decoder = json.JSONDecoder()
    documents, index = [], text.find("{")
    while index != -1:
        document, end = decoder.raw_decode(text, index)
        documents.append(document)
        index = text.find("{", end)
    return documents


def run_zero_code(directory: Path, app: str, config: str, **env: str) -> tuple[str, list[Any]]:
    """``app`` run as ``opentelemetry-instrument python app.py`` in ``directory``, configured by the
    ``config`` file ``AGENTWATCH_CONFIG`` names and ``env``, exporting spans and metrics (once, at
    shutdown) to the console: its stderr and what the exporters printed. It must exit 0."""
    (directory / "app.py").write_text(app)
    (directory / "agentwatch.toml").write_text(config)
    prefixes = ("OTEL_", "AGENTWATCH_", "OPENAI_")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(prefixes)},
        "AGENTWATCH_CONFIG": str(directory / "agentwatch.toml"),
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",  # one export, at shutdown
        **env,
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "opentelemetry-instrument"), sys.executable, "app.py"],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr, json_documents(result.stdout)


def internal_faults(caplog: pytest.LogCaptureFixture) -> list[str]:
    """agentwatch's internal-error reports of the test's setup and call (at teardown,
    ``caplog.records`` would hold the teardown's records only)."""
    return [
        r.getMessage()
        for when in ("setup", "call")
        for r in caplog.get_records(when)
        if r.name == "agentwatch" and "internal error" in r.getMessage()
    ]


def make_signals(sampler: Sampler | None = None) -> Signals:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=sampler) if sampler is not None else TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    return Signals(
        spans, reader, logs, tracer_provider, MeterProvider(metric_readers=[reader]), logger_provider
    )


# -- streams that fail mid-way, as the providers send them -----------------------------------------


def openai_chunk(content: object) -> str:
    """One chat completion chunk (SSE data) carrying ``content``."""
    return json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": OPENAI_MODEL,
            "created": 1,
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
        }
    )


def openai_stream_error(message: str, *, content: str = "Hel", code: str | None = None) -> Any:
    """A chat stream that sends one chunk, then an error object (the SDK raises ``APIError``)."""
    from agentwatch._fakellm import Reply

    error = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return Reply.sse([(None, openai_chunk(content)), (None, json.dumps(error))])


def anthropic_stream_error(error_type: str, message: str) -> Any:
    """A messages stream that starts, then sends an ``error`` event (the SDK raises ``APIStatusError``)."""
    from agentwatch._fakellm import Reply

    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 1},
        },
    }
    error = {"type": "error", "error": {"type": error_type, "message": message}}
    return Reply.sse([("message_start", json.dumps(start)), ("error", json.dumps(error))])
