#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the project and its test dependencies into
# .venv, sets up the native observability stack (Jaeger v2, Prometheus 3 and the ocb Collector
# built from the Go module proxy, cached), runs the linters, the type checker and pytest, then re-runs the
# instrumentation tests against the oldest and the previous major versions of the LLM SDKs.
# Each stage is announced on stderr ("==> ...") with the time the previous one took; long
# installs and builds say every 15 s that they are still running.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

trap 'status=$?; if [ "$status" -ne 0 ]; then echo "test.sh: FAILED in stage: $_stage_name (exit $status)" >&2; fi' EXIT

stage "Python environment (.venv)"
ensure_venv .venv -e ".[dev]"
stage "observability stack (Prometheus, Jaeger build)"
scripts/setup-stack.sh
scripts/setup-redis.sh

stage "lint (ruff check, ruff format --check)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
stage "types (mypy --strict)"
.venv/bin/mypy
stage "tests (pytest)"
.venv/bin/pytest "$@"

# SDK compatibility: the same instrumentation tests on older SDK majors: the previous ones (openai
# 2.x on httpx, anthropic 1.x), openai 1.x while `parse` was still under `beta` with the last
# anthropic 0.x, and the oldest supported. openai < 1.56 predates httpx 0.28's removal of
# `proxies`, so the oldest set pins httpx as that release did.
compat_tests=(tests/instrumentation tests/test_trace_headers.py tests/test_content_capture.py tests/test_setup.py)
# The dev extra's requirements but those named: LiteLLM requires openai >= 2.20, so the runs on
# openai 1.x go without it (its tests skip there).
dev_without() {
  .venv/bin/python - "$@" <<'PY'
import sys, tomllib
from packaging.requirements import Requirement
with open("pyproject.toml", "rb") as f:
    dev = tomllib.load(f)["project"]["optional-dependencies"]["dev"]
print("\n".join(r for r in dev if Requirement(r).name not in sys.argv[1:]))
PY
}
# compat TITLE DIR UNPIN [--without NAMES] PIN... -- TEST...: one compatibility run, named with the
# versions it pins and then with those its environment really holds.
compat() {
  local title=$1 dir=$2 unpin=$3
  shift 3
  local install=(-e ".[dev]")
  if [ "$1" = "--without" ]; then
    mapfile -t install < <(dev_without $2)
    install=(-e . "${install[@]}")
    shift 2
  fi
  local pins=()
  while [ "$1" != "--" ]; do
    pins+=("$1")
    shift
  done
  shift
  stage "SDK compatibility: $title (${pins[*]})"
  ensure_venv "$dir" --unpin "$unpin" "${install[@]}" "${pins[@]}"
  "$dir/bin/python" -c 'import importlib.metadata as m; print("    testing " + ", ".join(f"{n} {m.version(n)}" for n in ("openai", "anthropic", "httpx", "litellm") if n in {d.metadata["Name"].lower() for d in m.distributions()}))' >&2
  "$dir/bin/pytest" -q "$@"
}
compat "previous majors" .venv-compat-previous "openai anthropic" "openai==2.54.0" "anthropic==1.17.0" -- "${compat_tests[@]}"
compat "openai 1.x, parse() under beta" .venv-compat-1x "openai anthropic" --without litellm "openai==1.91.0" "anthropic==0.125.0" -- "${compat_tests[@]}"
compat "oldest supported" .venv-compat-oldest "openai anthropic httpx" --without litellm "openai==1.26.0" "anthropic==0.27.0" "httpx<0.28" -- tests/instrumentation tests/test_trace_headers.py
# LiteLLM 1.100, the oldest supported: the last release whose OpenAI chat calls go through the openai
# SDK's with_raw_response (later ones use its post), on the openai 2.x it requires.
compat "oldest LiteLLM" .venv-compat-litellm "litellm openai certifi" "litellm==1.100.0" "openai==2.54.0" -- tests/instrumentation/test_litellm.py tests/instrumentation/test_litellm_policies.py tests/instrumentation/test_litellm_replay.py tests/instrumentation/test_litellm_startup.py tests/instrumentation/test_openai_hosts.py
stage "done"
