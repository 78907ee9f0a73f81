"""The fake LLM's side of a demo run: scripted tool-calling turns, token counts and LLM faults.

A request names its session in the ``X-Agentwatch-Demo-Session`` header (sessions run
concurrently, so nothing may depend on the global order of requests); the turn is the number of
assistant messages already in the conversation. Requests for the same (session, turn, model) are
retries of one another, and are counted to script "fails twice, then succeeds".
"""

from __future__ import annotations

from typing import Any

from agentwatch._demo._plan import MAIN_MODEL, SessionPlan, Turn
from agentwatch._demo._world import World
from agentwatch._fakellm import RecordedRequest, Reply, ToolCall

__all__ = ["SESSION_HEADER", "ScriptedResponder"]

SESSION_HEADER = "X-Agentwatch-Demo-Session"
# Tokens of the system prompt and tool schemas, which the bytes of the messages do not show.
_PROMPT_OVERHEAD = 180
# Streams send their deltas this far apart: enough for time-per-output-chunk to mean something.
_CHUNK_DELAY = 0.01


def _input_tokens(request: RecordedRequest) -> int:
    messages = request.json.get("messages") if isinstance(request.json, dict) else None
    size = len(repr(messages)) if messages is not None else len(request.body)
    # About four characters per token, as tokenizers average on English text.
    return _PROMPT_OVERHEAD + size // 4


class ScriptedResponder:
    """``FakeLLMServer(responder=ScriptedResponder(world))``."""

    def __init__(self, world: World) -> None:
        self.world = world

    def __call__(self, request: RecordedRequest) -> Reply:
        if request.endpoint != "chat":
            return Reply.error(404, message=f"the demo serves chat completions only, not {request.path}")
        plan = self._plan(request)
        if plan is None:
            return Reply.error(
                400, message=f"missing or unknown {SESSION_HEADER} header", error_type="invalid_request_error"
            )
        body: dict[str, Any] = request.json
        messages = body.get("messages") or []
        turn_index = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "assistant")
        turn = plan.turns[min(turn_index, len(plan.turns) - 1)]
        model = request.model or MAIN_MODEL
        attempt = self.world.next_attempt(f"llm:{plan.index}:{turn_index}:{model}")
        failure = self._failure(turn, model, attempt)
        if failure is not None:
            return failure
        return Reply.delay(turn.latency, self._completion(turn, request))

    def _plan(self, request: RecordedRequest) -> SessionPlan | None:
        raw = request.headers.get(SESSION_HEADER.lower(), "")
        if not raw.isdigit():
            return None
        index = int(raw)
        plans = self.world.plans
        return plans[index] if index < len(plans) else None

    def _failure(self, turn: Turn, model: str, attempt: int) -> Reply | None:
        fault = turn.fault
        if fault is not None and fault.kind == "bad_request":
            # The conversation outgrew the context window: no model can serve it, nothing to retry.
            return Reply.delay(
                0.02,
                Reply.error(
                    400,
                    message="This model's maximum context length is 128000 tokens; the messages are too long.",
                    error_type="invalid_request_error",
                    code="context_length_exceeded",
                ),
            )
        if model != MAIN_MODEL:
            return None
        if self.world.brownout_active():
            return Reply.delay(0.05, Reply.error(503, message="The server is overloaded. Please retry."))
        if fault is None or attempt > fault.failures:
            return None
        if fault.kind == "rate_limit":
            return Reply.error(
                429,
                message="Rate limit reached for requests per minute.",
                code="rate_limit_exceeded",
                headers={"retry-after-ms": "60"},
            )
        status = 500 if fault.kind == "server_error" else 503
        return Reply.delay(
            0.05, Reply.error(status, message="The server had an error while processing your request.")
        )

    @staticmethod
    def _completion(turn: Turn, request: RecordedRequest) -> Reply:
        input_tokens = _input_tokens(request)
        chunk_delay = _CHUNK_DELAY if request.stream else 0.0
        if turn.calls:
            return Reply.tool_calls(
                [ToolCall(c.tool, c.arguments, id=c.call_id) for c in turn.calls],
                input_tokens=input_tokens,
                output_tokens=turn.output_tokens,
                chunk_delay=chunk_delay,
            )
        return Reply.text(
            turn.answer or "",
            input_tokens=input_tokens,
            output_tokens=turn.output_tokens,
            chunk_delay=chunk_delay,
        )
