"""The agent loop of one demo session, written the way an application would write it.

Nothing here is demo-specific telemetry: the ``invoke_agent`` span comes from
``agentwatch.session``, the ``chat`` spans from the instrumented SDK of the run's provider (the
:class:`~agentwatch._demo._provider.DemoProvider` seam: the loop never names an SDK), the
``execute_tool`` spans (linked to the model's tool-call ids) from ``ToolRegistry.call_tool_call``,
and the resilience decisions from the policies of the model and of each tool.
"""

from __future__ import annotations

from dataclasses import dataclass

import agentwatch
from agentwatch._demo._plan import AGENT_NAME, MAX_ITERATIONS, SessionPlan
from agentwatch._demo._provider import DemoProvider, Exchange, ToolResult, TurnRequest
from agentwatch._demo._responder import SESSION_HEADER, TURN_HEADER
from agentwatch._demo._tools import REGISTRY, TOOL_SPECS
from agentwatch._demo._world import World, current_call
from agentwatch._semconv import OUTCOME_INTERRUPTED
from agentwatch.resilience import ToolUnavailable
from agentwatch.resilience._pipeline import error_type_of

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


def run_session(
    provider: DemoProvider,
    plan: SessionPlan,
    world: World,
    session_id: str,
) -> SessionOutcome:
    """Run one agent session to its end; never raises an ordinary exception (the outcome says how it ended)."""
    try:
        with agentwatch.session(session_id, user_id=plan.user_id, agent_name=AGENT_NAME) as current:
            history: list[Exchange] = []
            for _ in range(MAX_ITERATIONS):
                if world.stopping.is_set():
                    current.outcome = OUTCOME_INTERRUPTED
                    break
                reply = provider.complete(
                    TurnRequest(
                        model=provider.main_model,
                        system=SYSTEM_PROMPT,
                        question=plan.question,
                        history=tuple(history),
                        tools=TOOL_SPECS,
                        stream=plan.stream,
                        headers={SESSION_HEADER: str(plan.index), TURN_HEADER: str(len(history))},
                    )
                )
                if not reply.calls:
                    break
                results = []
                for call in reply.calls:
                    token = current_call.set(plan.call(call.id))
                    try:
                        # The SDK's own tool-call object, as an application on that SDK hands it
                        # over. A critical tool that cannot run raises here and ends the session
                        # as an error.
                        result = REGISTRY.call_tool_call(call.native)
                    finally:
                        current_call.reset(token)
                    results.append(ToolResult(call.id, call.name, _jsonable(result)))
                history.append(Exchange(reply, tuple(results)))
            else:
                current.outcome = "max_iterations"
    except Exception as exc:  # noqa: BLE001 - the session span already recorded it; the run goes on
        return SessionOutcome(plan.index, session_id, "error", error_type_of(exc))
    return SessionOutcome(plan.index, session_id, current.outcome or "completed", None)
