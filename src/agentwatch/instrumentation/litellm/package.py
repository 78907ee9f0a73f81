"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

# 1.72 is the first release with LiteLLM's aiohttp transport, its default async HTTP path since:
# the oldest release whose every HTTP path the compat run exercises (scripts/test.sh).
_instruments = ("litellm >= 1.72.0",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "litellm": "a second span for every LiteLLM call (double the chat spans, metrics and cost)",
    "httpx": "an HTTP span under every LLM call (the SDKs use httpx), plus its own HTTP metrics",
    "aiohttp": "an HTTP span under every async LiteLLM call (its async transport is aiohttp)",
}
