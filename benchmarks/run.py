#!/usr/bin/env python3
"""agentwatch's overhead benchmark: one command sets up, runs every item, prints a table, writes RESULTS.md.

    python benchmarks/run.py            # full run: creates/updates benchmarks/.venvs, ~15-25 min
    python benchmarks/run.py --quick    # a few hundred calls per item, no peers, < 60 s, no network

The full run installs agentwatch (editable, from this checkout) and each peer instrumentation
into its own virtual environment under ``benchmarks/.venvs`` (reinstalled only when its
requirements file, or agentwatch's pyproject.toml, changes), runs ``worker.py`` in each, and
writes ``benchmarks/RESULTS.md``. ``--quick`` never creates an environment: it uses the agentwatch
bench environment if it is installed and current, else the interpreter running it, and gives no
verdicts (CI runs it so that the harness cannot rot). Only the standard library is used here.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENVS = HERE / ".venvs"
REQUIREMENTS = HERE / "requirements"

PEERS = ("openai-v2", "genai-openai", "openinference", "traceloop", "logfire", "openlit")
AGENTWATCH_ITEMS = (
    "chat",
    "stream_openai",
    "stream_anthropic",
    "tool",
    "breakdown",
    "decomposition",
    "wrapper",
    "memory",
    "profile",
)
PEER_ITEMS = ("chat", "stream_openai")

# Issue 15's goals. Per call: agentwatch's added time ÷ the ideal wrapper's (harness.Ideal), each
# measured against the bare call in the same rounds of the same process.
GOAL_IDEAL_RATIO = 1.15
STRETCH_IDEAL_RATIO = 1.10
GOAL_CHUNK_US = 1.5
# Tool calls: added time ÷ one bare span around the same function.
GOAL_TOOL_RATIOS = {
    "tool_no_policy": ("no policy", 1.5),
    "tool_default_policy": ("`Policy()` defaults", 2.0),
    "tool_policy": ("the full policy", 3.0),
}
# "No growth": the second half of the calls may leave at most this much more memory behind than
# the first half ended with (caches that fill once are done by then; a leak grows in both halves).
GOAL_GROWTH_BYTES_PER_CALL = 0.5
GROWTH_NOISE_BYTES = 4096

CLEAN_ENV_PREFIXES = (
    "OTEL_",
    "AGENTWATCH_",
    "TRACELOOP_",
    "OPENLIT_",
    "LOGFIRE_",
    "OPENINFERENCE_",
    "OPENAI_",
)
CLEAN_ENV_NAMES = ("ANTHROPIC_OPEN_TELEMETRY", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PYTHONPATH")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- environments --------------------------------------------------------------------------------


def venv_python(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def _stamp(name: str, python: str) -> str:
    digest = hashlib.sha256()
    digest.update((REQUIREMENTS / f"{name}.txt").read_bytes())
    if name == "agentwatch":
        digest.update((ROOT / "pyproject.toml").read_bytes())
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True, check=True
    ).stdout
    digest.update(version.encode())
    return digest.hexdigest()


def env_current(name: str, python: str) -> bool:
    stamp = VENVS / name / ".bench-stamp"
    return venv_python(name).exists() and stamp.exists() and stamp.read_text().strip() == _stamp(name, python)


def ensure_env(name: str, python: str) -> str | None:
    """Create or update one environment; None when it is ready, else why not."""
    if env_current(name, python):
        return None
    log(f"setting up benchmarks/.venvs/{name} ...")
    directory = VENVS / name
    if not venv_python(name).exists():
        subprocess.run([python, "-m", "venv", str(directory)], check=True)
    pip = [str(venv_python(name)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    args = ["-r", str(REQUIREMENTS / f"{name}.txt")]
    if name == "agentwatch":
        args += ["-e", f"{ROOT}[openai,anthropic]"]
    done = subprocess.run(pip + args, capture_output=True, text=True)
    if done.returncode != 0:
        return f"pip install failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
    (directory / ".bench-stamp").write_text(_stamp(name, python) + "\n")
    return None


def worker_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(CLEAN_ENV_PREFIXES) and k not in CLEAN_ENV_NAMES
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_worker(
    python: str, target: str, items: Sequence[str], mode: str, timeout: float, out_dir: str
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", dir=out_dir, delete=False) as handle:
        out = Path(handle.name)
    command = [
        python,
        str(HERE / "worker.py"),
        "--target",
        target,
        "--items",
        ",".join(items),
        "--mode",
        mode,
    ]
    command += ["--out", str(out)]
    log(f"running {target}: {', '.join(items)}")
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=worker_env(), timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"target": target, "items": {}, "errors": {"worker": f"timed out after {timeout:.0f} s"}}
    finally:
        log(f"  {target} done in {time.perf_counter() - started:.0f} s")
    if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        tail = (done.stderr or "").strip().splitlines()[-5:]
        return {
            "target": target,
            "items": {},
            "errors": {"worker": f"exit {done.returncode}: {' | '.join(tail)}"},
        }
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return result


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One target's processes as one result: samples of the same item concatenated (the chat
    item also keeps each process's own samples, in ``per_process``)."""
    merged: dict[str, Any] = {}
    for result in results:
        chat = result.get("items", {}).get("chat")
        if chat and "samples" in chat:
            # Each process is summarised on its own first (medians over several processes).
            chat["per_process"] = [chat["samples"]]
        if not merged:
            merged = json.loads(json.dumps(result))
            continue
        merged["errors"].update(result.get("errors", {}))
        for item, data in result.get("items", {}).items():
            mine = merged["items"].get(item)
            if mine is None:
                merged["items"][item] = data
            else:
                _concat(mine, data)
    return merged


