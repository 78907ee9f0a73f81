"""``agentwatch.instrument()`` configures the SDK for OTLP/HTTP when the standard variables say so.

Issue 11, item 1: with ``OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`` (or the per-signal forms) the
SDK that ``instrument()`` sets up must speak OTLP/HTTP, as ``opentelemetry-instrument`` would; many
hosted backends accept nothing else. The receiver is the stack's Collector binary (Jaeger v2, a
Collector distribution) with an OTLP receiver that has *only* its HTTP protocol and a ``debug``
exporter for all three signals, so anything it logs arrived over HTTP; its own telemetry counts
what it accepted by transport.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from agentwatch._fakellm import FakeLLMServer

from ._harness import LOOPBACK, ManagedProcess, free_ports, http_get, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

START_TIMEOUT = 30.0
DATA_TIMEOUT = 30.0

APP = textwrap.dedent(
    """
    import os, openai, agentwatch

    agentwatch.instrument(capture_message_content="EVENT_ONLY")  # EVENT: a log record too
    with openai.OpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    # The providers agentwatch configured flush at exit.
    """
)


@dataclass
class Receiver:
    process: ManagedProcess
    otlp_http: int
    telemetry: int

    def log(self) -> str:
        return self.process.log_path.read_text(encoding="utf-8", errors="replace")

    def accepted(self) -> str:
        status, body = http_get(f"http://{LOOPBACK}:{self.telemetry}/metrics")
        assert status == 200
        return body.decode()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory, jaeger_bin: Path) -> Iterator[Receiver]:
    workdir = tmp_path_factory.mktemp("otlp-http")
    otlp_http, health, telemetry = free_ports(3)
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:{otlp_http}"}}}},
        "exporters": {"debug": {"verbosity": "detailed"}},
        "extensions": {"healthcheckv2": {"use_v2": True, "http": {"endpoint": f"{LOOPBACK}:{health}"}}},
        "service": {
            "extensions": ["healthcheckv2"],
            "pipelines": {
                signal: {"receivers": ["otlp"], "exporters": ["debug"]}
                for signal in ("traces", "metrics", "logs")
            },
            "telemetry": {
                "metrics": {
                    "level": "normal",
                    "readers": [
                        {"pull": {"exporter": {"prometheus": {"host": LOOPBACK, "port": telemetry}}}}
                    ],
                }
            },
        },
    }
    config_path = workdir / "receiver.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    process = ManagedProcess(
        "otlp-http-receiver",
        [str(jaeger_bin), "--config", str(config_path)],
        workdir / "receiver.log",
        cwd=workdir,
    )
    process.start()
    try:
        process.wait_http_ok(f"http://{LOOPBACK}:{health}/status", START_TIMEOUT)
        yield Receiver(process, otlp_http, telemetry)
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def _attach_process_logs(request: pytest.FixtureRequest, receiver: Receiver) -> None:
    request.node.stack_log_tails = lambda: [receiver.process.log_tail()]  # shown by conftest.py


def _run_app(tmp_path: Path, server: FakeLLMServer, **env: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP, encoding="utf-8")
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_"))},
        "FAKE_OPENAI_URL": server.openai_base_url,
        **env,
    }
    return subprocess.run(
        [sys.executable, str(app)], env=environment, capture_output=True, text=True, timeout=90, check=False
    )


@pytest.mark.parametrize(
    "protocols",
    [
        pytest.param({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, id="general"),
        pytest.param(
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
            },
            id="per-signal",
        ),
    ],
)
def test_every_signal_reaches_an_otlp_http_receiver(
    receiver: Receiver, tmp_path: Path, protocols: dict[str, str], request: pytest.FixtureRequest
) -> None:
    service = f"agentwatch-otlp-http-{request.node.callspec.id}"
    with FakeLLMServer() as server:
        result = _run_app(
            tmp_path,
            server,
            OTEL_SERVICE_NAME=service,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://{LOOPBACK}:{receiver.otlp_http}",
            **protocols,
        )
        assert result.returncode == 0, result.stderr
        assert len(server.requests) == 1

    def arrived() -> bool:
        # The debug exporter prints each batch under its resource: keep this run's service's.
        blocks = re.split(r"(?=Resource(?:Spans|Metrics|Log) #\d+)", receiver.log())
        mine = "".join(b for b in blocks if f"service.name: Str({service})" in b)
        return all(
            marker in mine
            for marker in (
                "Name           : chat gpt-4o-mini",
                "-> Name: gen_ai.client.operation.duration",
                "EventName: gen_ai.client.inference.operation.details",
            )
        )

    wait_until(arrived, timeout=DATA_TIMEOUT, what=f"spans, metrics and logs of {service} at the receiver")
    accepted = receiver.accepted()
    for counter in ("spans", "metric_points", "log_records"):
        line = next(
            (
                line
                for line in accepted.splitlines()
                if line.startswith(f"otelcol_receiver_accepted_{counter}_total{{")
                and 'transport="http"' in line
            ),
            None,
        )
        assert line is not None and float(line.rsplit(" ", 1)[1]) > 0, accepted
    # The SDK logged no export failure (a gRPC exporter pointed at this port would).
    assert "Failed to export" not in result.stderr, result.stderr
