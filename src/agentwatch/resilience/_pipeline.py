"""The resilience engine: one :class:`Pipeline` per (policy, tool or model), built once.

Integration contract
====================

A tool registry or an LLM instrumentor builds a pipeline when it attaches a policy, then routes
every call through it, *inside* the call's span (the span is started before and ended after)::

    pipeline = Pipeline(policy, name="search_knowledge_base", kind="tool")
    pipeline = Pipeline(policy, name="gpt-4o", kind="llm", provider="openai")

    with tracer.start_as_current_span("execute_tool search_knowledge_base") as span:
        result = pipeline.call(lambda ctx: tool(**arguments), span=span)          # sync
        result = await pipeline.acall(lambda ctx: tool(**arguments), span=span)   # async

``attempt(ctx)`` makes one attempt and is called once per attempt with an :class:`AttemptContext`:
``ctx.attempt`` (1-based, across fallback models), ``ctx.model`` (LLM calls: the requested model,
then each fallback model; the integrator must send *that* model), ``ctx.attempt_timeout`` and
``ctx.deadline_remaining`` (pass the former to the SDK as its per-request timeout).

Layers, outermost first: disabled tool → cache (tools with ``Policy.cache``, when the caller passes
the call's canonical ``arguments``) → fallback → total timeout → retry (+ budget) → circuit breaker
→ rate limit → bulkhead → attempt timeout. Argument validation happens before, in the tool layer. ``call``/``acall`` return the attempt's result, or raise the call's own
exception unchanged (same object), or one of the structured errors (``CircuitOpenError``,
``ToolTimeoutError``, ``BulkheadFullError``, ``ToolDisabledError``, ``RateLimitedError``). An optional tool
(``Policy(critical=False)``) returns a :class:`ToolUnavailable` instead of raising when it is
unavailable (timeout, open circuit, full bulkhead, disabled, or a failure classified as
fallback-worthy, i.e. not a validation error); the integrator hands ``result.to_dict()`` (or its
``message``) to the model as the tool result. LLM calls never degrade: after the last fallback
model the last error is raised.

Exactly one layer retries. The engine cannot switch an SDK's retries off: when
``ctx.disable_sdk_retries`` (``Pipeline.disable_sdk_retries``) is true, i.e. the policy has a
``retry``, the integrator must make the request with the SDK's retries off (openai/anthropic:
``client.with_options(max_retries=0)``), so that 3 attempts are 3 requests.

Stream timeouts (``Policy.first_chunk_timeout``/``idle_timeout``) are not enforced here: the
attempt covers obtaining the stream, and the stream wrapper enforces the chunk timeouts.

Rate limits (``Policy.rate_limit``): each attempt takes a permit (waiting for it, within
``max_wait`` and the deadline) after the breaker admitted it and before the bulkhead. An LLM
integrator passes the request's estimated tokens (``call(..., tokens=n)``) and, once the response's
usage is known, settles the permit of the attempt that answered: ``ctx.rate_limit.settle(actual)``.

Telemetry on ``span`` (when recording): events ``retry`` (``agentwatch.retry.attempt``: the
attempt that failed, ``agentwatch.retry.delay`` in s, ``error.type``), ``retry_abandoned``
(``agentwatch.retry.reason``: ``deadline`` | ``budget``), ``timeout`` (``agentwatch.timeout.scope``,
``agentwatch.timeout.seconds``), ``circuit_opened``/``circuit_half_opened``/``circuit_closed``/
``circuit_rejected`` (``agentwatch.circuit.name``), ``bulkhead_rejected``, ``tool_disabled``,
``rate_limit_delayed`` (``agentwatch.rate_limit.wait`` in s) / ``rate_limit_rejected``
(``agentwatch.rate_limit.retry_in``, ``agentwatch.rate_limit.limit``), both with
``agentwatch.rate_limit.key`` and ``agentwatch.rate_limit.scope`` (``fleet`` | ``replica``),
``fallback`` (``agentwatch.fallback.reason``, and ``gen_ai.request.model`` of the next model in an
LLM chain), ``cache_hit``/``cache_miss``/``cache_shared``/``cache_unavailable``/``cache_bypassed``/
``cache_not_stored``; attributes ``agentwatch.resilience.attempts`` and ``agentwatch.cache.result``; and ``error.type`` when the pipeline
short-circuits (``circuit_open``, ``bulkhead_full``, ``timeout``, ``tool_disabled``,
``rate_limited``) or degrades
(the reason's error type). The caller sets the span status from the raised exception; a degraded
call returns normally, so the ``error.type`` and the ``fallback`` event are its only marks. Every
event also increments the ``agentwatch.resilience.events`` counter. Telemetry faults are reported
through ``report_internal_error`` and never change the outcome.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from opentelemetry.semconv._incubating.attributes.gen_ai_attributes import GEN_AI_REQUEST_MODEL
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from agentwatch._errors import ConfigError
from agentwatch._internal import report_internal_error
from agentwatch._telemetry._errors import error_type
from agentwatch.resilience._breaker import Circuit, Permit, Transition
from agentwatch.resilience._bulkhead import BulkheadGate
from agentwatch.resilience._cache import ToolCache
from agentwatch.resilience._classify import Classification, ErrorCategory, default_classifier
from agentwatch.resilience._config import Policy, check_policy_kind, preempts_attempts, seconds
from agentwatch.resilience._errors import (
    BulkheadFullError,
    CallKind,
    CircuitOpenError,
    FieldProblem,
    InvalidArgumentsError,
    RateLimitedError,
    ResilienceError,
    TimeoutScope,
    ToolDisabledError,
    ToolTimeoutError,
)
from agentwatch.resilience._ratelimit import Grant, RateLimiter
from agentwatch.resilience._registry import Registry, default_registry
from agentwatch.resilience._retry import RetryBudgetTracker, retry_delay
from agentwatch.resilience._telemetry import (
    BULKHEAD_REJECTED,
    CIRCUIT_NAME,
    CIRCUIT_REJECTED,
    RATE_LIMIT_REJECTED,
    TOOL_DISABLED,
    ResilienceTelemetry,
    current_telemetry,
    subject_attribute,
)
from agentwatch.resilience._timeout import run_async_with_timeout, run_sync_with_timeout

__all__ = ["AttemptContext", "InvalidArguments", "Pipeline", "ToolUnavailable", "error_type_of"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptContext:
    """What one attempt needs to know.

    Attributes:
        attempt: 1-based number of this attempt within the call (fallback models included).
        model: LLM calls: the model this attempt must request; tools: ``None``.
        attempt_timeout: seconds this attempt may take (the attempt timeout, or what is left of
            the deadline if less), or ``None``; an LLM integrator passes it to the SDK.
        deadline_remaining: seconds left before the call's total deadline, or ``None``.
        disable_sdk_retries: the policy retries, so the SDK must not (``max_retries=0``).
        rate_limit: the attempt's rate-limit permit (``Policy.rate_limit``), or ``None``; settle
            its token estimate with ``rate_limit.settle(actual_tokens)`` once the usage is known.
    """

    attempt: int
    model: str | None
    attempt_timeout: float | None
    deadline_remaining: float | None
    disable_sdk_retries: bool
    rate_limit: Grant | None = None


_DETAILS = {
    "circuit_open": "circuit open",
    "bulkhead_full": "too many concurrent calls",
    "timeout": "timed out",
    "tool_disabled": "disabled by an operator",
    "rate_limited": "over its rate limit",
    ErrorCategory.RATE_LIMIT.value: "rate limited",
    ErrorCategory.DEPENDENCY.value: "its dependency failed",
    ErrorCategory.UNKNOWN.value: "it failed",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolUnavailable:
    """The result of an optional tool that could not run, for the model to read and carry on.

    ``reason`` is ``circuit_open``, ``bulkhead_full``, ``timeout``, ``tool_disabled`` or
    ``rate_limited`` when a policy
    stopped the call, else the failure's category (``dependency``, ``rate_limit``, ``unknown``). The
    message never contains the exception's text, which may hold data the model must not see.
    """

    tool: str
    reason: str
    message: str
    # The error.type of the failure behind it, for the span and metric of every call that
    # receives this result (calls sharing one execution through the cache included).
    error_type: str | None = field(default=None, compare=False, repr=False)

    @classmethod
    def for_tool(cls, tool: str, reason: str, *, error_type: str | None = None) -> ToolUnavailable:
        detail = _DETAILS.get(reason, reason.replace("_", " "))
        return cls(
            tool=tool,
            reason=reason,
            message=f"The tool {tool!r} is unavailable ({detail}); proceed without it.",
            error_type=error_type,
        )

    def to_dict(self) -> dict[str, str]:
        return {"status": "unavailable", "tool": self.tool, "reason": self.reason, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidArguments:
    """What the model reads instead of a tool result when its arguments were invalid.

    ``ToolRegistry.call_tool_call`` returns it (the tool did not run); hand ``to_dict()`` to the
    model as the tool result so that it can correct the named fields and call again. No argument
    value appears in it.
    """

    tool: str
    errors: tuple[FieldProblem, ...]
    message: str

    @classmethod
    def from_error(cls, error: InvalidArgumentsError) -> InvalidArguments:
        listed = "; ".join(f"{p.field or 'the arguments'}: {p.message}" for p in error.problems)
        return cls(
            tool=error.name,
            errors=error.problems,
            message=f"The arguments for tool {error.name!r} are invalid ({listed}). "
            "Correct them and call the tool again.",
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "status": "invalid_arguments",
            "tool": self.tool,
            "errors": [p.to_dict() for p in self.errors],
            "message": self.message,
        }


def error_type_of(exc: BaseException) -> str:
    """The ``error.type`` value of an exception: the policy's own code (``circuit_open`` ...), or
    the class name qualified by its top-level package, exactly as on the call's span and metric."""
    return error_type(exc)


