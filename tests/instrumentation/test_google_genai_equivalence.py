"""A patched google-genai call returns exactly what the unpatched call returns and raises exactly the
same: each scenario runs bare and instrumented against a fresh fake server with the same script."""

from __future__ import annotations

import asyncio
import gc
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest
from google import genai
from google.genai import types

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import make_signals

KEY = "AIzaSyTESTKEYgemini0123456789abcdefXYZ"
MODEL = "gemini-2.5-flash"


def _normalise(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        # The HTTP headers carry the server's Date: the only part that differs between two runs.
        return (value.__class__, _normalise(value.model_dump(exclude={"sdk_http_response"})))
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def _consume(stream: Any) -> Any:
    chunks: list[Any] = []
    try:
        for chunk in stream:
            chunks.append(_normalise(chunk))
    except Exception as exc:
        return (type(stream), chunks, type(exc), str(exc))
    return (type(stream), chunks)


async def _aconsume(awaitable: Any) -> Any:
    stream = await awaitable
    chunks: list[Any] = []
    try:
        async for chunk in stream:
            chunks.append(_normalise(chunk))
    except Exception as exc:
        return (type(stream), chunks, type(exc), str(exc))
    return (type(stream), chunks)


def _arun(gemini: genai.Client, make: Callable[[], Any]) -> Any:
    """Runs ``make()`` on a loop of its own, then closes the client's sessions on that loop."""

    async def run() -> Any:
        try:
            return await make()
        finally:
            close = getattr(gemini.aio, "aclose", None)
            if close is not None:
                await close()

    return asyncio.run(run())


@dataclass(frozen=True)
class Scenario:
    name: str
    replies: tuple[Reply, ...]
    call: Callable[[genai.Client], Any]
    timeout_ms: int | None = None


def _weather(city: str) -> str:
    """The weather of a city."""
    return f"sunny in {city}"


SCENARIOS = [
    Scenario(
        "generate",
        (Reply.text("hi", reasoning_tokens=2),),
        lambda c: c.models.generate_content(model=MODEL, contents="x"),
    ),
    Scenario(
        "function call",
        (Reply.tool_calls([("search", {"q": "otel"})]),),
        lambda c: c.models.generate_content(model=MODEL, contents="x"),
    ),
    Scenario(
        "automatic function calling",
        (Reply.tool_calls([("_weather", {"city": "Oslo"})]), Reply.text("It is sunny.")),
        lambda c: c.models.generate_content(
            model=MODEL, contents="x", config=types.GenerateContentConfig(tools=[_weather])
        ),
    ),
    Scenario(
        "stream",
        (Reply.text("a b c"),),
        lambda c: _consume(c.models.generate_content_stream(model=MODEL, contents="x")),
    ),
    Scenario(
        "stream error",
        (Reply.text("a b c d", error_after_chunks=2),),
        lambda c: _consume(c.models.generate_content_stream(model=MODEL, contents="x")),
    ),
    Scenario(
        "stream cut",
        (Reply.text("a b c d", disconnect_after_chunks=2),),
        lambda c: _consume(c.models.generate_content_stream(model=MODEL, contents="x")),
    ),
    Scenario(
        "embed", (), lambda c: c.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    ),
    Scenario("429", (Reply.error(429),), lambda c: c.models.generate_content(model=MODEL, contents="x")),
    Scenario("500", (Reply.error(500),), lambda c: c.models.generate_content(model=MODEL, contents="x")),
    Scenario(
        "malformed", (Reply.malformed(),), lambda c: c.models.generate_content(model=MODEL, contents="x")
    ),
    Scenario("reset", (Reply.reset(),), lambda c: c.models.generate_content(model=MODEL, contents="x")),
    Scenario(
        "timeout", (Reply.hang(3),), lambda c: c.models.generate_content(model=MODEL, contents="x"), 300
    ),
    Scenario(
        "async generate",
        (Reply.text("hi"),),
        lambda c: _arun(c, lambda: c.aio.models.generate_content(model=MODEL, contents="x")),
    ),
    Scenario(
        "async stream",
        (Reply.text("a b c"),),
        lambda c: _arun(
            c, lambda: _aconsume(c.aio.models.generate_content_stream(model=MODEL, contents="x"))
        ),
    ),
    Scenario(
        "async stream error",
        (Reply.text("a b c d", error_after_chunks=1),),
        lambda c: _arun(
            c, lambda: _aconsume(c.aio.models.generate_content_stream(model=MODEL, contents="x"))
        ),
    ),
    Scenario(
        "async 503",
        (Reply.error(503),),
        lambda c: _arun(c, lambda: c.aio.models.generate_content(model=MODEL, contents="x")),
    ),
]


def _run(scenario: Scenario) -> tuple[Any, ...]:
    with FakeLLMServer() as server:
        server.enqueue(*scenario.replies)
        http: dict[str, Any] = {"base_url": server.url}
        if scenario.timeout_ms is not None:
            http["timeout"] = scenario.timeout_ms
        gemini = genai.Client(api_key=KEY, http_options=http)
        try:
            value = scenario.call(gemini)
        except Exception as exc:
            return ("raised", type(exc), str(exc))
        finally:
            if hasattr(gemini, "close"):
                gemini.close()
            gc.collect()  # what the old SDKs leave open is collected here, under this test's filters
        return ("returned", _normalise(value))


@pytest.fixture
def instrumentation() -> Iterator[Callable[[], None]]:
    signals = make_signals()
    yield lambda: agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.uninstrument()
    set_default_telemetry()


# older google-genai cannot close its aiohttp sessions (no aclose).
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_same_result_with_and_without_instrumentation(
    scenario: Scenario, instrumentation: Callable[[], None]
) -> None:
    bare = _run(scenario)
    instrumentation()
    assert _run(scenario) == bare


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_scenarios_cover_errors() -> None:
    """Guard against the matrix silently losing its failure cases."""
    names: tuple[str, ...] = ("stream cut", "429", "500", "malformed", "reset", "timeout", "async 503")
    if '{"error":' in inspect.getsource(genai._api_client.BaseApiClient.request_streamed):
        names += ("stream error", "async stream error")  # older SDKs end such a stream quietly
    outcomes = [_run(s) for s in SCENARIOS if s.name in names]
    assert sum(o[0] == "raised" or len(o[1]) == 4 for o in outcomes) == len(names)
