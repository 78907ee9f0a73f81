"""Policy settings: frozen, keyword-only dataclasses whose defaults are safe to use as-is.

Durations accept seconds (``int``/``float``) or a :class:`datetime.timedelta`, like stamina, and
are stored as ``float`` seconds. Every invalid value raises :class:`agentwatch.ConfigError` when the
object is built, i.e. at start-up, naming the setting (``Retry.attempts``) and the accepted values.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Literal, TypeAlias
from urllib.parse import urlsplit

from agentwatch._config import finite_number
from agentwatch._errors import ConfigError
from agentwatch.resilience._classify import Classifier

__all__ = [
    "AGENTWATCH_CACHE_REDIS_URL",
    "AGENTWATCH_STATE_REDIS_URL",
    "Bulkhead",
    "Cache",
    "CircuitBreaker",
    "Duration",
    "Policy",
    "RateLimit",
    "Retry",
    "RetryBudget",
    "SharedState",
    "check_redis_url",
    "redacted_url",
    "redis_url_from_env",
    "seconds",
]

Duration: TypeAlias = float | timedelta

_SECONDS = "a positive number of seconds (int or float) or a datetime.timedelta"


def seconds(value: Duration) -> float:
    """A validated duration in seconds (the fields hold floats once built; this satisfies typing)."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _optional_seconds(setting: str, value: object) -> float | None:
    return None if value is None else _seconds(setting, value, accepted=_SECONDS + ", or None")


def _seconds(setting: str, value: object, *, zero: bool = False, accepted: str = _SECONDS) -> float:
    if zero:
        accepted = accepted.replace("positive", "non-negative")
    result = value.total_seconds() if isinstance(value, timedelta) else finite_number(value)
    if result is None or not math.isfinite(result) or result < 0 or (result == 0 and not zero):
        raise ConfigError(setting, value, accepted)
    return result


