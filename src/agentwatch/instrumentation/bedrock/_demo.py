"""``agentwatch demo --provider bedrock``: the demo agent on AWS Bedrock Runtime's Converse API
through ``boto3`` (the seam: ``agentwatch._demo._provider``). Imports the SDK only when connected.

The fake server verifies SigV4 signatures, so the client signs with AWS's documented example
credentials for a fixed region; nothing of the user's AWS set-up is read: not the ``AWS_*``
environment (profile, keys, ``AWS_BEARER_TOKEN_BEDROCK``, endpoint, retry mode), not
``~/.aws/config`` or ``~/.aws/credentials``, not the proxy variables. botocore has no per-call
headers: the session and turn headers are added by a ``before-send`` handler (after signing:
unsigned headers do not affect the signature) from a context variable, which the policy's timed
attempts inherit (they run in a copy of the caller's context)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from agentwatch._demo._provider import AssistantTurn, DemoProvider, ToolCall, TurnRequest, json_arguments

if TYPE_CHECKING:
    from agentwatch._fakellm import FakeLLMServer

__all__ = ["DEMO_PROVIDER", "BedrockDemo"]

REGION = "us-east-1"
_headers: ContextVar[Mapping[str, str] | None] = ContextVar("agentwatch_demo_bedrock_headers", default=None)


def _messages(request: TurnRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": request.question}]}]
    for exchange in request.history:
        reply = exchange.reply
        content: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
        content.extend(
            {"toolUse": {"toolUseId": c.id, "name": c.name, "input": dict(c.arguments)}} for c in reply.calls
        )
        messages.append({"role": "assistant", "content": content})
        results = [
            {
                "toolResult": {
                    "toolUseId": r.call_id,
                    # A json content block holds a JSON object.
                    "content": [{"json": r.result if isinstance(r.result, dict) else {"output": r.result}}],
                }
            }
            for r in exchange.results
        ]
        messages.append({"role": "user", "content": results})
    return messages


def _turn(blocks: Iterable[Mapping[str, Any]]) -> AssistantTurn:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        use = block.get("toolUse")
        if isinstance(use, Mapping):
            arguments = use.get("input")
            # The toolUse content block itself goes to the tool registry.
            calls.append(
                ToolCall(
                    use["toolUseId"],
                    use["name"],
                    arguments if isinstance(arguments, dict) else {},
                    dict(block),
                )
            )
    return AssistantTurn("".join(texts) or None, tuple(calls))


def _streamed_blocks(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """ConverseStream's events assembled into Converse's content blocks."""
    blocks: dict[int, dict[str, Any]] = {}
    for event in events:
        if "contentBlockStart" in event:
            start = event["contentBlockStart"]
            use = start.get("start", {}).get("toolUse")
            if use is not None:
                blocks[start["contentBlockIndex"]] = {"toolUse": {**use, "input": ""}}
        elif "contentBlockDelta" in event:
            delta = event["contentBlockDelta"]
            block = blocks.setdefault(delta["contentBlockIndex"], {"text": ""})
            if "text" in delta["delta"]:
                block["text"] = block.get("text", "") + delta["delta"]["text"]
            elif "toolUse" in delta["delta"] and "toolUse" in block:
                block["toolUse"]["input"] += delta["delta"]["toolUse"].get("input", "")
    for block in blocks.values():
        use = block.get("toolUse")
        if use is not None:
            use["input"] = json_arguments(use["input"])
    return [blocks[i] for i in sorted(blocks)]


def _isolated_session() -> Any:
    """A botocore session that reads no environment variable and no AWS config or credentials file."""
    import botocore.session
    from botocore.configprovider import (
        BOTOCORE_DEFAUT_SESSION_VARIABLES,
        ConfigChainFactory,
        ConfigValueStore,
    )

    session = botocore.session.Session()
    chain = ConfigChainFactory(session=session, environ={})
    session.register_component(
        "config_store",
        ConfigValueStore(
            mapping={
                name: chain.create_config_chain(
                    instance_name=name,
                    env_var_names=env,
                    config_property_names=config,
                    default=default,
                    conversion_func=convert,
                )
                for name, (config, env, default, convert) in BOTOCORE_DEFAUT_SESSION_VARIABLES.items()
            }
        ),
    )
    for name in ("config_file", "credentials_file"):
        session.set_config_variable(name, os.devnull)  # not a file: no profiles at all
    return session


def _add_headers(request: Any, **kwargs: Any) -> None:
    for name, value in (_headers.get() or {}).items():
        request.headers[name] = value


class BedrockDemo(DemoProvider):
    provider_name = "aws.bedrock"
    sdk = "boto3"
    modules = ("boto3",)
    install = "agentwatch[bedrock]"
    # Cross-region inference profiles, as applications name the models; the fallback is another
    # model family behind the same Converse API.
    main_model = "us.amazon.nova-micro-v1:0"
    fallback_model = "us.anthropic.claude-haiku-4-5-20251001-v1:0"

    def __init__(self, server: FakeLLMServer) -> None:
        import boto3
        from botocore.config import Config

        from agentwatch._fakellm._bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY

        self._client = boto3.session.Session(botocore_session=_isolated_session()).client(
            "bedrock-runtime",
            endpoint_url=server.url,
            region_name=REGION,
            aws_access_key_id=TEST_ACCESS_KEY_ID,
            aws_secret_access_key=TEST_SECRET_ACCESS_KEY,
            # SigV4 set in code: an AWS_BEARER_TOKEN_BEDROCK would otherwise be preferred.
            config=Config(signature_version="v4", retries={"total_max_attempts": 1}, proxies={}),
        )
        self._client.meta.events.register("before-send.bedrock-runtime", _add_headers)

    def complete(self, request: TurnRequest) -> AssistantTurn:
        kwargs: dict[str, Any] = {
            "modelId": request.model,
            "system": [{"text": request.system}],
            "messages": _messages(request),
            "toolConfig": {
                "tools": [
                    {
                        "toolSpec": {
                            "name": t.name,
                            "description": t.description,
                            "inputSchema": {"json": dict(t.parameters)},
                        }
                    }
                    for t in request.tools
                ]
            },
        }
        token = _headers.set(request.headers)
        try:
            if not request.stream:
                response = self._client.converse(**kwargs)
                return _turn(response["output"]["message"]["content"])
            response = self._client.converse_stream(**kwargs)
            return _turn(_streamed_blocks(response["stream"]))
        finally:
            _headers.reset(token)

    def close(self) -> None:
        self._client.close()


DEMO_PROVIDER = BedrockDemo
