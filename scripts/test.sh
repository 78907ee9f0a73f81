#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs the project and its test dependencies into
# .venv, sets up the native observability stack (Debian's prometheus; Jaeger v2 built from the
# Go module proxy, cached), runs the linters, the type checker and pytest, then re-runs the
# instrumentation tests against the oldest and the previous major versions of the LLM SDKs, and the
# LangChain/LangGraph tests against the oldest supported langgraph and langchain-core.
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
# `proxies`, so the oldest set pins httpx as that release did. The openai 1.x sets install `dev-base`:
# no langchain-openai release for langchain-core 1.x runs on openai 1.x.
compat_tests=(tests/instrumentation tests/test_trace_headers.py tests/test_content_capture.py tests/test_setup.py)
ensure_venv .venv-compat-previous --unpin "openai anthropic" -e ".[dev]" "openai==2.54.0" "anthropic==1.17.0"
.venv-compat-previous/bin/pytest -q "${compat_tests[@]}"
ensure_venv .venv-compat-1x --unpin "openai anthropic" -e ".[dev-base]" "openai==1.91.0" "anthropic==0.125.0"
.venv-compat-1x/bin/pytest -q "${compat_tests[@]}"
ensure_venv .venv-compat-oldest --unpin "openai anthropic httpx" -e ".[dev-base]" "openai==1.26.0" "anthropic==0.27.0" "httpx<0.28"
.venv-compat-oldest/bin/pytest -q tests/instrumentation tests/test_trace_headers.py

# LangChain/LangGraph: the oldest supported set. langgraph 0.2.17 is the first release that runs on
# langchain-core 0.3, the oldest core the LangChain instrumentation supports, with the first
# langchain-openai/langchain-groq of that core. langchain-core 0.3.0 caps packaging, tenacity and
# langsmith below our pins, and reads pydantic's model_fields the way pydantic 2.11 deprecated.
langchain_tests=(tests/graphs/test_agent_runs.py tests/graphs/test_chat_models.py tests/graphs/test_tool_policies.py tests/tools/test_langchain.py)
ensure_venv .venv-compat-langgraph \
  --unpin "langgraph langgraph-checkpoint langgraph-prebuilt langgraph-sdk langchain langchain-core langchain-openai langchain-groq langchain-protocol groq openai langsmith packaging tenacity" \
  -e ".[dev]" "langgraph==0.2.17" "langchain-core==0.3.0" "langchain-openai==0.2.0" "langchain-groq==0.2.0" "openai==1.91.0"
.venv-compat-langgraph/bin/pytest -q -W "ignore::pydantic.warnings.PydanticDeprecatedSince211" "${langchain_tests[@]}"