def _concat(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _concat(into[key], value)
        elif (
            isinstance(value, list)
            and isinstance(into.get(key), list)
            and key not in ("metrics", "phases")
            and (key == "per_process" or all(isinstance(v, (int, float)) for v in value))
        ):
            into[key] = into[key] + value


# -- statistics ---------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def iqr(values: Sequence[float], digits: int = 1) -> str:
    """The middle half of the rounds: what a typical round gives, without the rounds hit by load."""
    if len(values) < 4:
        return "–"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.{digits}f}–{q[2]:.{digits}f}"


def spread(values: Sequence[float], digits: int = 1) -> str:
    if not values:
        return "–"
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}"


def pair(a: Sequence[float], b: Sequence[float], op: str) -> list[float]:
    out = []
    for x, y in zip(a, b, strict=False):
        if op == "-":
            out.append(x - y)
        elif y:
            out.append(x / y)
    return out


def fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


class Summary:
    """Medians and ranges of one target's items, computed from the raw round samples."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.items = result.get("items", {})

    def chat(self) -> dict[str, Any] | None:
        """Per process: the medians over its rounds; the report's median is over processes."""
        data = self.items.get("chat")
        if not data:
            return None
        processes = data.get("per_process") or [data["samples"]]
        out: dict[str, Any] = {k: [] for k in ("bare", "instrumented", "ideal", "added", "ratio")}
        for s in processes:
            added = med(pair(s["instrumented"], s["bare"], "-"))
            ideal = med(pair(s["ideal"], s["bare"], "-"))
            out["bare"].append(med(s["bare"]))
            out["instrumented"].append(med(s["instrumented"]))
            out["ideal"].append(ideal)
            out["added"].append(added)
            out["ratio"].append(added / ideal if ideal > 0 else math.nan)
        pooled = data["samples"]
        out.update(
            {
                "processes": len(processes),
                "rounds": len(pooled["bare"]),
                "rounds_added": pair(pooled["instrumented"], pooled["bare"], "-"),
                "rounds_ideal": pair(pooled["ideal"], pooled["bare"], "-"),
                "spans": data.get("spans_per_call"),
                "attributes": data.get("span_attributes_per_call"),
                "measurements": data.get("measurements_per_call"),
                "logs": data.get("log_records_per_call"),
                "keys": data.get("first_span_attribute_keys", []),
                "ideal_keys": data.get("ideal_span_attribute_keys", []),
            }
        )
        return out

    def stream(self, item: str) -> dict[str, Any] | None:
        data = self.items.get(item)
        if not data:
            return None
        chunks = data["chunks"]
        out: dict[str, Any] = {"chunks": chunks, "spans": data.get("spans_per_stream")}
        for mode in ("e2e", "replay"):
            bare, inst = data[mode]["bare"], data[mode]["instrumented"]
            out[mode] = {
                "bare_chunk": bare["chunk"],
                "chunk": pair(inst["chunk"], bare["chunk"], "-"),
                "end": pair(inst["end"], bare["end"], "-"),
                "start": pair(inst["start"], bare["start"], "-"),
                "amortised": [d / chunks for d in pair(inst["total"], bare["total"], "-")],
            }
        out["record_us"] = data.get("record_us", [])
        return out


# -- machine ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# -- the report ---------------------------------------------------------------------------------


def verdict(ok: bool | None, distance: str = "") -> str:
    if ok is None:
        return "–"
    return "**met**" if ok else f"**not met**{f' ({distance})' if distance else ''}"


