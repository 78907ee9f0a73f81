"""Context shared between instrumentations without importing each other.

An agent session (``agentwatch.session``) puts itself in :data:`current_session`; inference
calls read it to tag their spans with the conversation id and to add their tokens and cost to
the session's totals. While an instrumented SDK method runs, :data:`current_call` holds its call
so that the SDK-level hooks (request building, native-span enrichment) can find it, and so that a
second instrumented layer seeing the same call (LiteLLM over the OpenAI SDK, LiteLLM's own
retries) stands aside for it (:func:`open_call`).

A framework that calls a provider SDK (a LangChain chat model) puts a :class:`ModelCall` in
:data:`framework_model_call` around the call; an instrumented SDK call made inside marks it
``covered``, and the framework then makes no span of its own: one span per model call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agentwatch._telemetry._inference import InferenceCall
    from agentwatch._telemetry._usage import Usage

__all__ = ["ModelCall", "SessionSink", "current_call", "current_session", "framework_model_call", "open_call"]


class SessionSink(Protocol):
    @property
    def conversation_id(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    def record_inference(self, usage: Usage, cost: float | None, *, priced: bool, failed: bool) -> None: ...


current_session: ContextVar[SessionSink | None] = ContextVar("agentwatch_session", default=None)
current_call: ContextVar[InferenceCall | None] = ContextVar("agentwatch_inference_call", default=None)


def open_call() -> InferenceCall | None:
    """The instrumented call the running code is part of, while it has not ended.

    An instrumented method called inside another instrumented call is that call seen by a second
    layer (LiteLLM sends its OpenAI requests through the openai SDK and retries by calling itself
    again), so it makes no span of its own: one operation, one span. A call that has ended no
    longer claims what runs in a context copied from it (LiteLLM's logging threads).
    """
    call = current_call.get()
    return call if call is not None and not call.ended else None


class ModelCall:
    """One framework-level model call; ``covered`` once a provider instrumentor made its span."""

    __slots__ = ("covered",)

    def __init__(self) -> None:
        self.covered = False


framework_model_call: ContextVar[ModelCall | None] = ContextVar(
    "agentwatch_framework_model_call", default=None
)
