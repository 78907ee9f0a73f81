"""Helpers of the command-line tests (import as ``cli._support``): every command runs in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# The console script installed next to the interpreter running the tests (the project's venv).
AGENTWATCH = Path(sys.executable).parent / "agentwatch"
PYTHON_M = (sys.executable, "-m", "agentwatch")
TIMEOUT = 120.0


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without a developer's OTel/agentwatch settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_"))}
    env.update(extra or {})
    return env


def cache_dir(cwd: Path) -> Path:
    """The ``XDG_CACHE_HOME`` :func:`run` gives a command run in ``cwd``: next to it, not in it, so
    that a test sees what a command leaves in its working directory, and the developer's own
    cache is never touched."""
    return cwd.with_name(f"{cwd.name}-cache")


def demo_files(cwd: Path) -> list[Path]:
    """The files ``agentwatch demo`` wrote by default, run in ``cwd`` by :func:`run`."""
    return sorted((cache_dir(cwd) / "agentwatch" / "demo").glob("agentwatch-demo-*.jsonl"))


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env=clean_env({"XDG_CACHE_HOME": str(cache_dir(cwd)), **(env or {})}),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line parsed (a partial line would raise here)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def value(attribute_value: Mapping[str, Any]) -> Any:
    """The Python value of an OTLP JSON ``AnyValue``."""
    (kind, raw), *_ = attribute_value.items()
    if kind == "intValue":
        return int(raw)
    if kind == "arrayValue":
        return [value(v) for v in raw.get("values", [])]
    return raw


def attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    return {a["key"]: value(a["value"]) for a in item.get("attributes", [])}


def spans(lines: Sequence[Mapping[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(resource attributes, span) of every span of an OTLP JSON Lines file."""
    for line in lines:
        for resource_spans in line.get("resourceSpans", []):
            resource = attributes(resource_spans.get("resource", {}))
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    yield resource, span


def metric_names(lines: Sequence[Mapping[str, Any]]) -> set[str]:
    return {
        metric["name"]
        for line in lines
        for resource_metrics in line.get("resourceMetrics", [])
        for scope_metrics in resource_metrics.get("scopeMetrics", [])
        for metric in scope_metrics.get("metrics", [])
    }


# The lines of the summary whose wording the README shows (tables and the drawing vary by run).
_SHAPE_LINES = re.compile(
    r"^(\S.*|  .*(sessions ran in|requests sent for|sessions:|completion rate|p95 latency|: session |"
    r"marks: |again: |written as|list its sessions).*)$"
)


def summary_shape(text: str) -> list[str]:
    """The wording of the demo's summary, with what varies between runs (figures, ids, outcomes) masked."""
    shape = []
    for line in text.splitlines():
        if not _SHAPE_LINES.match(line):
            continue
        line = re.sub(r"[0-9a-f]{32}|[0-9a-f]{8}\b", "<id>", line)
        line = re.sub(r"demo-[0-9a-f]{6}-\d{4} \(\w+\) had .*", "<session>", line)
        line = re.sub(r"(to|traces) \S+agentwatch-demo-\S+\.jsonl", r"\1 <file>", line)
        line = re.sub(r"marks: .*", "marks: ...", line)
        # What depends on timing: which outcomes occurred, whether a fallback happened.
        line = re.sub(r"sessions: .*", "sessions: ...", line)
        line = re.sub(r" \(from .*\)$", "", line)
        shape.append(" ".join(re.sub(r"\d[\d,.]*", "#", line).split()))
    return shape
