"""Where the stack's files and binaries are: the single place the tests compute them.

Mirrors ``scripts/setup-stack.sh``: the Jaeger binary lives in
``${AGENTWATCH_OTELSTACK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/agentwatch/otelstack}/<pin>/jaeger``
where ``<pin>`` is ``jaeger-<version>-<digest>``: ``<version>`` is the ``github.com/jaegertracing/jaeger``
requirement in ``collector/jaeger-build/go.mod``, ``<digest>`` the first 12 hex digits of
sha256(go.mod + go.sum), so any change to the wrapper module means a fresh build; ``prometheus`` and ``promtool`` are Debian's (on ``PATH`` or in
``/usr/bin``). A missing binary is an error naming the set-up script, never a skip.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_DIR = REPO_ROOT / "collector"
DASHBOARDS_DIR = REPO_ROOT / "dashboards"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-stack.sh"

WRAPPER_GO_MOD = COLLECTOR_DIR / "jaeger-build" / "go.mod"
COLLECTOR_CONFIG = COLLECTOR_DIR / "otel-collector.yaml"
JAEGER_CONFIG = COLLECTOR_DIR / "jaeger" / "config.yaml"
PROMETHEUS_CONFIG = COLLECTOR_DIR / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES_DIR = COLLECTOR_DIR / "prometheus" / "rules"
COMPOSE_FILE = COLLECTOR_DIR / "docker-compose.yaml"
GRAFANA_DATASOURCES = COLLECTOR_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"

_JAEGER_REQUIREMENT = re.compile(r"^\s*(?:require\s+)?github\.com/jaegertracing/jaeger\s+(\S+)", re.MULTILINE)


class MissingBinaryError(RuntimeError):
    """A binary the stack tests need is not installed/built."""


def jaeger_version() -> str:
    """The Jaeger module version the wrapper module pins (e.g. ``v1.76.0``)."""
    match = _JAEGER_REQUIREMENT.search(WRAPPER_GO_MOD.read_text(encoding="utf-8"))
    if match is None:
        raise RuntimeError(f"no github.com/jaegertracing/jaeger requirement in {WRAPPER_GO_MOD}")
    return match.group(1)


def cache_root() -> Path:
    override = os.environ.get("AGENTWATCH_OTELSTACK_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "agentwatch" / "otelstack"


def jaeger_pin() -> str:
    wrapper = WRAPPER_GO_MOD.parent
    digest = hashlib.sha256((wrapper / "go.mod").read_bytes() + (wrapper / "go.sum").read_bytes()).hexdigest()
    return f"jaeger-{jaeger_version()}-{digest[:12]}"


def jaeger_bin_dir() -> Path:
    return cache_root() / jaeger_pin()


def _missing(what: str, where: str) -> MissingBinaryError:
    return MissingBinaryError(
        f"{what} not found ({where}). Run `scripts/setup-stack.sh` (from the repository root: "
        f"{SETUP_SCRIPT}) to apt-install Debian's prometheus and build Jaeger from the Go module proxy."
    )


def jaeger_binary() -> Path:
    path = jaeger_bin_dir() / "jaeger"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise _missing(f"Jaeger {jaeger_version()} binary", str(path))
    return path


def _debian_binary(name: str) -> Path:
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if found is None:
        raise _missing(f"`{name}`", "not on PATH nor in /usr/bin")
    return Path(found)


def prometheus_binary() -> Path:
    return _debian_binary("prometheus")


def promtool_binary() -> Path:
    return _debian_binary("promtool")


def rule_files() -> list[Path]:
    return sorted(PROMETHEUS_RULES_DIR.glob("*.yml"))


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))
