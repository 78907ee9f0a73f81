"""``agentwatch demo`` end to end, in subprocesses: the README commands, determinism, Ctrl-C, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch._demo import FaultModel, build_plan, plan_digest
from agentwatch._demo._otel import otlp_endpoint
from cli._support import (
    AGENTWATCH,
    PYTHON_M,
    REPO,
    attributes,
    cache_dir,
    clean_env,
    demo_files,
    metric_names,
    read_jsonl,
    run,
    spans,
    summary_shape,
)

TOOLS = ("search_knowledge_base", "get_user_preferences", "fetch_related_content")


def _int(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return int(match.group(1).replace(",", ""))


def test_readme_demo_command(tmp_path: Path) -> None:
    """`agentwatch demo` exactly as the README says: 30 sessions, a summary, an OTLP JSON Lines file."""
    result = run([AGENTWATCH, "demo"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    _readme_sample_has_the_shape_of(out)
    for section in ("LLM calls by model", "Tool calls", "Sessions", "Interesting trace", "Telemetry"):
        assert f"\n{section}" in out
    # What the figure covers is said: the sessions, then the whole run with start-up and export.
    timing = re.search(
        r"30 of 30 sessions ran in ([\d.]+) s \(([\d.]+) s in all, with start-up and the final export\)", out
    )
    assert timing is not None, out
    assert 0 < float(timing.group(1)) <= float(timing.group(2))
    assert _int(r"\n  ([\d,]+) sessions: ", out) == 30
    # The number of requests the metrics say were sent is the number the fake server received.
    received = _int(r"received (\d+) requests", out)
    assert _int(r"([\d,]+) requests sent for [\d,]+ calls", out) == received
    calls = _int(r"[\d,]+ requests sent for ([\d,]+) calls", out)
    streamed = _int(r"requests sent for [\d,]+ calls \(([\d,]+) streamed\)", out)
    for tool in TOOLS:
        assert re.search(rf"^  {tool} +\d+ ", out, re.MULTILINE), tool

    # The telemetry file is in the cache directory, named in the summary; nothing is left in the
    # working directory.
    (path,) = demo_files(tmp_path)
    assert f"written as OTLP JSON lines to {path}\n" in out
    assert f"list its sessions: agentwatch traces {path}" in out
    assert list(tmp_path.iterdir()) == []
    lines = read_jsonl(path)
    found = list(spans(lines))
    names = Counter(span["name"] for _, span in found)
    assert names["invoke_agent support-agent"] == 30
    assert names["chat gpt-4o-mini"] == calls  # one chat span per call, retries and fallbacks inside it
    chat_spans = [attributes(span) for _, span in found if span["name"].startswith("chat ")]
    assert 0 < streamed == sum(1 for attrs in chat_spans if "gen_ai.response.time_to_first_chunk" in attrs)
    assert {f"execute_tool {tool}" for tool in TOOLS} <= set(names)
    assert {resource["service.name"] for resource, _ in found} == {"agentwatch-demo"}
    assert {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.cost",
        "gen_ai.execute_tool.duration",
        "agentwatch.sessions",
        "agentwatch.session.duration",
        "agentwatch.resilience.events",
        "agentwatch.circuit.state",
    } <= metric_names(lines)

    by_id = {span["spanId"]: span for _, span in found}
    for _, span in found:
        attrs = attributes(span)
        if attrs["gen_ai.operation.name"] == "execute_tool":
            parent = by_id[span["parentSpanId"]]
            assert parent["name"] == "invoke_agent support-agent"
            assert attrs["gen_ai.tool.call.id"].startswith("call_")
            assert attrs["gen_ai.conversation.id"] == attributes(parent)["gen_ai.conversation.id"]
    # The scripted faults happened: the flaky critical tool was retried; the optional tool whose
    # dependency goes down mid-run opened its breaker, degraded to its fallback, then recovered.
    events = Counter((span["name"], event["name"]) for _, span in found for event in span.get("events", []))
    assert events["execute_tool search_knowledge_base", "retry"] > 0
    for event in ("circuit_opened", "fallback", "circuit_closed"):
        assert events["execute_tool fetch_related_content", event] > 0, event
    # The session numbers are there.
    assert re.search(r"completion rate [\d.]+% \(SLO 95%\)", out), out
    assert re.search(
        r"p95 latency [\d.]+ s \(SLO 15 s\), p95 cost \$[\d.]+ .*, p95 iterations [\d.]+", out
    ), out
    # The interesting trace is one of the sessions, and something happened in it.
    trace_id = re.search(r"trace ([0-9a-f]{32}): session (\S+) \((\w+)\) had (.+)", out)
    assert trace_id is not None, out
    sessions = {span["traceId"]: span for _, span in found if span["name"].startswith("invoke_agent")}
    assert attributes(sessions[trace_id.group(1)])["gen_ai.conversation.id"] == trace_id.group(2)
    assert set(trace_id.group(4).split(", ")) & {"retry", "fallback", "error"}
    # ... and it is drawn: one row per span of that trace, the session span first.
    section = out.split("\nInteresting trace\n", 1)[1].split("\n\nTelemetry", 1)[0].splitlines()
    in_trace = [span for _, span in found if span["traceId"] == trace_id.group(1)]
    rows = [line for line in section if re.match(r"^  (invoke_agent|[├└]─ )", line)]
    assert len(rows) == len(in_trace)
    assert rows[0].startswith("  invoke_agent support-agent ")
    assert any(line.startswith("  marks: ") for line in section)
    assert f"again: agentwatch traces {path} --trace {trace_id.group(1)[:8]}" in out
    # No prompt, completion or tool content without content capture.
    text = path.read_text(encoding="utf-8")
    assert "support assistant" not in text and "Here is what I found" not in text
    assert "help article" not in text  # a tool argument value


_SAMPLE_START = "<!-- demo-sample: generated by scripts/update-readme-demo.py from a real run -->\n```\n"


def _readme_sample_has_the_shape_of(out: str) -> None:
    """The README's demo sample is a real run of this code: the same plan, consistent figures, and
    every sentence of the summary as the code writes it today (scripts/update-readme-demo.py)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sample = readme.split(_SAMPLE_START, 1)[1].split("\n```\n", 1)[0]
    assert f"plan {plan_digest(build_plan(7, 30, FaultModel(rate=0.1)))}" in sample
    assert _int(r"received (\d+) requests", sample) == _int(r"([\d,]+) requests sent for", sample)
    ran = re.search(r"30 of 30 sessions ran in ([\d.]+) s \(([\d.]+) s in all", sample)
    assert ran is not None and float(ran.group(1)) <= float(ran.group(2))
    outcomes = re.search(r"30 sessions: (.*)", sample)
    assert outcomes is not None
    assert sum(int(part.split()[0]) for part in outcomes.group(1).split(", ")) == 30
    assert "~/.cache/agentwatch/demo/agentwatch-demo-" in sample
    assert summary_shape(sample) == summary_shape(out)


