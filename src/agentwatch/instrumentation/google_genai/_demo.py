"""``agentwatch demo --provider gemini``: the demo agent on the ``google-genai`` SDK, Gemini API
(the seam: ``agentwatch._demo._provider``). Imports the SDK only when connected.

The session and turn headers go in each request's ``config.http_options.headers`` (the SDK merges
them with the client's); the client is the Gemini API's (``vertexai=False``) with a fake key
whatever ``GOOGLE_API_KEY``/``GOOGLE_GENAI_USE_VERTEXAI`` say."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from agentwatch._demo._provider import AssistantTurn, DemoProvider, ToolCall, TurnRequest

if TYPE_CHECKING:
    from agentwatch._fakellm import FakeLLMServer

__all__ = ["DEMO_PROVIDER", "GeminiDemo"]


def _contents(request: TurnRequest) -> list[dict[str, Any]]:
    contents: list[dict[str, Any]] = [{"role": "user", "parts": [{"text": request.question}]}]
    for exchange in request.history:
        reply = exchange.reply
        parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
        parts.extend(
            {"function_call": {"id": c.id, "name": c.name, "args": dict(c.arguments)}} for c in reply.calls
        )
        contents.append({"role": "model", "parts": parts})
        # A function response is a JSON object; "output" is the key the API documents for the result.
        responses = [
            {"function_response": {"id": r.call_id, "name": r.name, "response": {"output": r.result}}}
            for r in exchange.results
        ]
        contents.append({"role": "user", "parts": responses})
    return contents


def _turn(parts: Iterable[Any]) -> AssistantTurn:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in parts:
        if part.text:
            texts.append(part.text)
        call = part.function_call
        if call is not None and call.name:
            # The SDK's FunctionCall itself goes to the tool registry.
            calls.append(ToolCall(call.id or "", call.name, dict(call.args or {}), call))
    return AssistantTurn("".join(texts) or None, tuple(calls))


def _parts(response: Any) -> list[Any]:
    candidates = response.candidates or []
    content = candidates[0].content if candidates else None
    return list(content.parts or []) if content is not None else []


class GeminiDemo(DemoProvider):
    provider_name = "gcp.gemini"
    sdk = "google-genai"
    modules = ("google.genai",)
    install = "agentwatch[google-genai]"
    main_model = "gemini-2.5-flash-lite"
    fallback_model = "gemini-2.5-flash"

    def __init__(self, server: FakeLLMServer) -> None:
        from google import genai

        self._client = genai.Client(
            vertexai=False, api_key="agentwatch-demo-key", http_options={"base_url": server.url}
        )

    def complete(self, request: TurnRequest) -> AssistantTurn:
        config: dict[str, Any] = {
            "system_instruction": request.system,
            "tools": [
                {
                    "function_declarations": [
                        {"name": t.name, "description": t.description, "parameters": dict(t.parameters)}
                        for t in request.tools
                    ]
                }
            ],
            "http_options": {"headers": dict(request.headers)},
        }
        kwargs: dict[str, Any] = {"model": request.model, "contents": _contents(request), "config": config}
        models = self._client.models
        if not request.stream:
            return _turn(_parts(models.generate_content(**kwargs)))
        # The API sends each function call whole, in one chunk; texts come in pieces.
        return _turn(part for chunk in models.generate_content_stream(**kwargs) for part in _parts(chunk))

    def close(self) -> None:
        close = getattr(self._client, "close", None)  # older google-genai clients have none
        if close is not None:
            close()


DEMO_PROVIDER = GeminiDemo
