"""The example stack, run natively on 127.0.0.1 with the shipped configs (tests/stack e2e).

Processes (all Jaeger v2 binaries are the same cached build; ports are fresh free ports):

* ``jaeger``: Jaeger with ``collector/jaeger/config.yaml`` (OTLP in, memory storage, query API);
* ``tempo-standin``: a second Jaeger with the same config, receiving the collector's Tempo leg
  (Tempo's binary is not available here; any OTLP backend proves the fan-out);
* ``otel-collector``: Jaeger running ``collector/otel-collector.yaml`` (it is a Collector distribution);
* ``prometheus``: Debian's Prometheus with ``collector/prometheus/prometheus.yml`` adapted to
  loopback (targets rewritten, 1 s scrape/evaluation) and the shipped rule files as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import _paths
from ._harness import LOOPBACK, ManagedProcess, free_ports

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


@dataclass
class Stack:
    workdir: Path
    jaeger: JaegerPorts
    tempo: JaegerPorts
    collector: CollectorPorts
    prometheus_port: int
    processes: list[ManagedProcess] = field(default_factory=list)

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

    def log_tails(self) -> list[str]:
        return [p.log_tail() for p in self.processes]

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def _prometheus_config(stack: Stack) -> dict[str, object]:
    """The shipped prometheus.yml with compose targets mapped to loopback and short intervals."""
    config: dict[str, Any] = yaml.safe_load(_paths.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
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


@contextlib.contextmanager
def running_stack(workdir: Path, jaeger_bin: Path, prometheus_bin: Path) -> Iterator[Stack]:
    """Start the four processes, wait for each to be healthy, and stop them all on exit."""
    ports = iter(free_ports(20))
    stack = Stack(
        workdir=workdir,
        jaeger=JaegerPorts(*(next(ports) for _ in range(6))),
        tempo=JaegerPorts(*(next(ports) for _ in range(6))),
        collector=CollectorPorts(*(next(ports) for _ in range(5))),
        prometheus_port=next(ports),
    )
    logs = workdir / "logs"
    try:
        for name, jp in (("jaeger", stack.jaeger), ("tempo-standin", stack.tempo)):
            process = ManagedProcess(
                name,
                [str(jaeger_bin), "--config", str(_paths.JAEGER_CONFIG)],
                logs / f"{name}.log",
                env=jp.env(stack.prometheus_url),
                cwd=workdir,
            )
            stack.processes.append(process.start())
        collector_env = {
            "OTELCOL_OTLP_GRPC_ENDPOINT": f"{LOOPBACK}:{stack.collector.otlp_grpc}",
            "OTELCOL_OTLP_HTTP_ENDPOINT": f"{LOOPBACK}:{stack.collector.otlp_http}",
            "OTELCOL_PROMETHEUS_ENDPOINT": f"{LOOPBACK}:{stack.collector.prometheus}",
            "OTELCOL_HEALTH_ENDPOINT": f"{LOOPBACK}:{stack.collector.health}",
            "OTELCOL_TELEMETRY_HOST": LOOPBACK,
            "OTELCOL_TELEMETRY_PORT": str(stack.collector.telemetry),
            "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "2s",
            "JAEGER_OTLP_ENDPOINT": f"{LOOPBACK}:{stack.jaeger.otlp_grpc}",
            "TEMPO_OTLP_ENDPOINT": f"{LOOPBACK}:{stack.tempo.otlp_grpc}",
        }
        collector = ManagedProcess(
            "otel-collector",
            [str(jaeger_bin), "--config", str(_paths.COLLECTOR_CONFIG)],
            logs / "otel-collector.log",
            env=collector_env,
            cwd=workdir,
        )
        stack.processes.append(collector.start())

        prom_dir = workdir / "prometheus"
        (prom_dir / "data").mkdir(parents=True)
        prom_config = prom_dir / "prometheus.yml"
        prom_config.write_text(yaml.safe_dump(_prometheus_config(stack), sort_keys=False), encoding="utf-8")
        prometheus = ManagedProcess(
            "prometheus",
            [
                str(prometheus_bin),
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{stack.prometheus_port}",
                "--web.enable-lifecycle",
                "--log.level=info",
            ],
            logs / "prometheus.log",
            cwd=prom_dir,
        )
        stack.processes.append(prometheus.start())

        stack.processes[0].wait_http_ok(f"http://{LOOPBACK}:{stack.jaeger.health}/status", START_TIMEOUT)
        stack.processes[1].wait_http_ok(f"http://{LOOPBACK}:{stack.tempo.health}/status", START_TIMEOUT)
        collector.wait_http_ok(f"http://{LOOPBACK}:{stack.collector.health}/status", START_TIMEOUT)
        prometheus.wait_http_ok(f"{stack.prometheus_url}/-/ready", START_TIMEOUT)
        yield stack
    finally:
        stack.stop()