def build(
    results: dict[str, dict[str, Any]], quick: bool, meta: dict[str, Any]
) -> tuple[list[list[str]], str]:
    """(table rows for the terminal, RESULTS.md text)."""
    aw = Summary(results.get("agentwatch", {"items": {}}))
    rows: list[list[str]] = []
    md: list[str] = []
    goals: list[list[str]] = []
    judge = not quick

    def row(
        item: str,
        what: str,
        values: Sequence[float],
        unit: str,
        goal: str = "",
        status: str = "",
        digits: int = 1,
        rounds: Sequence[float] | None = None,
    ) -> None:
        """``values``: one per process (median and min–max over them) or per round; ``rounds``:
        the pooled rounds, for the P25–P75 column when ``values`` are per process."""
        median = f"{fmt(med(values), digits)} {unit}".strip()
        quartiles = iqr(rounds if rounds is not None else values, digits)
        rows.append([item, what, median, quartiles, spread(values, digits), goal, status])

    # 1. the ideal wrapper: the floor of the per-call comparison
    chat = aw.chat()
    if chat and chat["keys"]:
        same = chat["ideal_keys"] == chat["keys"]
        meta["floor_matches"] = (
            f"The ideal wrapper's span has exactly the attribute keys of agentwatch's span ({len(chat['keys'])})."
            if same
            else f"Warning: agentwatch's span has the keys {chat['keys']}, the ideal's {chat['ideal_keys']}."
        )
    breakdown = aw.items.get("breakdown", {}).get("samples", {})
    if chat:
        row(
            "1",
            "ideal: hand-written minimal wrapper (same span, 4 records, traceparent), added per call",
            chat["ideal"],
            "µs",
            rounds=chat["rounds_ideal"],
        )
    else:
        rows.append(["1", "ideal wrapper", "not measured", "", "", _error(results, "agentwatch", "chat")])
    for key, label in (
        ("floor", "  bare SDK span (18 attrs) + 4 histogram records, tight loop"),
        ("span_only", "  of which the span"),
        ("record_7_attributes", "  one histogram record (7 attributes)"),
    ):
        if breakdown.get(key):
            row("1", label, breakdown[key], "µs")

    # 2. non-streaming chat call
    peers_ratio: dict[str, float] = {}
    for name, result in results.items():
        summary = Summary(result).chat()
        label = result.get("label", name)
        if summary is None:
            rows.append(
                ["2", f"{label}: added per call", "not available", "", "", _error(results, name, "chat")]
            )
            continue
        if name in PEERS:
            peers_ratio[name] = med(summary["ratio"])
        row("2", f"{label}: added per call", summary["added"], "µs", rounds=summary["rounds_added"])
    if chat:
        row("2", "bare chat.completions.create (agentwatch env)", chat["bare"], "µs")
        ratio = med(chat["ratio"])
        ok = ratio <= GOAL_IDEAL_RATIO if judge else None
        stretch = "" if not judge else (" (stretch ≤ 1.10 met)" if ratio <= STRETCH_IDEAL_RATIO else "")
        row(
            "2",
            "agentwatch added ÷ ideal added",
            chat["ratio"],
            "×",
            f"≤ {GOAL_IDEAL_RATIO}",
            verdict(ok, _dist(ratio, GOAL_IDEAL_RATIO)) + stretch,
            2,
        )
        goals.append(
            [
                f"per call ≤ {GOAL_IDEAL_RATIO} × the ideal wrapper (stretch {STRETCH_IDEAL_RATIO})",
                f"{ratio:.2f} × ({med(chat['added']):.0f} µs ÷ {med(chat['ideal']):.0f} µs; median of "
                f"{chat['processes']} processes, {spread(chat['ratio'], 2)} across them)",
                verdict(ok, _dist(ratio, GOAL_IDEAL_RATIO)) + stretch,
            ]
        )
        if peers_ratio:
            best = min(peers_ratio, key=lambda k: peers_ratio[k])
            fraction = ratio / peers_ratio[best]
            rows.append(
                [
                    "2",
                    f"agentwatch ÷ best peer ({results[best].get('label', best)}), in ideals",
                    f"{fraction:.2f} ×",
                    "",
                    "(≈ 0.88 at the goal)",
                    "",
                ]
            )

    decomposition = aw.items.get("decomposition")
    if decomposition and decomposition.get("available"):
        for label, values in _decompose(decomposition["samples"]):
            row("2", f"  {label}", values, "µs")

    # 3. streams
    for item, label in (("stream_openai", "OpenAI stream"), ("stream_anthropic", "Anthropic stream")):
        stream = aw.stream(item)
        if stream is None:
            rows.append(
                ["3", f"{label}: per chunk", "not measured", "", "", _error(results, "agentwatch", item)]
            )
            continue
        chunk = med(stream["replay"]["chunk"])
        ok = chunk <= GOAL_CHUNK_US if judge else None
        row(
            "3",
            f"{label}: chunk path, parsed chunks replayed",
            stream["replay"]["chunk"],
            "µs",
            f"≤ {GOAL_CHUNK_US}",
            verdict(ok, _dist(chunk, GOAL_CHUNK_US, "µs")),
            2,
        )
        row("3", f"{label}: chunk path, end to end (SDK parsing)", stream["e2e"]["chunk"], "µs", "", "", 2)
        amortised = med(stream["e2e"]["amortised"])
        row(
            "3",
            f"{label}: amortised incl. end-of-stream records",
            stream["e2e"]["amortised"],
            "µs",
            "(one record per chunk)",
            "",
            2,
        )
        goals.append(
            [
                f"chunk path ≤ {GOAL_CHUNK_US} µs ({label}, 1,000 chunks)",
                f"{chunk:.2f} µs; amortised with the per-chunk `time_per_output_chunk` records at the end {amortised:.2f} µs",
                verdict(ok, _dist(chunk, GOAL_CHUNK_US, "µs")),
            ]
        )

    # 4. tool
    tool = aw.items.get("tool")
    if tool and tool.get("available"):
        s = tool["samples"]
        span = pair(s["bare_span"], s["raw"], "-")
        row("4", "one bare span around the tool (same attributes)", span, "µs")
        for key, label in (
            ("tool_no_policy", "tool without policy: added"),
            ("tool_default_policy", "tool through `Policy()` defaults: added"),
            ("tool_policy_without_timeouts", "tool through retry+breaker+bulkhead (no timeouts): added"),
            ("tool_policy", "tool through the full policy: added"),
        ):
            if key in s:
                row("4", label, pair(s[key], s["raw"], "-"), "µs")
        for key, (label, goal) in GOAL_TOOL_RATIOS.items():
            if key not in s:
                continue
            added = pair(s[key], s["raw"], "-")
            ratio = pair(added, span, "/")
            ok = med(ratio) <= goal if judge else None
            row(
                "4",
                f"tool through {label} ÷ bare span",
                ratio,
                "×",
                f"≤ {goal}",
                verdict(ok, _dist(med(ratio), goal)),
                2,
            )
            goals.append(
                [
                    f"tool call through {label} ≤ {goal} × one bare span",
                    f"{med(ratio):.2f} × ({med(added):.0f} µs vs {med(span):.0f} µs)",
                    verdict(ok, _dist(med(ratio), goal)),
                ]
            )
    else:
        reason = (tool or {}).get("reason") or _error(results, "agentwatch", "tool") or "not measured"
        rows.append(["4", "tool call", "not available", "", "", reason[:80]])
        goals.append(["tool calls ≤ 1.5 / 2 / 3 × one bare span", f"not available: {reason}", "–"])

    # 5. memory
    memory = aw.items.get("memory")
    if memory:
        bare = memory.get("bare")
        bare_rate = 0.0
        if bare:
            bare_rate = max(bare["growth_kib"][-1] * 1024 / (bare["calls"] / len(bare["growth_kib"])), 0.0)
            rows.append(
                [
                    "5",
                    f"memory: {bare['calls']:,} calls without instrumentation",
                    f"{bare['growth_kib'][-1]:+.1f} KiB",
                    f"halves {', '.join(f'{g:+.1f}' for g in bare['growth_kib'])} KiB",
                    "(the SDK's own)",
                    "",
                ]
            )
        for index, phase in enumerate(memory["phases"]):
            growth = phase["growth_kib"]
            half = phase["calls"] / len(growth)
            second = growth[-1] * 1024 / half
            # Non-streaming calls: the SDK's own rate (measured without instrumentation) is allowed
            # for; a few KiB of noise (tracemalloc's own bookkeeping) is allowed for everywhere.
            allowance = GOAL_GROWTH_BYTES_PER_CALL + (bare_rate if index == 0 else 0.0)
            ok = (growth[-1] * 1024 <= max(allowance * half, GROWTH_NOISE_BYTES)) if judge else None
            rows.append(
                [
                    "5",
                    f"memory: {phase['calls']:,} {phase['label']}",
                    f"{growth[-1]:+.1f} KiB",
                    f"halves {', '.join(f'{g:+.1f}' for g in growth)} KiB",
                    f"≤ {allowance:.2f} B/call",
                    verdict(ok, f"{second:.2f} B/call"),
                ]
            )
            goals.append(
                [
                    f"no memory growth: {phase['calls']:,} {phase['label']}",
                    f"last half {growth[-1]:+.1f} KiB ({second:+.2f} B/call); still held by agentwatch's own lines: {phase['agentwatch_growth_bytes']:+,} B",
                    verdict(ok),
                ]
            )
    else:
        rows.append(["5", "memory growth", "not measured", "", "", _error(results, "agentwatch", "memory")])
    wrapper = aw.items.get("wrapper")
    if wrapper:
        held = pair(wrapper["bytes_per_stream"]["instrumented"], wrapper["bytes_per_stream"]["bare"], "-")
        row("5", "one open stream: memory agentwatch adds", held, "B", digits=0)
    else:
        rows.append(
            [
                "5",
                "open stream wrapper size",
                "not measured",
                "",
                "",
                _error(results, "agentwatch", "wrapper"),
            ]
        )

    md = _markdown(results, aw, rows, goals, quick, meta)
    return rows, md


