"""The overhead benchmark still runs: ``benchmarks/run.py --quick`` in this interpreter.

Structure only, never timings: every item of the benchmark must produce its row, no item may
fail, and the results file and raw samples must be written. The numbers themselves are judged
by the full run (``python benchmarks/run.py``), not here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "benchmarks" / "run.py"

# (item number, text the row's label starts with): one row per benchmark item.
EXPECTED_ROWS = [
    ("1", "ideal: hand-written minimal wrapper"),
    ("1", "bare SDK span (18 attrs) + 4 histogram records"),
    ("2", "agentwatch: added per call"),
    ("2", "agentwatch added ÷ ideal added"),
    ("2", "of which the 4 histogram records"),
    ("3", "OpenAI stream: chunk path, parsed chunks replayed"),
    ("3", "OpenAI stream: amortised"),
    ("3", "Anthropic stream: chunk path, parsed chunks replayed"),
    ("3", "Anthropic stream: amortised"),
    ("4", "tool through no policy ÷ bare span"),
    ("4", "tool through `Policy()` defaults ÷ bare span"),
    ("4", "tool through the full policy ÷ bare span"),
    ("5", "memory: 300 non-streaming calls"),
    ("5", "memory: 50 streams read to the end"),
    ("5", "memory: 50 streams dropped unread"),
    ("5", "one open stream"),
]


@pytest.mark.slow
def test_quick_benchmark_produces_every_item(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    raw = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--here", "--results", str(results), "--json", str(raw)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    lines = done.stdout.splitlines()
    assert lines[0].split()[:4] == ["item", "what", "median", "P25–P75"], done.stdout
    rows = [line for line in lines[2:] if line.strip()]
    for item, label in EXPECTED_ROWS:
        matching = [
            row for row in rows if row.startswith(item) and row[len(item) :].strip().startswith(label)
        ]
        assert matching, f"no row for item {item} {label!r} in:\n{done.stdout}"
        assert "not measured" not in matching[0], matching[0]
        assert "not available" not in matching[0] or item == "4", matching[0]

    data = json.loads(raw.read_text(encoding="utf-8"))
    agentwatch = data["results"]["agentwatch"]
    assert agentwatch["errors"] == {}, agentwatch["errors"]
    expected_items = {
        "chat",
        "stream_openai",
        "stream_anthropic",
        "tool",
        "breakdown",
        "decomposition",
        "wrapper",
        "memory",
        "profile",
    }
    assert set(agentwatch["items"]) == expected_items
    chat = agentwatch["items"]["chat"]
    assert chat["spans_per_call"] == 1
    assert chat["measurements_per_call"] == 4
    # The ideal wrapper makes the span agentwatch makes (worker.item_chat checks its 4 records and
    # its traceparent), and every variant was measured in every round.
    assert chat["ideal_span_attribute_keys"] == chat["first_span_attribute_keys"]
    assert {name: len(values) for name, values in chat["samples"].items()} == {
        "bare": 3,
        "ideal": 3,
        "instrumented": 3,
    }

    text = results.read_text(encoding="utf-8")
    for heading in ("## Table", "## 2.", "## 3.", "## 4.", "## 5.", "## Versions"):
        assert heading in text, heading


@pytest.mark.slow
def test_quick_startup_benchmark_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# results\n\n## Goals\n\nper-call part\n", encoding="utf-8")
    raw = tmp_path / "startup.json"
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "benchmarks" / "startup.py"), "--quick"),
            *("--results", str(results), "--json", str(raw)),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = results.read_text(encoding="utf-8")
    # The section goes before the per-call part, which stays as it was (run.py keeps it likewise).
    assert text.index("## Start-up") < text.index("## Goals") and "per-call part" in text
    for row in (
        "`import openai`",
        "`opentelemetry-instrument python -c pass`",
        "every instrumentor disabled",
    ):
        assert row in text, row
    samples = json.loads(raw.read_text(encoding="utf-8"))["samples"]["here"]
    assert {len(runs) for runs in samples.values()} == {2}  # every measurement in both rounds
    for mode in ("app-sdk", "configure", "no-client"):
        assert all(run["clients_imported_by_agentwatch"] == [] for run in samples[mode]), mode
