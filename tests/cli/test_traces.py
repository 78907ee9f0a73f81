"""``agentwatch traces``: the sessions of an OTLP JSON Lines file, and one drawn as a waterfall.

The files are written by the demo's own OTLP JSON Lines exporter from spans the real SDK made
(agentwatch sessions, tools and policies, with faults), so the reader sees what it will read in use.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import agentwatch
from agentwatch._cli._spans import SpanEvent, SpanView, read_otlp_jsonl
from agentwatch._cli._waterfall import ASCII, UNICODE, find_trace, group_traces, render_waterfall
from agentwatch._demo._otel import JsonlSpanExporter, JsonlWriter
from agentwatch._telemetry import _core
from agentwatch.resilience import CircuitBreaker, Policy, Retry
from cli._support import AGENTWATCH, cache_dir, read_jsonl, run, spans

MS = 1_000_000


@pytest.fixture
def sessions_file(tmp_path: Path) -> Path:
    """Three agent sessions: a clean one, one whose flaky tool is retried, one whose critical tool fails."""
    path = tmp_path / "spans.jsonl"
    writer = JsonlWriter(path)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JsonlSpanExporter(writer)))
    previous = dict(_core._default_kwargs)
    _core.set_default_telemetry(tracer_provider=provider)
    attempts = {"n": 0}

    @agentwatch.tool(policy=Policy(timeout=None, retry=Retry(attempts=3, backoff=0.001, max_delay=0.001)))
    def flaky_search(query: str) -> str:
        attempts["n"] += 1
        if attempts["n"] % 2:
            raise ConnectionError("reset")
        return "found"

    @agentwatch.tool(policy=Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=5)))
    def broken_lookup(key: str) -> str:
        raise ValueError("bad key")

    try:
        with agentwatch.session(session_id="s-clean", agent_name="agent"):
            pass
        with agentwatch.session(session_id="s-retried", agent_name="agent"):
            flaky_search(query="q")
        with pytest.raises(ValueError), agentwatch.session(session_id="s-failed", agent_name="agent"):
            flaky_search(query="q")
            broken_lookup(key="k")
    finally:
        _core.set_default_telemetry(**previous)
        provider.shutdown()
        writer.close()
    return path


def _trace_ids(path: Path) -> dict[str, str]:
    """session id -> trace id, from the file itself."""
    found = {}
    for _, span in spans(read_jsonl(path)):
        for attribute in span.get("attributes", []):
            if attribute["key"] == "gen_ai.conversation.id" and span["name"].startswith("invoke_agent"):
                found[attribute["value"]["stringValue"]] = span["traceId"]
    return found


def test_lists_one_row_per_session(sessions_file: Path) -> None:
    result = run([AGENTWATCH, "traces", sessions_file], cwd=sessions_file.parent)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{sessions_file}: 3 traces, 6 spans"
    header = lines[1].split()
    assert header == [
        "trace",
        "session",
        "outcome",
        "start",
        "duration",
        "spans",
        "llm",
        "tools",
        "errors",
        "marks",
    ]
    rows = {line.split()[1]: line.split() for line in lines[2:5]}
    ids = _trace_ids(sessions_file)
    assert {session: row[0] for session, row in rows.items()} == ids
    assert rows["s-clean"][2] == "completed" and rows["s-clean"][-1] == "–"
    assert rows["s-retried"][2] == "completed" and rows["s-retried"][-1] == "retry"
    assert rows["s-failed"][2] == "error"
    assert rows["s-failed"][-2:] == ["error,", "retry"]
    assert f"agentwatch traces {sessions_file} --trace" in result.stdout


def test_draws_one_trace_by_prefix_or_session(sessions_file: Path) -> None:
    trace_id = _trace_ids(sessions_file)["s-failed"]
    by_prefix = run([AGENTWATCH, "traces", sessions_file, "--trace", trace_id[:6]], cwd=sessions_file.parent)
    by_session = run([AGENTWATCH, "traces", sessions_file, "--trace", "s-failed"], cwd=sessions_file.parent)
    assert by_prefix.returncode == 0, by_prefix.stderr
    assert by_prefix.stdout == by_session.stdout
    lines = by_prefix.stdout.splitlines()
    assert lines[0].startswith(f"trace {trace_id}, session s-failed (error), ")
    assert lines[0].endswith(", 3 spans")
    names = [re.sub(r"^  (?:[├└]─ )?", "", line).split("  ")[0] for line in lines[2:5]]
    assert names == ["invoke_agent agent", "execute_tool flaky_search", "execute_tool broken_lookup"]
    assert lines[3].startswith("  ├─ execute_tool flaky_search") and lines[4].startswith(
        "  └─ execute_tool broken_lookup"
    )
    assert "R" in lines[3] and "retry" in lines[3]  # the retry is marked on the bar and named
    assert "▒" in lines[4] and "✗ ValueError" in lines[4]  # a failed span, and why
    assert lines[-1] == "  marks: R retry; ▒▒ a span that failed"


@pytest.mark.parametrize(
    ("ident", "message"),
    [
        ("0000", "no trace id or session id '0000'"),
        ("s-nope", "no trace id or session id 's-nope'"),
    ],
)
def test_unknown_trace_exits_2(sessions_file: Path, ident: str, message: str) -> None:
    result = run([AGENTWATCH, "traces", sessions_file, "--trace", ident], cwd=sessions_file.parent)
    assert result.returncode == 2
    assert message in result.stderr and "usage: agentwatch traces" in result.stderr


def test_ambiguous_prefix_names_the_candidates() -> None:
    traces = group_traces([_span("aaaa1111" * 4, "1" * 16), _span("aaaa2222" * 4, "2" * 16)])
    with pytest.raises(LookupError, match=r"'aaaa' starts 2 trace ids .*give more characters"):
        find_trace(traces, "aaaa")
    assert find_trace(traces, "aaaa2").trace_id == "aaaa2222" * 4


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ('{"resourceMetrics": []}\n', "holds no spans"),
        ("not json at all\n", "holds no spans"),
    ],
)
def test_a_file_without_spans_exits_2(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    result = run([AGENTWATCH, "traces", path], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "OTLP JSON lines" in result.stderr


def test_a_partial_last_line_is_skipped_with_a_note(sessions_file: Path) -> None:
    with sessions_file.open("a") as file:
        file.write('{"resourceSpans": [{"scopeSp')
    result = run([AGENTWATCH, "traces", sessions_file], cwd=sessions_file.parent)
    assert result.returncode == 0
    assert "3 traces, 6 spans" in result.stdout
    assert "skipped 1 line(s)" in result.stderr


def test_without_a_file_it_reads_the_newest_demo_file(sessions_file: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    nothing = run([AGENTWATCH, "traces"], cwd=cwd)
    assert nothing.returncode == 2
    assert "no FILE given and no file of 'agentwatch demo' in" in nothing.stderr
    directory = cache_dir(cwd) / "agentwatch" / "demo"
    directory.mkdir(parents=True)
    older = directory / "agentwatch-demo-20200101-000000-aaaaaa.jsonl"
    older.write_text('{"resourceSpans": []}\n')
    os.utime(older, (1_600_000_000, 1_600_000_000))
    newest = directory / "agentwatch-demo-20200102-000000-bbbbbb.jsonl"
    newest.write_bytes(sessions_file.read_bytes())
    result = run([AGENTWATCH, "traces"], cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{newest}: 3 traces")


def test_protobuf_json_ids_in_base64_are_read_too(tmp_path: Path) -> None:
    """Some writers follow the protobuf JSON mapping (bytes as base64) instead of OTLP/JSON's hex."""
    trace = bytes(range(16))
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": base64.b64encode(trace).decode(),
                                "spanId": base64.b64encode(bytes(range(8))).decode(),
                                "name": "root",
                                "startTimeUnixNano": 1_000_000_000,
                                "endTimeUnixNano": 1_500_000_000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    path = tmp_path / "b64.jsonl"
    path.write_text(json.dumps(document) + "\n")
    (span,) = read_otlp_jsonl(path).spans
    assert span.trace_id == trace.hex()
    assert span.error and span.status_message == "boom"
    assert span.duration_ns == 500 * MS


