"""The fake LLM's side of a demo run: scripted tool-calling turns, token counts and LLM faults.

A request names its session and turn in the ``X-Agentwatch-Demo-Session`` and
``X-Agentwatch-Demo-Turn`` headers (sessions run concurrently, so nothing may depend on the global
order of requests; and headers read the same in every wire format, so the responder serves every
provider of the demo without knowing their bodies). Requests for the same (session, turn, model)
are retries of one another, and are counted to script "fails twice, then succeeds". The
high-level replies (``Reply.tool_calls``, ``Reply.text``, ``Reply.error``) are rendered by the fake
server in the wire format of the request.
"""

from __future__ import annotations

from agentwatch._demo._plan import MAIN_MODEL, SessionPlan, Turn
from agentwatch._demo._world import World
from agentwatch._fakellm import RecordedRequest, Reply, ToolCall

__all__ = ["SESSION_HEADER", "TURN_HEADER", "ScriptedResponder"]

SESSION_HEADER = "X-Agentwatch-Demo-Session"
TURN_HEADER = "X-Agentwatch-Demo-Turn"  # the number of rounds the agent has done before this call
# Tokens of the system prompt and tool schemas, which the bytes of the messages do not show.
_PROMPT_OVERHEAD = 180
# Streams send their deltas this far apart: enough for time-per-output-chunk to mean something.
_CHUNK_DELAY = 0.01


def _input_tokens(request: RecordedRequest) -> int:
    body = request.json if isinstance(request.json, dict) else {}
    # The conversation: "messages" (OpenAI, Anthropic, Bedrock Converse) or "contents" (Gemini);
    # a format that names it otherwise is counted by its whole body.
    messages = body.get("messages", body.get("contents"))
    size = len(repr(messages)) if messages is not None else len(request.body)
    # About four characters per token, as tokenizers average on English text.
    return _PROMPT_OVERHEAD + size // 4


class ScriptedResponder:
    """``FakeLLMServer(responder=ScriptedResponder(world, main_model))``: the scripted faults hit
    ``main_model`` (the run's provider's); its fallback model answers."""

    def __init__(self, world: World, main_model: str = MAIN_MODEL) -> None:
        self.world = world
        self.main_model = main_model

    def __call__(self, request: RecordedRequest) -> Reply:
        _, route = request.routed()
        if route.endpoint is None or route.answers != "completion":
            return Reply.error(404, message=f"the demo serves chat turns only, not {request.path}")
        plan = self._plan(request)
        raw_turn = request.headers.get(TURN_HEADER.lower(), "")
        if plan is None or not raw_turn.isdigit():
            return Reply.error(
                400,
                message=f"missing or unknown {SESSION_HEADER} or {TURN_HEADER} header",
                error_type="invalid_request_error",
            )
        turn_index = int(raw_turn)
        turn = plan.turns[min(turn_index, len(plan.turns) - 1)]
        model = request.model or self.main_model
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
        if model != self.main_model:
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
