"""The provider behind an OpenAI client, from its type and the host of its base URL.

Many providers serve the OpenAI API, and teams reach them with the ``openai`` SDK and a
``base_url``. The call then belongs to that provider: ``gen_ai.provider.name`` names it (the
conventions' well-known values) and its prices are that provider's, not OpenAI's. Hosts not listed
here (a local Ollama or vLLM, a gateway, a proxy) stay ``openai``: the wire format is all that is
known of them. ``AzureOpenAI`` clients are ``azure.ai.openai`` whatever their host.

The answer is cached per client (and recomputed only if its ``base_url`` is replaced), so a call
costs a dictionary lookup, not a URL parse.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["HOST_PROVIDERS", "HOST_SUFFIX_PROVIDERS", "provider_of", "provider_of_host"]

_AZURE_CLIENTS = frozenset({"AzureOpenAI", "AsyncAzureOpenAI"})

# Hosts of the OpenAI-compatible APIs of the providers the semantic conventions (v1.41) name.
HOST_PROVIDERS = {
    "api.openai.com": "openai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.mistral.ai": "mistral_ai",
    "codestral.mistral.ai": "mistral_ai",
    "api.x.ai": "x_ai",
    "api.perplexity.ai": "perplexity",
    "models.inference.ai.azure.com": "azure.ai.inference",  # GitHub Models' Azure AI Inference endpoint
    "api.cohere.ai": "cohere",  # /compatibility/v1
    "api.cohere.com": "cohere",
    "api.anthropic.com": "anthropic",  # the OpenAI SDK compatibility endpoint, /v1
    "generativelanguage.googleapis.com": "gcp.gemini",  # /v1beta/openai
    "api.moonshot.ai": "moonshot_ai",  # a value of the conventions after v1.41
    "api.moonshot.cn": "moonshot_ai",
}
# Providers whose endpoints are per resource, region or project: matched by the host's suffix.
HOST_SUFFIX_PROVIDERS = (
    (".services.ai.azure.com", "azure.ai.inference"),  # Azure AI Foundry
    (".models.ai.azure.com", "azure.ai.inference"),  # serverless deployments
    (".inference.ai.azure.com", "azure.ai.inference"),
    (".openai.azure.com", "azure.ai.openai"),  # Azure OpenAI's v1 API through the plain client
    (".cognitiveservices.azure.com", "azure.ai.openai"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),  # {region}-aiplatform..., the /endpoints/openapi path
)

# client -> (the base_url object the answer was computed from, provider)
_by_client: weakref.WeakKeyDictionary[Any, tuple[object, str]] = weakref.WeakKeyDictionary()
_by_type: dict[type, bool] = {}


def provider_of_host(host: str | None) -> str:
    """``gen_ai.provider.name`` of an OpenAI-compatible API at ``host``; ``openai`` when unknown."""
    if not host:
        return "openai"
    host = host.lower().rstrip(".")
    provider = HOST_PROVIDERS.get(host)
    if provider is not None:
        return provider
    for suffix, name in HOST_SUFFIX_PROVIDERS:
        if host.endswith(suffix):
            return name
    return "openai"


def _is_azure(kind: type) -> bool:
    azure = _by_type.get(kind)
    if azure is None:
        azure = _by_type[kind] = any(cls.__name__ in _AZURE_CLIENTS for cls in kind.__mro__)
    return azure


def provider_of(client: object) -> str:
    """The provider an openai SDK ``client`` calls (see the module docstring)."""
    if _is_azure(type(client)):
        return "azure.ai.openai"
    url = getattr(client, "base_url", None)
    try:
        cached = _by_client.get(client)
    except TypeError:  # not weak-referenceable: nothing to cache on
        return provider_of_host(getattr(url, "host", None))
    if cached is not None and cached[0] is url:
        return cached[1]
    provider = provider_of_host(getattr(url, "host", None))
    _by_client[client] = (url, provider)
    return provider
