"""The openai SDK pointed at another provider's OpenAI-compatible API reports that provider.

Real HTTP: the SDK keeps the provider's base URL (``https://api.groq.com/openai/v1``) and sends
real requests, which an httpx transport delivers to the fake server on 127.0.0.1 instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price, data_snapshot

from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._pricing import _PROVIDER_IDS
from agentwatch.instrumentation.openai import _hosts
from agentwatch.instrumentation.openai._hosts import HOST_PROVIDERS, HOST_SUFFIX_PROVIDERS, provider_of_host
from support import OPENAI_KEY, Signals, user

pytestmark = pytest.mark.usefixtures("instrumented")


class ToFakeServer(httpx.HTTPTransport):
    """Sends every request to the fake server, whatever host its URL names (the Host header and
    the SDK's base URL keep the provider's)."""

    def __init__(self, server: FakeLLMServer) -> None:
        super().__init__()
        self._port = int(server.url.rsplit(":", 1)[1])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return super().handle_request(request)


@pytest.fixture
def client_at(fake_llm: FakeLLMServer) -> Iterator[Any]:
    clients: list[openai.OpenAI] = []

    def make(base_url: str) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=base_url,
            api_key=OPENAI_KEY,
            max_retries=0,
            http_client=httpx.Client(transport=ToFakeServer(fake_llm)),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# (base URL, gen_ai.provider.name, a model genai-prices knows for that provider, its genai-prices id)
HOSTS = [
    ("https://api.groq.com/openai/v1", "groq", "llama-3.1-8b-instant", "groq"),
    ("https://api.deepseek.com", "deepseek", "deepseek-chat", "deepseek"),
    ("https://api.mistral.ai/v1", "mistral_ai", "mistral-small-latest", "mistral"),
    ("https://api.x.ai/v1", "x_ai", "grok-3-mini", "x-ai"),
    ("https://api.perplexity.ai", "perplexity", "sonar", "perplexity"),
    ("https://models.inference.ai.azure.com", "azure.ai.inference", "gpt-4o-mini", "azure"),
    ("https://my-project.services.ai.azure.com/openai/v1", "azure.ai.inference", "gpt-4o-mini", "azure"),
    ("https://api.anthropic.com/v1", "anthropic", "claude-haiku-4-5", "anthropic"),
    ("https://api.moonshot.ai/v1", "moonshot_ai", "kimi-k2-0711-preview", "moonshotai"),
]


@pytest.mark.parametrize(
    ("base_url", "provider", "model", "prices_id"), HOSTS, ids=[h[1] + h[0][8:20] for h in HOSTS]
)
def test_a_known_host_names_the_provider_and_its_prices(
    base_url: str,
    provider: str,
    model: str,
    prices_id: str,
    client_at: Any,
    instrumented: Signals,
    fake_llm: FakeLLMServer,
) -> None:
    fake_llm.enqueue(Reply.text("Hi", input_tokens=100, output_tokens=20))
    client_at(base_url).chat.completions.create(model=model, messages=user())

    (request,) = fake_llm.requests  # real HTTP, to the fake server
    host = httpx.URL(base_url).host
    assert request.headers["host"] == host
    span = instrumented.only_span()
    found = dict(span.attributes or {})
    assert found["gen_ai.provider.name"] == provider
    assert (found["server.address"], found["server.port"]) == (host, 443)
    price = calc_price(GPUsage(input_tokens=100, output_tokens=20), model_ref=model, provider_id=prices_id)
    assert found["gen_ai.usage.cost.amount"] == pytest.approx(float(price.total_price), rel=1e-9)
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.provider.name"] == provider


@pytest.mark.parametrize(
    "base_url",
    ["http://localhost:11434/v1", "http://vllm.internal:8000/v1", "https://gateway.example.com/v1"],
)
def test_unknown_hosts_stay_openai(
    base_url: str, client_at: Any, instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("Hi"))
    client_at(base_url).chat.completions.create(model="llama3", messages=user())
    assert dict(instrumented.only_span().attributes or {})["gen_ai.provider.name"] == "openai"


def test_the_provider_is_cached_per_client(
    client_at: Any, instrumented: Signals, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str | None] = []
    original = _hosts.provider_of_host

    def counting(host: str | None) -> str:
        parsed.append(host)
        return original(host)

    monkeypatch.setattr(_hosts, "provider_of_host", counting)
    client = client_at("https://api.groq.com/openai/v1")
    fake_llm.enqueue(Reply.text("1"), Reply.text("2"), Reply.text("3"))
    client.chat.completions.create(model="llama-3.1-8b-instant", messages=user())
    client.chat.completions.create(model="llama-3.1-8b-instant", messages=user())
    assert parsed == ["api.groq.com"]
    # A client whose base URL is replaced is asked again.
    client.base_url = "https://api.x.ai/v1"  # type: ignore[assignment]
    client.chat.completions.create(model="grok-3-mini", messages=user())
    assert parsed == ["api.groq.com", "api.x.ai"]
    providers = [dict(s.attributes or {})["gen_ai.provider.name"] for s in instrumented.finished()]
    assert providers == ["groq", "groq", "x_ai"]


def test_azure_clients_stay_azure_openai_whatever_their_host(
    instrumented: Signals, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(Reply.text("Hi"))
    with openai.AzureOpenAI(
        azure_endpoint="https://my-resource.openai.azure.com",
        api_key=OPENAI_KEY,
        api_version="2024-10-21",
        max_retries=0,
        http_client=httpx.Client(transport=ToFakeServer(fake_llm)),
    ) as client:
        client.chat.completions.create(model="my-deployment", messages=user())
    assert dict(instrumented.only_span().attributes or {})["gen_ai.provider.name"] == "azure.ai.openai"


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.groq.com", "groq"),
        ("API.GROQ.COM.", "groq"),
        ("eastus2.models.ai.azure.com", "azure.ai.inference"),
        ("my-resource.openai.azure.com", "azure.ai.openai"),
        ("us-central1-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("api.cohere.ai", "cohere"),
        ("groq.com.evil.example", "openai"),
        ("", "openai"),
        (None, "openai"),
    ],
)
def test_host_names(host: str | None, provider: str) -> None:
    assert provider_of_host(host) == provider


def test_named_hosts_are_priced_as_genai_prices_matches_their_url() -> None:
    """Where genai-prices recognises a provider by its API URL, it is the provider our name prices
    with: the two tables cannot drift apart unnoticed."""
    snapshot = data_snapshot.get_snapshot()
    urls = [(f"https://{host}/v1", provider) for host, provider in HOST_PROVIDERS.items()]
    urls += [(f"https://example{suffix}/v1", provider) for suffix, provider in HOST_SUFFIX_PROVIDERS]
    checked = 0
    for url, provider in urls:
        try:
            matched = snapshot.find_provider(None, None, url)
        except LookupError:
            continue
        assert _PROVIDER_IDS[provider] == matched.id, url
        checked += 1
    assert checked >= 8
