"""The seam between the demo's agent loop and an LLM SDK: what ``agentwatch demo --provider NAME`` runs on.

The agent loop (``_agent.py``) speaks a neutral form: a :class:`TurnRequest` (the model, the system
prompt, the user's question, the exchanges so far, the tools, whether to stream, the headers that
tell the fake server which session and turn this is) in, an :class:`AssistantTurn` (text, tool
calls) out. A :class:`DemoProvider` turns one into the other through its real SDK, pointed at the
fake LLM server. Tokens, cost and the ``chat`` span are not the adapter's business: agentwatch's
instrumentation of that SDK reads them, exactly as in an application.

Each adapter lives with its integration, in ``instrumentation/<integration>/_demo.py`` (module
attribute ``DEMO_PROVIDER``, the class), and its integration's ``package.py`` names it with
``_demo = "NAME"`` (the ``--provider`` value). The providers are read from the integration
registry (``instrumentation/_registry.py``), so a new provider is one folder: its instrumentor,
its ``package.py`` and its ``_demo.py``; the agent loop, the scripted fake-server responder and the
command line are neither told nor changed. ``_demo.py`` must not import its SDK at module level:
the registry lists the providers without importing any SDK, and a missing SDK is found with
``importlib.util.find_spec`` (:meth:`ProviderEntry.missing`) before the adapter is loaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from agentwatch._fakellm import FakeLLMServer
    from agentwatch.instrumentation._registry import Integration

__all__ = [
    "DEFAULT_PROVIDER",
    "AssistantTurn",
    "DemoProvider",
    "Exchange",
    "ProviderEntry",
    "ProviderUnavailable",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "TurnRequest",
    "demo_providers",
    "find_provider",
    "json_arguments",
    "provider_names",
]

DEFAULT_PROVIDER = "openai"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: its name, description and JSON Schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call of the model. ``native`` is the call as the SDK returned it (or as the
    adapter assembled it from a stream): the agent hands it to ``ToolRegistry.call_tool_call``,
    as an application on that SDK would, and the adapter may resend it in the next turn."""

    id: str
    name: str
    arguments: Mapping[str, Any]
    native: object


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    """What the model answered: text and/or tool calls."""

    text: str | None
    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """The result of one tool call, JSON-serialisable, to send back to the model."""

    call_id: str
    name: str
    result: object


@dataclass(frozen=True, slots=True)
class Exchange:
    """One round of the loop: the model's tool calls and the tools' results."""

    reply: AssistantTurn
    results: tuple[ToolResult, ...]


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """One LLM call of the agent loop. ``headers`` go on the HTTP request as they are (the fake
    server reads the session and turn from them); ``history`` is every earlier round."""

    model: str
    system: str
    question: str
    history: tuple[Exchange, ...]
    tools: tuple[ToolSpec, ...]
    stream: bool
    headers: Mapping[str, str]


def json_arguments(text: str) -> dict[str, Any]:
    """A tool call's arguments streamed as JSON text; ``{}`` when they are not a JSON object (the
    tool registry then answers the missing arguments with an ``InvalidArguments`` result)."""
    try:
        parsed = json.loads(text or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class DemoProvider(ABC):
    """One LLM SDK the demo agent can run on, connected to the fake LLM server.

    The class attributes are read before the SDK is imported (the error for a missing SDK, the
    circuits to reset, the model policy); ``__init__`` imports the SDK and makes its client.
    """

    provider_name: ClassVar[str]
    """``gen_ai.provider.name`` of the SDK's spans (``openai``, ``aws.bedrock``...)."""
    sdk: ClassVar[str]
    """The SDK's distribution name, for messages (``anthropic``, ``google-genai``, ``boto3``)."""
    modules: ClassVar[tuple[str, ...]]
    """The import names the adapter needs: a provider whose module is missing is not installed."""
    install: ClassVar[str]
    """What to ``pip install`` to get the SDK (``agentwatch[anthropic]``)."""
    main_model: ClassVar[str]
    """The model the agent asks; the demo's scripted faults hit it."""
    fallback_model: ClassVar[str]
    """The model of the policy's fallback chain, which answers while the main one is down."""

    @classmethod
    def wire_model(cls, model: str) -> str:
        """``model`` as the fake server reads it from a request for it (the scripted faults hit
        the main model): the same name, unless the SDK rewrites it (LiteLLM sends
        ``openai/gpt-4o-mini`` as ``gpt-4o-mini``)."""
        return model

    @abstractmethod
    def __init__(self, server: FakeLLMServer) -> None:
        """Make the SDK's client, pointed at ``server``, with the SDK's own retries off (the
        demo's policy is the one layer that retries) and nothing read from the user's own
        configuration of that provider (keys, profiles, endpoints)."""

    @abstractmethod
    def complete(self, request: TurnRequest) -> AssistantTurn:
        """Send one turn through the SDK (streamed when ``request.stream``); raises what the SDK raises."""

    @abstractmethod
    def close(self) -> None:
        """Release the client's connections."""


class ProviderUnavailable(ValueError):
    """An unknown ``provider``, or one whose SDK is not installed; the message says what to do."""


@dataclass(frozen=True)
class ProviderEntry:
    """A ``--provider`` value, as the integration registry lists it (nothing imported yet)."""

    name: str
    integration: Integration

    @property
    def adapter_module(self) -> str:
        return f"{self.integration.entry_point.module}._demo"

    def load(self) -> type[DemoProvider]:
        """The adapter class (imports ``_demo.py``, not the SDK)."""
        module = importlib.import_module(self.adapter_module)
        adapter = getattr(module, "DEMO_PROVIDER", None)
        if not (isinstance(adapter, type) and issubclass(adapter, DemoProvider)):
            raise TypeError(f"{self.adapter_module}.DEMO_PROVIDER is not a DemoProvider subclass")
        return adapter

    def missing(self, adapter: type[DemoProvider]) -> list[str]:
        """The adapter's modules that cannot be imported (found without importing them)."""
        missing = []
        for name in adapter.modules:
            try:
                found = importlib.util.find_spec(name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(name)
        return missing


def demo_providers() -> dict[str, ProviderEntry]:
    """Every ``--provider`` value, the default first, then by name."""
    from agentwatch.instrumentation._registry import load_registry

    entries = {
        integration.demo: ProviderEntry(integration.demo, integration)
        for integration in load_registry().integrations
        if integration.demo is not None
    }
    return dict(sorted(entries.items(), key=lambda item: (item[0] != DEFAULT_PROVIDER, item[0])))


def provider_names() -> list[str]:
    return list(demo_providers())


def find_provider(name: str) -> tuple[ProviderEntry, type[DemoProvider]]:
    """Provider ``name`` and its adapter; :class:`ProviderUnavailable` when it is unknown or its
    SDK is not installed, naming the accepted values (and what to install)."""
    providers = demo_providers()
    accepted = ", ".join(providers) or "none (is agentwatch installed? pip install it)"
    entry = providers.get(name)
    if entry is None:
        raise ProviderUnavailable(f"unknown provider {name!r}; accepted values are {accepted}")
    adapter = entry.load()
    missing = entry.missing(adapter)
    if missing:
        raise ProviderUnavailable(
            f"provider {name!r} runs on the {adapter.sdk} SDK, which is not installed "
            f'(no module {", ".join(missing)}): pip install "{adapter.install}" '
            f"(accepted values are {accepted})"
        )
    return entry, adapter
