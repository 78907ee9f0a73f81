"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

# 1.100 is the last release that sends OpenAI chat requests through the openai SDK's
# chat.completions.with_raw_response.create (1.102 moved to its low-level post): the compat run
# (scripts/test.sh) covers the path on which the openai instrumentation sees LiteLLM's call and
# must stand aside. Older releases differ in ways the tests show (streams without close()).
_instruments = ("litellm >= 1.100.0",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "litellm": "a second span for every LiteLLM call (double the chat spans, metrics and cost)",
    "httpx": "an HTTP span under every LLM call (the SDKs use httpx), plus its own HTTP metrics",
    "aiohttp": "an HTTP span under every async LiteLLM call (its async transport is aiohttp)",
}
# `agentwatch demo --provider litellm` runs the demo agent through the _demo.py next to this file.
_demo = "litellm"