def _integer(setting: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(setting, value, f"an integer ≥ {minimum}")
    return value


def _number(setting: str, value: object, accepted: str, ok: Callable[[float], bool]) -> float:
    number = finite_number(value)
    if number is None or not ok(number):
        raise ConfigError(setting, value, accepted)
    return number


def _flag(setting: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(setting, value, ["True", "False"])
    return value


def _optional(setting: str, value: object, cls: type) -> None:
    if value is not None and not isinstance(value, cls):
        raise ConfigError(setting, value, f"an agentwatch.{cls.__name__} or None")


def _set(obj: object, name: str, value: object) -> None:
    # The dataclasses are frozen; normalising a field in __post_init__ has to bypass that.
    object.__setattr__(obj, name, value)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """Caps the extra load retries may add, over a sliding time window of one pipeline.

    A retry is allowed while the retries made in the last ``window`` seconds stay below
    ``min_retries + ratio × calls`` made in that window; ``min_retries`` keeps retries possible for
    low-traffic tools. The defaults allow at most 10% extra load once traffic is high.
    """

    ratio: float = 0.1
    min_retries: int = 10
    window: Duration = 10.0

    def __post_init__(self) -> None:
        _number("RetryBudget.ratio", self.ratio, "a number ≥ 0", lambda v: math.isfinite(v) and v >= 0)
        _integer("RetryBudget.min_retries", self.min_retries, 0)
        _set(self, "window", _seconds("RetryBudget.window", self.window))


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    """Retry with exponential backoff and full jitter.

    ``attempts`` counts the first call: ``attempts=3`` means at most 2 retries. Before retry *n*
    the delay is drawn uniformly from ``[0, min(max_delay, backoff × multiplier**(n-1))]`` (full
    jitter; ``jitter=False`` uses the upper bound). A server's ``Retry-After`` replaces that delay,
    capped at ``retry_after_cap``. No retry is scheduled that would end past the call's deadline,
    or that the ``budget`` does not allow (``None``: no budget). Only failures the classifier marks
    retryable are retried.
    """

    attempts: int = 3
    backoff: Duration = 0.5
    multiplier: float = 2.0
    max_delay: Duration = 8.0
    jitter: bool = True
    retry_after_cap: Duration = 60.0
    budget: RetryBudget | None = field(default_factory=RetryBudget)

    def __post_init__(self) -> None:
        _integer("Retry.attempts", self.attempts, 1)
        backoff = _seconds("Retry.backoff", self.backoff, zero=True)
        _set(self, "backoff", backoff)
        _number("Retry.multiplier", self.multiplier, "a number ≥ 1", lambda v: math.isfinite(v) and v >= 1)
        max_delay = _seconds("Retry.max_delay", self.max_delay, zero=True)
        if max_delay < backoff:
            raise ConfigError(
                "Retry.max_delay", self.max_delay, f"a duration ≥ Retry.backoff ({backoff:g} s)"
            )
        _set(self, "max_delay", max_delay)
        _flag("Retry.jitter", self.jitter)
        _set(self, "retry_after_cap", _seconds("Retry.retry_after_cap", self.retry_after_cap))
        _optional("Retry.budget", self.budget, RetryBudget)


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreaker:
    """A circuit breaker, in one of two modes.

    *Consecutive* (``failure_threshold``, the default mode with 5): opens after that many failures
    in a row. *Ratio* (``failure_ratio``): opens when, within the last ``window`` seconds, at least
    ``minimum_calls`` calls were made and the share of failures reached ``failure_ratio``. Set one
    of the two, not both.

    Once open it rejects calls for ``break_duration`` seconds, then half-opens and admits exactly
    one probe call: success closes it, failure re-opens it with the break multiplied by
    ``break_growth`` (up to ``max_break_duration``). A close resets the break to ``break_duration``.
    Only failures the classifier counts (transient ones) are counted, never cancellations.
    """

    failure_threshold: int | None = None
    failure_ratio: float | None = None
    minimum_calls: int = 10
    window: Duration = 30.0
    break_duration: Duration = 30.0
    max_break_duration: Duration = 300.0
    break_growth: float = 2.0

    def __post_init__(self) -> None:
        if self.failure_threshold is not None and self.failure_ratio is not None:
            raise ConfigError(
                "CircuitBreaker.failure_ratio",
                self.failure_ratio,
                "None when CircuitBreaker.failure_threshold is set (set failure_threshold for "
                "consecutive mode or failure_ratio for ratio mode, not both)",
            )
        if self.failure_ratio is None:
            if self.failure_threshold is None:
                _set(self, "failure_threshold", 5)
            _integer("CircuitBreaker.failure_threshold", self.failure_threshold, 1)
        else:
            _number(
                "CircuitBreaker.failure_ratio",
                self.failure_ratio,
                "a number with 0 < ratio ≤ 1",
                lambda v: 0 < v <= 1,
            )
        _integer("CircuitBreaker.minimum_calls", self.minimum_calls, 1)
        _set(self, "window", _seconds("CircuitBreaker.window", self.window))
        base = _seconds("CircuitBreaker.break_duration", self.break_duration)
        _set(self, "break_duration", base)
        ceiling = _seconds("CircuitBreaker.max_break_duration", self.max_break_duration)
        if ceiling < base:
            raise ConfigError(
                "CircuitBreaker.max_break_duration",
                self.max_break_duration,
                f"a duration ≥ CircuitBreaker.break_duration ({base:g} s)",
            )
        _set(self, "max_break_duration", ceiling)
        _number(
            "CircuitBreaker.break_growth",
            self.break_growth,
            "a number ≥ 1 (1: the break never grows)",
            lambda v: math.isfinite(v) and v >= 1,
        )

    @property
    def mode(self) -> Literal["consecutive", "ratio"]:
        return "ratio" if self.failure_ratio is not None else "consecutive"


@dataclass(frozen=True, slots=True, kw_only=True)
class Bulkhead:
    """A cap on concurrent calls of one tool or model.

    With the default ``max_queue=0`` the call over the cap is rejected at once with
    ``BulkheadFullError``; with a queue, up to ``max_queue`` callers wait at most
    ``queue_timeout`` seconds (and never past the call's deadline) for a slot.
    """

    max_concurrent: int = 25
    max_queue: int = 0
    queue_timeout: Duration = 1.0

    def __post_init__(self) -> None:
        _integer("Bulkhead.max_concurrent", self.max_concurrent, 1)
        _integer("Bulkhead.max_queue", self.max_queue, 0)
        _set(self, "queue_timeout", _seconds("Bulkhead.queue_timeout", self.queue_timeout))


AGENTWATCH_CACHE_REDIS_URL = "AGENTWATCH_CACHE_REDIS_URL"
AGENTWATCH_STATE_REDIS_URL = "AGENTWATCH_STATE_REDIS_URL"
_REDIS_SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(setting: str, url: object) -> str:
    """A Redis URL as redis-py accepts it, or ``ConfigError`` (its password never shown)."""
    if not isinstance(url, str) or urlsplit(url.strip()).scheme not in _REDIS_SCHEMES:
        shown = redacted_url(url) if isinstance(url, str) else url
        raise ConfigError(setting, shown, "a redis://, rediss:// or unix:// URL")
    return url.strip()


def redis_url_from_env(variable: str = AGENTWATCH_CACHE_REDIS_URL, setting: str = "Cache.redis_url") -> str:
    """The URL in ``variable``; ``ConfigError`` (naming ``setting``) when it is unset or invalid."""
    url = os.environ.get(variable, "").strip()
    if not url:
        raise ConfigError(
            setting, None, f"a redis:// URL, given in code or in the {variable} environment variable"
        )
    return check_redis_url(variable, url)


def _check_redis_installed(setting: str, value: object, otherwise: str) -> None:
    # Checked when the settings are built, at start-up, rather than at the first call.
    if importlib.util.find_spec("redis") is None:
        raise ConfigError(
            setting, value, f"{otherwise}once the Redis client is installed (pip install 'agentwatch[redis]')"
        )


def redacted_url(url: str) -> str:
    """The URL without its password, for errors and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return parts._replace(netloc=user + host).geturl()
    except ValueError:
        return "<unparsable URL>"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cache:
    """Cache successful results of a tool for ``ttl`` seconds (``Policy(cache=Cache(ttl=300))``).

    Attributes:
        ttl: how long a result is served, in seconds (or a ``timedelta``).
        max_entries: the in-process LRU's size per tool (``backend="memory"``).
        backend: ``"memory"`` (default: per process) or ``"redis"`` (shared by replicas; needs
            ``pip install agentwatch[redis]``).
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL; ``None`` reads the
            ``AGENTWATCH_CACHE_REDIS_URL`` environment variable when the tool's pipeline is built.
        redis_timeout: the longest the connection to Redis, and then its reply, may take before
            the call goes on uncached; commands are never retried, so a Redis outage adds at most
            ``2 * redis_timeout`` to a tool call.
        key_prefix: prefix of every key (change it to invalidate every entry at once).
    """

    ttl: Duration = 300.0
    max_entries: int = 1024
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    redis_timeout: Duration = 0.25
    key_prefix: str = "agentwatch:cache:"

    def __post_init__(self) -> None:
        _set(self, "ttl", _seconds("Cache.ttl", self.ttl))
        _integer("Cache.max_entries", self.max_entries, 1)
        if self.backend not in ("memory", "redis"):
            raise ConfigError("Cache.backend", self.backend, ["memory", "redis"])
        if self.redis_url is not None:
            if self.backend != "redis":
                raise ConfigError(
                    "Cache.redis_url", redacted_url(self.redis_url), "None unless Cache.backend is 'redis'"
                )
            _set(self, "redis_url", check_redis_url("Cache.redis_url", self.redis_url))
        if self.backend == "redis":
            _check_redis_installed("Cache.backend", self.backend, "'memory', or 'redis' ")
            if self.redis_url is None:
                redis_url_from_env()
        _set(self, "redis_timeout", _seconds("Cache.redis_timeout", self.redis_timeout))
        if not isinstance(self.key_prefix, str):
            raise ConfigError("Cache.key_prefix", self.key_prefix, "a string")


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """Client-side rate limit of a model or tool: at most ``requests`` requests and ``tokens``
    tokens per ``period`` seconds (a minute by default, as providers state their limits).

    Every attempt (retries included: each is a request the provider counts) takes a permit before
    it starts. A call that would exceed a limit waits until it fits, at most ``max_wait`` seconds
    and never past the call's deadline; if that is not enough it is rejected at once (no waiting
    just to fail) with ``RateLimitedError`` (category ``rate_limit``). Permits are granted in
    arrival order at an even pace (GCRA): ``burst`` is the share of each limit that may go at once
    above that pace (default 1/60: one second's worth of a per-minute limit), at least one request.

    ``tokens`` (LLM calls only) counts input plus output tokens. Before the call the cost is
    estimated crudely (the characters of the request's text / 4, plus its ``max_tokens``); when
    the response reports its usage the estimate is corrected, so the budget tracks what the
    provider counts. With a shared state backend (``SharedState``) the limit is fleet-wide: every
    replica draws from one budget in Redis.

    Attributes:
        requests: requests per ``period`` (``None``: no request limit).
        tokens: input + output tokens per ``period`` (``None``: no token limit; LLM policies only).
        period: the length of the limit's window in seconds.
        burst: the share (0 < burst ≤ 1) of each limit that may be used at once.
        max_wait: the longest a call waits for a permit (0: never wait, reject at once).
        key: the budget's name; by default the tool name, or ``provider:model`` for each model of an
            LLM chain. Tools (or models) that share one quota can share one key.
    """

    requests: int | None = None
    tokens: int | None = None
    period: Duration = 60.0
    burst: float = 1 / 60
    max_wait: Duration = 10.0
    key: str | None = None

    def __post_init__(self) -> None:
        if self.requests is not None:
            _integer("RateLimit.requests", self.requests, 1)
        if self.tokens is not None:
            _integer("RateLimit.tokens", self.tokens, 1)
        if self.requests is None and self.tokens is None:
            raise ConfigError("RateLimit.requests", None, "an integer ≥ 1 (set requests, tokens or both)")
        _set(self, "period", _seconds("RateLimit.period", self.period))
        _number("RateLimit.burst", self.burst, "a number with 0 < burst ≤ 1", lambda v: 0 < v <= 1)
        _set(self, "max_wait", _seconds("RateLimit.max_wait", self.max_wait, zero=True))
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ConfigError("RateLimit.key", self.key, "a non-empty string, or None")


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedState:
    """Share operator state and rate limits between the replicas of a service, through Redis.

    With it, disabling or enabling a tool and forcing a circuit open or closed (admin API,
    ``agentwatch.disable_tool``, ``circuit(key).open()``) reach every replica within
    ``poll_interval + timeout`` seconds and survive restarts; ``RateLimit`` budgets are
    fleet-wide. Automatic circuit-breaker decisions stay per replica. No call waits for Redis
    except a rate-limited one (one round trip, at most ``timeout``): each replica keeps a local copy
    of the state that a background thread refreshes. When Redis does not answer, every replica
    goes on with its local state (logged once, metric ``agentwatch.state.shared``) and catches up
    when it answers again.

    Attributes:
        redis_url: ``redis://``, ``rediss://`` or ``unix://`` URL; ``None`` reads
            ``AGENTWATCH_STATE_REDIS_URL``. Use a Redis that does not evict keys.
        timeout: the longest a Redis command may take before the replica falls back to its
            local state.
        poll_interval: how often each replica checks the shared state for changes.
        key_prefix: prefix of every key agentwatch writes.
    """

    redis_url: str | None = None
    timeout: Duration = 0.25
    poll_interval: Duration = 0.25
    key_prefix: str = "agentwatch:"

    def __post_init__(self) -> None:
        _check_redis_installed("SharedState.redis_url", self.redis_url, "a Redis URL, ")
        if self.redis_url is None:
            _set(self, "redis_url", redis_url_from_env(AGENTWATCH_STATE_REDIS_URL, "SharedState.redis_url"))
        else:
            _set(self, "redis_url", check_redis_url("SharedState.redis_url", self.redis_url))
        _set(self, "timeout", _seconds("SharedState.timeout", self.timeout))
        _set(self, "poll_interval", _seconds("SharedState.poll_interval", self.poll_interval))
        if not isinstance(self.key_prefix, str):
            raise ConfigError("SharedState.key_prefix", self.key_prefix, "a string")

    @property
    def url(self) -> str:
        """The Redis URL (validated; never ``None`` once built)."""
        return self.redis_url or ""

    def __repr__(self) -> str:
        # The URL may carry a password.
        return (
            f"SharedState(redis_url={redacted_url(self.url)!r}, timeout={self.timeout!r}, "
            f"poll_interval={self.poll_interval!r}, key_prefix={self.key_prefix!r})"
        )


class _DefaultDeadline(float):
    """``Policy.timeout`` when it was not given: the same 30 s, marked so that the pipeline knows
    it bounds the call without cutting a running sync attempt short (see ``Policy``)."""

    __slots__ = ()


DEFAULT_DEADLINE = _DefaultDeadline(30.0)


def preempts_attempts(policy: Policy) -> bool:
    """Whether a running sync attempt is cut at the deadline (in a worker thread): only when the
    policy set ``timeout`` or ``attempt_timeout`` itself."""
    return policy.attempt_timeout is not None or (
        policy.timeout is not None and type(policy.timeout) is not _DefaultDeadline
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The resilience policy of one tool or model.

    Layers, outermost first: (argument validation →) disabled tool → cache → fallback → total
    timeout → retry (+ budget) → circuit breaker → rate limit → bulkhead → attempt timeout. The defaults bound a call to a 30 s total deadline and add nothing
    else: retries, breaker and bulkhead are opt-in because only the owner knows whether a tool is
    idempotent and how much traffic it sees. LLM calls that generate long outputs need a larger
    ``timeout`` (or ``None``).

    Attributes:
        timeout: total deadline of the call, retries and waits included (``None``: none). Set
            here, it cuts a running sync attempt short (the attempt runs in a worker thread, which
            a hung tool keeps). Left at its default (30 s), it bounds the call without that thread
            hand-off: it stops retries and waits, is the LLM SDK's request timeout, and an attempt
            that ends after it ends as a timeout, but a running sync attempt is not interrupted.
        attempt_timeout: limit of each attempt (``None``: only the total deadline bounds it).
            Must not exceed ``timeout``.
        retry: the retry policy (``None``: a single attempt).
        breaker: the circuit breaker (``None``: none). In ratio mode its ``window`` must be at
            least twice ``attempt_timeout``, so that it sees more than one attempt.
        bulkhead: the concurrency cap (``None``: none).
        critical: ``False`` marks an optional tool, which returns a ``ToolUnavailable`` result
            instead of raising when it is unavailable.
        fallback_models: for LLM calls, the models to try in order when the requested one fails
            with a fallback-worthy error; stored as a tuple.
        first_chunk_timeout: for LLM streams, the longest wait for the first chunk.
        idle_timeout: for LLM streams, the longest wait between two chunks. Both are carried for
            the stream wrapper, which enforces them; the pipeline's attempt ends when the stream
            object is returned.
        classifier: maps an exception to a ``Classification`` (``None``: ``default_classifier``).
        cache: for tools, cache successful results (``None``: no cache). Only for tools whose
            result depends on their arguments alone (reads): a cached call does not run.
        rate_limit: requests (and, for LLM calls, tokens) per period (``None``: no limit).
    """

    timeout: Duration | None = DEFAULT_DEADLINE
    attempt_timeout: Duration | None = None
    retry: Retry | None = None
    breaker: CircuitBreaker | None = None
    bulkhead: Bulkhead | None = None
    critical: bool = True
    fallback_models: Sequence[str] = ()
    first_chunk_timeout: Duration | None = None
    idle_timeout: Duration | None = None
    classifier: Classifier | None = None
    cache: Cache | None = None
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        total = _optional_seconds("Policy.timeout", self.timeout)
        if type(self.timeout) is not _DefaultDeadline:  # kept as given: dataclasses.replace() too
            _set(self, "timeout", total)
        attempt = _optional_seconds("Policy.attempt_timeout", self.attempt_timeout)
        if attempt is not None and total is not None and attempt > total:
            raise ConfigError(
                "Policy.attempt_timeout", self.attempt_timeout, f"a duration ≤ Policy.timeout ({total:g} s)"
            )
        _set(self, "attempt_timeout", attempt)
        _optional("Policy.retry", self.retry, Retry)
        _optional("Policy.breaker", self.breaker, CircuitBreaker)
        _optional("Policy.bulkhead", self.bulkhead, Bulkhead)
        if (
            self.breaker is not None
            and self.breaker.mode == "ratio"
            and attempt is not None
            and seconds(self.breaker.window) < 2 * attempt
        ):
            raise ConfigError(
                "Policy.breaker.window",
                self.breaker.window,
                f"a duration ≥ 2 × Policy.attempt_timeout ({2 * attempt:g} s)",
            )
        _flag("Policy.critical", self.critical)
        models = self.fallback_models
        if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
            raise ConfigError("Policy.fallback_models", models, "a list or tuple of model names")
        for model in models:
            if not isinstance(model, str) or not model:
                raise ConfigError(
                    "Policy.fallback_models", models, "a list or tuple of non-empty model names"
                )
        _set(self, "fallback_models", tuple(models))
        _set(
            self,
            "first_chunk_timeout",
            _optional_seconds("Policy.first_chunk_timeout", self.first_chunk_timeout),
        )
        _set(self, "idle_timeout", _optional_seconds("Policy.idle_timeout", self.idle_timeout))
        if self.classifier is not None and not callable(self.classifier):
            raise ConfigError(
                "Policy.classifier", self.classifier, "a callable(exception) -> Classification, or None"
            )
        _optional("Policy.cache", self.cache, Cache)
        _optional("Policy.rate_limit", self.rate_limit, RateLimit)


_LLM_ONLY = ("fallback_models", "first_chunk_timeout", "idle_timeout")


def check_policy_kind(policy: Policy, kind: str, where: str) -> None:
    """Refuse a setting that would do nothing for this kind of call, rather than ignore it.

    ``where`` names the policy in the error (``Policy``, ``llm_policies['gpt-4o']``,
    ``tools.search``).
    """
    if kind == "tool":
        for name in _LLM_ONLY:
            value = getattr(policy, name)
            if value:
                raise ConfigError(
                    f"{where}.{name}", value, "nothing for a tool policy (it applies to LLM calls)"
                )
        if policy.rate_limit is not None and policy.rate_limit.tokens is not None:
            raise ConfigError(
                f"{where}.rate_limit.tokens",
                policy.rate_limit.tokens,
                "None for a tool policy (tokens are counted for LLM calls; limit a tool's requests)",
            )
    elif not policy.critical:
        raise ConfigError(
            f"{where}.critical",
            policy.critical,
            "True for an LLM policy (an optional call degrades only for tools; use fallback_models)",
        )
    elif policy.cache is not None:
        raise ConfigError(
            f"{where}.cache",
            policy.cache,
            "None for an LLM policy (the cache stores tool results; LLM responses are not cached)",
        )


def setting_names(cls: type) -> tuple[str, ...]:
    """The keyword names a settings class accepts, for the file loader's unknown-key errors."""
    return tuple(f.name for f in fields(cls))
