"""Uninstrument takes off agentwatch's wrapper only, when another instrumentor wrapped after it."""

from __future__ import annotations

from typing import Any

import wrapt
from openai.resources.chat.completions import Completions
from opentelemetry.sdk.trace import TracerProvider

from agentwatch.instrumentation.openai import OpenAIInstrumentor


def _other(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    return wrapped(*args, **kwargs)


def test_a_wrapper_put_on_after_agentwatch_stays_and_ours_goes() -> None:
    original = vars(Completions)["create"]
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        ours = vars(Completions)["create"]
        assert ours.__wrapped__ is original
        # Another instrumentation (OTel openai-v2, an APM agent) wraps the same method after us.
        theirs = wrapt.wrap_function_wrapper(Completions, "create", _other)
    finally:
        instrumentor.uninstrument()
    try:
        assert vars(Completions)["create"] is theirs  # theirs is still on, ...
        assert theirs.__wrapped__ is original  # ... now directly over the original
    finally:
        Completions.create = original  # type: ignore[method-assign]


def test_uninstrument_alone_restores_the_original() -> None:
    original = vars(Completions)["create"]
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    assert vars(Completions)["create"] is not original
    instrumentor.uninstrument()
    assert vars(Completions)["create"] is original
