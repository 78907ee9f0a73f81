"""The README's LangGraph example runs offline and shows what it claims."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "langgraph_app.py"


@pytest.mark.slow
def test_the_langgraph_example_runs_offline() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_"))}
    out = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "answer: It is sunny in Paris, 21 °C."
    assert lines[1].startswith('the model read: {"status":"unavailable","tool":"get_user_preferences"')
    assert lines[2] == "invoke_agent weather-agent gen_ai.conversation.id=conversation-42"
    assert lines[3].startswith(
        "  session: {'outcome': 'completed', 'iterations': 2, 'tool_calls': 2, 'tool_errors': 1} cost $0.0000"
    )
    tools = sorted(lines[5:7])  # the two tool calls run in parallel
    assert lines[4] == lines[7] == "  chat gpt-4o-mini gen_ai.conversation.id=conversation-42"
    assert tools == [
        "  execute_tool get_user_preferences gen_ai.conversation.id=conversation-42 error.type=ConnectionError",
        "  execute_tool get_weather gen_ai.conversation.id=conversation-42",
    ]
    assert lines[8] == "agentwatch.sessions by outcome: {'completed': 1}"
