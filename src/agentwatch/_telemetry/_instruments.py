"""Histograms with the advisory bucket boundaries of the conventions, created once per meter."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Histogram, Meter

from agentwatch import _semconv as sc

__all__ = ["COST_BUCKETS", "DURATION_BUCKETS", "TOKEN_BUCKETS", "InferenceInstruments"]

# semconv v1.41 gen-ai-metrics.md
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
# USD. One call typically costs $0.00001-$0.10, so most resolution sits below a cent; the top
# buckets catch long-context calls on large models.
COST_BUCKETS = (
    0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class InferenceInstruments:
    duration: Histogram
    token_usage: Histogram
    time_to_first_chunk: Histogram
    time_per_output_chunk: Histogram
    cost: Histogram

    @classmethod
    def create(cls, meter: Meter) -> InferenceInstruments:
        return cls(
            duration=meter.create_histogram(
                sc.METRIC_OPERATION_DURATION,
                unit="s",
                description="GenAI operation duration.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
            token_usage=meter.create_histogram(
                sc.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used.",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
            time_to_first_chunk=meter.create_histogram(
                sc.METRIC_TIME_TO_FIRST_CHUNK,
                unit="s",
                description="Time to receive the first chunk of a streamed response.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
            time_per_output_chunk=meter.create_histogram(
                sc.METRIC_TIME_PER_OUTPUT_CHUNK,
                unit="s",
                description="Time per output chunk, recorded for each chunk received after the first one.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
            cost=meter.create_histogram(
                sc.METRIC_OPERATION_COST,
                unit="USD",
                description="Cost of a GenAI operation, computed from token usage and model prices.",
                explicit_bucket_boundaries_advisory=COST_BUCKETS,
            ),
        )
