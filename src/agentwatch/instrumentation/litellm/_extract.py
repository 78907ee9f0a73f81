"""LiteLLM requests, responses and stream chunks -> :class:`InferenceCall` fields.

LiteLLM takes OpenAI's request parameters and answers in OpenAI's shapes (``ModelResponse``,
``ModelResponseStream``, ``EmbeddingResponse``) whichever provider it called, so the openai
readers do most of the work. LiteLLM's own parts: ``top_k``, the usage as LiteLLM normalises it
(``prompt_tokens`` includes cached and cache-creation tokens, which ``prompt_tokens_details``
breaks out, and so on), the usage a stream reports, and the ``openai.*`` attributes, which are kept
for the OpenAI providers only.

A stream's usage is the provider's, never LiteLLM's estimate. LiteLLM keeps every chunk it read,
the usage-only ones it does not pass on included, in the stream's ``chunks``; agentwatch reads the
usage the provider reported there when the stream ends (:func:`stream_usage`). What LiteLLM puts
on the last chunk it passes on (``_hidden_params["usage"]``) is not read: a zero usage or its own
token-count estimate when the provider reported none, depending on the LiteLLM version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._telemetry._inference import InferenceCall
from agentwatch._telemetry._stream import OnItem
from agentwatch._telemetry._usage import Usage
from agentwatch.instrumentation._common import as_float, as_int, get, put
from agentwatch.instrumentation.openai import _extract as openai_ex

__all__ = [
    "OPENAI_PROVIDERS",
    "chat_chunk_handler",
    "chat_request",
    "chat_response",
    "stream_end",
    "stream_usage",
    "usage",
]

# The providers the openai.* attributes (service tier, system fingerprint) belong to.
OPENAI_PROVIDERS = frozenset({"openai", "azure.ai.openai"})
_OPENAI_ATTRIBUTES = (
    sc.OPENAI_REQUEST_SERVICE_TIER,
    sc.OPENAI_RESPONSE_SERVICE_TIER,
    sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT,
)


def chat_request(kwargs: Mapping[str, Any], provider: str) -> dict[str, AttributeValue]:
    attrs = openai_ex.chat_request(kwargs)
    # LiteLLM passes top_k on to the providers that take it (Anthropic, Gemini...); v1.41 types it
    # as a double.
    put(attrs, sc.REQUEST_TOP_K, as_float(kwargs.get("top_k")))
    if provider not in OPENAI_PROVIDERS:
        attrs.pop(sc.OPENAI_REQUEST_SERVICE_TIER, None)
    return attrs


def usage(value: object) -> Usage | None:
    """A LiteLLM ``Usage`` (or its dict) -> :class:`Usage`, as LiteLLM normalised the provider's:
    OpenAI's shape, with Anthropic's cache counts also under their own names (read when the
    details lack them)."""
    found = openai_ex.chat_usage(value)
    if found is None or not found.reported:
        return None
    if found.cache_read_tokens is None:
        found = replace(found, cache_read_tokens=as_int(get(value, "cache_read_input_tokens")))
    if found.cache_creation_tokens is None:
        found = replace(found, cache_creation_tokens=as_int(get(value, "cache_creation_input_tokens")))
    return found


def _without_openai_attributes(extra: dict[str, AttributeValue] | None) -> dict[str, AttributeValue] | None:
    if not extra:
        return extra
    return {k: v for k, v in extra.items() if k not in _OPENAI_ATTRIBUTES} or None


def _drop_openai_attributes(call: InferenceCall) -> None:
    # The openai reader puts them on the span and on the metrics.
    if call.provider not in OPENAI_PROVIDERS:
        call.response_attributes = _without_openai_attributes(call.response_attributes)
        call.metric_attributes = _without_openai_attributes(call.metric_attributes)


def chat_response(call: InferenceCall, response: object) -> None:
    openai_ex.chat_response(call, response)
    if (found := usage(get(response, "usage"))) is not None:
        call.usage = found
    _drop_openai_attributes(call)


def chat_chunk_handler(capture: bool) -> OnItem:
    read = openai_ex.chat_chunk_handler(capture)

    def on_chunk(call: InferenceCall, chunk: Any) -> None:
        read(call, chunk)
        _drop_openai_attributes(call)

    return on_chunk


def _latest(current: int | None, value: int | None) -> int | None:
    # A chunk reports what it knows: a later zero (older LiteLLM versions zero the input count of a
    # stream's closing usage) does not undo an earlier count.
    if value is None:
        return current
    return value if value or current is None else current


def stream_usage(chunks: object) -> Usage | None:
    """The usage the provider reported in a LiteLLM stream, from the chunks LiteLLM kept; ``None``
    when it reported none. Later chunks' counts replace earlier ones (they are running totals)."""
    if not isinstance(chunks, Sequence):
        return None
    total: Usage | None = None
    for chunk in chunks:
        found = usage(get(chunk, "usage"))
        if found is None:
            continue
        if total is None:
            total = found
            continue
        total = Usage(
            input_tokens=_latest(total.input_tokens, found.input_tokens),
            output_tokens=_latest(total.output_tokens, found.output_tokens),
            cache_read_tokens=_latest(total.cache_read_tokens, found.cache_read_tokens),
            cache_creation_tokens=_latest(total.cache_creation_tokens, found.cache_creation_tokens),
            reasoning_tokens=_latest(total.reasoning_tokens, found.reasoning_tokens),
        )
    return total


def stream_end(call: InferenceCall, stream: object) -> None:
    if (found := stream_usage(getattr(stream, "chunks", None))) is not None:
        call.usage = found
