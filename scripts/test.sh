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
# `proxies`, so the oldest set pins httpx as that release did.
compat_tests=(tests/instrumentation tests/test_trace_headers.py tests/test_content_capture.py tests/test_setup.py)
ensure_venv .venv-compat-previous --unpin "openai anthropic" -e ".[dev]" "openai==2.54.0" "anthropic==1.17.0"
.venv-compat-previous/bin/pytest -q "${compat_tests[@]}"
ensure_venv .venv-compat-1x --unpin "openai anthropic" -e ".[dev]" "openai==1.91.0" "anthropic==0.125.0"
.venv-compat-1x/bin/pytest -q "${compat_tests[@]}"
ensure_venv .venv-compat-oldest --unpin "openai anthropic httpx" -e ".[dev]" "openai==1.26.0" "anthropic==0.27.0" "httpx<0.28"
.venv-compat-oldest/bin/pytest -q tests/instrumentation tests/test_trace_headers.py
# google-genai 1.25, the oldest supported: the first whose client retries on its own
# (HttpRetryOptions), which a policy must turn off, there only through a copy of the client (per-
# request retry options came later); it also predates httpx2 and `_embed_content`. Its websockets
# range (< 15.1) excludes the newest.
ensure_venv .venv-compat-google-genai --unpin "google-genai websockets tenacity" -e ".[dev]" "google-genai==1.25.0" "websockets<15.1"
.venv-compat-google-genai/bin/pytest -q tests/instrumentation/test_google_genai.py \
  tests/instrumentation/test_google_genai_equivalence.py tests/instrumentation/test_google_genai_replay.py \
  tests/test_llm_policies_google_genai.py
