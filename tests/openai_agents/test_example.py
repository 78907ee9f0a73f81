"""The README's OpenAI Agents SDK example runs offline and shows what it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_app.py"


@pytest.mark.slow
def test_the_example_runs_one_trace_with_the_handoff_and_the_degraded_tool() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_", "OPENAI_"))}
    out = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "answer: Your invoice A-1 is paid; loyalty points are unavailable right now."
    assert lines[1].startswith("session trace_") and lines[1].endswith(" outcome completed")
    assert lines[2] == "iterations=3  input_tokens=36  output_tokens=21  tool_calls=3  tool_errors=1"
    trace = lines[3:-1]
    assert trace[:4] == [
        "invoke_agent Triage",
        "  chat gpt-4o-mini",
        "  execute_tool transfer_to_billing gen_ai.agent.handoff.target.name=Billing",
        "  invoke_agent Billing",
    ]
    assert sorted(trace[4:]) == sorted(
        [
            "    chat gpt-4o-mini",
            "    execute_tool get_invoice gen_ai.tool.call.id=call_2",
            "    execute_tool get_loyalty_points gen_ai.tool.call.id=call_3 error.type=ConnectionError",
            "    chat gpt-4o-mini",
        ]
    )
    assert lines[-1] == "traces: 1"
