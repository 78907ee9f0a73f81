"""Where the stack's files and binaries are: the single place the tests compute them.

Mirrors ``scripts/setup-stack.sh``: every binary is built from the Go module proxy into
``${AGENTWATCH_OTELSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentwatch/otelstack}/<pin>/``
where ``<pin>`` is ``<name>-<version>-<digest>``, ``<digest>`` the first 12 hex digits of the
sha256 of the files that pin the build (so any change to them means a fresh build):

* ``jaeger-<github.com/jaegertracing/jaeger requirement>-<go.mod+go.sum of collector/jaeger-build>/jaeger``;
* ``prometheus-<github.com/prometheus/prometheus requirement>-<go.mod+go.sum of collector/prometheus-build>/{prometheus,promtool}``;
* ``otelcol-<dist version of the ocb manifest>-<manifest + generated go.mod/go.sum + builder go.mod/go.sum>/otelcol-agentwatch``.

A missing binary is an error naming the set-up script, never a skip.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_DIR = REPO_ROOT / "collector"
DASHBOARDS_DIR = REPO_ROOT / "dashboards"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-stack.sh"

WRAPPER_GO_MOD = COLLECTOR_DIR / "jaeger-build" / "go.mod"
PROMETHEUS_GO_MOD = COLLECTOR_DIR / "prometheus-build" / "go.mod"
OTELCOL_BUILD_DIR = COLLECTOR_DIR / "otelcol-build"
OCB_MANIFEST = OTELCOL_BUILD_DIR / "manifest.yaml"
OTELCOL_DIST = "otelcol-agentwatch"
COLLECTOR_CONFIG = COLLECTOR_DIR / "otel-collector.yaml"
JAEGER_CONFIG = COLLECTOR_DIR / "jaeger" / "config.yaml"
PROMETHEUS_CONFIG = COLLECTOR_DIR / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES_DIR = COLLECTOR_DIR / "prometheus" / "rules"
COMPOSE_FILE = COLLECTOR_DIR / "docker-compose.yaml"
GRAFANA_DATASOURCES = COLLECTOR_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"

FLEET_DIR = COLLECTOR_DIR / "fleet"
FLEET_AGENT_CONFIG = FLEET_DIR / "agent.yaml"
FLEET_AGENT_STATIC_RESOLVER = FLEET_DIR / "agent-resolver-static.yaml"
FLEET_AGENT_DNS_RESOLVER = FLEET_DIR / "agent-resolver-dns.yaml"
FLEET_GATEWAY_CONFIG = FLEET_DIR / "gateway.yaml"
FLEET_COMPOSE_FILE = FLEET_DIR / "docker-compose.yaml"
FLEET_PROMETHEUS_CONFIG = FLEET_DIR / "prometheus.yml"
FLEET_KUSTOMIZATION = FLEET_DIR / "kustomization.yaml"

# Loopback addresses for every address variable of the shipped Collector configs (validation only).
LOOPBACK_COLLECTOR_ENV = {
    "OTELCOL_OTLP_GRPC_ENDPOINT": "127.0.0.1:14317",
    "OTELCOL_OTLP_HTTP_ENDPOINT": "127.0.0.1:14318",
    "OTELCOL_HEALTH_ENDPOINT": "127.0.0.1:13134",
    "OTELCOL_PROMETHEUS_ENDPOINT": "127.0.0.1:18889",
    "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
    "OTELCOL_TELEMETRY_PORT": "18888",
    "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "2s",
    "OTELCOL_INSTANCE": "static-check",
    "OTELCOL_GATEWAYS": "[127.0.0.1:24317, 127.0.0.1:34317]",
    "JAEGER_OTLP_ENDPOINT": "127.0.0.1:24317",
    "TEMPO_OTLP_ENDPOINT": "127.0.0.1:34317",
    "TRACES_OTLP_ENDPOINT": "127.0.0.1:44317",
}

# The feature flag the shipped Prometheus runs with (compose files, tests/stack).
PROMETHEUS_FEATURES = ("created-timestamp-zero-ingestion",)


class MissingBinaryError(RuntimeError):
    """A binary the stack tests need is not installed/built."""


def required_version(go_mod: Path, module: str) -> str:
    """The version of ``module``'s requirement in ``go_mod`` (the rule setup-stack.sh applies)."""
    pattern = re.compile(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(\S+)", re.MULTILINE)
    match = pattern.search(go_mod.read_text(encoding="utf-8"))
    if match is None:
        raise RuntimeError(f"no {module} requirement in {go_mod}")
    return match.group(1)


def jaeger_version() -> str:
    """The Jaeger module version the wrapper module pins (e.g. ``v1.76.0``)."""
    return required_version(WRAPPER_GO_MOD, "github.com/jaegertracing/jaeger")


def cache_root() -> Path:
    override = os.environ.get("AGENTWATCH_OTELSTACK_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "agentwatch" / "otelstack"


def _digest(*files: Path) -> str:
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:12]


def jaeger_pin() -> str:
    wrapper = WRAPPER_GO_MOD.parent
    return f"jaeger-{jaeger_version()}-{_digest(wrapper / 'go.mod', wrapper / 'go.sum')}"


def jaeger_bin_dir() -> Path:
    return cache_root() / jaeger_pin()


def prometheus_pin() -> str:
    version = required_version(PROMETHEUS_GO_MOD, "github.com/prometheus/prometheus")
    return f"prometheus-{version}-{_digest(PROMETHEUS_GO_MOD, PROMETHEUS_GO_MOD.with_name('go.sum'))}"


def otelcol_version() -> str:
    match = re.search(r"^\s+version:\s*([0-9.]+)", OCB_MANIFEST.read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no dist version in {OCB_MANIFEST}")
    return match.group(1)


def otelcol_pin() -> str:
    dist, builder = OTELCOL_BUILD_DIR / OTELCOL_DIST, OTELCOL_BUILD_DIR / "builder"
    files = (OCB_MANIFEST, dist / "go.mod", dist / "go.sum", builder / "go.mod", builder / "go.sum")
    return f"otelcol-{otelcol_version()}-{_digest(*files)}"


def _missing(what: str, where: str) -> MissingBinaryError:
    return MissingBinaryError(
        f"{what} not found ({where}). Run `scripts/setup-stack.sh` (from the repository root: "
        f"{SETUP_SCRIPT}) to build Jaeger, Prometheus and the Collector from the Go module proxy."
    )


def _built(pin: str, name: str, what: str) -> Path:
    path = cache_root() / pin / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise _missing(what, str(path))
    return path


def jaeger_binary() -> Path:
    return _built(jaeger_pin(), "jaeger", f"Jaeger {jaeger_version()} binary")


def prometheus_binary() -> Path:
    return _built(prometheus_pin(), "prometheus", "Prometheus 3 binary")


def promtool_binary() -> Path:
    return _built(prometheus_pin(), "promtool", "promtool 3 binary")


def otelcol_binary() -> Path:
    return _built(otelcol_pin(), OTELCOL_DIST, "the ocb-built Collector")


def rule_files() -> list[Path]:
    return sorted(PROMETHEUS_RULES_DIR.glob("*.yml"))


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))
