"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

_instruments = ("anthropic >= 0.27.0, < 3",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "anthropic": "a second span for every Anthropic call (double the chat spans and metrics)",
    "httpx": "an HTTP span under every LLM call (the SDKs use httpx), plus its own HTTP metrics",
}
# `agentwatch demo --provider anthropic` runs the demo agent through the _demo.py next to this file.
_demo = "anthropic"
