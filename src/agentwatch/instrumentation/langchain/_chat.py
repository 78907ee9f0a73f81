"""LangChain chat models: exactly one ``chat {model}`` span per model call.

A chat model calls a provider SDK. When agentwatch instruments that SDK (``ChatOpenAI`` ->
openai, ``ChatAnthropic`` -> anthropic, and any integration built on them), the SDK call already
makes the span, with the provider's exact usage and cost; a second span here would double the
tokens and cost (the peers' ~2x). So each model call runs with a :class:`ModelCall` marker in
context: an instrumented SDK call made inside marks it, and only a call nobody marked gets a span
made here, after the fact (start time, parent and duration those of the call), from what
LangChain reports: ``_get_ls_params`` and the returned message's ``usage_metadata``.

Wrapped: ``BaseChatModel._generate_with_cache``/``_agenerate_with_cache`` (one per model call
of ``invoke``/``ainvoke``/``batch``/``generate``, streamed internally or not) and
``BaseChatModel.stream``/``astream`` (a direct stream; its fallback to ``invoke`` for a model
without streaming is the same call, not a second one).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentwatch import _semconv as sc
from agentwatch._internal import instrumentation_enabled, report_internal_error
from agentwatch._telemetry._context import ModelCall, framework_model_call
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._inference import InferenceCall
from agentwatch.instrumentation._base import Patch
from agentwatch.instrumentation._common import as_str
from agentwatch.instrumentation._steps import Steps, async_steps, sync_steps
from agentwatch.instrumentation.langchain._extract import (
    StreamState,
    input_content,
    ls_params,
    provider_name,
    read_message,
    request_attributes,
)

__all__ = ["chat_patches"]

_MODULE = "langchain_core.language_models.chat_models"
_GENERATE_ARGS = ("messages", "stop", "run_manager")
_STREAM_ARGS = ("input", "config", "stop")


def _uses_llm_cache(model: Any) -> bool:
    """Whether the call may be answered from LangChain's LLM cache: then it is not known to be a
    model call, and no span is made for it (an SDK agentwatch instruments still makes one)."""
    cache = getattr(model, "cache", None)
    if cache is False:
        return False
    if cache is not None and cache is not True:
        return True
    from langchain_core.globals import get_llm_cache

    return get_llm_cache() is not None


def _split(args: tuple[Any, ...], kwargs: Mapping[str, Any], names: tuple[str, ...]) -> list[Any]:
    """The leading parameters ``names`` (positional or keyword), then the remaining keywords."""
    values = [args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names)]
    values.append({k: v for k, v in kwargs.items() if k not in names})
    return values


class ChatModels:
    """The spans of model calls no provider instrumentor saw; built once per instrumentor."""

    __slots__ = ("telemetry",)

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def record(
        self,
        model: Any,
        stop: object,
        call_kwargs: Mapping[str, Any],
        started: tuple[float, int],
        messages: Callable[[], object],
        *,
        message: object = None,
        error: BaseException | None = None,
        stream: StreamState | None = None,
        streamed: bool = False,
        outcome: str | None = None,
    ) -> None:
        try:
            params = ls_params(model, stop, call_kwargs)
            call = InferenceCall(
                self.telemetry,
                operation=sc.OP_CHAT,
                provider=provider_name(params),
                request_model=as_str(params.get("ls_model_name")),
                server_address=None,
                server_port=None,
                attributes=request_attributes(params),
                stream=streamed or stream is not None,
                started=started,
            )
        except Exception:  # noqa: BLE001
            report_internal_error("starting a LangChain chat span")
            return
        try:
            capture = call.capture_content
            if capture:
                input_content(call, messages())
            if stream is not None:
                stream.timing(call)
                message = stream.merged()
            if message is not None:
                read_message(call, message, capture)
        except Exception:  # noqa: BLE001
            call.fault("reading a LangChain chat model response")
        finally:
            call.end(error, outcome=outcome)


def _started() -> tuple[float, int]:
    return time.perf_counter(), time.time_ns()


def _first_message(result: Any) -> Any:
    generations = getattr(result, "generations", None)
    return getattr(generations[0], "message", None) if generations else None


def _nested() -> bool:
    """Inside another model call (a model delegating to another): that call owns the span."""
    return framework_model_call.get() is not None or not instrumentation_enabled()


class _Generation:
    """One call of ``_generate_with_cache``/``_agenerate_with_cache``: the marker is in context while
    it runs; on exit, a call no provider instrumentor marked gets its span."""

    __slots__ = (
        "_args",
        "_asynchronous",
        "_kwargs",
        "_marker",
        "_model",
        "_models",
        "_started",
        "_token",
        "result",
    )

    def __init__(
        self,
        models: ChatModels,
        model: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        asynchronous: bool,
    ) -> None:
        self._models = models
        self._model = model
        self._args = args
        self._kwargs = kwargs
        self._asynchronous = asynchronous
        self._marker = ModelCall()
        self._started = _started()
        self._token = framework_model_call.set(self._marker)
        self.result: Any = None

    def __enter__(self) -> _Generation:
        return self

    def __exit__(self, exc_type: object, error: BaseException | None, tb: object) -> None:
        framework_model_call.reset(self._token)
        if self._marker.covered:
            return
        model = self._model
        try:
            if _uses_llm_cache(model):
                return
            messages, stop, run_manager, call_kwargs = _split(self._args, self._kwargs, _GENERATE_ARGS)
            message = _first_message(self.result) if error is None else None
            streamed = _streamed(model, run_manager, call_kwargs, self._asynchronous)
        except Exception:  # noqa: BLE001
            report_internal_error("reading a LangChain chat model call")
            return
        self._models.record(
            model,
            stop,
            call_kwargs,
            self._started,
            lambda: messages,
            message=message,
            error=error,
            streamed=streamed,
        )


def _generate(models: ChatModels) -> Callable[..., Any]:
    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _nested():
            return wrapped(*args, **kwargs)
        with _Generation(models, instance, args, kwargs, False) as call:
            call.result = wrapped(*args, **kwargs)
        return call.result

    return traced


def _agenerate(models: ChatModels) -> Callable[..., Any]:
    async def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if _nested():
            return await wrapped(*args, **kwargs)
        with _Generation(models, instance, args, kwargs, True) as call:
            call.result = await wrapped(*args, **kwargs)
        return call.result

    return traced


def _streamed(model: Any, run_manager: Any, call_kwargs: Mapping[str, Any], asynchronous: bool) -> bool:
    """Whether LangChain streamed this call internally (for ``stream_mode="messages"``, a streaming
    callback, ``streaming=True``): its own decision, asked again after the call."""
    try:
        decide = model._should_stream
        return bool(decide(async_api=asynchronous, run_manager=run_manager, **call_kwargs))
    except Exception:  # noqa: BLE001 - a LangChain without this private method: not known
        return False


class _StreamCall:
    """One ``stream()``/``astream()`` of a chat model: the marker is current while it produces."""

    __slots__ = (
        "_args",
        "_begun",
        "_context",
        "_kwargs",
        "_marker",
        "_model",
        "_models",
        "_nested",
        "_started",
        "_state",
    )

    def __init__(self, models: ChatModels, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._models = models
        self._model = model
        self._args = args
        self._kwargs = kwargs
        self._marker = ModelCall()
        self._state = StreamState()
        self._begun = False
        self._nested = False
        self._started = (0.0, 0)
        self._context: contextvars.Context | None = None

    def enter(self) -> object:
        if not self._begun:
            self._begun = True
            self._nested = _nested()
            self._started = _started()
            # The span is made at the end, which may come from the garbage collector (a stream
            # dropped unclosed) in any thread: give it the parent and session of the start.
            self._context = contextvars.copy_context()
        return None if self._nested else framework_model_call.set(self._marker)

    def leave(self, token: object) -> None:
        if token is not None:
            framework_model_call.reset(token)  # type: ignore[arg-type]

    def item(self, item: Any) -> None:
        if not self._nested:
            self._state.add(item, time.perf_counter())

    def end(self, error: BaseException | None) -> None:
        if self._nested or not self._begun or self._marker.covered:
            return
        try:
            model = self._model
            source, _config, stop, call_kwargs = _split(self._args, self._kwargs, _STREAM_ARGS)
        except Exception:  # noqa: BLE001
            report_internal_error("reading a LangChain chat model stream")
            return
        closed = isinstance(error, GeneratorExit)
        context = self._context or contextvars.copy_context()
        context.run(
            self._models.record,
            model,
            stop,
            call_kwargs,
            self._started,
            lambda: model._convert_input(source).to_messages(),
            error=None if closed else error,
            stream=self._state,
            outcome="closed" if closed else ("error" if error is not None else "completed"),
        )


def _streamer(models: ChatModels, steps: Callable[[Any, Steps], Any]) -> Callable[..., Any]:
    """The wrapper of ``stream`` (``steps=sync_steps``) or ``astream`` (``async_steps``)."""

    def traced(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        return steps(wrapped(*args, **kwargs), _StreamCall(models, instance, args, kwargs))

    return traced


def chat_patches(telemetry: Telemetry) -> Iterable[Patch]:
    models = ChatModels(telemetry)
    yield _MODULE, "BaseChatModel._generate_with_cache", _generate(models)
    yield _MODULE, "BaseChatModel._agenerate_with_cache", _agenerate(models)
    yield _MODULE, "BaseChatModel.stream", _streamer(models, sync_steps)
    yield _MODULE, "BaseChatModel.astream", _streamer(models, async_steps)
