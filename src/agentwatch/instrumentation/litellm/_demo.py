"""``agentwatch demo --provider litellm``: the demo agent on LiteLLM's ``completion``, through its
OpenAI-compatible route (``openai/<model>`` with an ``api_base``) to the fake LLM server (the seam:
``agentwatch._demo._provider``). Imports LiteLLM only when connected.

The requests are Chat Completions, so the turn is built and read as the OpenAI adapter does; the
span is LiteLLM's one span per call (the openai SDK LiteLLM calls underneath stands aside), named
after the model without LiteLLM's ``openai/`` prefix, which is also how it goes on the wire.

Nothing of the user's configuration is read. LiteLLM reads its settings from the environment, when
imported (a ``.env`` file found from its install directory, the model cost map's URL, routing all
OpenAI chat calls to the Responses API...) and at every call (``USE_LITELLM_PROXY`` sends every
call to a LiteLLM proxy; the openai SDK under it reads ``OPENAI_*`` organisation, project and
headers), and an explicit ``api_base``/``api_key`` overrides only some of that. So while the demo
runs, LiteLLM sees none of those variables (:data:`_HIDDEN`), is imported offline (the cost map
LiteLLM ships, no ``.env``), and the environment is put back when the run closes. A process-wide
change, which is why it lasts exactly the run (``run_demo`` runs in a process of its own).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from agentwatch._demo._plan import FALLBACK_MODEL, MAIN_MODEL
from agentwatch._demo._provider import AssistantTurn, DemoProvider, TurnRequest
from agentwatch.instrumentation.openai._demo import chat_answer, chat_request, streamed_chat_answer

if TYPE_CHECKING:
    from agentwatch._fakellm import FakeLLMServer

__all__ = ["DEMO_PROVIDER", "LiteLLMDemo"]

# LiteLLM's route to any OpenAI-compatible server: the prefix names the provider, the rest is the
# model the server is asked for.
_ROUTE = "openai/"
# The environment variables LiteLLM (and the openai SDK it calls) must not see during the run:
# these prefixes, and these names.
_HIDDEN_PREFIXES = ("LITELLM_", "OPENAI_")
_HIDDEN = frozenset({"USE_LITELLM_PROXY", "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER"})
# Set instead: the model cost map LiteLLM ships (not GitHub's), no tokenizer downloads, and no
# ``.env`` file loaded when LiteLLM is imported (its "DEV" mode, the default, loads one).
_OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "true",
    "LITELLM_MODE": "PRODUCTION",
}


def _hidden(name: str) -> bool:
    return name.startswith(_HIDDEN_PREFIXES) or name in _HIDDEN


class _Environment:
    """LiteLLM's environment variables hidden (and :data:`_OFFLINE` set) until :meth:`restore`."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {k: v for k, v in os.environ.items() if _hidden(k)}
        for name in self._saved:
            del os.environ[name]
        for name in _OFFLINE:
            self._saved.setdefault(name, None)
        os.environ.update(_OFFLINE)

    def restore(self) -> None:
        saved, self._saved = self._saved, {}
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LiteLLMDemo(DemoProvider):
    provider_name = "openai"  # LiteLLM's openai route, to a server that is no other provider's
    sdk = "litellm"
    modules = ("litellm",)
    install = "agentwatch[litellm]"
    main_model = _ROUTE + MAIN_MODEL
    fallback_model = _ROUTE + FALLBACK_MODEL

    @classmethod
    def wire_model(cls, model: str) -> str:
        return model.removeprefix(_ROUTE)

    def __init__(self, server: FakeLLMServer) -> None:
        self._environment = _Environment()
        try:
            import litellm
        except BaseException:
            self._environment.restore()
            raise
        self._litellm = litellm
        # LiteLLM prints a plea for feedback on stdout with every error it raises: the demo's
        # faults would scatter it through the report. Put back when the run closes.
        self._suppressed = litellm.suppress_debug_info
        litellm.suppress_debug_info = True
        self._options: dict[str, Any] = {
            "api_base": server.openai_base_url,
            "api_key": "sk-agentwatch-demo",
            # The demo's policy is the one layer that retries: not LiteLLM, nor the openai SDK.
            "num_retries": 0,
            "max_retries": 0,
        }

    def complete(self, request: TurnRequest) -> AssistantTurn:
        kwargs = {**chat_request(request), **self._options}
        if not request.stream:
            return chat_answer(self._litellm.completion(**kwargs).choices[0].message)
        # Read to its end, which closes it (LiteLLM's streams are context managers only since 1.108).
        stream = self._litellm.completion(**kwargs, stream=True, stream_options={"include_usage": True})
        return streamed_chat_answer(stream)

    def close(self) -> None:
        self._litellm.suppress_debug_info = self._suppressed
        self._environment.restore()


DEMO_PROVIDER = LiteLLMDemo
