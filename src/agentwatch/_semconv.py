"""Attribute, event and metric names.

The GenAI names come from ``opentelemetry-semantic-conventions`` (v1.41 of the conventions). Its
0.65b0+ releases mark them "moved" but the string values are the v1.41 ones; only the enum
classes warn when called, so none are called here. Names agentwatch invents are prefixed
``agentwatch.`` (or follow the open cost proposal, genai PR #443) and are listed in the README.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _g
from opentelemetry.semconv._incubating.attributes import user_attributes as _u
from opentelemetry.semconv.attributes import error_attributes as _e
from opentelemetry.semconv.attributes import server_attributes as _s

ERROR_TYPE: Final = _e.ERROR_TYPE
SERVER_ADDRESS: Final = _s.SERVER_ADDRESS
SERVER_PORT: Final = _s.SERVER_PORT
USER_ID: Final = _u.USER_ID

OPERATION_NAME: Final = _g.GEN_AI_OPERATION_NAME
PROVIDER_NAME: Final = _g.GEN_AI_PROVIDER_NAME
CONVERSATION_ID: Final = _g.GEN_AI_CONVERSATION_ID
OUTPUT_TYPE: Final = _g.GEN_AI_OUTPUT_TYPE
REQUEST_MODEL: Final = _g.GEN_AI_REQUEST_MODEL
REQUEST_MAX_TOKENS: Final = _g.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_TEMPERATURE: Final = _g.GEN_AI_REQUEST_TEMPERATURE
REQUEST_TOP_P: Final = _g.GEN_AI_REQUEST_TOP_P
REQUEST_TOP_K: Final = _g.GEN_AI_REQUEST_TOP_K
REQUEST_FREQUENCY_PENALTY: Final = _g.GEN_AI_REQUEST_FREQUENCY_PENALTY
REQUEST_PRESENCE_PENALTY: Final = _g.GEN_AI_REQUEST_PRESENCE_PENALTY
REQUEST_STOP_SEQUENCES: Final = _g.GEN_AI_REQUEST_STOP_SEQUENCES
REQUEST_SEED: Final = _g.GEN_AI_REQUEST_SEED
REQUEST_CHOICE_COUNT: Final = _g.GEN_AI_REQUEST_CHOICE_COUNT
REQUEST_STREAM: Final = _g.GEN_AI_REQUEST_STREAM
REQUEST_ENCODING_FORMATS: Final = _g.GEN_AI_REQUEST_ENCODING_FORMATS
RESPONSE_ID: Final = _g.GEN_AI_RESPONSE_ID
RESPONSE_MODEL: Final = _g.GEN_AI_RESPONSE_MODEL
RESPONSE_FINISH_REASONS: Final = _g.GEN_AI_RESPONSE_FINISH_REASONS
RESPONSE_TIME_TO_FIRST_CHUNK: Final = _g.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
USAGE_INPUT_TOKENS: Final = _g.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS: Final = _g.GEN_AI_USAGE_OUTPUT_TOKENS
USAGE_CACHE_READ_INPUT_TOKENS: Final = _g.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _g.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
USAGE_REASONING_OUTPUT_TOKENS: Final = _g.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
EMBEDDINGS_DIMENSION_COUNT: Final = _g.GEN_AI_EMBEDDINGS_DIMENSION_COUNT
TOKEN_TYPE: Final = _g.GEN_AI_TOKEN_TYPE
INPUT_MESSAGES: Final = _g.GEN_AI_INPUT_MESSAGES
OUTPUT_MESSAGES: Final = _g.GEN_AI_OUTPUT_MESSAGES
SYSTEM_INSTRUCTIONS: Final = _g.GEN_AI_SYSTEM_INSTRUCTIONS
TOOL_DEFINITIONS: Final = _g.GEN_AI_TOOL_DEFINITIONS
AGENT_NAME: Final = _g.GEN_AI_AGENT_NAME
WORKFLOW_NAME: Final = _g.GEN_AI_WORKFLOW_NAME
TOOL_NAME: Final = _g.GEN_AI_TOOL_NAME
TOOL_CALL_ID: Final = _g.GEN_AI_TOOL_CALL_ID
TOOL_TYPE: Final = _g.GEN_AI_TOOL_TYPE
TOOL_DESCRIPTION: Final = _g.GEN_AI_TOOL_DESCRIPTION
TOOL_CALL_ARGUMENTS: Final = _g.GEN_AI_TOOL_CALL_ARGUMENTS
TOOL_CALL_RESULT: Final = _g.GEN_AI_TOOL_CALL_RESULT

# v1.41 OpenAI-specific attributes (the Python package still only has the older gen_ai.openai.* names).
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
OPENAI_RESPONSE_SYSTEM_FINGERPRINT: Final = "openai.response.system_fingerprint"

# Cost: genai PR #443's proposal (no released convention exists).
USAGE_COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
USAGE_COST_CURRENCY: Final = "gen_ai.usage.cost.currency"

# agentwatch's own.
COST_UNPRICED: Final = "agentwatch.usage.cost.unpriced"
STREAM_OUTCOME: Final = "agentwatch.stream.outcome"

# Operation and token-type values (strings, never the deprecated enum classes).
OP_CHAT: Final = "chat"
OP_EMBEDDINGS: Final = "embeddings"
OP_EXECUTE_TOOL: Final = "execute_tool"
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
TOKEN_INPUT: Final = "input"
TOKEN_OUTPUT: Final = "output"

# Events.
EVENT_OPERATION_DETAILS: Final = "gen_ai.client.inference.operation.details"

# Metrics (v1.41 names; cost per PR #443).
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
METRIC_OPERATION_COST: Final = "gen_ai.client.operation.cost"

# ---------------------------------------------------------------------------------------------
# Tools and sessions (agentwatch.tools, agentwatch._session, instrumentation.mcp/.langchain).
# Names agentwatch invents are listed in the README's table.
# ---------------------------------------------------------------------------------------------
TOOL_RESULT_BYTES: Final = "agentwatch.tool.result.bytes"
TOOL_ARGUMENT_KEYS: Final = "agentwatch.tool.argument_keys"
SESSION_OUTCOME: Final = "agentwatch.session.outcome"
SESSION_ITERATIONS: Final = "agentwatch.session.iterations"
SESSION_TOOL_CALLS: Final = "agentwatch.session.tool_calls"
SESSION_TOOL_ERRORS: Final = "agentwatch.session.tool_errors"

# gen_ai.tool.type values (v1.41 registry).
TOOL_TYPE_FUNCTION: Final = "function"
TOOL_TYPE_EXTENSION: Final = "extension"
# error.type of a tool that reported failure in its result (MCP isError, LangChain status="error").
ERROR_TOOL: Final = "tool_error"

# Session outcomes written by agentwatch itself (a session may declare any other).
OUTCOME_COMPLETED: Final = "completed"
OUTCOME_ERROR: Final = "error"
# A BaseException that is not an Exception (CancelledError, KeyboardInterrupt) ended the run.
OUTCOME_CANCELLED: Final = "cancelled"
# Declared by the framework integrations: the run hit the framework's step cap (the Agents SDK's
# max_turns, LangGraph's recursion_limit), a guardrail stopped it, or it paused for human input (a
# LangGraph interrupt) to be resumed later.
OUTCOME_MAX_ITERATIONS: Final = "max_iterations"
OUTCOME_REFUSED: Final = "refused"
OUTCOME_INTERRUPTED: Final = "interrupted"

# Agent frameworks (instrumentation.openai_agents). No convention exists for handoffs or
# guardrails in v1.41 or on genai main: a handoff is an execute_tool span with the attributes of
# semantic-conventions-genai PR #98; a guardrail is a `run_guardrail {name}` span as proposed in
# PR #427, with agentwatch's own attributes until that proposal settles.
HANDOFF_SOURCE_NAME: Final = "gen_ai.agent.handoff.source.name"
HANDOFF_TARGET_NAME: Final = "gen_ai.agent.handoff.target.name"
OP_RUN_GUARDRAIL: Final = "run_guardrail"
GUARDRAIL_NAME: Final = "agentwatch.guardrail.name"
GUARDRAIL_TRIGGERED: Final = "agentwatch.guardrail.triggered"

# MCP (v1.41 docs/gen-ai/mcp.md).
MCP_METHOD_NAME: Final = "mcp.method.name"
MCP_PROTOCOL_VERSION: Final = "mcp.protocol.version"
MCP_SESSION_ID: Final = "mcp.session.id"
JSONRPC_REQUEST_ID: Final = "jsonrpc.request.id"
RPC_RESPONSE_STATUS_CODE: Final = "rpc.response.status_code"
MCP_TOOLS_CALL: Final = "tools/call"

# Metrics.
METRIC_EXECUTE_TOOL_DURATION: Final = "gen_ai.execute_tool.duration"
METRIC_SESSION_DURATION: Final = "agentwatch.session.duration"
METRIC_SESSION_COST: Final = "agentwatch.session.cost"
METRIC_SESSION_ITERATIONS: Final = "agentwatch.session.iterations"
METRIC_SESSIONS: Final = "agentwatch.sessions"

# How session outcomes count for the session-completion SLO ("sessions reaching a final answer vs
# hitting max iterations or an error"). The SLO rules (collector/prometheus/rules/agentwatch-slo.yml),
# the Sessions dashboard and the CLI summary use these two sets (tests keep them equal); every
# outcome in neither is a failure: error, max_iterations, and any outcome an application declares.
# Reached a final answer: a guardrail's refusal is the answer the system was built to give.
SLO_ANSWERED_OUTCOMES: Final = frozenset({OUTCOME_COMPLETED, OUTCOME_REFUSED})
# No verdict, on neither side of the ratio: paused for a human ("interrupted": a LangGraph
# interrupt(), or a demo run stopped; the resumed run ends with its own outcome) or abandoned by the
# caller ("cancelled").
SLO_EXCLUDED_OUTCOMES: Final = frozenset({OUTCOME_INTERRUPTED, OUTCOME_CANCELLED})
