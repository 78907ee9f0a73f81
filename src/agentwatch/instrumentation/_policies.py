"""Framework tool calls through the resilience policy of their name (``instrument(tool_policies=...)``,
``[tools.NAME]`` in ``AGENTWATCH_CONFIG``), and LLM calls through the policy of their model
(``instrument(llm_policies=...)``, ``[llm."model"]``).

A tool's pipeline is built once per name and policy: its circuit, bulkhead and retry budget are
shared by all its calls, whichever framework makes them (LangChain, the OpenAI Agents SDK).

The call's span (agentwatch's own: with a policy it always owns one, see the anthropic patch)
covers every attempt and fallback. Exactly one layer retries: when the policy retries, the SDK's
own retries are off for each attempt, so 3 attempts are 3 requests. Each attempt sends the model
the pipeline names (the fallback chain) and at most the attempt's remaining time as the SDK
timeout. How an SDK takes those two settings is its :data:`AttemptOptions`; by default (the
Stainless SDKs, openai and anthropic) the timeout is the ``timeout`` argument and the attempt goes
through a copy of the client with ``max_retries=0`` (``with_options`` shares the HTTP connection
pool). google-genai and botocore pass their own (``instrumentation.google_genai``,
``instrumentation.bedrock``). The attempt's model replaces the request's ``model_key`` argument
(``model``; Bedrock's ``modelId``).

A rate limit with a token budget (``RateLimit(tokens=...)``) needs the request's cost before the
call: :func:`~agentwatch.resilience._ratelimit.estimate_tokens` reads it from the request's
arguments alone (whatever the provider: the characters of its text / 4 plus its output cap), and
when the call ends the permit of the attempt that answered is settled with the input + output
tokens the provider reported (the usage the instrumentor read into the call; for a stream, at its
end). Nothing here is provider-specific.
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
    from agentwatch.resilience._ratelimit import Grant

__all__ = ["AttemptOptions", "LLMPolicies", "ToolPolicies"]

AttemptOptions = Callable[[Callable[..., Any], Any, dict[str, Any], "float | None", bool], Callable[..., Any]]
"""(wrapped, instance, kwargs, timeout in seconds or None, SDK retries off) -> what to call.

Puts one attempt's timeout and "no SDK retries" into ``kwargs`` (a copy, the attempt's own) or
into the callable it returns, the way the SDK takes them. An SDK without a per-request timeout
(botocore) leaves it to the pipeline, which abandons the attempt when its time is up."""


class ToolPolicies:
    """Per-instrumentor: the pipeline of each tool name that has a policy, built once per (name, policy)."""

    def __init__(self, policies: Mapping[str, Policy]) -> None:
        self._policies = policies
        self._pipelines: dict[str, tuple[Policy, Pipeline]] = {}
        self._lock = threading.Lock()
        reset_in_forked_child(self, "_lock")

    def pipeline(self, name: str) -> Pipeline | None:
        """The pipeline of tool ``name``, or None: no policy, or one that failed to build (a policy
        validated at start-up; the call runs without it rather than fail)."""
        if not self._policies:
            return None
        try:
            from agentwatch.resilience import Pipeline
            from agentwatch.resilience._file import lookup_policy

            policy = lookup_policy(self._policies, name)
            if policy is None:
                return None
            cached = self._pipelines.get(name)
            if cached is None or cached[0] is not policy:
                with self._lock:
                    cached = self._pipelines.get(name)
                    if cached is None or cached[0] is not policy:
                        cached = (policy, Pipeline(policy, name=name, kind="tool"))
                        self._pipelines[name] = cached
            return cached[1]
        except Exception:  # noqa: BLE001 - no policy is better than a failed tool call
            report_internal_error("building a tool policy pipeline")
            return None


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
        model_key: str,
    ) -> tuple[Callable[..., Any], dict[str, Any]]:
        call_kwargs = dict(kwargs)
        if ctx.model is not None:
            call_kwargs[model_key] = ctx.model
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
        *,
        model_key: str = "model",
    ) -> Any:
        pipeline = self.pipeline(call.provider, _subject(call, kwargs, model_key), policy)
        grants = _Grants(call, policy, kwargs)
        answers = _Answers()

        def attempt(ctx: AttemptContext) -> Any:
            grants.last = ctx.rate_limit
            target, call_kwargs = self._attempt(
                wrapped, instance, kwargs, ctx, policy, call, options, model_key
            )
            return answers.add(target(*args, **call_kwargs), ctx)

        return answers.settle(call, pipeline.call(attempt, span=call.span, tokens=grants.estimate))

    async def acall(
        self,
        call: InferenceCall,
        policy: Policy,
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        options: AttemptOptions | None = None,
        *,
        model_key: str = "model",
    ) -> Any:
        pipeline = self.pipeline(call.provider, _subject(call, kwargs, model_key), policy)
        grants = _Grants(call, policy, kwargs)
        answers = _Answers()

        async def attempt(ctx: AttemptContext) -> Any:
            grants.last = ctx.rate_limit
            target, call_kwargs = self._attempt(
                wrapped, instance, kwargs, ctx, policy, call, options, model_key
            )
            return answers.add(await target(*args, **call_kwargs), ctx)

        return answers.settle(call, await pipeline.acall(attempt, span=call.span, tokens=grants.estimate))


class _Answers:
    """Which model each attempt that returned asked, so that the call knows the model of the
    answer the pipeline chose (``InferenceCall.answered_by``): an attempt abandoned at its timeout
    may still return later, so the last attempt to return is not necessarily the one chosen."""

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: list[tuple[object, str | None]] = []

    def add(self, result: Any, ctx: AttemptContext) -> Any:
        self._models.append((result, ctx.model))
        return result

    def settle(self, call: InferenceCall, result: Any) -> Any:
        model = next((m for answer, m in self._models if answer is result), None)
        self._models.clear()
        if model is not None and model != call.request_model:
            call.answered_by = model
        return result


class _Grants:
    """The token estimate of one call and the permit of its last attempt, settled at the call's end."""

    __slots__ = ("estimate", "last")

    def __init__(self, call: InferenceCall, policy: Policy, kwargs: Mapping[str, Any]) -> None:
        self.last: Grant | None = None
        self.estimate: int | None = None
        limit = policy.rate_limit
        if limit is None or limit.tokens is None:
            return
        try:
            from agentwatch.resilience._ratelimit import estimate_tokens

            self.estimate = estimate_tokens(kwargs)
        except Exception:  # noqa: BLE001 - no estimate: the permit counts requests only
            report_internal_error("estimating a request's tokens")
            return
        call.after_end = self.settle

    def settle(self, call: InferenceCall) -> None:
        grant = self.last
        if grant is None:
            return
        usage = call.usage
        if usage.input_tokens is None and usage.output_tokens is None:
            return  # not reported (a stream without usage): the estimate stands
        grant.settle((usage.input_tokens or 0) + (usage.output_tokens or 0))


def _subject(call: InferenceCall, kwargs: Mapping[str, Any], model_key: str) -> str:
    """The pipeline's name: the model as the caller named it, which each attempt sends again
    (LiteLLM's ``groq/llama-3.1-8b-instant``; ``gen_ai.request.model`` is the provider's name)."""
    model = kwargs.get(model_key)
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
