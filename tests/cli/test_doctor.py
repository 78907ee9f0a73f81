"""``agentwatch doctor`` end to end, in subprocesses, against real environments it has to diagnose."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.instrumentation._registry import load_registry
from cli._support import AGENTWATCH, PYTHON_M, run

CLIENTS = ("openai", "anthropic", "mcp", "langchain-core", "openai-agents", "langgraph")


@pytest.fixture
def collector() -> Iterator[str]:
    """An OTLP endpoint that answers a TCP connect (the doctor only connects)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


@pytest.fixture
def closed_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there once the socket is closed


def test_all_good(tmp_path: Path, collector: str) -> None:
    result = run([AGENTWATCH, "doctor"], cwd=tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector})
    assert result.returncode == 0, result.stdout
    out = result.stdout
    for section in (
        "Clients and frameworks",
        "Other instrumentors",
        "Configuration",
        "OpenTelemetry export",
        "Propagators",
    ):
        assert section in out
    for client in CLIENTS:
        assert client in out
    assert "agentwatch_openai" in out and "activates" in out
    assert f"OTLP endpoint {collector} (configured; traces, metrics, logs; grpc): answers" in out
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT  NO_CONTENT" in out
    assert "no prompt, completion or tool argument/result content is recorded" in out
    assert "tracecontext" in out and "baggage" in out
    assert out.rstrip().endswith("No problems found.")


def test_json_output(tmp_path: Path, collector: str) -> None:
    result = run(
        [*PYTHON_M, "doctor", "--json"], cwd=tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
    )
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    # Every registered integration (a new one needs no edit here), the known ones among them.
    libraries = {c["library"] for c in report["clients"]}
    assert libraries == {i.library for i in load_registry().integrations} >= set(CLIENTS)
    openai = next(c for c in report["clients"] if c["library"] == "openai")
    assert openai["activates"] is True and openai["instrumentor"] == "agentwatch_openai"
    assert openai["supported"] == "openai >= 1.26.0, < 4"
    settings = {s["name"]: s for s in report["settings"]}
    assert settings["AGENTWATCH_CONFIG"]["source"] == "default"
    assert [p["name"] for p in report["propagators"]] == ["tracecontext", "baggage"]


def test_invalid_settings_are_named_and_exit_1(tmp_path: Path, collector: str) -> None:
    config = tmp_path / "policies.toml"
    config.write_text("[tools.search_knowledge_base]\nretry = { attempts = 0 }\n")
    result = run(
        [AGENTWATCH, "doctor"],
        cwd=tmp_path,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
            "AGENTWATCH_CONFIG": str(config),
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "sometimes",
        },
    )
    assert result.returncode == 1
    out = result.stdout
    assert "2 problems found:" in out
    assert "invalid value 0 for tools.search_knowledge_base.retry.attempts" in out
    assert "invalid value 'sometimes' for OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in out
    assert "NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT" in out  # what is accepted


