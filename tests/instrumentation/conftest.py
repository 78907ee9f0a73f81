"""Fixtures of the LiteLLM tests (their modules ask for them by name)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest


@pytest.fixture
def litellm_setup(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """LiteLLM as a test needs it: quiet, and with an event loop the test closes.

    LiteLLM prints help text to stdout on every error unless told not to. Its sync paths call
    ``asyncio.get_event_loop()`` on the calling thread (service logging), which creates and sets a
    loop that nobody closes: left to the garbage collector it would warn during a later test.
    """
    import litellm

    monkeypatch.setattr(litellm, "suppress_debug_info", True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
async def litellm_async_clients() -> AsyncIterator[None]:
    """For async tests: LiteLLM's cached async clients closed before the test's loop ends."""
    from instrumentation._litellm_support import close_clients

    yield
    await close_clients()
