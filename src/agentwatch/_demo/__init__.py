"""The demo agent engine behind ``agentwatch demo``, importable on its own (the stack e2e test drives it).

A fake LLM server on 127.0.0.1 answers with scripted, seeded tool-calling turns; the real SDK of
the run's provider (``openai`` by default; see ``_provider.py`` for the seam and where each
provider's adapter lives), instrumented by agentwatch, calls it; the tools run through a
:class:`agentwatch.ToolRegistry` and their resilience policies. See :func:`run_demo`.

``REGISTRY`` is the demo's tool registry (``agentwatch runbook --registry agentwatch._demo:REGISTRY``).
"""

from __future__ import annotations

from agentwatch._demo._otel import SessionRecord
from agentwatch._demo._plan import (
    AGENT_NAME,
    FALLBACK_MODEL,
    MAIN_MODEL,
    MAX_ITERATIONS,
    TOOL_NAMES,
    FaultModel,
    SessionPlan,
    build_plan,
    plan_digest,
)
from agentwatch._demo._run import LLM_POLICY, DemoOptions, DemoProgress, DemoResult, run_demo
from agentwatch._demo._tools import POLICIES, REGISTRY

__all__ = [
    "AGENT_NAME",
    "FALLBACK_MODEL",
    "LLM_POLICY",
    "MAIN_MODEL",
    "MAX_ITERATIONS",
    "POLICIES",
    "REGISTRY",
    "TOOL_NAMES",
    "DemoOptions",
    "DemoProgress",
    "DemoResult",
    "FaultModel",
    "SessionPlan",
    "SessionRecord",
    "build_plan",
    "plan_digest",
    "run_demo",
]