def test_policies_from_the_config_file_are_listed(tmp_path: Path, collector: str) -> None:
    config = tmp_path / "policies.toml"
    config.write_text(
        '[tools."*"]\ntimeout = 10.0\n'
        "[tools.search_knowledge_base]\ntimeout = 5.0\nretry = { attempts = 3 }\n"
        "breaker = { failure_threshold = 5, break_duration = 30.0 }\n"
        '[llm."gpt-4o"]\nfallback_models = ["gpt-4o-mini"]\n'
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "AGENTWATCH_CONFIG": str(config)}
    result = run([AGENTWATCH, "doctor"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout
    assert "3 policies (2 tool, 1 model)" in result.stdout
    assert (
        '[tools."search_knowledge_base"] criticality critical; timeout 5 s in total; retry 3 attempts'
        in result.stdout
    )
    assert "breaker opens after 5 consecutive failures, break 30 s" in result.stdout
    assert '[llm."gpt-4o"]' in result.stdout and "fallback_models gpt-4o-mini" in result.stdout


def test_unreachable_endpoint(tmp_path: Path, closed_endpoint: str) -> None:
    result = run([AGENTWATCH, "doctor"], cwd=tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": closed_endpoint})
    assert result.returncode == 1
    assert (
        f"OTLP endpoint {closed_endpoint} (configured; traces, metrics, logs; grpc): does not answer"
        in result.stdout
    )
    assert "1 problem found:" in result.stdout


def test_disabled_instrumentation(tmp_path: Path, collector: str) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "agentwatch_openai",
    }
    report = json.loads(run([AGENTWATCH, "doctor", "--json"], cwd=tmp_path, env=env).stdout)
    openai = next(c for c in report["clients"] if c["library"] == "openai")
    assert openai["activates"] is False
    assert openai["reason"] == "disabled by OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"


def _install_other_instrumentor(
    site: Path,
    distribution: str = "otel-openai-v2-standin",
    requirement: str = "openai>=1.26.0",
    entry_point: str = "openai_v2",
) -> None:
    """A distribution registering a second instrumentor of a library (by default OpenAI's, as
    opentelemetry-instrumentation-openai-v2 does)."""
    info = site / f"{distribution.replace('-', '_')}-2.0b0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 2.0b0\n"
        f'Provides-Extra: instruments\nRequires-Dist: {requirement}; extra == "instruments"\n'
    )
    (info / "entry_points.txt").write_text(
        f"[opentelemetry_instrumentor]\n{entry_point} = standin_module:Instrumentor\n"
    )


@pytest.mark.parametrize(("disabled", "code"), [("", 1), ("openai_v2", 0)])
def test_other_instrumentor_of_the_same_library(
    tmp_path: Path, collector: str, disabled: str, code: int
) -> None:
    site = tmp_path / "site"
    _install_other_instrumentor(site)
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
        "PYTHONPATH": str(site),
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": disabled,
    }
    result = run([AGENTWATCH, "doctor"], cwd=tmp_path, env=env)
    assert result.returncode == code, result.stdout
    state = "disabled" if disabled else "ACTIVE"
    assert f"openai_v2 (otel-openai-v2-standin 2.0b0), {state}: instruments openai" in result.stdout
    assert "double the chat spans" in result.stdout
    if not disabled:
        assert "keep one of them, e.g. OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=openai_v2" in result.stdout


