"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

# 1.19 added `meta` to call_tool, which carries the trace context to the server.
_instruments = ("mcp >= 1.19",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {"mcp": "a second span for every MCP tool call"}
