"""The example stack, run natively on 127.0.0.1 with the shipped configs at their shipped intervals.

Processes (ports are fresh free ports):

* ``jaeger``: Jaeger with ``collector/jaeger/config.yaml`` (OTLP in, memory storage, query API);
* ``tempo-standin``: a second Jaeger with the same config, receiving the collector's Tempo leg
  (Tempo's binary is not available here; any OTLP backend proves the fan-out);
* ``otel-collector``: the ocb-built Collector running ``collector/otel-collector.yaml``;
* ``prometheus``: Prometheus 3 with ``collector/prometheus/prometheus.yml`` adapted to loopback
  (targets rewritten; the 15 s scrape and evaluation intervals kept) with the shipped rule files
  and the shipped feature flag.

Both Jaegers get ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a canary listener: a Jaeger that
traced itself would connect to it (``otlp_canary_connections``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import _paths
from ._harness import LOOPBACK, ManagedProcess, free_ports, http_json

START_TIMEOUT = 30.0  # per process, until its health endpoint answers


@dataclass
class JaegerPorts:
    otlp_grpc: int
    otlp_http: int
    query_http: int
    query_grpc: int
    health: int
    telemetry: int

    def env(self, prometheus_url: str) -> dict[str, str]:
        return {
            "JAEGER_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{self.otlp_grpc}",
            "JAEGER_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{self.otlp_http}",
            "JAEGER_QUERY_HTTP_ENDPOINT": f"{LOOPBACK}:{self.query_http}",
            "JAEGER_QUERY_GRPC_ENDPOINT": f"{LOOPBACK}:{self.query_grpc}",
            "JAEGER_HEALTH_ENDPOINT": f"{LOOPBACK}:{self.health}",
            "JAEGER_TELEMETRY_HOST": LOOPBACK,
            "JAEGER_TELEMETRY_PORT": str(self.telemetry),
            "JAEGER_PROMETHEUS_URL": prometheus_url,
        }


@dataclass
class CollectorPorts:
    otlp_grpc: int
    otlp_http: int
    prometheus: int
    health: int
    telemetry: int

    def env(self) -> dict[str, str]:
        """The shipped Collector configs' address variables, on these loopback ports."""
        return {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{self.otlp_grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{self.otlp_http}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"{LOOPBACK}:{self.prometheus}",
            "OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{self.health}",
            "OTELCOL_TELEMETRY_HOST": LOOPBACK,
            "OTELCOL_TELEMETRY_PORT": str(self.telemetry),
        }


@dataclass
class Stack:
    workdir: Path
    jaeger: JaegerPorts
    tempo: JaegerPorts
    collector: CollectorPorts
    prometheus_port: int
    canary: socket.socket
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def collector_process(self) -> ManagedProcess:
        return next(p for p in self.processes if p.name == "otel-collector")

    def otlp_canary_connections(self) -> int:
        """Connections made so far to the OTLP endpoint the Jaegers would export their own spans to."""
        count = 0
        while True:
            try:
                conn, _ = self.canary.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    @property
    def jaeger_url(self) -> str:
        return f"http://{LOOPBACK}:{self.jaeger.query_http}"

    @property
    def tempo_standin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.tempo.query_http}"

    @property
    def prometheus_url(self) -> str:
        return f"http://{LOOPBACK}:{self.prometheus_port}"

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.collector.otlp_grpc}"

    @property
    def collector_metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.collector.prometheus}/metrics"

    def prometheus_api(self, path: str, params: dict[str, str] | list[tuple[str, str]]) -> Any:
        """``data`` of a Prometheus HTTP API answer (fails unless its status is success)."""
        body = http_json(f"{self.prometheus_url}{path}", params, timeout=10)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector (``[{metric, value: [t, "v"]}]``) of ``expr`` now or at ``at``."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        result: list[dict[str, Any]] = self.prometheus_api("/api/v1/query", params)["result"]
        return result

    def log_tails(self) -> list[str]:
        return [p.log_tail() for p in self.processes]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.canary.close()


