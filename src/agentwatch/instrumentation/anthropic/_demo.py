"""``agentwatch demo --provider anthropic``: the demo agent on the ``anthropic`` SDK's Messages API
(the seam: ``agentwatch._demo._provider``). Imports the SDK only when connected.

Streamed turns use ``messages.create(stream=True)``: the call the LLM policy (retries, fallback,
breaker) wraps, as it wraps the unstreamed one."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from agentwatch._demo._provider import AssistantTurn, DemoProvider, ToolCall, TurnRequest, json_arguments

if TYPE_CHECKING:
    from agentwatch._fakellm import FakeLLMServer

__all__ = ["DEMO_PROVIDER", "AnthropicDemo"]

# The Messages API requires a cap on the answer's length.
_MAX_TOKENS = 1024


def _messages(request: TurnRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": request.question}]
    for exchange in request.history:
        reply = exchange.reply
        # The API refuses empty text blocks.
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        content.extend(
            {"type": "tool_use", "id": c.id, "name": c.name, "input": dict(c.arguments)} for c in reply.calls
        )
        messages.append({"role": "assistant", "content": content})
        # Tool results go back in one user message, one block per call.
        results = [
            {"type": "tool_result", "tool_use_id": r.call_id, "content": json.dumps(r.result)}
            for r in exchange.results
        ]
        messages.append({"role": "user", "content": results})
    return messages


def _streamed_call(call_id: str, name: str, partial_json: str) -> ToolCall:
    """A tool call assembled from a stream's deltas, as a ``tool_use`` block dict."""
    arguments = json_arguments(partial_json)
    native = {"type": "tool_use", "id": call_id, "name": name, "input": arguments}
    return ToolCall(call_id, name, arguments, native)


class AnthropicDemo(DemoProvider):
    provider_name = "anthropic"
    sdk = "anthropic"
    modules = ("anthropic",)
    install = "agentwatch[anthropic]"
    main_model = "claude-haiku-4-5"
    fallback_model = "claude-sonnet-4-5"

    def __init__(self, server: FakeLLMServer) -> None:
        import anthropic

        self._client = anthropic.Anthropic(
            base_url=server.anthropic_base_url, api_key="sk-ant-agentwatch-demo", max_retries=0
        )

    def complete(self, request: TurnRequest) -> AssistantTurn:
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": _MAX_TOKENS,
            "system": request.system,
            "messages": _messages(request),
            "tools": [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ],
            "extra_headers": dict(request.headers),
        }
        if not request.stream:
            message = self._client.messages.create(**kwargs)
            text = "".join(b.text for b in message.content if b.type == "text")
            calls = tuple(
                ToolCall(
                    b.id, b.name, b.input if isinstance(b.input, dict) else {}, b
                )  # the SDK's ToolUseBlock
                for b in message.content
                if b.type == "tool_use"
            )
            return AssistantTurn(text or None, calls)
        texts: list[str] = []
        blocks: dict[int, list[str]] = {}  # index of a tool_use block -> [id, name, partial JSON]
        with self._client.messages.create(**kwargs, stream=True) as stream:
            for event in stream:
                if event.type == "content_block_start" and event.content_block.type == "tool_use":
                    blocks[event.index] = [event.content_block.id, event.content_block.name, ""]
                elif event.type == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        texts.append(delta.text)
                    elif delta.type == "input_json_delta" and event.index in blocks:
                        blocks[event.index][2] += delta.partial_json
        calls = tuple(_streamed_call(*blocks[i]) for i in sorted(blocks))
        return AssistantTurn("".join(texts) or None, calls)

    def close(self) -> None:
        self._client.close()


DEMO_PROVIDER = AnthropicDemo