def _tool_calls(path: Path) -> dict[str, set[tuple[str, str]]]:
    """Per session number (the run id differs between runs): the first round's tool calls."""
    calls: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for _, span in spans(read_jsonl(path)):
        attrs = attributes(span)
        call_id = attrs.get("gen_ai.tool.call.id", "")
        if call_id.startswith("call_") and call_id.split("_")[2] == "0":
            calls[attrs["gen_ai.conversation.id"].rsplit("-", 1)[1]].add((attrs["gen_ai.tool.name"], call_id))
    return dict(calls)


def _json_demo(tmp_path: Path, name: str, seed: int) -> tuple[dict[str, Any], Path]:
    output = tmp_path / f"{name}.jsonl"
    result = run(
        [
            *PYTHON_M,
            "demo",
            *("--sessions", "5", "--concurrency", "5", "--seed", str(seed)),
            "--json",
            "--no-progress",
            "--output",
            output,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), output


def test_same_seed_same_sessions(tmp_path: Path) -> None:
    first, first_file = _json_demo(tmp_path, "first", 11)
    second, second_file = _json_demo(tmp_path, "second", 11)
    assert first["plan_digest"] == second["plan_digest"]
    faults = FaultModel(rate=0.1)
    assert (
        first["plan_digest"]
        == plan_digest(build_plan(11, 5, faults))
        != plan_digest(build_plan(12, 5, faults))
    )
    calls = _tool_calls(first_file)
    assert len(calls) == 5
    assert calls == _tool_calls(second_file)
    for document, path in ((first, first_file), (second, second_file)):
        summary = document["summary"]
        assert document["sessions_finished"] == summary["sessions"]["total"] == 5
        assert summary["llm"]["requests"] == document["llm_server_requests"]
        chats = sum(1 for _, span in spans(read_jsonl(path)) if span["name"].startswith("chat "))
        assert sum(row["calls"] for row in summary["models"]) == chats
        assert document["output"] == str(path)


@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_cleanly_with_summary_and_flushed_file(
    tmp_path: Path, sent: signal.Signals, code: int
) -> None:
    output = tmp_path / "interrupted.jsonl"
    with subprocess.Popen(
        [str(AGENTWATCH), "demo", "--sessions", "400", "--concurrency", "2", "--output", str(output)],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        seen = []
        # Wait for the first progress line: sessions are running (and have ended) by then.
        while not any(line.startswith("sessions ") for line in seen):
            line = process.stderr.readline()
            assert line, f"demo ended before reporting progress: {seen}"
            seen.append(line)
        process.send_signal(sent)
        out, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err
    ran = _int(r"interrupted: (\d+) of 400 sessions ran", out)
    assert 0 < ran < 400
    assert "\nSessions" in out and "\nTool calls" in out
    lines = read_jsonl(output)  # every line complete
    sessions = [span for _, span in spans(lines) if span["name"] == "invoke_agent support-agent"]
    assert len(sessions) == ran
    assert metric_names(lines) >= {"agentwatch.sessions", "gen_ai.client.operation.duration"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--sessions", "0"], "argument --sessions: must be an integer >= 1, got '0'"),
        (["demo", "--sessions", "many"], "argument --sessions: must be an integer >= 1, got 'many'"),
        (
            ["demo", "--fault-rate", "1.5"],
            "argument --fault-rate: must be a number between 0 and 1, got '1.5'",
        ),
        (["demo", "--duration", "-3"], "argument --duration: must be a number of seconds > 0, got '-3'"),
        (["demo", "--seed", "x"], "argument --seed: must be an integer, got 'x'"),
        (["demo", "--output", "no-such-dir/run.jsonl"], "directory 'no-such-dir' does not exist"),
        (["demo", "--bogus"], "usage: agentwatch demo "),
        (["demo", "--bogus"], "agentwatch demo: error: unrecognized arguments: --bogus"),
        (["doctor", "--bogus"], "usage: agentwatch doctor "),
        (["traces", "a.jsonl", "b.jsonl"], "agentwatch traces: error: unrecognized arguments: b.jsonl"),
        (
            ["fake-llm", "--port", "70000"],
            "agentwatch fake-llm: error: argument --port: must be between 0 and 65535",
        ),
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_the_message(tmp_path: Path, argv: list[str], message: str) -> None:
    """With the usage of the command the argument was given to, not the top-level one."""
    result = run([*PYTHON_M, *argv], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert not cache_dir(tmp_path).exists()


def test_bad_otlp_protocol_is_named(tmp_path: Path) -> None:
    result = run(
        [AGENTWATCH, "demo", "--sessions", "1"],
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    )
    assert result.returncode == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in result.stderr and "'http/json'" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("OTEL_METRIC_EXPORT_INTERVAL", "abc", "a number of milliseconds >= 1"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "0", "a number of milliseconds >= 1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "1.5", "an integer number of milliseconds >= 0"),
        ("OTEL_BLRP_MAX_QUEUE_SIZE", "-3", "an integer >= 1"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon", "a number of seconds >= 0"),
        # Refused with no endpoint set too: the value is wrong whether or not it is used yet.
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "foo", "'grpc', 'http/protobuf'"),
        ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json", "'grpc', 'http/protobuf'"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zip", "'gzip', 'deflate', 'none'"),
    ],
)
def test_invalid_otel_setting_exits_2_naming_it(
    tmp_path: Path, variable: str, value: str, accepted: str
) -> None:
    """The SDK would log a warning and use its default; the demo stops, as the README says."""
    result = run([AGENTWATCH, "demo", "--sessions", "1"], cwd=tmp_path, env={variable: value})
    assert result.returncode == 2, result.stderr
    assert f"invalid value {value!r} for {variable}: accepted values are {accepted}" in result.stderr
    assert "usage: agentwatch demo" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not cache_dir(tmp_path).exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_failed_exports_are_reported(tmp_path: Path) -> None:
    """With the collector down, the summary says the telemetry did not arrive, and the exit status too
    (the text run over gRPC, the JSON run over HTTP: both exporters' failures are seen)."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}  # give up quickly
    text = run([AGENTWATCH, "demo", "--sessions", "2", "--no-progress"], cwd=tmp_path, env=env)
    assert text.returncode == 1, text.stderr
    telemetry = text.stdout.split("\nTelemetry\n", 1)[1]
    assert f"NOT all delivered over OTLP to {endpoint}" in telemetry
    assert re.search(r"(\d+) of \1 span exports? \(\d+ spans\)", telemetry), telemetry
    assert "sent over OTLP" not in telemetry
    as_json = run(
        [AGENTWATCH, "demo", "--sessions", "2", "--no-progress", "--json"],
        cwd=tmp_path,
        env={**env, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    )
    assert as_json.returncode == 1, as_json.stderr
    exports = json.loads(as_json.stdout)["exports"]
    assert set(exports) == {"otlp"}
    for kind in ("traces", "metrics"):
        assert exports["otlp"][kind]["failed"] == exports["otlp"][kind]["exports"] > 0


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """One ``--json`` run shared by the tests that only read its output."""
    return _json_demo(tmp_path_factory.mktemp("json-run"), "run", 7)


def test_successful_exports_are_counted(json_run: tuple[dict[str, Any], Path]) -> None:
    document, path = json_run
    exports = document["exports"]["file"]
    spans_written = sum(1 for _ in spans(read_jsonl(path)))
    assert exports["traces"]["failed"] == 0
    assert exports["traces"]["items"] == spans_written
    assert exports["metrics"]["exports"] > 0 and exports["metrics"]["failed"] == 0


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _floats(item)
    elif isinstance(value, list):
        for item in value:
            yield from _floats(item)


def test_no_float_noise_in_the_json_summary_or_the_spans(json_run: tuple[dict[str, Any], Path]) -> None:
    document, path = json_run
    floats = list(_floats(document))
    assert floats
    # 12 significant digits at most: 1.7279999999999995 would need 17.
    assert [f for f in floats if float(f"{f:.12g}") != f] == []
    costs = [
        attributes(span)["gen_ai.usage.cost.amount"]
        for _, span in spans(read_jsonl(path))
        if "gen_ai.usage.cost.amount" in attributes(span)
    ]
    assert costs
    assert [c for c in costs if float(f"{c:.12g}") != c] == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317"}, "http://a:4317"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4317",
            },
            "http://b:4317",
        ),
        ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4317"}, "http://localhost:4317"),
        (
            {
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            "http://localhost:4318",
        ),
    ],
)
def test_the_endpoint_shown_is_where_the_traces_go(env: dict[str, str], expected: str | None) -> None:
    # The SDK's precedence: the traces endpoint over the generic one.
    assert otlp_endpoint(env) == expected


def test_invalid_agentwatch_setting_is_named(tmp_path: Path) -> None:
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "everything"}
    result = run([AGENTWATCH, "demo", "--sessions", "1"], cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert (
        "invalid value 'everything' for OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["demo", "doctor", "runbook"])
def test_help(tmp_path: Path, command: str) -> None:
    result = run([AGENTWATCH, command, "--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert f"usage: agentwatch {command}" in result.stdout


def _venv_is_current() -> bool:
    """Whether scripts/_venv.sh would leave .venv as it is (no pip install) for scripts/demo.sh."""
    stamp = REPO / ".venv" / ".agentwatch-installed"
    digest = hashlib.sha256(
        (REPO / "pyproject.toml").read_bytes() + (REPO / "requirements" / "constraints.txt").read_bytes()
    ).hexdigest()
    return (
        AGENTWATCH.parent == REPO / ".venv" / "bin"
        and stamp.is_file()
        and stamp.read_text().strip() == f"{digest}  -e .[dev]"
    )


@pytest.mark.skipif(
    not _venv_is_current(),
    reason="scripts/demo.sh would install .venv first; scripts/test.sh makes it current",
)
def test_scripts_demo_sh(tmp_path: Path) -> None:
    """The README's first command, with arguments passed through to keep it short."""
    output = tmp_path / "demo.jsonl"
    result = run([REPO / "scripts" / "demo.sh", "--sessions", "3", "--output", output], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 of 3 sessions ran" in result.stdout
    assert result.stderr.startswith("==> Python environment (.venv)\n")
    assert "==> agentwatch demo --sessions 3 --output" in result.stderr
    assert any(span["name"] == "invoke_agent support-agent" for _, span in spans(read_jsonl(output)))


def test_default_file_goes_to_the_cache_and_only_the_newest_are_kept(tmp_path: Path) -> None:
    directory = cache_dir(tmp_path) / "agentwatch" / "demo"
    directory.mkdir(parents=True)
    old = []
    for age in range(6):
        path = directory / f"agentwatch-demo-2020010{age}-000000-abcdef.jsonl"
        path.write_text("{}\n")
        os.utime(path, (1_600_000_000 + age, 1_600_000_000 + age))
        old.append(path)
    unrelated = directory / "notes.txt"
    unrelated.write_text("mine")
    result = run([AGENTWATCH, "demo", "--sessions", "1", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
    remaining = demo_files(tmp_path)
    new = [p for p in remaining if p not in old]
    assert len(new) == 1 and str(new[0]) in result.stdout
    # The newest four earlier runs stay, with the new one: five in all.
    assert sorted(remaining) == sorted([*old[2:], new[0]])
    assert unrelated.read_text() == "mine"


def test_duration_budget_stops_starting_sessions(tmp_path: Path) -> None:
    output = tmp_path / "budget.jsonl"
    result = run(
        [AGENTWATCH, "demo", "--sessions", "400", "--duration", "1.5", "--no-progress", "--output", output],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    ran = _int(r"budget reached: (\d+) of 400 sessions ran", result.stdout)
    assert 0 < ran < 400
    assert _int(r"\n  ([\d,]+) sessions: ", result.stdout) == ran
    sessions = [span for _, span in spans(read_jsonl(output)) if span["name"] == "invoke_agent support-agent"]
    assert len(sessions) == ran


STOP_WITHOUT_KEYBOARD_INTERRUPT = """
import json, sys
from pathlib import Path
from agentwatch._demo import DemoOptions, run_demo
from agentwatch._demo._run import request_stop

def on_progress(update):
    # From a worker thread, with no KeyboardInterrupt at all: as when the main thread's one was
    # swallowed by a finalizer it landed in.
    request_stop()

result = run_demo(DemoOptions(sessions=400, concurrency=2, output=Path(sys.argv[1]), on_progress=on_progress))
print(json.dumps({"interrupted": result.interrupted, "done": sum(result.outcomes.values())}))
"""


def test_a_stop_request_stops_the_run_even_if_its_keyboard_interrupt_is_lost(tmp_path: Path) -> None:
    script = tmp_path / "stop.py"
    script.write_text(STOP_WITHOUT_KEYBOARD_INTERRUPT, encoding="utf-8")
    result = run([sys.executable, script, tmp_path / "out.jsonl"], cwd=tmp_path, env=clean_env())
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["interrupted"] is True
    assert outcome["done"] < 400
