"""Client-side rate limits: GCRA budgets of requests and tokens, in process or in Redis.

Why not a library: the maintained Python rate limiters were checked (limits 5.8, pyrate-limiter
4.5) and none fits an LLM token budget. Both store one entry per unit of cost in Redis (a list or
sorted-set member per token: 150,000 entries a minute for a 150k TPM budget), stamp entries with
the client's clock (replicas' clocks differ), only accept or reject (no "wait this long", so
callers would poll), and have no way to correct a cost after the fact, which a token budget needs
because the real count is only known from the response's usage.

GCRA (the generic cell rate algorithm) needs one number per budget, its *theoretical arrival time*
(TAT): the budget is full when TAT ≤ now, and each permit of cost ``c`` moves TAT ``c × interval``
later (``interval = period / limit``). A permit is granted when the debt ``TAT - now`` leaves room
for it within the capacity (``burst × limit``, at least one request); otherwise the caller learns
exactly how long to wait, and may *reserve* the permit for then (TAT is advanced now, the caller
sleeps), so waiting callers are served in arrival order without polling. A correction moves TAT
by ``(actual - estimate) × interval``. A request costlier than the whole capacity (a prompt larger
than a burst of tokens) is granted once the budget is full, so it is never starved.

In Redis, one hash per budget (``<prefix>ratelimit:<key>``, fields ``r`` and ``t``), updated by one
Lua script per permit that reads the time from Redis (``TIME``), so every replica uses the same
clock; the key expires once the budget is full again. While Redis does not answer, each replica
grants from an in-process budget of ``limit / live replicas`` (the count from the last heartbeat).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentwatch._internal import reset_in_forked_child
from agentwatch.resilience._config import RateLimit, seconds
from agentwatch.resilience._errors import CallKind, RateLimitedError
from agentwatch.resilience._state import Scope

if TYPE_CHECKING:
    from agentwatch.resilience._state import RedisState, StateBackend

__all__ = ["Grant", "RateLimiter", "estimate_tokens"]

# Seconds, as the Lua script computes in microseconds.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function reserve(field, interval, capacity, cost)
  if interval <= 0 then return 0, nil end
  local tat = tonumber(redis.call('HGET', KEYS[1], field) or '0') or 0
  if tat < now then tat = now end
  local amount = cost * interval
  local room = capacity - amount
  if room < 0 then room = 0 end
  local wait = tat - now - room
  if wait < 0 then wait = 0 end
  return wait, tat + amount
end
local wr, nr = reserve('r', tonumber(ARGV[1]), tonumber(ARGV[2]), 1)
local wt, nt = reserve('t', tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
local wait = math.max(wr, wt)
local which = 'requests'
if wt > wr then which = 'tokens' end
if wait > tonumber(ARGV[6]) then
  return {0, math.floor(wait), which}
end
local last = now
if nr then redis.call('HSET', KEYS[1], 'r', string.format('%.0f', nr)); last = math.max(last, nr) end
if nt then redis.call('HSET', KEYS[1], 't', string.format('%.0f', nt)); last = math.max(last, nt) end
redis.call('PEXPIRE', KEYS[1], math.floor((last - now) / 1000) + 1000)
return {1, math.floor(wait), which}
"""

_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = now
local function adjust(field, interval, delta)
  if interval <= 0 or delta == 0 then return end
  local tat = tonumber(redis.call('HGET', KEYS[1], field) or '0') or 0
  if tat < now then tat = now end
  tat = tat + delta * interval
  if tat < now then tat = now end
  redis.call('HSET', KEYS[1], field, string.format('%.0f', tat))
  last = math.max(last, tat)
