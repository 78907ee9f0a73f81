#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the project and its test dependencies into
# .venv, sets up the native observability stack (Debian's prometheus; Jaeger v2 built from the
# Go module proxy, cached), runs the linters, the type checker and pytest, then re-runs the
# instrumentation tests against the oldest and the previous major versions of the LLM SDKs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh

ensure_venv .venv -e ".[dev]"
scripts/setup-stack.sh

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"

# SDK compatibility: the same instrumentation tests on older SDK majors: the previous ones (openai
# 2.x on httpx, anthropic 1.x), openai 1.x while `parse` was still under `beta` with the last
# anthropic 0.x, and the oldest supported. openai < 1.56 predates httpx 0.28's removal of
# `proxies`, so the oldest set pins httpx as that release did. They install `.[test]`, which is
# `.[dev]` without openai-agents (every supported release of it requires openai >= 2.26).
compat_tests=(tests/instrumentation tests/test_trace_headers.py tests/test_content_capture.py tests/test_setup.py)
ensure_venv .venv-compat-previous --unpin "openai anthropic" -e ".[test]" "openai==2.54.0" "anthropic==1.17.0"
.venv-compat-previous/bin/pytest -q "${compat_tests[@]}"
ensure_venv .venv-compat-1x --unpin "openai anthropic" -e ".[test]" "openai==1.91.0" "anthropic==0.125.0"
.venv-compat-1x/bin/pytest -q "${compat_tests[@]}"
ensure_venv .venv-compat-oldest --unpin "openai anthropic httpx" -e ".[test]" "openai==1.26.0" "anthropic==0.27.0" "httpx<0.28"
.venv-compat-oldest/bin/pytest -q tests/instrumentation tests/test_trace_headers.py
# The OpenAI Agents SDK at the oldest supported release: 0.11.0, the first whose function tools run
# through the invoker agentwatch wraps to apply policies; it needs openai 2.x and mcp 1.x.
ensure_venv .venv-compat-agents --unpin "openai openai-agents griffelib mcp mcp-types websockets" \
  -e ".[test]" "openai-agents==0.11.0" "openai==2.26.0"
.venv-compat-agents/bin/pytest -q tests/openai_agents
