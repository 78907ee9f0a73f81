"""Bedrock Runtime clients for the tests: AWS's example credentials, the fake LLM server as the
endpoint, and nothing read from the developer's AWS set-up (environment, config files, instance
metadata)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from agentwatch._fakellm import FakeLLMServer
from agentwatch._fakellm._bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

__all__ = [
    "CLAUDE",
    "LLAMA",
    "NOVA",
    "REGION",
    "apply_guardrail",
    "aws_environment",
    "bedrock",
    "bedrock_client",
    "bedrock_clients",
    "converse_user",
    "has_member",
    "has_operation",
]

REGION = "us-east-1"
# Model ids as applications pass them: an inference profile, a cross-region profile, a plain id.
CLAUDE = "us.anthropic.claude-3-5-sonnet-20240620-v1:0"
NOVA = "us.amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The developer's profile, region, retry mode, keys or bearer token must not change the tests,
    # and nothing may ask the instance metadata service for credentials.
    for name in list(os.environ):
        if name.startswith(("AWS_", "BOTO_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@cache
def _botocore_session() -> Any:
    # One botocore session for every client: its loader reads the service model once, not per test.
    # Credentials, region, endpoint and retries are always given explicitly, and the session was
    # made with the developer's AWS configuration out of reach (see aws_environment).
    import botocore.session

    return botocore.session.Session()


def bedrock_client(server: FakeLLMServer, *, retries: dict[str, Any] | None = None, **config: Any) -> Any:
    """A ``bedrock-runtime`` client of a fresh boto3 session; botocore's retries off unless given."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session(botocore_session=_botocore_session()).client(
        "bedrock-runtime",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=TEST_ACCESS_KEY_ID,
        aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
        config=Config(retries=retries or {"total_max_attempts": 1}, **config),
    )


@pytest.fixture
def bedrock_clients(aws_environment: None) -> Iterator[Any]:
    """A factory like :func:`bedrock_client` whose clients (and their sockets) are closed at the end."""
    made: list[Any] = []

    def make(server: FakeLLMServer, **options: Any) -> Any:
        client = bedrock_client(server, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def bedrock(fake_llm: FakeLLMServer, bedrock_clients: Any) -> Any:
    return bedrock_clients(fake_llm)


@cache
def _service_model() -> Any:
    return _botocore_session().get_service_model("bedrock-runtime")


def has_member(shape: str, member: str) -> bool:
    """Whether this botocore's Bedrock Runtime model has ``shape.member``: the compat run uses the
    oldest botocore with Converse (1.34.116), which predates guardrails, prompt caching and more.
    botocore refuses parameters and drops response fields its model lacks."""
    return member in _service_model().shape_for(shape).members


def has_operation(name: str) -> bool:
    return name in _service_model().operation_names


def converse_user(text: str = "Say hello") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"text": text}]}]


def apply_guardrail(client: Any) -> Any:
    """A Bedrock Runtime operation agentwatch does not trace (and the fake server does not serve)."""
    return client.apply_guardrail(
        guardrailIdentifier="gr-1", guardrailVersion="1", source="INPUT", content=[{"text": {"text": "x"}}]
    )