def _prometheus_config(stack: Stack) -> dict[str, object]:
    """The shipped prometheus.yml with compose targets mapped to loopback, intervals untouched."""
    config: dict[str, Any] = yaml.safe_load(_paths.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["rule_files"] = [
        str(_paths.PROMETHEUS_CONFIG.parent / pattern) for pattern in config["rule_files"]
    ]
    targets = {
        "otel-collector:8889": f"{LOOPBACK}:{stack.collector.prometheus}",
        "otel-collector:8888": f"{LOOPBACK}:{stack.collector.telemetry}",
        "jaeger:8888": f"{LOOPBACK}:{stack.jaeger.telemetry}",
    }
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            unknown = [t for t in static["targets"] if t not in targets]
            if unknown:
                raise AssertionError(
                    f"tests/stack/_stack.py has no loopback mapping for scrape targets {unknown}"
                )
            static["targets"] = [targets[t] for t in static["targets"]]
    return config


def prometheus_process(
    name: str, prometheus_bin: Path, config: dict[str, object], workdir: Path, port: int
) -> ManagedProcess:
    """Prometheus 3 with ``config`` (written to ``workdir``) and the shipped feature flags."""
    prom_dir = workdir / name
    (prom_dir / "data").mkdir(parents=True)
    prom_config = prom_dir / "prometheus.yml"
    prom_config.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return ManagedProcess(
        name,
        [
            str(prometheus_bin),
            f"--config.file={prom_config}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--web.enable-lifecycle",
            f"--enable-feature={','.join(_paths.PROMETHEUS_FEATURES)}",
            "--log.level=info",
        ],
        workdir / "logs" / f"{name}.log",
        cwd=prom_dir,
    )


@contextlib.contextmanager
def running_stack(
    workdir: Path, jaeger_bin: Path, otelcol_bin: Path, prometheus_bin: Path
) -> Iterator[Stack]:
    """Start the four processes, wait for each to be healthy, and stop them all on exit."""
    ports = iter(free_ports(20))
    canary = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    canary.bind((LOOPBACK, 0))
    canary.listen(16)
    canary.setblocking(False)
    stack = Stack(
        workdir=workdir,
        jaeger=JaegerPorts(*(next(ports) for _ in range(6))),
        tempo=JaegerPorts(*(next(ports) for _ in range(6))),
        collector=CollectorPorts(*(next(ports) for _ in range(5))),
        prometheus_port=next(ports),
        canary=canary,
    )
    logs = workdir / "logs"
    canary_url = f"http://{LOOPBACK}:{canary.getsockname()[1]}"
    try:
        for name, jp in (("jaeger", stack.jaeger), ("tempo-standin", stack.tempo)):
            process = ManagedProcess(
                name,
                [str(jaeger_bin), "--config", str(_paths.JAEGER_CONFIG)],
                logs / f"{name}.log",
                env={**jp.env(stack.prometheus_url), "OTEL_EXPORTER_OTLP_ENDPOINT": canary_url},
                cwd=workdir,
            )
            stack.processes.append(process.start())
        collector_env = {
            **stack.collector.env(),
            "JAEGER_OTLP_ENDPOINT": f"{LOOPBACK}:{stack.jaeger.otlp_grpc}",
            "TEMPO_OTLP_ENDPOINT": f"{LOOPBACK}:{stack.tempo.otlp_grpc}",
        }
        collector = ManagedProcess(
            "otel-collector",
            [str(otelcol_bin), "--config", str(_paths.COLLECTOR_CONFIG)],
            logs / "otel-collector.log",
            env=collector_env,
            cwd=workdir,
        )
        stack.processes.append(collector.start())

        prometheus = prometheus_process(
            "prometheus", prometheus_bin, _prometheus_config(stack), workdir, stack.prometheus_port
        )
        stack.processes.append(prometheus.start())

        stack.processes[0].wait_http_ok(f"http://{LOOPBACK}:{stack.jaeger.health}/status", START_TIMEOUT)
        stack.processes[1].wait_http_ok(f"http://{LOOPBACK}:{stack.tempo.health}/status", START_TIMEOUT)
        collector.wait_http_ok(f"http://{LOOPBACK}:{stack.collector.health}/status", START_TIMEOUT)
        prometheus.wait_http_ok(f"{stack.prometheus_url}/-/ready", START_TIMEOUT)
        yield stack
    finally:
        stack.stop()
