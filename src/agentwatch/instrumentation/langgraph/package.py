"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

# 0.2.17 is the first release that runs on langchain-core 0.3, the oldest the LangChain
# integration (whose tool and model spans a graph run is made of) supports.
_instruments = ("langgraph >= 0.2.17",)
# ``langgraph`` itself is a namespace package: no import hook fires for one, so the lazy patching
# (instrumentation/_base.py) waits for the module that defines what is patched instead.
_module = "langgraph.pregel"
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {"langgraph": "a second agent span for every LangGraph run"}