# The policies' own errors have fixed semantics, whatever the pluggable classifier says.
_ATTEMPT_TIMEOUT = Classification(
    category=ErrorCategory.TIMEOUT, retryable=True, counts_as_failure=True, fallback=True
)
# An attempt cut short by the total deadline is a timed-out call, which the breaker counts as
# resilience4j and Polly do: with the default policy (a total deadline, no attempt timeout) a
# hanging dependency would otherwise never open its circuit. No time is left to retry it.
_DEADLINE_IN_ATTEMPT = Classification(
    category=ErrorCategory.TIMEOUT, retryable=False, counts_as_failure=True, fallback=True
)
# The deadline passed before the attempt reached the dependency (in backoff or the bulkhead queue):
# nothing is known about the dependency's health.
_DEADLINE = Classification(
    category=ErrorCategory.TIMEOUT, retryable=False, counts_as_failure=False, fallback=True
)
_REJECTED = Classification(
    category=ErrorCategory.DEPENDENCY, retryable=False, counts_as_failure=False, fallback=True
)
_SHED = Classification(
    category=ErrorCategory.RATE_LIMIT, retryable=False, counts_as_failure=False, fallback=True
)
# The call already waited as long as its rate limit allows; another attempt would wait again.
_RATE_LIMITED = _SHED
# Invalid arguments are the caller's (the model's) mistake: the same call fails again, it says
# nothing about the dependency, and hiding it behind a degradation result would keep the model
# from correcting it.
_INVALID_ARGUMENTS = Classification(
    category=ErrorCategory.VALIDATION, retryable=False, counts_as_failure=False, fallback=False
)


