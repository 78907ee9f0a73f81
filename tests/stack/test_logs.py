"""The details events (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=EVENT_ONLY``) go through
the real Collector's logs pipeline and arrive where the README says: in the Collector's own output
(``docker compose logs otel-collector``), one ``gen_ai.client.inference.operation.details`` record
per LLM call, linked to its chat span. Before the pipeline existed, the export failed with
``UNIMPLEMENTED ... LogsService`` and the events were lost.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from ._harness import http_json, wait_until
from ._stack import Stack
from ._workload import DemoRun, clean_env, run_demo_cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SERVICE = "agentwatch-events"
DETAILS_EVENT = "gen_ai.client.inference.operation.details"


@pytest.fixture(autouse=True)
def _attach_process_logs(request: pytest.FixtureRequest, stack: Stack) -> None:
    request.node.stack_log_tails = stack.log_tails


@pytest.fixture(scope="module")
def event_run(stack: Stack) -> DemoRun:
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=stack.otlp_grpc_endpoint,
        OTEL_SERVICE_NAME=SERVICE,
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="EVENT_ONLY",
    )
    return run_demo_cli("--sessions", "4", "--fault-rate", "0", "--seed", "3", env=env)


def _records(log_text: str) -> list[dict[str, Any]]:
    """The log records the debug exporter printed (verbosity detailed): event name, ids, attributes."""
    records = []
    for chunk in re.split(r"^LogRecord #\d+\n", log_text, flags=re.MULTILINE)[1:]:
        chunk = re.split(
            r"^(?:LogRecord|ScopeLogs|ResourceLog) #\d+|^\S.*\t(?:info|warn|error)\t",
            chunk,
            flags=re.MULTILINE,
        )[0]
        event = re.search(r"^EventName: (\S+)$", chunk, re.MULTILINE)
        trace = re.search(r"^Trace ID: ([0-9a-f]*)$", chunk, re.MULTILINE)
        span = re.search(r"^Span ID: ([0-9a-f]*)$", chunk, re.MULTILINE)
        attributes = dict(re.findall(r"^\s+-> ([\w.]+): (.*)$", chunk, re.MULTILINE))
        records.append(
            {
                "event": event.group(1) if event else None,
                "trace_id": trace.group(1) if trace else "",
                "span_id": span.group(1) if span else "",
                "attributes": attributes,
                "text": chunk,
            }
        )
    return records


def _chat_spans(stack: Stack, run: DemoRun) -> set[tuple[str, str]]:
    body = http_json(
        f"{stack.jaeger_url}/api/traces",
        {
            "service": SERVICE,
            "limit": "100",
            "start": str(int((run.started_at - 60) * 1e6)),
            "end": str(int((time.time() + 60) * 1e6)),
        },
        timeout=10,
    )
    return {
        (span["traceID"], span["spanID"])
        for trace in body["data"] or []
        for span in trace["spans"]
        if span["operationName"].startswith("chat ")
    }


def test_details_events_arrive_in_the_collector_output(stack: Stack, event_run: DemoRun) -> None:
    calls = sum(row["calls"] for row in event_run.summary["models"])
    assert calls > 0
    assert "UNIMPLEMENTED" not in event_run.stderr and "LogsService" not in event_run.stderr, event_run.stderr

    def all_chats() -> set[tuple[str, str]] | None:
        found = _chat_spans(stack, event_run)
        return found if len(found) == calls else None

    chats = wait_until(all_chats, timeout=60, what=f"{calls} chat spans of {SERVICE} in Jaeger")

    def details() -> list[dict[str, Any]] | None:
        text = stack.collector_process.log_path.read_text(encoding="utf-8", errors="replace")
        found = [
            r
            for r in _records(text)
            if r["event"] == DETAILS_EVENT and (r["trace_id"], r["span_id"]) in chats
        ]
        return found if len(found) >= calls else None

    records = wait_until(
        details, timeout=30, what=f"{calls} {DETAILS_EVENT} records in the Collector's output"
    )
    # One per LLM call, each on its chat span, with the call's attributes and its messages.
    assert sorted((r["trace_id"], r["span_id"]) for r in records) == sorted(chats)
    for record in records:
        attributes = record["attributes"]
        assert attributes.get("gen_ai.operation.name") == "Str(chat)", record["text"]
        assert "gen_ai.input.messages" in attributes, record["text"]
        assert "gen_ai.output.messages" in attributes, record["text"]
