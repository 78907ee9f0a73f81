# 1.19 added `meta` to call_tool, which carries the trace context to the server.
_instruments = ("mcp >= 1.19",)