def _own_classification(exc: BaseException) -> Classification | None:
    if isinstance(exc, ToolTimeoutError):
        return _DEADLINE if exc.scope == "total" else _ATTEMPT_TIMEOUT
    if isinstance(exc, CircuitOpenError):
        return _REJECTED
    if isinstance(exc, BulkheadFullError):
        return _SHED
    if isinstance(exc, RateLimitedError):
        return _RATE_LIMITED
    if isinstance(exc, InvalidArgumentsError):
        return _INVALID_ARGUMENTS
    return None


class _Call:
    """Per-call state."""

    __slots__ = ("attempts", "classification", "cut", "deadline", "error", "span", "tokens")

    def __init__(self, span: Span | None, deadline: float | None, tokens: int = 0) -> None:
        self.span = span
        self.deadline = deadline
        self.tokens = tokens
        self.attempts = 0
        self.error: BaseException | None = None
        self.classification: Classification | None = None
        # The timeout that cut the last attempt short while it ran, as opposed to one raised
        # before the attempt started; the two count differently for the breaker.
        self.cut: ToolTimeoutError | None = None


class Pipeline:
    """Executes calls of one tool or model through the layers of one :class:`Policy`.

    Args:
        policy: the policy.
        name: the tool name, or the requested model of an LLM call.
        kind: ``"tool"`` or ``"llm"``.
        provider: LLM calls: the provider (``openai``), so that each model of the fallback chain
            gets its circuit ``provider:model``.
        breaker_key: the circuit key of ``name`` (default: the tool name, or ``provider:model``);
            tools calling the same backend may share one.
        clock, sleep, async_sleep, random: injectable for tests (monotonic seconds, blocking
            sleep, asyncio sleep, uniform [0, 1)).
        telemetry: where metrics go (default: the process-wide ``current_telemetry()``).
        registry: where circuits and disabled tools live (default: the process-wide registry).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        name: str,
        kind: CallKind = "tool",
        provider: str | None = None,
        breaker_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        random: Callable[[], float] = _random.random,
        telemetry: ResilienceTelemetry | None = None,
        registry: Registry | None = None,
    ) -> None:
        if not isinstance(policy, Policy):
            raise ConfigError("Pipeline.policy", policy, "an agentwatch.Policy")
        if kind not in ("tool", "llm"):
            raise ConfigError("Pipeline.kind", kind, ["tool", "llm"])
        if not isinstance(name, str) or not name:
            raise ConfigError("Pipeline.name", name, "a non-empty tool or model name")
        check_policy_kind(policy, kind, "Policy")
        self.policy = policy
        self.name = name
        self.kind: CallKind = kind
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._random = random
        self._own_telemetry = telemetry
        self._registry = registry or default_registry()
        self._classifier = policy.classifier or default_classifier
        self._timeout = None if policy.timeout is None else seconds(policy.timeout)
        self._attempt_timeout = None if policy.attempt_timeout is None else seconds(policy.attempt_timeout)
        self._preempt = preempts_attempts(policy)
        self._retry = policy.retry
        self._budget = (
            RetryBudgetTracker(policy.retry.budget, clock)
            if policy.retry is not None and policy.retry.budget is not None
            else None
        )
        self._models: tuple[str, ...] = (name, *policy.fallback_models) if kind == "llm" else (name,)
        self._circuits: dict[str, Circuit] = {}
        if policy.breaker is not None:
            for model in self._models:
                if model == name and breaker_key is not None:
                    key = breaker_key
                else:
                    key = f"{provider}:{model}" if provider and kind == "llm" else model
                self._circuits[model] = self._registry.circuit_for(
                    key, policy.breaker, name=model, kind=kind, clock=clock
                )
        self._limiters: dict[str, RateLimiter] = {}
        limit = policy.rate_limit
        if limit is not None:
            for model in self._models:
                if limit.key is not None:
                    key = limit.key
                else:
                    key = f"{provider}:{model}" if provider and kind == "llm" else model
                self._limiters[model] = self._registry.limiter_for(
                    key, limit, name=model, kind=kind, clock=clock
                )
        self._bulkhead = BulkheadGate(policy.bulkhead, name=name, kind=kind) if policy.bulkhead else None
        self._call_attributes: dict[str, AttributeValue] = {subject_attribute(kind): name}
        self._thread_name = f"agentwatch-{kind}-{name}"
        self._cache = (
            ToolCache(policy.cache, tool=name, kind=kind, clock=clock, telemetry=lambda: self._telemetry)
            if policy.cache is not None and kind == "tool"
            else None
        )
        if kind == "tool":
            self._registry.register_tool(name)

    @property
    def disable_sdk_retries(self) -> bool:
        """True when this pipeline retries, so the SDK's own retries must be off."""
        return self._retry is not None

    @property
    def cached(self) -> bool:
        """True when the policy caches results: pass ``arguments`` to :meth:`call`."""
        return self._cache is not None

    @property
    def circuits(self) -> dict[str, Circuit]:
        """The circuit of each model (or of the tool), by model or tool name."""
        return dict(self._circuits)

    @property
    def rate_limiters(self) -> dict[str, RateLimiter]:
        """The rate-limit budget of each model (or of the tool), by model or tool name."""
        return dict(self._limiters)

    # -- public entry points ---------------------------------------------------------------

    def call(
        self,
        attempt: Callable[[AttemptContext], T],
        *,
        span: Span | None = None,
        arguments: Mapping[str, object] | None = None,
        tokens: int | None = None,
    ) -> T | ToolUnavailable:
        """Run a sync call; see the module docstring for the contract.

        ``arguments``: a tool call's canonical arguments (by name, defaults filled in), the key of
        the policy's cache; without them the call is not cached. ``tokens``: the request's
        estimated tokens, for a ``RateLimit`` with a token budget (LLM calls).
        """
        if self.kind == "tool" and self._registry.is_tool_disabled(self.name):
            return self._disabled(span)
        cache = self._cache
        if cache is None or arguments is None:
            return self._run_sync(attempt, span, tokens)
        return cache.call(lambda: self._run_sync(attempt, span, tokens), span=span, arguments=arguments)

    async def acall(
        self,
        attempt: Callable[[AttemptContext], Awaitable[T]],
        *,
        span: Span | None = None,
        arguments: Mapping[str, object] | None = None,
        tokens: int | None = None,
    ) -> T | ToolUnavailable:
        """Run an async call; see the module docstring and :meth:`call`."""
        if self.kind == "tool" and self._registry.is_tool_disabled(self.name):
            return self._disabled(span)
        cache = self._cache
        if cache is None or arguments is None:
            return await self._run_async(attempt, span, tokens)
        return await cache.acall(
            lambda: self._run_async(attempt, span, tokens), span=span, arguments=arguments
        )

    def _run_sync(
        self, attempt: Callable[[AttemptContext], T], span: Span | None, tokens: int | None = None
    ) -> T | ToolUnavailable:
        run = self._start(span, tokens)
        try:
            index = 0
            while True:
                model = self._models[index]
                try:
                    return self._attempts_sync(run, attempt, model)
                except Exception as exc:
                    index += 1
                    if index < len(self._models) and self._fall_back(run, exc, model, self._models[index]):
                        continue
                    degraded = self._give_up(run, exc)
                    if degraded is None:
                        raise
                    return degraded
        finally:
            self._telemetry.attempts(span, run.attempts, self._call_attributes)

    async def _run_async(
        self,
        attempt: Callable[[AttemptContext], Awaitable[T]],
        span: Span | None,
        tokens: int | None = None,
    ) -> T | ToolUnavailable:
        run = self._start(span, tokens)
        try:
            index = 0
            while True:
                model = self._models[index]
                try:
                    return await self._attempts_async(run, attempt, model)
                except Exception as exc:
                    index += 1
                    if index < len(self._models) and self._fall_back(run, exc, model, self._models[index]):
                        continue
                    degraded = self._give_up(run, exc)
                    if degraded is None:
                        raise
                    return degraded
        finally:
            self._telemetry.attempts(span, run.attempts, self._call_attributes)

    # -- the retry loop, sync and async ------------------------------------------------------

    def _attempts_sync(self, run: _Call, attempt: Callable[[AttemptContext], T], model: str) -> T:
        circuit = self._circuits.get(model)
        number = 0
        while True:
            number += 1
            permit: Permit | None = None
            try:
                remaining = self._check_deadline(run, model)
                permit = self._enter_circuit(run, circuit)
                result = self._guarded_attempt_sync(run, attempt, model, remaining)
            except BaseException as exc:
                delay = self._after_failure(run, exc, circuit, permit, model, number)
                if delay is None:
                    raise
                self._sleep(delay)
                continue
            self._after_success(run, circuit, permit)
            return result

    async def _attempts_async(
        self, run: _Call, attempt: Callable[[AttemptContext], Awaitable[T]], model: str
    ) -> T:
        circuit = self._circuits.get(model)
        number = 0
        while True:
            number += 1
            permit: Permit | None = None
            try:
                remaining = self._check_deadline(run, model)
                permit = self._enter_circuit(run, circuit)
                result = await self._guarded_attempt_async(run, attempt, model, remaining)
            except BaseException as exc:
                delay = self._after_failure(run, exc, circuit, permit, model, number)
                if delay is None:
                    raise
                await self._async_sleep(delay)
                continue
            self._after_success(run, circuit, permit)
            return result

    # -- bulkhead and attempt timeout, sync and async ---------------------------------------

    def _guarded_attempt_sync(
        self, run: _Call, attempt: Callable[[AttemptContext], T], model: str, remaining: float | None
    ) -> T:
        grant, remaining = self._permit_sync(run, model, remaining)
        gate = self._bulkhead
        if gate is not None:
            try:
                gate.enter(remaining)
            except BulkheadFullError as exc:
                self._event(run, BULKHEAD_REJECTED, "bulkhead", model, exc)
                if grant is not None:
                    grant.cancel()
                raise
        leave = None if gate is None else gate.leave
        try:
            if gate is not None:
                # Time spent queued comes off the deadline (and off the SDK's timeout).
                remaining = self._check_deadline(run, model)
            ctx = self._context(run, model, remaining, grant)
            limit = ctx.attempt_timeout
            if limit is None:
                return attempt(ctx)
            if not self._preempt:
                return self._bounded_by_deadline(run, attempt, ctx, model, remaining)
            # A timed-out attempt's thread runs on, so it keeps its slot until it returns:
            # otherwise Bulkhead(max_concurrent=1) would let every hung attempt run at once.
            # From here the worker gives the slot back, on every path, before waking the caller.
            on_done, leave = leave, None
            return run_sync_with_timeout(
                lambda: attempt(ctx),
                limit,
                lambda: self._cut(run, model, remaining),
                thread_name=self._thread_name,
                on_done=on_done,
            )
        finally:
            if leave is not None:
                leave()

    def _bounded_by_deadline(
        self,
        run: _Call,
        attempt: Callable[[AttemptContext], T],
        ctx: AttemptContext,
        model: str,
        remaining: float | None,
    ) -> T:
        """A sync attempt under ``Policy()``'s default deadline, run in the caller's thread.

        Handing every attempt to a worker thread so that the deadline could cut it would cost
        each call of ``Policy()`` a thread hand-off (about as much as the rest of the policy);
        a ``timeout`` or ``attempt_timeout`` the policy sets itself asks for that. Here the
        deadline stops retries and waits, reaches an LLM SDK as its request timeout
        (``ctx.attempt_timeout``), and an attempt that ends after it, returning or raising, ends
        as the same timeout a worker's would have.
        """
        try:
            result = attempt(ctx)
        except Exception:
            if self._past_deadline(run):
                raise self._cut(run, model, remaining) from None
            raise
        if self._past_deadline(run):
            raise self._cut(run, model, remaining)
        return result

    def _past_deadline(self, run: _Call) -> bool:
        return run.deadline is not None and self._clock() >= run.deadline

    async def _guarded_attempt_async(
        self,
        run: _Call,
        attempt: Callable[[AttemptContext], Awaitable[T]],
        model: str,
        remaining: float | None,
    ) -> T:
        grant, remaining = await self._permit_async(run, model, remaining)
        gate = self._bulkhead
        if gate is not None:
            try:
                await gate.aenter(remaining)
            except BulkheadFullError as exc:
                self._event(run, BULKHEAD_REJECTED, "bulkhead", model, exc)
                if grant is not None:
                    grant.cancel()
                raise
        try:
            if gate is not None:
                # Time spent queued comes off the deadline (and off the SDK's timeout).
                remaining = self._check_deadline(run, model)
            ctx = self._context(run, model, remaining, grant)
            limit = ctx.attempt_timeout
            if limit is None:
                return await attempt(ctx)
            return await run_async_with_timeout(
                lambda: attempt(ctx), limit, lambda: self._cut(run, model, remaining)
            )
        finally:
            if gate is not None:
                gate.leave()

    # -- decisions shared by both paths ----------------------------------------------------

    @property
    def _telemetry(self) -> ResilienceTelemetry:
        # Looked up per use so that configure_resilience_telemetry() reaches existing pipelines.
        return self._own_telemetry or current_telemetry()

    def _start(self, span: Span | None, tokens: int | None = None) -> _Call:
        if self._budget is not None:
            self._budget.record_call()
        deadline = None if self._timeout is None else self._clock() + self._timeout
        return _Call(span, deadline, tokens if isinstance(tokens, int) and tokens > 0 else 0)

    def _remaining(self, run: _Call) -> float | None:
        return None if run.deadline is None else run.deadline - self._clock()

    def _check_deadline(self, run: _Call, model: str) -> float | None:
        remaining = self._remaining(run)
        if remaining is not None and remaining <= 0:
            raise self._timed_out(run, model, remaining)
        return remaining

    def _context(
        self, run: _Call, model: str, remaining: float | None, grant: Grant | None = None
    ) -> AttemptContext:
        run.attempts += 1
        limit = self._attempt_timeout
        if remaining is not None and (limit is None or remaining < limit):
            limit = remaining
        return AttemptContext(
            attempt=run.attempts,
            model=model if self.kind == "llm" else None,
            attempt_timeout=limit,
            deadline_remaining=remaining,
            disable_sdk_retries=self.disable_sdk_retries,
            rate_limit=grant,
        )

    # -- rate limit ----------------------------------------------------------------------

    def _grant(self, run: _Call, limiter: RateLimiter, model: str, remaining: float | None) -> Grant:
        """A permit, or ``RateLimitedError`` when the wait it needs exceeds ``max_wait`` or the deadline."""
        bound = seconds(limiter.config.max_wait)
        if remaining is not None:
            bound = min(bound, max(0.0, remaining))
        key: dict[str, AttributeValue] = {"agentwatch.rate_limit.key": limiter.key}
        try:
            grant = limiter.acquire(run.tokens, bound)
        except RateLimitedError as exc:
            labels: dict[str, AttributeValue] = {
                "agentwatch.rate_limit.limit": exc.limit,
                "agentwatch.rate_limit.scope": exc.scope,
            }
            self._event(
                run,
                RATE_LIMIT_REJECTED,
                "rate_limit",
                model,
                exc,
                {**key, **labels, "agentwatch.rate_limit.retry_in": exc.retry_in},
                labels,
            )
            raise
        if grant.wait > 0:
            scope: dict[str, AttributeValue] = {"agentwatch.rate_limit.scope": grant.scope}
            self._event(
                run,
                "rate_limit_delayed",
                "rate_limit",
                model,
                None,
                {**key, **scope, "agentwatch.rate_limit.wait": grant.wait},
                scope,
            )
        return grant

    def _permit_sync(
        self, run: _Call, model: str, remaining: float | None
    ) -> tuple[Grant | None, float | None]:
        limiter = self._limiters.get(model)
        if limiter is None:
            return None, remaining
        grant = self._grant(run, limiter, model, remaining)
        if grant.wait > 0:
            try:
                self._sleep(grant.wait)
                # The wait comes off the deadline (and off the SDK's timeout).
                remaining = self._check_deadline(run, model)
            except BaseException:
                grant.cancel()
                raise
        return grant, remaining

    async def _permit_async(
        self, run: _Call, model: str, remaining: float | None
    ) -> tuple[Grant | None, float | None]:
        limiter = self._limiters.get(model)
        if limiter is None:
            return None, remaining
        if limiter.remote:
            # A Redis round trip blocks: not on the event loop.
            grant = await asyncio.to_thread(self._grant, run, limiter, model, remaining)
        else:
            grant = self._grant(run, limiter, model, remaining)
        if grant.wait > 0:
            try:
                await self._async_sleep(grant.wait)
                remaining = self._check_deadline(run, model)
            except BaseException:
                grant.cancel()
                raise
        return grant, remaining

    def _timed_out(self, run: _Call, model: str, remaining: float | None) -> ToolTimeoutError:
        scope: TimeoutScope
        if self._attempt_timeout is not None and (remaining is None or self._attempt_timeout <= remaining):
            scope, limit = "attempt", self._attempt_timeout
        else:
            scope, limit = "total", self._timeout or 0.0
        error = ToolTimeoutError(name=model, kind=self.kind, timeout=limit, scope=scope)
        self._event(
            run,
            "timeout",
            "timeout",
            model,
            error,
            {"agentwatch.timeout.scope": scope, "agentwatch.timeout.seconds": limit},
        )
        return error

    def _cut(self, run: _Call, model: str, remaining: float | None) -> ToolTimeoutError:
        """The timeout of an attempt that was running when its limit passed."""
        run.cut = self._timed_out(run, model, remaining)
        return run.cut

    def _enter_circuit(self, run: _Call, circuit: Circuit | None) -> Permit | None:
        if circuit is None:
            return None
        try:
            permit, transition = circuit.acquire()
        except CircuitOpenError as exc:
            name: dict[str, AttributeValue] = {CIRCUIT_NAME: circuit.key}
            self._event(run, CIRCUIT_REJECTED, "circuit_breaker", circuit.name, exc, name, name)
            raise
        self._transition(run, circuit, transition)
        return permit

    def _transition(self, run: _Call, circuit: Circuit, transition: Transition | None) -> None:
        if transition is not None:
            self._telemetry.circuit_transition(circuit, transition, span=run.span)

    def _classify(self, exc: Exception) -> Classification:
        own = _own_classification(exc)
        if own is not None:
            return own
        try:
            result = self._classifier(exc)
            if isinstance(result, Classification):
                return result
            raise TypeError(f"the classifier returned {result!r}, not a Classification")
        except Exception:  # noqa: BLE001 - a faulty classifier must not replace the call's error
            report_internal_error("resilience.classifier")
            return default_classifier(exc)

    def _after_success(self, run: _Call, circuit: Circuit | None, permit: Permit | None) -> None:
        if circuit is not None and permit is not None:
            self._transition(run, circuit, circuit.record_success(permit))

    def _after_failure(
        self,
        run: _Call,
        exc: BaseException,
        circuit: Circuit | None,
        permit: Permit | None,
        model: str,
        number: int,
    ) -> float | None:
        """Record a failed attempt; return the delay before the next one, or ``None`` to stop."""
        if not isinstance(exc, Exception):
            # Cancellation, KeyboardInterrupt, SystemExit: never counted, never retried.
            if circuit is not None and permit is not None:
                circuit.release(permit)
            return None
        cut = run.cut
        if cut is not None and exc is cut and cut.scope == "total":
            classification = _DEADLINE_IN_ATTEMPT
        else:
            classification = self._classify(exc)
        run.error, run.classification = exc, classification
        if circuit is not None and permit is not None:
            if classification.counts_as_failure:
                self._transition(run, circuit, circuit.record_failure(permit))
            else:
                circuit.release(permit)
        retry = self._retry
        if retry is None or not classification.retryable or number >= retry.attempts:
            return None
        delay = retry_delay(retry, number, classification, self._random)
        remaining = self._remaining(run)
        if remaining is not None and delay >= remaining:
            reason: dict[str, AttributeValue] = {"agentwatch.retry.reason": "deadline"}
            self._event(run, "retry_abandoned", "retry", model, exc, reason, reason)
            return None
        if self._budget is not None and not self._budget.try_spend():
            reason = {"agentwatch.retry.reason": "budget"}
            self._event(run, "retry_abandoned", "retry", model, exc, reason, reason)
            return None
        self._event(
            run,
            "retry",
            "retry",
            model,
            exc,
            {"agentwatch.retry.attempt": run.attempts, "agentwatch.retry.delay": delay},
        )
        return delay

    def _classification_of(self, run: _Call, exc: Exception) -> Classification:
        if run.error is exc and run.classification is not None:
            return run.classification
        return self._classify(exc)

    def _fall_back(self, run: _Call, exc: Exception, failed: str, next_model: str) -> bool:
        """Whether an LLM call moves on to ``next_model``; records the ``fallback`` event if so."""
        if not self._classification_of(run, exc).fallback:
            return False
        remaining = self._remaining(run)
        if remaining is not None and remaining <= 0:
            return False
        self._event(
            run,
            "fallback",
            "fallback",
            failed,
            exc,
            {"agentwatch.fallback.reason": self._reason(run, exc), GEN_AI_REQUEST_MODEL: next_model},
        )
        return True

    def _give_up(self, run: _Call, exc: Exception) -> ToolUnavailable | None:
        """The degradation result of an optional tool, or ``None``: raise ``exc``."""
        if self.kind == "tool" and not self.policy.critical and self._classification_of(run, exc).fallback:
            return self._degraded(run, self._reason(run, exc), error_type_of(exc), exc)
        if isinstance(exc, ResilienceError):
            self._telemetry.mark_error(run.span, exc.error_type)
        return None

    def _reason(self, run: _Call, exc: Exception) -> str:
        if isinstance(exc, ResilienceError):
            return exc.error_type
        return self._classification_of(run, exc).category.value

    def _degraded(self, run: _Call, reason: str, error_type: str, exc: Exception | None) -> ToolUnavailable:
        self._telemetry.mark_error(run.span, error_type)
        self._event(run, "fallback", "fallback", self.name, exc, {"agentwatch.fallback.reason": reason})
        return ToolUnavailable.for_tool(self.name, reason, error_type=error_type)

    def _disabled(self, span: Span | None) -> ToolUnavailable:
        # Before the cache: an operator who switched a tool off does not want its old results either.
        run = _Call(span, None)
        try:
            error = ToolDisabledError(name=self.name)
            self._event(run, TOOL_DISABLED, "admin", self.name, error)
            if self.policy.critical:
                self._telemetry.mark_error(run.span, error.error_type)
                raise error
            return self._degraded(run, error.error_type, error.error_type, None)
        finally:
            self._telemetry.attempts(span, 0, self._call_attributes)

    def _event(
        self,
        run: _Call,
        name: str,
        policy: str,
        subject: str,
        exc: BaseException | None,
        attributes: dict[str, AttributeValue] | None = None,
        metric_attributes: dict[str, AttributeValue] | None = None,
    ) -> None:
        try:
            error_type = None if exc is None else error_type_of(exc)
            self._telemetry.event(
                run.span,
                name,
                policy,
                kind=self.kind,
                subject=subject,
                error_type=error_type,
                attributes=attributes,
                metric_attributes=metric_attributes,
            )
        except Exception:  # noqa: BLE001 - telemetry faults never reach the application
            report_internal_error("resilience.event")
