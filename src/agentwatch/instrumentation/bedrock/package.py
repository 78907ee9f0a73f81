"""What agentwatch's integration registry (``instrumentation/_registry.py``) reads; imports nothing."""

# botocore 1.34.116 (boto3 1.34.116, May 2024) is the first with Converse and ConverseStream.
_instruments = ("botocore >= 1.34.116",)
# Libraries whose other instrumentors would duplicate this one's telemetry, and how.
_duplicated_by = {
    "botocore": (
        "a second span, with its own GenAI metrics, for every Bedrock Runtime call; agentwatch "
        "suppresses it for the calls it traces (converse, converse_stream, invoke_model, "
        "invoke_model_with_response_stream), so other AWS calls keep their spans"
    ),
    "boto3": "a second span for every Bedrock call (OpenLLMetry's bedrock instrumentation wraps the client's methods)",
}
