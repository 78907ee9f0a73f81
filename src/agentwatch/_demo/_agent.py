"""The agent loop of one demo session, written the way an application would write it.

Nothing here is demo-specific telemetry: the ``invoke_agent`` span comes from
``agentwatch.session``, the ``chat`` spans from the instrumented ``openai`` client, the
``execute_tool`` spans (linked to the model's tool-call ids) from ``ToolRegistry.call_tool_call``,
and the resilience decisions from the policies of the model and of each tool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import agentwatch
from agentwatch._demo._plan import AGENT_NAME, MAIN_MODEL, MAX_ITERATIONS, SessionPlan
from agentwatch._demo._responder import SESSION_HEADER
from agentwatch._demo._tools import REGISTRY, TOOL_SCHEMAS
from agentwatch._demo._world import World, current_call
from agentwatch._semconv import OUTCOME_INTERRUPTED
from agentwatch.resilience import ToolUnavailable
from agentwatch.resilience._pipeline import error_type_of

if TYPE_CHECKING:
    import openai

__all__ = ["SessionOutcome", "run_session"]

SYSTEM_PROMPT = (
    "You are the support assistant of an online service. Use the tools to find accurate answers; "
    "if a tool is unavailable, answer without it."
)


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    index: int
    session_id: str
    outcome: str
    error_type: str | None


def _jsonable(result: object) -> object:
    if isinstance(result, ToolUnavailable):
        # The degradation message is what lets the model carry on without the data.
        return result.to_dict()
    return result


def _complete(
    client: openai.OpenAI, plan: SessionPlan, messages: list[dict[str, Any]]
) -> tuple[str | None, list[dict[str, Any]]]:
    """One LLM call: the assistant's text and tool calls (as chat-message dicts)."""
    request: dict[str, Any] = {
        "model": MAIN_MODEL,
        "messages": messages,
        "tools": TOOL_SCHEMAS,
        "extra_headers": {SESSION_HEADER: str(plan.index)},
    }
    if not plan.stream:
        response = client.chat.completions.create(**request)
        message = response.choices[0].message
        calls = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        return message.content, calls
    text: list[str] = []
    pending: dict[int, dict[str, Any]] = {}
    stream = client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True})
    with stream:
        for chunk in stream:
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text.append(delta.content)
                for part in delta.tool_calls or []:
                    call = pending.setdefault(
                        part.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                    if part.id:
                        call["id"] = part.id
                    if part.function is not None:
                        call["function"]["name"] += part.function.name or ""
                        call["function"]["arguments"] += part.function.arguments or ""
    return ("".join(text) or None), [pending[i] for i in sorted(pending)]


def run_session(
    client: openai.OpenAI,
    plan: SessionPlan,
    world: World,
    session_id: str,
) -> SessionOutcome:
    """Run one agent session to its end; never raises an ordinary exception (the outcome says how it ended)."""
    try:
        with agentwatch.session(session_id, user_id=plan.user_id, agent_name=AGENT_NAME) as current:
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": plan.question},
            ]
            for _ in range(MAX_ITERATIONS):
                if world.stopping.is_set():
                    current.outcome = OUTCOME_INTERRUPTED
                    break
                content, calls = _complete(client, plan, messages)
                if not calls:
                    break
                messages.append({"role": "assistant", "content": content, "tool_calls": calls})
                for call in calls:
                    token = current_call.set(plan.call(call["id"]))
                    try:
                        # A critical tool that cannot run raises here and ends the session as an error.
                        result = REGISTRY.call_tool_call(call)
                    finally:
                        current_call.reset(token)
                    messages.append(
                        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(_jsonable(result))}
                    )
            else:
                current.outcome = "max_iterations"
    except Exception as exc:  # noqa: BLE001 - the session span already recorded it; the run goes on
        return SessionOutcome(plan.index, session_id, "error", error_type_of(exc))
    return SessionOutcome(plan.index, session_id, current.outcome or "completed", None)
