"""Mocked OpenAI and Anthropic transports: canned bodies built once, served without a network.

openai/anthropic 3.x/2.x send through ``httpx2``; the 1.x/2.x and 0.x lines some peers need send
through ``httpx``. :func:`http_module` picks whichever one the installed SDK imports, so the same
benchmark runs unchanged in every virtual environment. Every response body is built once at
import; the handler per request only wraps the bytes in a response object (as a real transport
would), so the bare call measures the SDK itself.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

API_KEY = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz"
ANTHROPIC_KEY = "sk-ant-bench-0123456789abcdefghijklmnopqrstuvwxyz"
BASE_URL = "http://llm.test/v1"
ANTHROPIC_BASE_URL = "http://llm.test"
MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5"
STREAM_CHUNKS = 1000

# One ordinary chat call: a system and a user message, two sampling parameters.
CHAT_KWARGS: dict[str, Any] = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello in five words."},
    ],
    "temperature": 0.2,
    "max_tokens": 64,
}
ANTHROPIC_KWARGS: dict[str, Any] = {
    "model": ANTHROPIC_MODEL,
    "max_tokens": 1024,
    "messages": [{"role": "user", "content": "Count to a thousand."}],
}

_USAGE = {
    "prompt_tokens": 24,
    "completion_tokens": 9,
    "total_tokens": 33,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

CHAT_BODY = json.dumps(
    {
        "id": "chatcmpl-bench0001",
        "object": "chat.completion",
        "created": 1763700000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there, how are you?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }
).encode()


def _chat_stream_body(chunks: int) -> bytes:
    """``chunks`` SSE events in all: a role chunk, content chunks, a finish chunk and a usage chunk."""

    def event(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
        chunk = {
            "id": "chatcmpl-bench0002",
            "object": "chat.completion.chunk",
            "created": 1763700000,
            "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
            "choices": choices,
            "usage": usage,
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def delta(content: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]

    parts = [event(delta({"role": "assistant", "content": ""}))]
    parts += [event(delta({"content": f" w{i}"})) for i in range(chunks - 3)]
    parts.append(event(delta({}, "stop")))
    parts.append(event([], {**_USAGE, "completion_tokens": chunks - 3, "total_tokens": 24 + chunks - 3}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _anthropic_stream_body(events: int) -> bytes:
    """``events`` SSE events: message_start, content_block_start, deltas, stop, message_delta/stop."""

    def event(kind: str, data: dict[str, Any]) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    usage = {
        "input_tokens": 14,
        "output_tokens": 1,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    parts = [
        event(
            "message_start",
            {
                "message": {
                    "id": "msg_bench0001",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-haiku-4-5-20251001",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": usage,
                }
            },
        ),
        event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    ]
    parts += [
        event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": f" {i}"}})
        for i in range(events - 5)
    ]
    parts.append(event("content_block_stop", {"index": 0}))
    parts.append(
        event(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": events - 5},
            },
        )
    )
    parts.append(event("message_stop", {}))
    return b"".join(parts)


CHAT_STREAM_BODY = _chat_stream_body(STREAM_CHUNKS)
ANTHROPIC_STREAM_BODY = _anthropic_stream_body(STREAM_CHUNKS)


def http_module(sdk: ModuleType) -> ModuleType:
    """The HTTP library the installed SDK sends through (``httpx2`` or ``httpx``)."""
    base = __import__(f"{sdk.__name__}._base_client", fromlist=["_"])
    module = getattr(base, "httpx2", None) or base.httpx
    assert isinstance(module, ModuleType)
    return module


def _json_response(hx: ModuleType, body: bytes) -> Any:
    return hx.Response(200, headers={"content-type": "application/json"}, content=body)


def _sse_response(hx: ModuleType, body: bytes) -> Any:
    return hx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


def openai_client(traceparents: list[str | None] | None = None) -> Any:
    """A client on the mocked transport; ``traceparents`` collects each request's header, if given."""
    import openai

    hx = http_module(openai)

    def handler(request: Any) -> Any:
        if traceparents is not None:
            traceparents.append(request.headers.get("traceparent"))
        # The request body is JSON the SDK built; only streaming needs to be told apart.
        if b'"stream":true' in request.content or b'"stream": true' in request.content:
            return _sse_response(hx, CHAT_STREAM_BODY)
        return _json_response(hx, CHAT_BODY)

    http_client = hx.Client(transport=hx.MockTransport(handler))
    return openai.OpenAI(api_key=API_KEY, base_url=BASE_URL, http_client=http_client, max_retries=0)


def anthropic_client() -> Any:
    import inspect

    import anthropic

    hx = http_module(anthropic)

    def handler(request: Any) -> Any:
        return _sse_response(hx, ANTHROPIC_STREAM_BODY)

    # anthropic >= 2 traces itself unless told not to: the benchmark measures agentwatch's own span.
    native = "open_telemetry" in inspect.signature(anthropic.Anthropic.__init__).parameters
    extra: dict[str, Any] = {"open_telemetry": False} if native else {}
    http_client = hx.Client(transport=hx.MockTransport(handler))
    return anthropic.Anthropic(
        api_key=ANTHROPIC_KEY, base_url=ANTHROPIC_BASE_URL, http_client=http_client, max_retries=0, **extra
    )
