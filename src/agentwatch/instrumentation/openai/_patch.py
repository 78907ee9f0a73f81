"""The OpenAI methods agentwatch wraps, and how each is read.

``with_raw_response``/``with_streaming_response`` call the same wrapped methods with a header that
makes the SDK return a raw response; ``_telemetry._raw`` reads those (LiteLLM calls the SDK so).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from agentwatch import _semconv as sc
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._headers import build_request_wrapper
from agentwatch._telemetry._raw import RawResponses
from agentwatch._telemetry._stream import AsyncStreamManagerProxy, SyncStreamManagerProxy
from agentwatch.instrumentation._base import Patch, sdk_type
from agentwatch.instrumentation._common import server_of
from agentwatch.instrumentation._wrappers import (
    Operation,
    async_wrapper,
    stream_manager_wrapper,
    sync_wrapper,
)
from agentwatch.instrumentation.openai import _extract as ex

_AZURE_CLIENTS = frozenset({"AzureOpenAI", "AsyncAzureOpenAI"})
_provider_by_type: dict[type, str] = {}


def client_info(instance: Any) -> tuple[str, str | None, int | None]:
    client = getattr(instance, "_client", None)
    kind = type(client)
    provider = _provider_by_type.get(kind)
    if provider is None:
        # OpenAI-compatible servers reached through the plain client stay "openai".
        azure = any(cls.__name__ in _AZURE_CLIENTS for cls in kind.__mro__)
        provider = _provider_by_type[kind] = "azure.ai.openai" if azure else "openai"
    host, port = server_of(client)  # cached per client
    return provider, host, port


def _include_usage(telemetry: Telemetry, kwargs: dict[str, Any]) -> dict[str, Any]:
    if (
        telemetry.settings.openai_include_usage
        and kwargs.get("stream") is True
        and not isinstance(kwargs.get("stream_options"), dict)
    ):
        return {**kwargs, "stream_options": {"include_usage": True}}
    return kwargs


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    # Resolved at the first call: importing openai here would import it into every application.
    stream_types = (sdk_type("openai._streaming", "Stream"), sdk_type("openai._streaming", "AsyncStream"))
    raw = RawResponses.of("openai")
    chat = Operation(
        name=sc.OP_CHAT,
        client_info=client_info,
        request=ex.chat_request,
        content=ex.chat_input,
        response=ex.chat_response,
        stream_items=ex.chat_chunk_handler,
        stream_types=stream_types,
        adjust_kwargs=_include_usage,
        raw=raw,
    )
    # parse() never streams and takes its stream_options as given.
    parse = replace(chat, stream_items=None, stream_types=(), adjust_kwargs=None)
    responses = Operation(
        name=sc.OP_CHAT,
        client_info=client_info,
        request=ex.responses_request,
        content=ex.responses_input,
        response=ex.responses_response,
        stream_items=ex.responses_event_handler,
        stream_types=stream_types,
        raw=raw,
    )
    embeddings = Operation(
        name=sc.OP_EMBEDDINGS,
        client_info=client_info,
        request=ex.embeddings_request,
        response=ex.embeddings_response,
        raw=raw,
    )
    chat_module = "openai.resources.chat.completions"
    yield chat_module, "Completions.create", sync_wrapper(telemetry, chat)
    yield chat_module, "AsyncCompletions.create", async_wrapper(telemetry, chat)
    # parse() posts directly rather than through create(); before openai 1.92 it lived in beta.
    for module in (chat_module, "openai.resources.beta.chat.completions"):
        yield module, "Completions.parse", sync_wrapper(telemetry, parse)
        yield module, "AsyncCompletions.parse", async_wrapper(telemetry, parse)
    yield "openai.resources.responses", "Responses.create", sync_wrapper(telemetry, responses)
    yield "openai.resources.responses", "AsyncResponses.create", async_wrapper(telemetry, responses)
    # The .stream() helpers request through the instrumented create(), but close the HTTP
    # response directly, bypassing the stream proxy: their managers end the span on exit.
    for module, sync_name, async_name in (
        (chat_module, "Completions.stream", "AsyncCompletions.stream"),
        ("openai.resources.beta.chat.completions", "Completions.stream", "AsyncCompletions.stream"),
        ("openai.resources.responses", "Responses.stream", "AsyncResponses.stream"),
    ):
        yield module, sync_name, stream_manager_wrapper(telemetry, None, SyncStreamManagerProxy)
        yield module, async_name, stream_manager_wrapper(telemetry, None, AsyncStreamManagerProxy)
    yield "openai.resources.embeddings", "Embeddings.create", sync_wrapper(telemetry, embeddings)
    yield "openai.resources.embeddings", "AsyncEmbeddings.create", async_wrapper(telemetry, embeddings)
    yield "openai._base_client", "BaseClient._build_request", build_request_wrapper
    # Closing a raw response (the exit of with_streaming_response's ``with``) ends its span.
    yield "openai._response", "APIResponse.close", raw.close_wrapper()
    yield "openai._response", "AsyncAPIResponse.close", raw.aclose_wrapper()
