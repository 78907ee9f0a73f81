"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

_instruments = ("openai >= 1.26.0, < 4",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "openai": "a second span for every OpenAI call (double the chat spans and metrics)",
    "httpx": "an HTTP span under every LLM call (the SDKs use httpx), plus its own HTTP metrics",
}
# `agentwatch demo --provider openai` runs the demo agent through the _demo.py next to this file.
_demo = "openai"
