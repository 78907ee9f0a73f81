"""The README's example runs (offline, against the fake LLM server) and shows what it claims."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tools_and_sessions.py"

# Until ``agentwatch/__init__.py`` exports the tools and sessions API, bind the names the example
# uses from their modules; once exported this does nothing.
BOOTSTRAP = """
import runpy, sys
import agentwatch, agentwatch._session, agentwatch.tools
for module, name in ((agentwatch.tools, "ToolRegistry"), (agentwatch._session, "session")):
    if not hasattr(agentwatch, name):
        setattr(agentwatch, name, getattr(module, name))
runpy.run_path(sys.argv[1], run_name="__main__")
"""


@pytest.mark.slow
def test_example_runs_and_links_everything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_", "OPENAI_"))}
    out = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "answer: It is sunny in Paris, 21 °C." in lines
    assert any(
        re.search(r": 2 LLM calls, 24\+14 tokens, cost \$0\.\d{6}, 2 tool calls \(1 failed\)$", line)
        for line in lines
    ), lines
    tree = [line for line in lines if line.lstrip().startswith(("invoke_agent", "chat", "execute_tool"))]
    assert tree == [
        "invoke_agent weather-agent",
        "  chat gpt-4o-mini",
        "  execute_tool get_weather gen_ai.tool.call.id=call_1",
        "  execute_tool get_user_preferences gen_ai.tool.call.id=call_2 error.type=ConnectionError",
        "  chat gpt-4o-mini",
    ]
    assert lines[-1].startswith("gen_ai.conversation.id on every span: ") and not lines[-1].endswith(": no")
    assert "agentwatch.tool_calls: tool call get_weather succeeded" in out.stderr
    assert "get_user_preferences failed (ConnectionError)" in out.stderr
