"""LLM calls through the resilience policy of their model (``instrument(llm_policies=...)``,
``[llm."model"]`` in ``AGENTWATCH_CONFIG``).

The call's span (agentwatch's own: with a policy it always owns one, see the anthropic patch)
covers every attempt and fallback. Exactly one layer retries: when the policy retries, each
attempt goes through a copy of the client with ``max_retries=0`` (``with_options`` shares the
HTTP connection pool), so 3 attempts are 3 requests. Each attempt sends the model the pipeline
names (the fallback chain) and at most the attempt's remaining time as the SDK timeout. SDKs
shaped otherwise pass their own :data:`AttemptShape` (botocore: ``instrumentation.bedrock``).
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

__all__ = ["Attempt", "AttemptShape", "LLMPolicies"]

Attempt = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]
"""What one attempt calls, and with which positional and keyword arguments."""
AttemptShape = Callable[
    [Callable[..., Any], Any, tuple[Any, ...], Mapping[str, Any], "AttemptContext", "Policy"], Attempt
]
"""(wrapped, instance, args, kwargs, attempt context, policy) -> the attempt: sends the model the
attempt names (a fallback chain), bounds it by the attempt's time, and switches the SDK's own
retries off when ``ctx.disable_sdk_retries``."""


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

    def _attempt(
        self,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        ctx: AttemptContext,
        policy: Policy,
    ) -> Attempt:
        """One attempt of a Stainless SDK call (openai, anthropic): keyword arguments ``model``,
        ``stream`` and ``timeout``, SDK retries off on a copy of the client."""
        call_kwargs = dict(kwargs)
        if ctx.model is not None:
            call_kwargs["model"] = ctx.model
        limit = ctx.attempt_timeout
        if kwargs.get("stream") is True:
            # Sync streams cannot be interrupted between reads from another thread; the SDK's
            # read timeout bounds every read (first chunk and idle alike) instead.
            first, idle = stream_limits(policy) or (None, None)
            chunk_limits = [t for t in (first, idle) if t is not None]
            if chunk_limits:
                limit = max(chunk_limits) if limit is None else min(limit, max(chunk_limits))
        if limit is not None:
            given = call_kwargs.get("timeout")
            if not isinstance(given, (int, float)) or isinstance(given, bool) or given > limit:
                call_kwargs["timeout"] = limit
        target = self._without_sdk_retries(wrapped, instance) if ctx.disable_sdk_retries else wrapped
        return target, args, call_kwargs

    def call(
        self,
        call: InferenceCall,
        policy: Policy,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        shape: AttemptShape | None = None,
    ) -> Any:
        """``shape`` makes each attempt's call for SDKs unlike the Stainless ones (botocore)."""
        pipeline = self.pipeline(call.provider, call.request_model or "", policy)
        make = shape or self._attempt

        def attempt(ctx: AttemptContext) -> Any:
            target, call_args, call_kwargs = make(wrapped, instance, args, kwargs, ctx, policy)
            return target(*call_args, **call_kwargs)

        return pipeline.call(attempt, span=call.span)

    async def acall(
        self,
        call: InferenceCall,
        policy: Policy,
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        shape: AttemptShape | None = None,
    ) -> Any:
        pipeline = self.pipeline(call.provider, call.request_model or "", policy)
        make = shape or self._attempt

        def attempt(ctx: AttemptContext) -> Awaitable[Any]:
            target, call_args, call_kwargs = make(wrapped, instance, args, kwargs, ctx, policy)
            return target(*call_args, **call_kwargs)  # type: ignore[no-any-return]

        return await pipeline.acall(attempt, span=call.span)


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
