"""Context shared between instrumentations without importing each other.

An agent session (``agentwatch.session``) puts itself in :data:`current_session`; inference
calls read it to tag their spans with the conversation id and to add their tokens and cost to
the session's totals. While an instrumented SDK method runs, :data:`current_call` holds its call
so that the SDK-level hooks (request building, native-span enrichment) can find it.

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

__all__ = ["ModelCall", "SessionSink", "current_call", "current_session", "framework_model_call"]


class SessionSink(Protocol):
    @property
    def conversation_id(self) -> str: ...

    @property
    def user_id(self) -> str | None: ...

    def record_inference(self, usage: Usage, cost: float | None, *, priced: bool, failed: bool) -> None: ...


current_session: ContextVar[SessionSink | None] = ContextVar("agentwatch_session", default=None)
current_call: ContextVar[InferenceCall | None] = ContextVar("agentwatch_inference_call", default=None)


class ModelCall:
    """One framework-level model call; ``covered`` once a provider instrumentor made its span."""

    __slots__ = ("covered",)

    def __init__(self) -> None:
        self.covered = False


framework_model_call: ContextVar[ModelCall | None] = ContextVar(
    "agentwatch_framework_model_call", default=None
)
