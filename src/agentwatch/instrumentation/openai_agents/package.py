# 0.11.0 is the first release whose function tools run through `_FailureHandlingFunctionToolInvoker`,
# the seam where a policy can run the tool function itself (seeing its exceptions) while the SDK
# keeps turning a final failure into the message the model reads.
_instruments = ("openai-agents >= 0.11.0",)
# The SDK's import name is not the distribution's.
_module = "agents"
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "openai-agents": (
        "a second span for every agent, tool and model call of a run (tokens and cost counted twice)"
    ),
}
