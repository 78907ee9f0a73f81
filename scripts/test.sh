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
scripts/setup-redis.sh

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
# botocore 1.34.116 (with boto3 1.34.116, May 2024) is the first with Converse/ConverseStream, the
# oldest the Bedrock integration supports; it predates guardrails and prompt caching in Converse.
bedrock_tests=(tests/instrumentation/test_bedrock.py tests/instrumentation/test_bedrock_streams.py
  tests/instrumentation/test_bedrock_one_span.py tests/instrumentation/test_bedrock_replay.py
  tests/test_bedrock_policies.py tests/test_fakellm_bedrock.py tests/test_bedrock_zero_code.py)
ensure_venv .venv-compat-botocore --unpin "boto3 botocore s3transfer" -e ".[dev]" "boto3==1.34.116" "botocore==1.34.116"
.venv-compat-botocore/bin/pytest -q "${bedrock_tests[@]}"