# ------------------------------------------------------------------------------------------------
# The drawing
# ------------------------------------------------------------------------------------------------


def _span(
    trace_id: str,
    span_id: str,
    *,
    parent: str | None = None,
    name: str = "s",
    start: int = 0,
    end: int = 100,
    error: bool = False,
    events: tuple[SpanEvent, ...] = (),
    attributes: dict[str, object] | None = None,
) -> SpanView:
    return SpanView(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent,
        name=name,
        start_ns=start * MS,
        end_ns=end * MS,
        error=error,
        status_message="",
        attributes=attributes or {},
        events=events,
    )


TRACE = "ab" * 16


def _tree() -> list[SpanView]:
    return [
        _span(TRACE, "1" * 16, name="root", start=0, end=1000),
        _span(TRACE, "3" * 16, parent="1" * 16, name="second", start=500, end=1000),
        _span(TRACE, "2" * 16, parent="1" * 16, name="first", start=0, end=250),
        _span(
            TRACE,
            "4" * 16,
            parent="2" * 16,
            name="grandchild",
            start=100,
            end=200,
            error=True,
            events=(SpanEvent("retry", 150 * MS, {}),),
            attributes={"error.type": "TimeoutError"},
        ),
        _span(TRACE, "5" * 16, parent="3" * 16, name="late", start=900, end=1000),
    ]


