"""The wire formats the fake LLM server speaks, in routing order: register a new one here."""

from __future__ import annotations

from agentwatch._fakellm._anthropic import AnthropicFormat
from agentwatch._fakellm._bedrock import BedrockFormat
from agentwatch._fakellm._gemini import GeminiFormat
from agentwatch._fakellm._openai import OpenAIFormat
from agentwatch._fakellm._wire import WireFormat

__all__ = ["WIRE_FORMATS"]

# The first format also answers (with a 404 in its envelope) requests no format routes or claims.
WIRE_FORMATS: tuple[WireFormat, ...] = (
    OpenAIFormat(),
    AnthropicFormat(),
    BedrockFormat(),
    GeminiFormat(),
)