def _decompose(s: dict[str, list[float]]) -> list[tuple[str, list[float]]]:
    """agentwatch's added time per call, part by part (each part: all on minus that part off)."""
    return [
        ("agentwatch in these rounds: added", pair(s["all"], s["bare"], "-")),
        ("of which the span (start, response attributes, end)", pair(s["all"], s["no_span"], "-")),
        ("of which the 4 histogram records", pair(s["all"], s["no_records"], "-")),
        ("of which trace-context injection", pair(s["all"], s["no_propagation"], "-")),
        ("the rest: agentwatch's own Python work", pair(s["python_only"], s["bare"], "-")),
    ]


def _dist(value: float, goal: float, unit: str = "×") -> str:
    if math.isnan(value) or value <= goal:
        return ""
    if unit == "×":
        return f"{value / goal:.2f} × the goal"
    return f"+{value - goal:.2f} {unit}"


def _error(results: dict[str, dict[str, Any]], target: str, item: str) -> str:
    errors = results.get(target, {}).get("errors", {})
    text = errors.get(item) or errors.get("setup") or errors.get("worker") or ""
    return text.strip().splitlines()[0][:100] if text else ""


TABLE_HEADER = ["item", "what", "median", "P25–P75", "min–max", "goal", "verdict"]


def _widen(row: list[str]) -> list[str]:
    """Rows written by hand have no P25–P75 column."""
    return row if len(row) == len(TABLE_HEADER) else [*row[:3], "", *row[3:]]


