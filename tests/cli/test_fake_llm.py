"""``agentwatch fake-llm``: the fake LLM on a port, driven by the real SDKs over real HTTP, and the
README's zero-code journey run offline against it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from agentwatch._cli._fake_llm import example_arguments
from cli._support import AGENTWATCH, clean_env, run

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "units": {"type": "string", "enum": ["metric", "imperial"]},
                "days": {"type": "integer", "minimum": 1},
                "verbose": {"type": "boolean"},
            },
            "required": ["city", "units", "days"],
        },
    },
}


class Served:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    def stop(self, sent: signal.Signals = signal.SIGINT) -> tuple[int, str, str]:
        self.process.send_signal(sent)
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, out, err


def _serve(*args: str) -> Served:
    process = subprocess.Popen(
        [str(AGENTWATCH), "fake-llm", "--port", "0", *args],
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches it as in a terminal (a background job would ignore SIGINT).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+) \(Ctrl-C stops\)", banner)
    assert match is not None, (banner, process.stderr.read() if process.stderr else "")
    return Served(process, match.group(1))


@pytest.fixture
def served() -> Iterator[Served]:
    server = _serve()
    yield server
    if server.process.poll() is None:
        server.stop()


def test_a_tool_using_conversation_with_the_real_openai_sdk(served: Served) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="sk-fake")
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    (call,) = first.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"city":"example city","units":"metric","days":1}'
    assert first.usage is not None and first.usage.prompt_tokens > 0
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny"}'},
    ]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER])
    assert second.choices[0].message.tool_calls is None
    assert second.choices[0].message.content == "Here is the answer, based on the tool results."
    streamed = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert text == "Hello from agentwatch's fake LLM (gpt-4o-mini)."
    client.close()
    code, out, err = served.stop()
    assert code == 0, err
    assert "stopped after 3 requests" in out
    assert "POST /v1/chat/completions gpt-4o-mini -> tool calls: get_weather" in err
    assert "POST /v1/chat/completions gpt-4o-mini (stream) -> text" in err


def test_the_anthropic_sdk_and_the_responses_api_too(served: Served) -> None:
    claude = anthropic.Anthropic(base_url=served.url, api_key="sk-ant-fake")
    message = claude.messages.create(
        model="claude-fake-1",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],
    )
    (block,) = message.content
    assert block.type == "tool_use" and block.input == {"city": "example city", "units": "metric", "days": 1}
    responses = openai.OpenAI(base_url=f"{served.url}/v1", api_key="sk-fake").responses.create(
        model="gpt-4o-mini", input="hi"
    )
    assert responses.output_text == "Hello from agentwatch's fake LLM (gpt-4o-mini)."


def test_injected_faults_reach_the_sdk_as_its_own_errors() -> None:
    server = _serve("--fault-rate", "1", "--seed", "3", "--quiet")
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-fake", max_retries=0)
        seen = set()
        for _ in range(6):
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            seen.add(caught.value.status_code)
        assert seen == {429, 503}
    finally:
        code, _, err = server.stop(signal.SIGTERM)
    assert code == 0
    assert err == ""  # --quiet


def test_a_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run([AGENTWATCH, "fake-llm", "--port", str(port)], cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "choose another --port" in result.stderr


def test_the_zero_code_journey_offline(served: Served, tmp_path: Path) -> None:
    """The README's `opentelemetry-instrument python app.py`, with no network and no account."""
    app = tmp_path / "app.py"
    app.write_text(
        "import openai\n"
        "client = openai.OpenAI()\n"
        "reply = client.chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n"
        "print('answer:', reply.choices[0].message.content)\n"
    )
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    env = {
        "OPENAI_BASE_URL": f"{served.url}/v1",
        "OPENAI_API_KEY": "sk-fake",
        "OTEL_SERVICE_NAME": "my-agent",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    result = run([instrument, sys.executable, app], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "answer: Hello from agentwatch's fake LLM (gpt-4o-mini)." in result.stdout
    assert '"name": "chat gpt-4o-mini"' in result.stdout
    assert '"gen_ai.usage.input_tokens"' in result.stdout
    assert os.listdir(tmp_path) == ["app.py"]


def test_the_in_code_journey_offline(served: Served, tmp_path: Path) -> None:
    """The README's tools-and-sessions example against `agentwatch fake-llm` instead of its own server."""
    example = Path(__file__).resolve().parents[2] / "examples" / "tools_and_sessions.py"
    env = {"OPENAI_BASE_URL": f"{served.url}/v1", "OPENAI_API_KEY": "sk-fake"}
    result = run([sys.executable, example], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "answer: Here is the answer, based on the tool results." in lines
    tree = [
        line.split(" gen_ai.")[0]
        for line in lines
        if line.lstrip().startswith(("invoke_agent", "chat", "execute_tool"))
    ]
    assert tree == [
        "invoke_agent weather-agent",
        "  chat gpt-4o-mini",
        "  execute_tool get_weather",
        "  execute_tool get_user_preferences",
        "  chat gpt-4o-mini",
    ]
    code, _, err = served.stop()
    assert code == 0
    assert err.count("POST /v1/chat/completions gpt-4o-mini") == 2


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (None, {}),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, {}),  # nothing required
        (
            {
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "minimum": 3},
                    "x": {"type": "number"},
                    "flag": {"type": ["boolean", "null"]},
                    "mode": {"type": "string", "default": "fast"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "where": {
                        "type": "object",
                        "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                        "required": ["lat"],
                    },
                },
                "required": ["n", "x", "flag", "mode", "tags", "where"],
            },
            {
                "n": 3,
                "x": 1.0,
                "flag": False,
                "mode": "fast",
                "tags": ["example tags"],
                "where": {"lat": 1.0},
            },
        ),
    ],
)
def test_example_arguments_satisfy_the_schema(schema: object, expected: dict[str, Any]) -> None:
    assert example_arguments(schema) == expected
