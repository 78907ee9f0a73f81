"""Bedrock under ``opentelemetry-instrument``, in a fresh interpreter, next to the botocore
instrumentor (installed with the dev dependencies, so it loads too, in entry-point order)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._fakellm._bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY
from support import json_documents

APP = textwrap.dedent(
    """
    import os
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime",
        endpoint_url=os.environ["FAKE_BEDROCK_URL"],
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )
    messages = [{"role": "user", "content": [{"text": "hi"}]}]
    client.converse(modelId="us.amazon.nova-pro-v1:0", messages=messages)
    for _event in client.converse_stream(modelId="us.amazon.nova-pro-v1:0", messages=messages)["stream"]:
        pass
    """
)


def _run(tmp_path: Path, server: FakeLLMServer, **env: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_", "AWS_"))},
        "FAKE_BEDROCK_URL": server.url,
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_ACCESS_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "OTEL_SERVICE_NAME": "bedrock-zero-code",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    bindir = Path(sys.executable).parent
    return subprocess.run(
        [str(bindir / "opentelemetry-instrument"), sys.executable, str(app)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_zero_code_next_to_the_botocore_instrumentor(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("hi"), Reply.text("hi"))
    result = _run(tmp_path, fake_llm)
    assert result.returncode == 0, result.stderr
    spans = json_documents(result.stdout)
    # The console exporter shows no scope: the botocore instrumentor's spans carry rpc.system.
    assert [s["name"] for s in spans] == ["chat us.amazon.nova-pro-v1:0"] * 2
    assert not any("rpc.system" in s["attributes"] for s in spans)
    assert spans[1]["attributes"]["agentwatch.stream.outcome"] == "completed"
    assert all("traceparent" in r.headers for r in fake_llm.requests)


def test_disabling_agentwatch_bedrock_by_name(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    result = _run(tmp_path, fake_llm, OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="agentwatch_bedrock")
    assert result.returncode == 0, result.stderr
    # Only the botocore instrumentor's spans are left, and no agentwatch header.
    spans = json_documents(result.stdout)
    assert len(spans) == 2
    assert all(s["attributes"]["rpc.system"] == "aws-api" for s in spans)
    assert not any("agentwatch.stream.outcome" in s["attributes"] for s in spans)
    assert not any("traceparent" in r.headers for r in fake_llm.requests)
