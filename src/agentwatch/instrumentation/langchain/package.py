"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

_instruments = ("langchain-core >= 0.3",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "langchain-core": "a second span for every LangChain tool and model call",
    "langchain": "a second span for every LangChain tool and model call",
}
