"""Ground truth for the fleet test: the spans a demo run wrote to its OTLP JSON Lines file (every
span, before any sampling), what the gateways' tail sampling must keep of them, and a reader of
the Prometheus text the Collectors expose."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from . import _paths

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$")


def _events_row(starts: str) -> set[str]:
    readme = (_paths.REPO_ROOT / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith(starts))
    return set(re.findall(r"`([a-z_]+)`", row.split("|")[1]))


def documented_resilience_events() -> set[str]:
    """The span events of resilience decisions that changed a call (retried, cut, rejected,
    degraded), as the README's "Events and logs" table lists them: a trace with one is kept."""
    return _events_row("| `retry`, `retry_abandoned`")


def routine_resilience_events() -> set[str]:
    """The routine decisions of the same table (cache lookups, rate-limit waits): no reason to keep."""
    return _events_row("| `rate_limit_delayed`, `cache_hit`")


@dataclass(frozen=True)
class TraceFacts:
    trace_id: str
    spans: int
    spans_by_name_status: dict[tuple[str, str], int]
    error: bool
    resilience: bool
    duration_ms: int  # as the latency policy computes it: last end - first start, truncated
    session_cost: float | None  # gen_ai.usage.cost.amount of the invoke_agent span


_STATUS = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}


def _attribute(span: dict[str, Any], key: str) -> Any:
    for attribute in span.get("attributes", []):
        if attribute["key"] == key:
            return next(iter(attribute["value"].values()))
    return None


def read_traces(path: Path) -> dict[str, TraceFacts]:
    """Every trace of an OTLP JSON Lines file (trace ids in hex, as the demo writes them)."""
    spans: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        for resource_spans in json.loads(line).get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    spans[span["traceId"]].append(span)
    events = documented_resilience_events()
    facts = {}
    for trace_id, trace in spans.items():
        by_name_status: dict[tuple[str, str], int] = defaultdict(int)
        for span in trace:
            by_name_status[(span["name"], _STATUS[span.get("status", {}).get("code", 0)])] += 1
        roots = [s for s in trace if _attribute(s, "gen_ai.operation.name") == "invoke_agent"]
        cost = _attribute(roots[0], "gen_ai.usage.cost.amount") if roots else None
        start = min(int(s["startTimeUnixNano"]) for s in trace)
        end = max(int(s["endTimeUnixNano"]) for s in trace)
        facts[trace_id] = TraceFacts(
            trace_id=trace_id,
            spans=len(trace),
            spans_by_name_status=dict(by_name_status),
            error=any(s.get("status", {}).get("code") == 2 for s in trace),
            resilience=any(e["name"] in events for s in trace for e in s.get("events", [])),
            duration_ms=(end - start) // 1_000_000,
            session_cost=None if cost is None else float(cost),
        )
    return facts


def probabilistic_keeps(trace_id: str, percentage: float, salt: str = "default-hash-seed") -> bool:
    """The tail_sampling ``probabilistic`` policy's decision (contrib v0.140.1,
    internal/sampling/probabilistic.go): FNV-1a 64 of salt + trace id <= MaxUint64 * ratio."""
    digest = 0xCBF29CE484222325
    for byte in salt.encode() + bytes.fromhex(trace_id):
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    threshold = int(Fraction(percentage / 100) * (2**64 - 1))
    return digest <= threshold


def scrape(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample of a Prometheus text exposition."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"unparsable exposition line {line!r}")
        name, labels, value = match.groups()
        samples.append((name, dict(_LABEL.findall(labels or "")), float(value)))
    return samples


def total(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))