def test_x_trace_id_propagator_is_noted(tmp_path: Path, collector: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_PROPAGATORS": "tracecontext,baggage,x-trace-id"}
    result = run([AGENTWATCH, "doctor"], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "x-trace-id: agentwatch: agentwatch.propagation:XTraceIdPropagator" in result.stdout


def test_openai_agents_client_and_a_second_agents_instrumentor(tmp_path: Path, collector: str) -> None:
    """openinference-instrumentation-openai-agents and the like would add a span per agent, tool and
    model call of every run next to agentwatch's."""
    _install_other_instrumentor(
        tmp_path / "site", "agents-tracing-standin", "openai-agents>=0.1", "openai_agents"
    )
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "PYTHONPATH": str(tmp_path / "site")}
    result = run([AGENTWATCH, "doctor", "--json"], cwd=tmp_path, env=env)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    agents = next(c for c in report["clients"] if c["library"] == "openai-agents")
    assert agents["activates"] is True and agents["instrumentor"] == "agentwatch_openai_agents"
    assert agents["supported"] == "openai-agents >= 0.11.0"
    (problem,) = report["problems"]
    assert problem.startswith(
        "instrumentor openai_agents (agents-tracing-standin) also instruments openai-agents"
    )
    assert "tokens and cost counted twice" in problem


def test_the_shared_state_url_is_listed_checked_and_its_password_hidden(
    tmp_path: Path, collector: str, redis_url: str, closed_endpoint: str
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
    report = json.loads(run([*PYTHON_M, "doctor", "--json"], cwd=tmp_path, env=env).stdout)
    state = next(s for s in report["settings"] if s["name"] == "AGENTWATCH_STATE_REDIS_URL")
    assert (state["source"], state["meaning"]) == (
        "default",
        "in-process: each replica has its own disabled tools, forced circuits and rate limits",
    )
    answering = redis_url.replace("redis://", "redis://:hunter2@")
    result = run(
        [*PYTHON_M, "doctor", "--json"], cwd=tmp_path, env={**env, "AGENTWATCH_STATE_REDIS_URL": answering}
    )
    report = json.loads(result.stdout)
    state = next(s for s in report["settings"] if s["name"] == "AGENTWATCH_STATE_REDIS_URL")
    assert state["meaning"].endswith("(answers)")
    assert "hunter2" not in result.stdout
    port = closed_endpoint.rsplit(":", 1)[1]
    silent = f"redis://:hunter2@127.0.0.1:{port}/0"
    result = run([*PYTHON_M, "doctor"], cwd=tmp_path, env={**env, "AGENTWATCH_STATE_REDIS_URL": silent})
    assert result.returncode == 1
    assert "AGENTWATCH_STATE_REDIS_URL: Redis at redis://:***@127.0.0.1" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr


def _documented() -> list[str]:
    """The variables agentwatch.environment_variables documents (``.. envvar::``), read from its source."""
    import agentwatch.environment_variables as module

    return re.findall(r"^\.\. envvar:: (\w+)$", Path(module.__file__).read_text(encoding="utf-8"), re.M)


def test_every_documented_variable_is_listed_with_its_meaning(tmp_path: Path, collector: str) -> None:
    documented = _documented()
    assert {"AGENTWATCH_CACHE_REDIS_URL", "AGENTWATCH_STATE_REDIS_URL", "AGENTWATCH_ADMIN_TOKEN"} <= set(
        documented
    )
    result = run(
        [*PYTHON_M, "doctor", "--json"], cwd=tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
    )
    settings = json.loads(result.stdout)["settings"]
    assert [s["name"] for s in settings] == documented
    for setting in settings:
        assert setting["source"] == "default" and setting["error"] is None, setting
        assert setting["meaning"], f"the doctor has no describer for {setting['name']}"


def _settings(report_json: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in json.loads(report_json)["settings"]}


def test_the_admin_token_is_never_shown_and_the_cache_url_hides_its_password(
    tmp_path: Path, collector: str, redis_url: str, closed_endpoint: str
) -> None:
    token = "tok-" + "x7Q" * 12
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector,
        "AGENTWATCH_ADMIN_TOKEN": token,
        "AGENTWATCH_CACHE_REDIS_URL": redis_url.replace("redis://", "redis://:hunter2@"),
    }
    text = run([*PYTHON_M, "doctor"], cwd=tmp_path, env=env)
    as_json = run([*PYTHON_M, "doctor", "--json"], cwd=tmp_path, env=env)
    for result in (text, as_json):
        assert result.returncode == 0, result.stdout
        assert token not in result.stdout + result.stderr
        assert "hunter2" not in result.stdout + result.stderr
    settings = _settings(as_json.stdout)
    admin, cache = settings["AGENTWATCH_ADMIN_TOKEN"], settings["AGENTWATCH_CACHE_REDIS_URL"]
    assert (admin["value"], admin["source"]) == ("(set)", "env")
    assert admin["meaning"] == "every agentwatch.admin route needs Authorization: Bearer <this token>"
    assert cache["value"].startswith("redis://:***@127.0.0.1:") and cache["source"] == "env"
    assert cache["meaning"].endswith("(answers)")
    assert re.search(
        r"^  AGENTWATCH_ADMIN_TOKEN +\(set\) +env +every agentwatch.admin route", text.stdout, re.M
    )

    unset = run([*PYTHON_M, "doctor", "--json"], cwd=tmp_path, env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector})
    admin = _settings(unset.stdout)["AGENTWATCH_ADMIN_TOKEN"]
    assert (admin["value"], admin["meaning"]) == (
        "(unset)",
        "none: every agentwatch.admin route answers 403 (the admin API is off)",
    )

    port = closed_endpoint.rsplit(":", 1)[1]
    silent = {
        **env,
        "AGENTWATCH_ADMIN_TOKEN": "sh0rt-t0ken",
        "AGENTWATCH_CACHE_REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0",
    }
    result = run([*PYTHON_M, "doctor"], cwd=tmp_path, env=silent)
    assert result.returncode == 1
    assert "AGENTWATCH_CACHE_REDIS_URL: Redis at redis://:***@127.0.0.1" in result.stdout
    assert "cached tools would run uncached until it does" in result.stdout
    assert "AGENTWATCH_ADMIN_TOKEN is shorter than 32 characters" in result.stdout
    assert "hunter2" not in result.stdout + result.stderr and "sh0rt-t0ken" not in result.stdout