def table(rows: list[list[str]]) -> str:
    header = TABLE_HEADER
    rows = [_widen(r) for r in rows]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def _findings(results: dict[str, dict[str, Any]], aw: Summary) -> list[str]:
    """What explains each goal's result, in the numbers of this run (Profiles has the detail)."""
    out = ["## What the numbers say", ""]
    chat = aw.chat()
    if chat:
        ideal, added = med(chat["ideal"]), med(chat["added"])
        out.append(
            f"- **Non-streaming call.** agentwatch adds {added:.0f} µs to a {med(chat['bare']):.0f} µs call; the ideal "
            f"wrapper (the same span, records and traceparent, nothing else) adds {ideal:.0f} µs in the same rounds: "
            f"{med(chat['ratio']):.2f} × (median of {chat['processes']} processes of {chat['rounds'] // max(chat['processes'], 1):,} "
            f"rounds each; {spread(chat['ratio'], 2)} across processes)."
        )
        decomposition = aw.items.get("decomposition")
        if decomposition and decomposition.get("available"):
            parts = [med(values) for _, values in _decompose(decomposition["samples"])]
            out.append(
                f"  Taken apart inside real calls: the span {parts[1]:.0f} µs, the four histogram records "
                f"{parts[2]:.0f} µs (the SDK cleans and hashes the attributes of every record: {_record_us(aw)}), "
                f"trace-context injection {parts[3]:.0f} µs, and agentwatch's own Python work (wrapping, reading "
                f"the request and response, pricing, context) {parts[4]:.0f} µs. The profile of "
                "`chat.completions.create` below shows the same split."
            )
    peers = {n: Summary(r).chat() for n, r in results.items() if n in PEERS}
    measured = {n: s for n, s in peers.items() if s}
    if chat and measured:
        best = min(measured, key=lambda n: med(measured[n]["ratio"]))
        s = measured[best]
        out.append(
            f"- **Against the peers.** The cheapest peer, {results[best].get('label', best)}, adds "
            f"{med(s['added']):.0f} µs ({med(s['ratio']):.2f} × the ideal in its environment; agentwatch "
            f"{med(chat['ratio']):.2f}) with {s['attributes']} span attributes and {s['measurements']} metric records, "
            f"against agentwatch's {chat['attributes']} and {chat['measurements']}."
        )
        for word, names in (
            ("less", [n for n, p in measured.items() if med(p["ratio"]) > med(chat["ratio"])]),
            ("more", [n for n, p in measured.items() if med(p["ratio"]) <= med(chat["ratio"])]),
        ):
            if names:
                listed = ", ".join(
                    f"{results[n].get('label', n)} ({med(measured[n]['ratio']):.2f} × its ideal)"
                    for n in names
                )
                out.append(f"  agentwatch costs {word} than {listed}.")
    stream = aw.stream("stream_openai")
    if stream:
        chunk = med(stream["replay"]["chunk"])
        out.append(
            f"- **Streams.** The chunk path (what each `next()` costs) is {chunk:.2f} µs with parsed chunks "
            f"replayed ({'within' if chunk <= GOAL_CHUNK_US else 'over'} the {GOAL_CHUNK_US} µs goal). The "
            f"amortised cost is {med(stream['e2e']['amortised']):.1f} µs per chunk because the end of the stream "
            "records one `gen_ai.client.operation.time_per_output_chunk` value per chunk after the first, as the "
            f"conventions define it, and one SDK record costs {med(stream['record_us']):.1f} µs. agentwatch keeps "
            "those records out of the chunk path (it collects the gaps and records them once the stream ends)."
        )
    tool = aw.items.get("tool")
    if tool and tool.get("available"):
        t = tool["samples"]
        span = med(pair(t["bare_span"], t["raw"], "-"))
        parts = {
            key: med(pair(t[key], t["raw"], "-"))
            for key in (
                "tool_no_policy",
                "tool_default_policy",
                "tool_policy_without_timeouts",
                "tool_policy",
            )
            if key in t
        }
        out.append(
            f"- **Tool call.** One bare span costs {span:.0f} µs. The tool adds "
            + ", ".join(
                f"{us:.0f} µs {key.replace('tool_', '').replace('_', ' ')}" for key, us in parts.items()
            )
            + ". The tool profile below shows where."
        )
    memory = aw.items.get("memory")
    if memory:
        phases = memory["phases"]
        text = "- **Memory.** Growth in the last half of each phase: " + ", ".join(
            f"{p['label']} {p['growth_kib'][-1]:+.1f} KiB over {p['calls'] // 2:,}" for p in phases
        )
        bare = memory.get("bare")
        if bare:
            text += f"; the SDK alone, without instrumentation: {bare['growth_kib'][-1]:+.1f} KiB over {bare['calls'] // 2:,} calls"
        held = max(p["agentwatch_growth_bytes"] for p in phases)
        out.append(
            text + f". agentwatch's own source lines hold at most {held:+,} B more at the end of a phase."
        )
    out.append("")
    return out