def test_waterfall_is_the_tree_in_start_order_with_bars_on_one_time_axis() -> None:
    lines = render_waterfall(_tree(), width=100)
    header, *rows, legend = lines
    assert header.split()[:2] == ["span", "duration"] and header.rstrip().endswith("1.00 s")
    label_end = header.index("duration") - 2
    labels = [row[2:label_end].rstrip() for row in rows]
    assert labels == ["root", "├─ first", "│  └─ grandchild", "└─ second", "   └─ late"]
    bar_start = header.index("0 ")
    width = len(header) - bar_start  # the axis: "0 ... 1.00 s"
    bars = [row[bar_start : bar_start + width] for row in rows]
    assert bars[0] == "█" * width  # the root spans the whole axis
    # Each bar starts and ends where its span does on the common axis (0-250 ms, 500-1000 ms of 1 s).
    assert bars[1].rstrip() == "█" * math.ceil(width / 4)
    assert bars[3] == " " * (width // 2) + "█" * (width - width // 2)
    grandchild = bars[2].rstrip()  # 100-200 ms, failed, a retry at 150 ms
    assert (
        grandchild.lstrip() == grandchild.strip()
        and len(grandchild) - len(grandchild.lstrip()) == width // 10
    )
    assert grandchild.strip().replace("R", "▒") == "▒" * len(grandchild.strip())
    assert grandchild.index("R") == int(0.15 * width)
    assert rows[2].endswith("✗ TimeoutError, retry")
    assert legend == "  marks: R retry; ▒▒ a span that failed"


def test_waterfall_in_ascii_where_the_output_cannot_encode_box_drawing() -> None:
    lines = render_waterfall(_tree(), width=100, charset=ASCII)
    assert all(line.isascii() for line in lines)
    assert lines[3].startswith("  |  `- grandchild")
    assert ASCII is not UNICODE


def test_long_notes_wrap_under_themselves_and_narrow_terminals_put_them_below() -> None:
    events = tuple(
        SpanEvent(name, 10 * MS, {}) for name in ("retry", "circuit_opened", "fallback", "timeout")
    )
    spans_ = [_span(TRACE, "1" * 16, name="chat gpt-4o-mini", end=100, events=events, error=True)]
    wide = render_waterfall(spans_, width=90)
    assert all(len(line) <= 90 for line in wide)
    assert any(line.startswith(" " * 30) for line in wide[2:-1])  # a continuation line
    narrow = render_waterfall(spans_, width=50)
    assert narrow[1].rstrip().endswith(("█", "R", "C", "F", "T", "▒"))
    assert narrow[2].startswith("     ✗ error, retry")
    # In a tree, the notes go under their span with the tree's lines running past them.
    tree = render_waterfall(_tree(), width=50)
    at = next(i for i, line in enumerate(tree) if "grandchild" in line)
    assert tree[at + 1] == "  │        ✗ TimeoutError, retry"
    assert tree[at + 2].startswith("  └─ second")
