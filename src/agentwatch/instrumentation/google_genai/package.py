"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

_instruments = ("google-genai >= 1.25.0, < 4",)
_module = "google.genai"
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "google-genai": "a second span for every Gemini call (double the generate_content spans and metrics)",
    "httpx": "an HTTP span under every Gemini call (google-genai < 2 sends through httpx), plus its own HTTP metrics",
    "aiohttp": "an HTTP span under every async Gemini call (google-genai's async client uses aiohttp when installed)",
}