end
adjust('r', tonumber(ARGV[1]), tonumber(ARGV[3]))
adjust('t', tonumber(ARGV[2]), tonumber(ARGV[4]))
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], math.floor((last - now) / 1000) + 1000)
end
return 1
"""

_MICROS = 1_000_000

# Request keys whose integer value caps the output tokens, whatever the provider calls it.
_MAX_OUTPUT_KEYS = frozenset(
    {"max_tokens", "max_completion_tokens", "max_output_tokens", "maxTokens", "max_new_tokens"}
)


def estimate_tokens(request: Mapping[str, Any]) -> int:
    """A crude, provider-agnostic token estimate of a request: the characters of every string in
    it / 4, plus the output cap (``max_tokens``, ``max_completion_tokens``, ``max_output_tokens``,
    ``maxTokens``, at any depth). Inline data URLs (images, files) are not counted: their
    characters say nothing about their tokens; the response's usage corrects the estimate."""
    chars = 0
    output = 0
    stack: list[tuple[object, int]] = [(request, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.startswith("data:"):
                chars += len(value)
        elif depth > 32:
            continue
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if key in _MAX_OUTPUT_KEYS and isinstance(item, int) and not isinstance(item, bool):
                    output += max(0, item)
                elif key != "model":
                    stack.append((item, depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif hasattr(value, "model_dump"):  # a pydantic request object (SDK param types)
            try:
                stack.append((value.model_dump(exclude_none=True), depth + 1))
            except Exception:  # noqa: BLE001 - an unreadable object adds nothing to the estimate
                pass
    return math.ceil(chars / 4) + output


@dataclass(frozen=True, slots=True)
class _Shape:
    """A budget in seconds: the time one unit takes to refill, and how much debt it may carry."""

    request_interval: float  # 0: no request limit
    request_capacity: float
    token_interval: float  # 0: no token limit
    token_capacity: float

    @classmethod
    def of(cls, config: RateLimit, share: int = 1) -> _Shape:
        period = seconds(config.period)
        ri = rc = ti = tc = 0.0
        if config.requests is not None:
            limit = config.requests / share
            ri = period / limit
            rc = max(1.0, config.burst * limit) * ri
        if config.tokens is not None:
            limit = config.tokens / share
            ti = period / limit
            tc = max(1.0, config.burst * limit) * ti
        return cls(ri, rc, ti, tc)


class _LocalBudget:
    """The same algorithm as the Lua script, in process (a lock held for arithmetic only)."""

    def __init__(self, shape: _Shape, clock: Callable[[], float]) -> None:
        self.shape = shape
        self._clock = clock
        self._lock = threading.Lock()
        self._tat_r = 0.0
        self._tat_t = 0.0
        reset_in_forked_child(self, "_lock")

    def acquire(self, tokens: int, max_wait: float) -> tuple[bool, float, str]:
        shape = self.shape
        with self._lock:
            now = self._clock()
            wr, nr = _reserve(self._tat_r, now, shape.request_interval, shape.request_capacity, 1)
            wt, nt = _reserve(self._tat_t, now, shape.token_interval, shape.token_capacity, tokens)
            wait = max(wr, wt)
            which = "tokens" if wt > wr else "requests"
            if wait > max_wait:
                return False, wait, which
            if nr is not None:
                self._tat_r = nr
            if nt is not None:
                self._tat_t = nt
            return True, wait, which

    def adjust(self, requests: float, tokens: float) -> None:
        shape = self.shape
        with self._lock:
            now = self._clock()
            if shape.request_interval and requests:
                self._tat_r = max(now, max(self._tat_r, now) + requests * shape.request_interval)
            if shape.token_interval and tokens:
                self._tat_t = max(now, max(self._tat_t, now) + tokens * shape.token_interval)


def _reserve(
    tat: float, now: float, interval: float, capacity: float, cost: float
) -> tuple[float, float | None]:
    if interval <= 0:
        return 0.0, None
    tat = max(tat, now)
    amount = cost * interval
    wait = tat - now - max(0.0, capacity - amount)
    # Below a microsecond (the Redis script's resolution) a wait is rounding error of the sums.
    return (wait if wait >= 1e-6 else 0.0), tat + amount


@dataclass(slots=True)
class Grant:
    """A permit: ``wait`` seconds to sleep before the call starts; settle its token estimate with
    :meth:`settle` once the usage is known, or give it back with :meth:`cancel` if the call never
    started."""

    limiter: RateLimiter
    wait: float
    tokens: int
    scope: Scope
    _local: _LocalBudget | None
    _settled: bool = False

    def settle(self, actual_tokens: int | None) -> None:
        """Replace the token estimate with the call's real usage (``None``: unknown, keep it)."""
        if self._settled or actual_tokens is None or not self.limiter.config.tokens:
            return
        self._settled = True
        delta = actual_tokens - self.tokens
        if delta:
            self.limiter.adjust(self, 0, delta)

    def cancel(self) -> None:
        """The call never started (cancelled while waiting): give the permit back."""
        if self._settled:
            return
        self._settled = True
        self.limiter.adjust(self, -1, -self.tokens)


class RateLimiter:
    """The budget of one key, shared by every pipeline that names it (the first one's settings win)."""

    def __init__(
        self,
        key: str,
        config: RateLimit,
        *,
        name: str,
        kind: CallKind,
        backend: Callable[[], StateBackend],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = key
        self.config = config
        self.name = name
        self.kind: CallKind = kind
        self._backend = backend
        self._clock = clock
        self._shape = _Shape.of(config)
        self._local = _LocalBudget(self._shape, clock)
        self._share: tuple[int, _LocalBudget] | None = None
        self._acquire_script: Any = None
        self._adjust_script: Any = None
        self._scripts_of: object = None

    @property
    def remote(self) -> bool:
        """Whether the next permit is asked of Redis (a blocking round trip)."""
        return self._backend().shared

    def acquire(self, tokens: int, max_wait: float) -> Grant:
        """A permit for one request of ``tokens`` estimated tokens, to be used after ``grant.wait``
        seconds; ``RateLimitedError`` when that wait would exceed ``max_wait``. Never raises
        anything else: a Redis that fails falls back to the replica's share of the budget."""
        backend = self._backend()
        if backend.shared:
            redis_state: RedisState = backend  # type: ignore[assignment]
            try:
                ok, wait, which = self._acquire_remote(redis_state, tokens, max_wait)
            except redis_state.errors as exc:
                redis_state.failed(exc)
            else:
                return self._grant(ok, wait, which, tokens, "fleet", None)
            local = self._fallback(redis_state.live_replicas)
            ok, wait, which = local.acquire(tokens, max_wait)
            return self._grant(ok, wait, which, tokens, "replica", local)
        local = self._local if backend.kind == "memory" else self._fallback(_live(backend))
        ok, wait, which = local.acquire(tokens, max_wait)
        return self._grant(ok, wait, which, tokens, "replica", local)

    def _grant(
        self, ok: bool, wait: float, which: str, tokens: int, scope: Scope, local: _LocalBudget | None
    ) -> Grant:
        if not ok:
            raise RateLimitedError(
                name=self.name, kind=self.kind, key=self.key, limit=which, retry_in=wait, scope=scope
            )
        return Grant(self, wait, tokens, scope, local)

    def _fallback(self, replicas: int) -> _LocalBudget:
        share = self._share
        if share is None or share[0] != replicas:
            share = self._share = (replicas, _LocalBudget(_Shape.of(self.config, replicas), self._clock))
        return share[1]

    def _scripts(self, backend: RedisState) -> tuple[Any, Any]:
        if self._scripts_of is not backend.client:
            self._acquire_script = backend.client.register_script(_ACQUIRE)
            self._adjust_script = backend.client.register_script(_ADJUST)
            self._scripts_of = backend.client
        return self._acquire_script, self._adjust_script

    def _acquire_remote(self, backend: RedisState, tokens: int, max_wait: float) -> tuple[bool, float, str]:
        shape = self._shape
        acquire, _ = self._scripts(backend)
        ok, wait, which = acquire(
            keys=[backend.rate_prefix + self.key],
            args=[
                _us(shape.request_interval),
                _us(shape.request_capacity),
                _us(shape.token_interval),
                _us(shape.token_capacity),
                tokens,
                _us(max_wait),
            ],
        )
        label = which.decode() if isinstance(which, bytes) else str(which)
        return bool(ok), int(wait) / _MICROS, label

    def adjust(self, grant: Grant, requests: float, tokens: float) -> None:
        """Move the budget of ``grant`` by ``requests``/``tokens`` (negative: give back)."""
        if grant.scope == "replica":
            if grant._local is not None:
                grant._local.adjust(requests, tokens)
            return
        backend = self._backend()
        if not backend.shared:
            return  # the fleet budget is out of reach; the estimate stands
        redis_state: RedisState = backend  # type: ignore[assignment]
        _, script = self._scripts(redis_state)
        shape = self._shape
        key = redis_state.rate_prefix + self.key

        def job() -> None:
            script(
                keys=[key],
                args=[_us(shape.request_interval), _us(shape.token_interval), requests, tokens],
            )

        # Off the call's thread (it may be an event loop, ending a stream): the poller runs it.
        redis_state.submit(job)


def _us(value: float) -> int:
    return round(value * _MICROS)


def _live(backend: StateBackend) -> int:
    replicas = getattr(backend, "live_replicas", 1)
    return replicas if isinstance(replicas, int) and replicas > 0 else 1