def _record_us(aw: Summary) -> str:
    breakdown = aw.items.get("breakdown", {}).get("samples", {})
    if breakdown.get("record_7_attributes"):
        return f"{med(breakdown['record_7_attributes']):.1f} µs per record in a tight loop"
    return "about 10 µs per record"


def _markdown(
    results: dict[str, dict[str, Any]],
    aw: Summary,
    rows: list[list[str]],
    goals: list[list[str]],
    quick: bool,
    meta: dict[str, Any],
) -> str:
    m = meta["machine"]
    md = [
        "# agentwatch overhead benchmark: results",
        "",
        f"Generated by `{meta['command']}` on {meta['date']} ({'quick mode: no verdicts' if quick else 'full run'}), "
        f"{meta['seconds'] / 60:.1f} min.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}, Python {m['python']}.",
        f"- Load average (1/5/15 min) before: {meta['load_before']}; after: {meta['load_after']}. "
        "Other work on the machine shares both cores; see Method for how the numbers resist that.",
        "- Times are CPU µs of the benchmark process per call. Non-streaming calls: the median over several "
        "processes of each process's median over thousands of interleaved rounds (min–max: across processes; "
        "P25–P75: across all rounds). Other items: median over rounds, min–max over rounds.",
    ]
    if meta.get("floor_matches"):
        md.append(f"- {meta['floor_matches']}")
    md.append("")
    if goals:
        md += ["## Goals", "", *_md_table(["goal", "measured", "verdict"], goals), ""]
    if not quick:
        md += _findings(results, aw)
    md += ["## Table", "", *_md_table(TABLE_HEADER, [_widen(r) for r in rows]), ""]

    # item 2 detail
    md += ["## 2. One non-streaming `chat.completions.create` on a mocked transport", ""]
    detail = []
    for name, result in results.items():
        s = Summary(result).chat()
        versions = result.get("versions", {})
        if s is None:
            detail.append(
                [
                    result.get("label", name),
                    versions.get("openai", "?"),
                    "–",
                    "–",
                    "not available: " + _error(results, name, "chat"),
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        detail.append(
            [
                result.get("label", name),
                versions.get("openai", "?"),
                f"{med(s['bare']):.0f}",
                f"{med(s['instrumented']):.0f}",
                f"**{med(s['added']):.0f}** ({spread(s['added'], 0)})",
                f"{med(s['ideal']):.0f}",
                f"{med(s['ratio']):.2f} ({spread(s['ratio'], 2)})",
                f"{s['spans']} / {s['attributes']}",
                str(s["measurements"]),
                result.get("note", ""),
            ]
        )
    md += _md_table(
        [
            "instrumentation",
            "openai",
            "bare µs",
            "instrumented µs",
            "added µs (min–max over processes)",
            "ideal added µs",
            "added ÷ ideal (min–max)",
            "spans / attributes",
            "metric records",
            "configuration",
        ],
        detail,
    )
    md += [
        "",
        "Each environment measures its own bare call, the ideal wrapper and its own instrumented call in the same "
        "rounds of the same processes; ratios to the ideal make environments comparable when the machine's load "
        "changes between them.",
        "",
    ]

    decomposition = aw.items.get("decomposition")
    if decomposition and decomposition.get("available"):
        md += [
            "### Where agentwatch's added time goes, inside real calls",
            "",
            "Each part is the instrumented call minus the same call with that part switched off "
            '(no-op histograms, a no-op tracer, `propagate_hosts="none"`); "the rest" has all three off. '
            "The parts overlap a little (garbage collection and cache effects are shared), so they need not add up exactly.",
            "",
        ]
        md += _md_table(
            ["part", "µs per call", "P25–P75", "min–max"],
            [
                [label, f"{med(v):.1f}", iqr(v), spread(v)]
                for label, v in _decompose(decomposition["samples"])
            ],
        )
        md += [""]
    elif decomposition:
        md += [f"Decomposition not available: {decomposition.get('reason')}", ""]

    # item 3 detail
    md += ["## 3. Streams: cost per chunk (1,000 chunks)", ""]
    stream_rows = []
    for name, result in results.items():
        for item, label in (("stream_openai", "OpenAI"), ("stream_anthropic", "Anthropic")):
            st = Summary(result).stream(item)
            if st is None:
                continue
            stream_rows.append(
                [
                    f"{result.get('label', name)} ({label})",
                    f"{med(st['e2e']['bare_chunk']):.1f}",
                    f"{med(st['replay']['chunk']):.2f} ({spread(st['replay']['chunk'], 2)})",
                    f"{med(st['e2e']['chunk']):.2f} ({spread(st['e2e']['chunk'], 2)})",
                    f"{med(st['e2e']['end']):.0f}",
                    f"{med(st['e2e']['amortised']):.2f}",
                    str(st["spans"]),
                ]
            )
    md += _md_table(
        [
            "instrumentation",
            "bare µs per chunk (SDK parsing)",
            "chunk path µs, replayed",
            "chunk path µs, end to end",
            "end of stream µs",
            "amortised µs per chunk",
            "spans",
        ],
        stream_rows,
    )
    st_aw = aw.stream("stream_openai")
    if st_aw and st_aw["record_us"]:
        md += [
            "",
            f"One `time_per_output_chunk` record costs {med(st_aw['record_us']):.1f} µs in the SDK (6 attributes): the "
            "conventions ask for one value per chunk after the first, so the end of a 1,000-chunk stream makes 999 of them. "
            "agentwatch records them at the end of the stream, not in the chunk path; the amortised figure includes them.",
        ]
    md += [""]

    # item 4 detail
    tool = aw.items.get("tool")
    md += ["## 4. Tool call through the full policy (timeout + retry + breaker + bulkhead, success path)", ""]
    if tool and tool.get("available"):
        s = tool["samples"]
        md += _md_table(
            ["variant", "µs per call (min–max)"],
            [[k.replace("_", " "), f"{med(v):.1f} ({spread(v)})"] for k, v in s.items()],
        )
        md += [
            "",
            f"Policy: `{tool.get('policy', '?')}`; the tool span has {tool.get('span_attributes')} attributes.",
            "",
        ]
    else:
        md += [f"Not available: {(tool or {}).get('reason') or _error(results, 'agentwatch', 'tool')}", ""]

    # item 5 detail
    memory = aw.items.get("memory")
    md += ["## 5. Memory", ""]
    if memory:
        md += [
            "tracemalloc (1 frame) after a warm-up; spans go to a SimpleSpanProcessor whose exporter drops them (an "
            "in-memory exporter would keep every span: the exporter's memory, not agentwatch's); metrics stay in an "
            "in-memory reader (bounded by attribute sets). Each phase runs in two halves; a leak grows in both, a cache "
            "that fills once only in the first.",
            "",
        ]
        phase_rows = []
        for phase in ([memory["bare"]] if memory.get("bare") else []) + memory["phases"]:
            top = ", ".join(f"{t['file']} {t['size_diff']:+,} B" for t in phase["top_growth"][:4])
            phase_rows.append(
                [
                    f"{phase['calls']:,} {phase['label']}",
                    " → ".join(f"{x:,.0f}" for x in phase["traced_kib"]),
                    ", ".join(f"{g:+.1f}" for g in phase["growth_kib"]),
                    f"{phase['agentwatch_growth_bytes']:+,}",
                    top,
                ]
            )
        md += _md_table(
            [
                "phase",
                "traced KiB",
                "growth per half KiB",
                "agentwatch lines B",
                "largest growth (whole phase)",
            ],
            phase_rows,
        )
        md += [""]
    wrapper = aw.items.get("wrapper")
    if wrapper:
        bare = wrapper["bytes_per_stream"]["bare"]
        inst = wrapper["bytes_per_stream"]["instrumented"]
        md += [
            f"One open (unread) OpenAI stream holds {med(bare):,.0f} B without instrumentation and {med(inst):,.0f} B with "
            f"agentwatch (tracemalloc over {wrapper['streams']} open streams): agentwatch adds {med(pair(inst, bare, '-')):,.0f} B, "
            "the span included. Shallow sizes of what it adds: "
            + ", ".join(f"{k} {v} B" for k, v in wrapper.get("objects", {}).items())
            + ".",
            "",
        ]

    # profiles
    profiles = aw.items.get("profile", {}).get("profiles", [])
    if profiles:
        md += [
            "## Profiles",
            "",
            "Where agentwatch's time goes (pyinstrument; only agentwatch's frames and what they call):",
            "",
        ]
        for profile in profiles:
            md += [f"### {profile['title']}", "", "```", profile["text"], "```", ""]

    # versions
    md += ["## Versions", ""]
    version_rows = []
    for name, result in results.items():
        versions = result.get("versions", {})
        version_rows.append(
            [
                result.get("label", name),
                ", ".join(f"{k} {v}" for k, v in versions.items()),
                result.get("python", "?"),
            ]
        )
    md += _md_table(["environment", "packages", "python"], version_rows)
    patched = [[r.get("label", n), ", ".join(r["patched"])] for n, r in results.items() if r.get("patched")]
    if patched:
        md += ["", "What each peer patched (switched off and on between rounds, see targets.py):", ""]
        md += _md_table(["peer", "patched attributes"], patched)
    errors = [
        [r.get("label", n), k, (v or "").strip().splitlines()[0][:160] if v else ""]
        for n, r in results.items()
        for k, v in r.get("errors", {}).items()
    ]
    if errors:
        md += ["", "Errors:", "", *_md_table(["environment", "item", "error"], errors)]
    md += [
        "",
        (HERE / "METHOD.md").read_text(encoding="utf-8").strip() if (HERE / "METHOD.md").exists() else "",
    ]
    return "\n".join(md).rstrip() + "\n"


# -- RESULTS.md: the start-up section is startup.py's ---------------------------------------------

STARTUP_BEGIN = "<!-- start-up: written by benchmarks/startup.py; run.py keeps it as it is -->"
STARTUP_END = "<!-- end of start-up -->"


def startup_block(text: str) -> str | None:
    """The start-up section of a RESULTS.md, markers included, if it has one."""
    begin, end = text.find(STARTUP_BEGIN), text.find(STARTUP_END)
    if begin == -1 or end < begin:
        return None
    return text[begin : end + len(STARTUP_END)]


def with_startup_block(text: str, block: str) -> str:
    """``text`` with ``block`` in place of its start-up section, or before its first ``##`` section."""
    old = startup_block(text)
    if old is not None:
        return text.replace(old, block)
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
    return "\n".join([*lines[:first], block, "", *lines[first:]])


def write_keeping_startup(path: Path, markdown: str) -> None:
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    block = startup_block(old)
    path.write_text(with_startup_block(markdown, block) if block else markdown, encoding="utf-8")


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few hundred calls per item, no peers, no verdicts"
    )
    parser.add_argument("--here", action="store_true", help="run in this interpreter, create no environment")
    parser.add_argument(
        "--peers", default=None, help="comma-separated peers (default: all in a full run, none in --quick)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=None,
        help="worker processes per environment for items 2-3, targets in alternating order (default 3; 1 quick)",
    )
    parser.add_argument(
        "--results",
        default=None,
        help="where to write the markdown (default: benchmarks/RESULTS.md; none in --quick)",
    )
    parser.add_argument("--json", default=None, help="also write every raw sample to this file")
    parser.add_argument(
        "--report-from",
        default=None,
        metavar="JSON",
        help="run nothing: rebuild the table and RESULTS.md from a file written by --json",
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter the environments are created from"
    )
    args = parser.parse_args(argv)

    if args.report_from:
        saved = json.loads(Path(args.report_from).read_text(encoding="utf-8"))
        quick = saved["meta"]["command"].endswith("--quick")
        rows, markdown = build(saved["results"], quick, saved["meta"])
        print(table(rows))
        path = args.results or str(HERE / "RESULTS.md")
        write_keeping_startup(Path(path), markdown)
        log(f"wrote {path}")
        return 0

    started = time.perf_counter()
    mode = "quick" if args.quick else "full"
    load_before = load()
    if args.peers is None:
        peers: list[str] = [] if args.quick else list(PEERS)
    else:
        peers = [p for p in args.peers.split(",") if p and p != "none"]
        if peers == ["all"]:
            peers = list(PEERS)
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))} (known: {', '.join(PEERS)})")

    pythons: dict[str, str] = {}
    problems: dict[str, str] = {}
    if args.here:
        pythons["agentwatch"] = sys.executable
    elif args.quick:
        aw_env = venv_python("agentwatch")
        pythons["agentwatch"] = str(aw_env) if env_current("agentwatch", args.python) else sys.executable
    else:
        VENVS.mkdir(exist_ok=True)
        for name in ("agentwatch", *peers):
            problem = ensure_env(name, args.python)
            if problem is None:
                pythons[name] = str(venv_python(name))
            else:
                problems[name] = problem
    for peer in peers:
        if peer in pythons or peer in problems:
            continue
        if args.here or not env_current(peer, args.python):
            problems[peer] = "its environment is not installed (run without --quick/--here to create it)"
        else:
            pythons[peer] = str(venv_python(peer))

    timeout = 240.0 if args.quick else 3600.0
    processes = args.processes or (1 if args.quick else 3)
    runs: dict[str, list[dict[str, Any]]] = {}
    out_dir = tempfile.mkdtemp(prefix="agentwatch-bench-")
    order = [t for t in ("agentwatch", *peers) if t in pythons]

    def run(target: str, items: Sequence[str], python_of: str | None = None) -> None:
        python = pythons[python_of or target]
        runs.setdefault(target, []).append(run_worker(python, target, items, mode, timeout, out_dir))

    for index in range(processes):
        targets = order if index % 2 == 0 else list(reversed(order))
        for target in targets:
            run(target, PEER_ITEMS)
        if index == 0 and "agentwatch" in pythons:
            run("agentwatch", [i for i in AGENTWATCH_ITEMS if i not in ("chat", "stream_openai")])
            if not args.quick:
                run("agentwatch-capture", ("chat",), python_of="agentwatch")

    results: dict[str, dict[str, Any]] = {name: merge(r) for name, r in runs.items()}
    for name, problem in problems.items():
        results[name] = {"target": name, "label": name, "items": {}, "errors": {"setup": problem}}

    meta = {
        "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_before": load_before,
        "load_after": load(),
        "seconds": time.perf_counter() - started,
    }
    rows, markdown = build(results, args.quick, meta)
    print(table(rows))
    results_path = args.results or (None if args.quick else str(HERE / "RESULTS.md"))
    if results_path:
        write_keeping_startup(Path(results_path), markdown)
        log(f"wrote {results_path}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": results}, indent=1, default=str), encoding="utf-8"
        )
    shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
