"""``agentwatch demo`` end to end, in subprocesses: the README commands, determinism, Ctrl-C, bad input."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
from collections import Counter, defaultdict
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
    clean_env,
    metric_names,
    read_jsonl,
    run,
    spans,
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
    for section in ("LLM calls by model", "Tool calls", "Sessions", "Interesting trace", "Telemetry"):
        assert f"\n{section}" in out
    assert "30 of 30 sessions ran" in out
    assert _int(r"\n  ([\d,]+) sessions: ", out) == 30
    # The number of requests the metrics say were sent is the number the fake server received.
    received = _int(r"received (\d+) requests", out)
    assert _int(r"([\d,]+) requests sent for [\d,]+ calls", out) == received
    calls = _int(r"[\d,]+ requests sent for ([\d,]+) calls", out)
    streamed = _int(r"requests sent for [\d,]+ calls \(([\d,]+) streamed\)", out)
    for tool in TOOLS:
        assert re.search(rf"^  {tool} +\d+ ", out, re.MULTILINE), tool

    (path,) = tmp_path.glob("agentwatch-demo-*.jsonl")
    assert str(path) in out
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
    # No prompt, completion or tool content without content capture.
    text = path.read_text(encoding="utf-8")
    assert "support assistant" not in text and "Here is what I found" not in text
    assert "help article" not in text  # a tool argument value


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
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["doctor", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: COMMAND"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_the_message(tmp_path: Path, argv: list[str], message: str) -> None:
    result = run([*PYTHON_M, *argv], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_otlp_protocol_is_named(tmp_path: Path) -> None:
    result = run(
        [AGENTWATCH, "demo", "--sessions", "1"],
        cwd=tmp_path,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
    )
    assert result.returncode == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL" in result.stderr and "'http/json'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_the_openai_sdk_the_demo_says_what_to_install(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['openai'] = None; from agentwatch._cli import main; sys.exit(main(['demo']))"
    )
    result = run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 1
    assert 'pip install "agentwatch[openai]"' in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


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
    assert any(span["name"] == "invoke_agent support-agent" for _, span in spans(read_jsonl(output)))


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
