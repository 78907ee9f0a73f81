"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

# botocore 1.34.116 (boto3 1.34.116, May 2024) is the first with Converse and ConverseStream.
_instruments = ("botocore >= 1.34.116",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "botocore": (
        "its GenAI span and metrics for Bedrock Runtime calls would double agentwatch's; agentwatch "
        "makes it stand aside for the calls it traces (converse, converse_stream, invoke_model, "
        "invoke_model_with_response_stream) and other AWS calls keep their spans: keep both"
    ),
    "boto3": "a second span for every Bedrock call (OpenLLMetry's bedrock instrumentation wraps the client's methods)",
}
# agentwatch makes the botocore instrumentor stand aside for the calls it traces (see _patch): both
# can stay on, and disabling it would lose the spans of every other AWS call.
_resolved = ("botocore",)
