"""``agentwatch demo --provider openai`` (the default): the demo agent on the ``openai`` SDK's Chat
Completions (the seam: ``agentwatch._demo._provider``). Imports the SDK only when connected."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agentwatch._demo._plan import FALLBACK_MODEL, MAIN_MODEL
from agentwatch._demo._provider import AssistantTurn, DemoProvider, ToolCall, TurnRequest, json_arguments

if TYPE_CHECKING:
    from agentwatch._fakellm import FakeLLMServer

__all__ = ["DEMO_PROVIDER", "OpenAIDemo", "chat_answer", "chat_request", "streamed_chat_answer"]


def _messages(request: TurnRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": request.system},
        {"role": "user", "content": request.question},
    ]
    for exchange in request.history:
        reply = exchange.reply
        # The tool calls as the model sent them (``native``: chat-message dicts), arguments verbatim.
        messages.append(
            {"role": "assistant", "content": reply.text, "tool_calls": [c.native for c in reply.calls]}
        )
        messages.extend(
            {"role": "tool", "tool_call_id": r.call_id, "content": json.dumps(r.result)}
            for r in exchange.results
        )
    return messages


def _call(call_id: str, name: str, arguments: str) -> ToolCall:
    native = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return ToolCall(call_id, name, json_arguments(arguments), native)


def chat_request(request: TurnRequest) -> dict[str, Any]:
    """The Chat Completions arguments of ``request`` (LiteLLM's ``completion`` takes the same)."""
    return {
        "model": request.model,
        "messages": _messages(request),
        "tools": [
            {
                "type": "function",
                "function": {"name": t.name, "description": t.description, "parameters": dict(t.parameters)},
            }
            for t in request.tools
        ],
        "extra_headers": dict(request.headers),
    }


def chat_answer(message: Any) -> AssistantTurn:
    """The turn of a Chat Completions answer's message."""
    calls = tuple(
        _call(c.id, c.function.name, c.function.arguments)
        for c in (message.tool_calls or [])
        if getattr(c, "function", None) is not None
    )
    return AssistantTurn(message.content, calls)


def streamed_chat_answer(chunks: Iterable[Any]) -> AssistantTurn:
    """The turn of a streamed Chat Completions answer: its text and tool calls put together."""
    text: list[str] = []
    pending: dict[int, list[str]] = {}  # index -> [id, name, arguments]
    for chunk in chunks:
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
            for part in delta.tool_calls or []:
                call = pending.setdefault(part.index, ["", "", ""])
                if part.id:
                    call[0] = part.id
                if part.function is not None:
                    call[1] += part.function.name or ""
                    call[2] += part.function.arguments or ""
    return AssistantTurn("".join(text) or None, tuple(_call(*pending[i]) for i in sorted(pending)))


class OpenAIDemo(DemoProvider):
    provider_name = "openai"
    sdk = "openai"
    modules = ("openai",)
    install = "agentwatch[openai]"
    main_model = MAIN_MODEL
    fallback_model = FALLBACK_MODEL

    def __init__(self, server: FakeLLMServer) -> None:
        import openai

        self._client = openai.OpenAI(
            base_url=server.openai_base_url, api_key="sk-agentwatch-demo", max_retries=0
        )

    def complete(self, request: TurnRequest) -> AssistantTurn:
        kwargs = chat_request(request)
        if not request.stream:
            return chat_answer(self._client.chat.completions.create(**kwargs).choices[0].message)
        stream = self._client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
        with stream:
            return streamed_chat_answer(stream)

    def close(self) -> None:
        self._client.close()


DEMO_PROVIDER = OpenAIDemo
