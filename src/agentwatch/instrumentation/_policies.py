"""LLM calls through the resilience policy of their model (``instrument(llm_policies=...)``,
``[llm."model"]`` in ``AGENTWATCH_CONFIG``).

The call's span (agentwatch's own: with a policy it always owns one, see the anthropic patch)
covers every attempt and fallback. Exactly one layer retries: when the policy retries, the SDK's
own retries are off for each attempt, so 3 attempts are 3 requests. Each attempt sends the model
the pipeline names (the fallback chain) and at most the attempt's remaining time as the SDK
timeout. How an SDK takes those two settings is its :data:`AttemptOptions`; by default (the
Stainless SDKs, openai and anthropic) the timeout is the ``timeout`` argument and the attempt goes
through a copy of the client with ``max_retries=0`` (``with_options`` shares the HTTP connection
pool).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentwatch._internal import report_internal_error, reset_in_forked_child
from agentwatch._telemetry._core import Telemetry
from agentwatch._telemetry._inference import InferenceCall

if TYPE_CHECKING:
    from agentwatch.resilience import AttemptContext, Pipeline, Policy

__all__ = ["AttemptOptions", "LLMPolicies"]

AttemptOptions = Callable[[Callable[..., Any], Any, dict[str, Any], "float | None", bool], Callable[..., Any]]
"""(wrapped, instance, kwargs, timeout in seconds or None, SDK retries off) -> what to call.

Puts one attempt's timeout and "no SDK retries" into ``kwargs`` (a copy, the attempt's own) or
into the callable it returns, the way the SDK takes them."""


class LLMPolicies:
    """Per-instrumentor: the pipelines of the models called so far, built once each."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._policies = telemetry.settings.llm_policies
        self._pipelines: dict[tuple[str, str], Pipeline] = {}
        self._no_retry: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        reset_in_forked_child(self, "_lock")

    @property
    def active(self) -> bool:
        return bool(self._policies)

    def policy_for(self, model: str | None) -> Policy | None:
        # No model, no pipeline (a pipeline is named after its model): the call goes to the SDK
        # unchanged, which answers an empty model its own way, as it would without agentwatch.
        if not self._policies or not model:
            return None
        from agentwatch.resilience._file import lookup_policy

        return lookup_policy(self._policies, model)

    def pipeline(self, provider: str, model: str, policy: Policy) -> Pipeline:
        key = (provider, model)
        pipeline = self._pipelines.get(key)
        if pipeline is None:
            from agentwatch.resilience import Pipeline

            with self._lock:
                pipeline = self._pipelines.get(key)
                if pipeline is None:
                    pipeline = self._pipelines[key] = Pipeline(
                        policy, name=model, kind="llm", provider=provider
                    )
        return pipeline

    def _without_sdk_retries(self, wrapped: Callable[..., Any], instance: Any) -> Callable[..., Any]:
        """``wrapped`` bound to the same resource on a copy of its client with SDK retries off."""
        client = instance._client
        resources = self._no_retry.get(client)
        if resources is None:
            resources = self._no_retry[client] = {"client": client.with_options(max_retries=0)}
        resource = resources.get(type(instance))
        if resource is None:
            resource = resources[type(instance)] = type(instance)(resources["client"])
        return wrapped.__func__.__get__(resource)  # type: ignore[attr-defined, no-any-return]

    def stainless_options(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        kwargs: dict[str, Any],
        limit: float | None,
        no_retries: bool,
    ) -> Callable[..., Any]:
        """The Stainless SDKs' (openai, anthropic) :data:`AttemptOptions`."""
        cap_timeout(kwargs, limit)
        return self._without_sdk_retries(wrapped, instance) if no_retries else wrapped

    def _attempt(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        kwargs: Mapping[str, Any],
        ctx: AttemptContext,
        policy: Policy,
        call: InferenceCall,
        options: AttemptOptions | None,
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        call_kwargs = dict(kwargs)
        if ctx.model is not None:
            call_kwargs["model"] = ctx.model
        limit = ctx.attempt_timeout
        if call.stream:
            # Sync streams cannot be interrupted between reads from another thread; the SDK's
            # read timeout bounds every read (first chunk and idle alike) instead.
            first, idle = stream_limits(policy) or (None, None)
            chunk_limits = [t for t in (first, idle) if t is not None]
            if chunk_limits:
                limit = max(chunk_limits) if limit is None else min(limit, max(chunk_limits))
        apply = options or self.stainless_options
        return apply(wrapped, instance, call_kwargs, limit, ctx.disable_sdk_retries), call_kwargs

    def call(
        self,
        call: InferenceCall,
        policy: Policy,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        options: AttemptOptions | None = None,
    ) -> Any:
        pipeline = self.pipeline(call.provider, _subject(call, kwargs), policy)

        def attempt(ctx: AttemptContext) -> Any:
            target, call_kwargs = self._attempt(wrapped, instance, kwargs, ctx, policy, call, options)
            return target(*args, **call_kwargs)

        return pipeline.call(attempt, span=call.span)

    async def acall(
        self,
        call: InferenceCall,
        policy: Policy,
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        options: AttemptOptions | None = None,
    ) -> Any:
        pipeline = self.pipeline(call.provider, _subject(call, kwargs), policy)

        def attempt(ctx: AttemptContext) -> Awaitable[Any]:
            target, call_kwargs = self._attempt(wrapped, instance, kwargs, ctx, policy, call, options)
            return target(*args, **call_kwargs)  # type: ignore[no-any-return]

        return await pipeline.acall(attempt, span=call.span)


def _subject(call: InferenceCall, kwargs: Mapping[str, Any]) -> str:
    """The pipeline's name: the model as the caller named it, which each attempt sends again
    (LiteLLM's ``groq/llama-3.1-8b-instant``; ``gen_ai.request.model`` is the provider's name)."""
    model = kwargs.get("model")
    return model if isinstance(model, str) and model else call.request_model or ""


def cap_timeout(kwargs: dict[str, Any], limit: float | None) -> None:
    """Lower ``kwargs["timeout"]`` to ``limit`` seconds, unless the caller gave a smaller number."""
    if limit is not None:
        given = kwargs.get("timeout")
        if not isinstance(given, (int, float)) or isinstance(given, bool) or given > limit:
            kwargs["timeout"] = limit


def stream_limits(policy: Policy | None) -> tuple[float | None, float | None] | None:
    if policy is None or (policy.first_chunk_timeout is None and policy.idle_timeout is None):
        return None
    from agentwatch.resilience._config import seconds

    first, idle = policy.first_chunk_timeout, policy.idle_timeout
    return (None if first is None else seconds(first), None if idle is None else seconds(idle))


def safe_policy_for(policies: LLMPolicies, model: object) -> Policy | None:
    if not policies.active:
        return None
    try:
        return policies.policy_for(model if isinstance(model, str) else None)
    except Exception:  # noqa: BLE001
        report_internal_error("looking up an LLM policy")
        return None
