# 0.11.0 is the first release whose function tools run through `_FailureHandlingFunctionToolInvoker`,
# the seam where a policy can run the tool function itself (seeing its exceptions) while the SDK
# keeps turning a final failure into the message the model reads.
_instruments = ("openai-agents >= 0.11.0",)
