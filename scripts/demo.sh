#!/usr/bin/env bash
# See agentwatch work in one command, with nothing else running: installs the project into .venv
# (the same environment scripts/test.sh uses, so the second run is instant) and runs
# `agentwatch demo`: scripted agent sessions against an embedded fake LLM on 127.0.0.1, with a
# summary read from the SDK's own metrics. Arguments go to `agentwatch demo` (see --help).
#
# Telemetry goes to an OTLP JSON Lines file in ~/.cache/agentwatch/demo/ (the summary prints its
# path; `agentwatch traces` reads it), or, with OTEL_EXPORTER_OTLP_ENDPOINT set (e.g.
# http://localhost:4317 after `docker compose up` in collector/), to the collector: Jaeger,
# Prometheus and the Grafana dashboards fill up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

stage "Python environment (.venv)"
ensure_venv .venv -e ".[dev]"
stage "agentwatch demo${*:+ $*}"
exec .venv/bin/agentwatch demo "$@"
