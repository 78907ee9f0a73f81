"""What the LiteLLM tests share: the providers they call through LiteLLM, over the fake server."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentwatch._fakellm import FakeLLMServer, Reply
from support import user

# The LiteLLM tests skip where LiteLLM is not installed (the compat runs on openai 1.x: it needs 2.x).
litellm = pytest.importorskip("litellm")

KEY = "sk-TESTKEYlitellm0123456789abcdefXYZ"

# LiteLLM's stream wrapper closes (close(), aclose(), with, async with) since 1.108.
STREAM_CLOSES = hasattr(litellm.CustomStreamWrapper, "close")
needs_stream_close = pytest.mark.skipif(not STREAM_CLOSES, reason="this LiteLLM's streams cannot be closed")


@dataclass(frozen=True)
class Route:
    """One provider as LiteLLM reaches it: by the openai SDK, or by its own HTTP handlers."""

    provider: str  # gen_ai.provider.name
    model: str  # as the application passes it to LiteLLM
    name: str  # as the provider knows it (gen_ai.request.model)
    path: str  # "openai": the fake server's /v1 base; "root": its root

    def base(self, server: FakeLLMServer) -> str:
        return server.openai_base_url if self.path == "openai" else server.url

    def kwargs(self, server: FakeLLMServer, **extra: Any) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": user(),
            "api_base": self.base(server),
            "api_key": KEY,
            **extra,
        }


OPENAI = Route("openai", "openai/gpt-4o-mini", "gpt-4o-mini", "openai")  # the openai SDK
ANTHROPIC = Route(
    "anthropic", "anthropic/claude-haiku-4-5", "claude-haiku-4-5", "root"
)  # LiteLLM's httpx handler
GROQ = Route("groq", "groq/llama-3.1-8b-instant", "llama-3.1-8b-instant", "openai")  # LiteLLM's httpx handler
ROUTES = [OPENAI, ANTHROPIC, GROQ]
ROUTE_IDS = [route.provider for route in ROUTES]


def complete(route: Route, server: FakeLLMServer, **extra: Any) -> Any:
    return litellm.completion(**route.kwargs(server, **extra))


async def acomplete(route: Route, server: FakeLLMServer, **extra: Any) -> Any:
    return await litellm.acompletion(**route.kwargs(server, **extra))


def _is_async(client: object) -> bool:
    name = type(client).__name__
    return name.startswith("Async") or name in ("BaseLLMAIOHTTPHandler", "ClientSession")


async def close_clients() -> None:
    """LiteLLM caches its async HTTP clients process-wide, each bound to the event loop that made
    it: close and forget them before that loop ends (a test's loop ends with the test). Its sync
    clients stay cached, as in an application."""
    close = getattr(litellm, "close_litellm_async_clients", None)
    if close is not None:
        await close()
    cache = litellm.in_memory_llm_clients_cache
    for key, client in list(getattr(cache, "cache_dict", {}).items()):
        if _is_async(client):
            if close is None:
                closing = getattr(client, "aclose", None) or getattr(client, "close", None)
                if closing is not None:
                    await closing()
            cache.delete_cache(key)


def run(coroutine: Any) -> Any:
    """``asyncio.run`` for LiteLLM: its async clients closed before the loop ends."""

    async def main() -> Any:
        try:
            return await coroutine
        finally:
            await close_clients()

    return asyncio.run(main())


# -- replayed traffic --------------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "replay" / "litellm"


def replay(name: str) -> Reply:
    """A recorded response (tests/fixtures/replay/litellm): JSON as recorded, an event stream
    byte for byte, one event per HTTP chunk."""
    raw = (FIXTURES / name).read_bytes()
    if name.endswith(".json"):
        return Reply.json(json.loads(raw))
    separator = b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n"
    frames = [frame + separator for frame in raw.split(separator) if frame.strip()]
    return Reply.frames(frames, content_type="text/event-stream")
