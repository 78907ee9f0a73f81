"""The LiteLLM functions agentwatch wraps, and how each is read.

Who owns the span. LiteLLM calls many providers through their own SDK or HTTP API: OpenAI and
Azure through the openai SDK (since 1.106 its low-level ``post``; before, ``with_raw_response``),
Anthropic, Gemini, Groq and most others through its own httpx handlers, some through aiohttp. The
LiteLLM layer is the one that knows the provider it resolved from the model string, the final
usage and the whole call (its own retries and fallbacks included), so it owns the span: one span
per ``litellm.completion``/``acompletion``/``embedding``/``aembedding`` call. While that call is
open, every other agentwatch LLM wrapper stands aside (``_wrappers``: a call inside an open call
passes straight through), so the openai SDK underneath adds no second span, no second set of
metrics, no second cost and no second entry in the session's totals; LiteLLM retrying by calling
``completion`` again (``num_retries``) is covered by the same rule.

Provider and model. ``litellm.get_llm_provider`` (LiteLLM's own resolution, cached here per model
string, provider and base URL) names the provider; it maps to the conventions' values
(``gemini`` -> ``gcp.gemini``, ``bedrock`` -> ``aws.bedrock``...) or stays LiteLLM's name for
providers the conventions do not list (``together_ai``, ``ollama``). ``gen_ai.request.model`` is the
model as the provider knows it (``groq/llama-3.1-8b-instant`` -> ``llama-3.1-8b-instant``), so a
model's calls look the same whether they go through LiteLLM or the provider's SDK, and prices are
looked up for that provider.

Cost: agentwatch prices every call with genai-prices (and the user's own prices), as it does the
calls made through the SDKs; LiteLLM's ``response_cost`` is not read. One price list for every
path keeps costs comparable, the user's overrides apply everywhere, and a stream's cost is the
provider-reported usage's, never LiteLLM's tokenizer estimate.

Trace context: the openai SDK path gets ``traceparent`` from the openai instrumentation's request
hook; LiteLLM's own handlers (``HTTPHandler``/``AsyncHTTPHandler``, httpx, whose async client may
sit on LiteLLM's aiohttp transport) and its plain aiohttp handler get a copy of their ``headers``
with it, for every request made while a LiteLLM call is open.

Retries: with an agentwatch policy that retries, each attempt goes out with ``num_retries=0``
(LiteLLM's own loop) and ``max_retries=0`` (the provider SDK's), so 3 attempts are 3 requests.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue

from agentwatch import _semconv as sc
from agentwatch._internal import report_internal_error, sdk_type
from agentwatch._telemetry._context import open_call
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._headers import inject_trace_context
from agentwatch._telemetry._inference import InferenceCall
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._common import server_of_url
from agentwatch.instrumentation._policies import cap_timeout
from agentwatch.instrumentation._wrappers import Operation, async_wrapper, sync_wrapper
from agentwatch.instrumentation.litellm import _extract as ex
from agentwatch.instrumentation.openai import _extract as openai_ex
from agentwatch.instrumentation.openai._hosts import provider_of_host

# LiteLLM's provider names -> the conventions' (v1.41; moonshot_ai is main's). Others stay LiteLLM's.
PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
    "perplexity": "perplexity",
    "xai": "x_ai",
    "deepseek": "deepseek",
    "groq": "groq",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "moonshot": "moonshot_ai",
}
# LiteLLM providers that speak the OpenAI API to any base URL: named by its host, as the openai
# SDK's calls are (a Groq URL is Groq's).
_OPENAI_COMPATIBLE = frozenset({"openai", "text-completion-openai", "custom_openai"})
# Where LiteLLM sends a provider's calls when nothing names a base URL, and the environment
# variables that would (then the server is not known in advance).
_DEFAULT_BASES = {
    "openai": ("https://api.openai.com", ("OPENAI_BASE_URL", "OPENAI_API_BASE")),
    "anthropic": ("https://api.anthropic.com", ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")),
    "gemini": ("https://generativelanguage.googleapis.com", ("GEMINI_API_BASE",)),
}
# When LiteLLM cannot name the provider (the model string has none it knows), the call fails
# before any request; its span still needs a provider.
UNKNOWN_PROVIDER = "litellm"

Target = tuple[str, str | None, str | None, int | None]
_targets: dict[tuple[str, str | None, str | None], Target] = {}
_MAX_TARGETS = 1024


def target(instance: Any, kwargs: Mapping[str, Any]) -> Target:
    """(gen_ai.provider.name, gen_ai.request.model, server.address, server.port) of a LiteLLM call."""
    model = kwargs.get("model")
    custom = kwargs.get("custom_llm_provider")
    base = kwargs.get("api_base") or kwargs.get("base_url")
    if not isinstance(model, str):
        return UNKNOWN_PROVIDER, None, *server_of_url(base)
    if not isinstance(custom, str):
        custom = None
    if not isinstance(base, str):
        base = None
    key = (model, custom, base)
    found = _targets.get(key)
    if found is None:
        found = _resolve(model, custom, base)
        if len(_targets) >= _MAX_TARGETS:
            _targets.clear()  # model strings are few; a program that makes up new ones starts over
        _targets[key] = found
    return found


def _resolve(model: str, custom: str | None, base: str | None) -> Target:
    litellm: Any = sys.modules.get("litellm")  # the call being made is litellm's: it is imported
    try:
        # (model, provider, api key, api base): the key is never kept.
        resolved = litellm.get_llm_provider(model=model, custom_llm_provider=custom, api_base=base)
        name, llm_provider, api_base = resolved[0], resolved[1], resolved[3]
    except Exception:  # noqa: BLE001 - LiteLLM cannot route this model: the call will fail alike
        return UNKNOWN_PROVIDER, model, *server_of_url(base)
    if not isinstance(llm_provider, str) or not llm_provider:
        return UNKNOWN_PROVIDER, model, *server_of_url(base)
    url = base or (api_base if isinstance(api_base, str) else None)
    if url is None and llm_provider in _DEFAULT_BASES:
        default, variables = _DEFAULT_BASES[llm_provider]
        if not any(os.environ.get(v) for v in variables) and not getattr(litellm, "api_base", None):
            url = default
    host, port = server_of_url(url)
    if llm_provider in _OPENAI_COMPATIBLE and url is not None:
        provider = provider_of_host(host)
    else:
        provider = PROVIDERS.get(llm_provider, llm_provider)
    return provider, name if isinstance(name, str) and name else model, host, port


def _chat_request(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue]:
    return ex.chat_request(kwargs, target(None, kwargs)[0])


def _answered_by(call: InferenceCall, response: object) -> None:
    """When a policy's fallback chain moved the call to another provider's model, the provider
    that answered (metrics, price and span): LiteLLM names the model it called in the response."""
    hidden = getattr(response, "_hidden_params", None)
    model = hidden.get("litellm_model_name") if isinstance(hidden, Mapping) else None
    if not isinstance(model, str) or not model:
        return
    provider, name, _, _ = target(None, {"model": model})
    # Only another model is another provider's: the requested one may have gone to a base URL
    # that names its provider (an OpenAI-compatible host), which the model string alone does not.
    if name != call.request_model and provider not in (call.provider, UNKNOWN_PROVIDER):
        call.provider = provider
        call.response_attributes = {**(call.response_attributes or {}), sc.PROVIDER_NAME: provider}


def _chat_response(call: InferenceCall, response: object) -> None:
    ex.chat_response(call, response)
    _answered_by(call, response)


def _embeddings_response(call: InferenceCall, response: object) -> None:
    openai_ex.embeddings_response(call, response)
    _answered_by(call, response)


def _attempt_options(
    wrapped: Callable[..., Any], instance: Any, kwargs: dict[str, Any], limit: float | None, no_retries: bool
) -> Callable[..., Any]:
    """A policy's attempt: its time limit as LiteLLM's ``timeout``; when the policy retries,
    neither LiteLLM (``num_retries``) nor the provider SDK under it (``max_retries``) does."""
    cap_timeout(kwargs, limit)
    if no_retries:
        kwargs["num_retries"] = 0
        kwargs["max_retries"] = 0
    return wrapped


def _no_client(instance: Any) -> tuple[str, str | None, int | None]:
    return UNKNOWN_PROVIDER, None, None  # never asked: the target is read from the request


class _Credentials:
    """The API key a LiteLLM call was given, for scrubbing it from error descriptions."""

    __slots__ = ("api_key",)

    def __init__(self, api_key: object) -> None:
        self.api_key = api_key


def _credentials(instance: Any, kwargs: Mapping[str, Any]) -> object:
    return _Credentials(kwargs.get("api_key"))


def _keywords(names: tuple[str, ...], traced: Callable[..., Any]) -> Callable[..., Any]:
    """``traced`` reading ``model`` (and ``messages``/``input``) as keywords however they were passed."""

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if args and len(args) <= len(names) and not any(name in kwargs for name in names[: len(args)]):
            kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
            args = ()
        return traced(wrapped, instance, args, kwargs)

    return wrapper


_signatures: dict[Any, inspect.Signature | None] = {}


def _signature(function: Any) -> inspect.Signature | None:
    key = getattr(function, "__func__", function)
    if key not in _signatures:
        try:
            signature: inspect.Signature | None = inspect.signature(function)
        except (TypeError, ValueError):
            signature = None
        if signature is not None and "headers" not in signature.parameters:
            signature = None
        _signatures[key] = signature
    return _signatures[key]


def _request_headers(url_parameter: str) -> Callable[..., Any]:
    """A wrapper for a LiteLLM HTTP method that takes ``headers`` and the URL (``url_parameter``):
    while an instrumented call is open, it gets a copy of its headers with the trace context. Works
    for coroutine functions too: only the arguments change."""

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if open_call() is None:
            return wrapped(*args, **kwargs)
        try:
            signature = _signature(wrapped)
            if signature is not None:
                bound = signature.bind_partial(*args, **kwargs)
                headers = bound.arguments.get("headers")
                if headers is None or isinstance(headers, Mapping):
                    # A copy: the caller's dict (LiteLLM may reuse it) is never changed.
                    carrier = dict(headers or {})
                    url = bound.arguments.get(url_parameter)
                    inject_trace_context(carrier, lambda: urlsplit(str(url)).hostname or "")
                    if carrier != (headers or {}):
                        bound.arguments["headers"] = carrier
                        args, kwargs = bound.args, bound.kwargs
        except Exception:  # noqa: BLE001 - the request goes out as it was
            report_internal_error("injecting trace-context headers")
        return wrapped(*args, **kwargs)

    return wrapper


def patches(telemetry: Telemetry) -> Iterable[Patch]:
    stream_types = (sdk_type("litellm.litellm_core_utils.streaming_handler", "CustomStreamWrapper"),)
    chat = Operation(
        name=sc.OP_CHAT,
        client_info=_no_client,
        target=target,
        credentials=_credentials,
        request=_chat_request,
        content=openai_ex.chat_input,
        response=_chat_response,
        stream_items=ex.chat_chunk_handler,
        stream_types=stream_types,
        stream_end=ex.stream_end,
        attempt_options=_attempt_options,
    )
    embeddings = Operation(
        name=sc.OP_EMBEDDINGS,
        client_info=_no_client,
        target=target,
        credentials=_credentials,
        request=openai_ex.embeddings_request,
        response=_embeddings_response,
        attempt_options=_attempt_options,
    )
    chat_args, embedding_args = ("model", "messages"), ("model", "input")
    yield "litellm", "completion", _keywords(chat_args, sync_wrapper(telemetry, chat))
    yield "litellm", "acompletion", _keywords(chat_args, async_wrapper(telemetry, chat))
    yield "litellm", "embedding", _keywords(embedding_args, sync_wrapper(telemetry, embeddings))
    yield "litellm", "aembedding", _keywords(embedding_args, async_wrapper(telemetry, embeddings))
    handlers = "litellm.llms.custom_httpx.http_handler"
    for handler in ("HTTPHandler", "AsyncHTTPHandler"):
        for method in ("post", "get", "put", "patch", "delete"):
            yield handlers, f"{handler}.{method}", _request_headers("url")
    yield (
        "litellm.llms.custom_httpx.aiohttp_handler",
        "BaseLLMAIOHTTPHandler._make_common_async_call",
        _request_headers("api_base"),
    )
