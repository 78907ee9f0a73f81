"""The tool-result cache: identical tool calls within ``ttl`` seconds do not reach the tool again.

Keys are the tool name and the SHA-256 of the call's canonical arguments (the arguments by name,
with the function's defaults filled in, as sorted JSON), so no argument value is ever part of a
key. Only JSON data is stored (``dict`` with ``str`` keys, ``list``, ``str``, ``int``, finite
``float``, ``bool``, ``None``, exact types): that is what survives a trip through Redis unchanged,
and every hit decodes a fresh copy, so a caller that mutates its result cannot corrupt the cache.
Anything else is not cached (nor are arguments that are not JSON data), and that is logged once
per tool.

Only successful results are stored: an exception, or the ``ToolUnavailable`` of an optional tool,
never is. Concurrent identical calls share one execution (single flight): the first runs, the
others wait for its outcome, result or exception, instead of stampeding the dependency.

Backends: an in-process LRU (default, per tool, ``max_entries``) and Redis (one connection pool
per URL, shared by every tool; replicas share the cache). Every Redis command is bounded by
``redis_timeout`` to connect and ``redis_timeout`` for the reply, with no retries
(:func:`~agentwatch.resilience._redis.redis_client`, the shared state's client too), so a Redis
that is down, unreachable or silent adds at most ``2 * redis_timeout`` (0.5 s by default) to a
tool call, which then goes on uncached (``cache_unavailable``). Redis is then left alone for
``_REDIS_RETRY_AFTER`` seconds, after which one call (not every call arriving meanwhile) tries it
again: an outage costs one bounded wait per few seconds, not one per call. The outage and the
recovery are logged once each. Async calls use the sync client in a worker thread:
``redis.asyncio`` connections belong to the event loop that made them, and an application may run
several loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from opentelemetry.trace import Span

from agentwatch._errors import ConfigError
from agentwatch._internal import report_internal_error, reset_in_forked_child
from agentwatch.resilience._config import Cache, redacted_url, redis_url_from_env, seconds
from agentwatch.resilience._errors import CallKind
from agentwatch.resilience._redis import redis_client

if TYPE_CHECKING:
    from agentwatch.resilience._telemetry import ResilienceTelemetry

__all__ = [
    "CACHE_RESULT",
    "ToolCache",
    "cache_key",
    "encode",
    "storable",
]

T = TypeVar("T")

CACHE_RESULT = "agentwatch.cache.result"
_REDIS_RETRY_AFTER = 5.0

_log = logging.getLogger("agentwatch")


# -- what can be stored and how it is keyed ------------------------------------------------------


def storable(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is JSON data that decodes back to an equal value of the same types."""
    if depth > 64:
        return False
    cls = type(value)
    if cls is str or cls is int or cls is bool or value is None:
        return True
    if cls is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if cls is list:
        return all(storable(item, depth + 1) for item in value)  # type: ignore[attr-defined]
    if cls is dict:
        return all(
            type(k) is str and storable(v, depth + 1)
            for k, v in value.items()  # type: ignore[attr-defined]
        )
    return False


def encode(value: object) -> bytes | None:
    """The stored form of ``value``, or ``None`` if it cannot be stored unchanged."""
    if not storable(value):
        return None
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")
    except (ValueError, TypeError, RecursionError):
        return None


def cache_key(prefix: str, tool: str, arguments: Mapping[str, object]) -> str | None:
    """``{prefix}{tool}:{sha256 of the sorted JSON of the arguments}``, or ``None`` when the
    arguments are not JSON data."""
    if not storable(dict(arguments)):
        return None
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return f"{prefix}{tool}:{hashlib.sha256(canonical.encode('ascii')).hexdigest()}"


# -- backends ------------------------------------------------------------------------------------


class CacheUnavailableError(Exception):
    """The backend did not answer; ``cause`` is what it raised."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Memory:
    """An LRU of encoded results with a TTL; thread-safe, the lock is held for dict operations only."""

    is_remote = False

    def __init__(self, max_entries: int, clock: Callable[[], float]) -> None:
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        expires = self._clock() + ttl
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)


class _Redis:
    """A Redis client shared by every tool cached on the same URL."""

    is_remote = True

    def __init__(self, url: str, timeout: float) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError(
                "Cache.backend",
                "redis",
                "'memory', or install the Redis client: pip install 'agentwatch[redis]'",
            ) from None
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._client = redis_client(url, timeout)
        self._where = redacted_url(url)
        self._down_until = 0.0
        self._down = False
        self._lock = threading.Lock()
        reset_in_forked_child(self, "_lock")

    def get(self, key: str) -> bytes | None:
        value = self._run(lambda: self._client.get(key))
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl: float) -> None:
        self._run(lambda: self._client.set(key, value, px=max(1, int(ttl * 1000))))

    def _run(self, command: Callable[[], T]) -> T:
        if self._down:
            with self._lock:
                if time.monotonic() < self._down_until:
                    raise CacheUnavailableError(ConnectionError(f"Redis at {self._where} is unavailable"))
                # This call tries Redis again; the calls arriving while it waits go on uncached
                # rather than each paying the same bounded wait.
                self._down_until = time.monotonic() + _REDIS_RETRY_AFTER
        try:
            result = command()
        except self._errors as exc:
            with self._lock:
                first = not self._down
                self._down = True
                self._down_until = time.monotonic() + _REDIS_RETRY_AFTER
            if first:
                _log.warning(
                    "agentwatch: the tool-result cache at %s is unavailable (%s); tool calls go on "
                    "uncached and it is tried again every %g s",
                    self._where,
                    type(exc).__name__,
                    _REDIS_RETRY_AFTER,
                )
            raise CacheUnavailableError(exc) from None
        if self._down:
            with self._lock:
                recovered, self._down = self._down, False
            if recovered:
                _log.warning("agentwatch: the tool-result cache at %s answers again", self._where)
        return result


_redis_lock = threading.Lock()
_redis_clients: dict[tuple[str, float], _Redis] = {}


def _redis_backend(cache: Cache) -> _Redis:
    url = cache.redis_url or redis_url_from_env()
    key = (url, seconds(cache.redis_timeout))
    with _redis_lock:
        backend = _redis_clients.get(key)
        if backend is None:
            backend = _redis_clients[key] = _Redis(url, seconds(cache.redis_timeout))
        return backend


# -- single flight -------------------------------------------------------------------------------

_Outcome = tuple[Literal["value", "error", "abandoned"], Any, "bytes | None", "TracebackType | None"]
# The keys whose call this context is running: a tool that calls itself with the same arguments
# (or a thread it started with a copy of the context) must not wait for itself.
_leading: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "agentwatch_cache_leading", default=frozenset()
)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Flight:
    __slots__ = ("event", "loop", "outcome", "thread", "waiters")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.thread = threading.get_ident()
        self.loop = _running_loop()
        self.outcome: _Outcome | None = None
        self.waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def can_wait_sync(self) -> bool:
        # Blocking the thread that runs the leader (or its event loop) would wait forever.
        loop = _running_loop()
        return self.thread != threading.get_ident() and (loop is None or loop is not self.loop)

    def can_wait_async(self) -> bool:
        # A sync leader further up this thread's stack cannot finish while this loop waits.
        return self.thread != threading.get_ident() or self.loop is _running_loop()


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_Kind = Literal["hit", "miss", "shared", "unavailable", "bypassed"]


class ToolCache:
    """The cache of one tool's pipeline: lookups, single flight, stores, and their telemetry."""

    def __init__(
        self,
        cache: Cache,
        *,
        tool: str,
        kind: CallKind,
        clock: Callable[[], float],
        telemetry: Callable[[], ResilienceTelemetry],
    ) -> None:
        self.config = cache
        self._tool = tool
        self._kind: CallKind = kind
        self._ttl = seconds(cache.ttl)
        self._telemetry = telemetry
        self._backend: _Memory | _Redis = (
            _redis_backend(cache) if cache.backend == "redis" else _Memory(cache.max_entries, clock)
        )
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self._said: set[str] = set()
        _tables.add(self)

    # -- sync -------------------------------------------------------------------------------

    def call(self, run: Callable[[], T], *, span: Span | None, arguments: Mapping[str, object]) -> T:
        key = self._key(span, arguments)
        if key is None:
            return run()
        try:
            stored = self._backend.get(key)
        except CacheUnavailableError as exc:
            self._unavailable(span, exc)
            return self._lead(run, span, key, "unavailable")
        hit = self._hit(span, stored)
        if hit is not None:
            return hit[0]  # type: ignore[return-value]
        flight = self._flights.get(key)
        if flight is not None and key not in _leading.get() and flight.can_wait_sync():
            flight.event.wait()
            shared = self._shared(span, flight)
            if shared is not None:
                return shared[0]  # type: ignore[return-value]
        return self._lead(run, span, key, "miss")

    @contextlib.contextmanager
    def _leading_call(self, span: Span | None, key: str, kind: _Kind) -> Iterator[_Flight | None]:
        """Lead the flight of ``key`` while the block runs; a failure ends it for the waiters."""
        flight = self._begin(span, key, kind)
        token = _leading.set(_leading.get() | {key})
        try:
            yield flight
        except Exception as exc:
            self._end(key, flight, ("error", exc, None, exc.__traceback__))
            raise
        except BaseException:
            self._end(key, flight, ("abandoned", None, None, None))
            raise
        finally:
            _leading.reset(token)

    def _lead(self, run: Callable[[], T], span: Span | None, key: str, kind: _Kind) -> T:
        with self._leading_call(span, key, kind) as flight:
            result = run()
        encoded = self._store(span, key, result, kind)
        self._end(key, flight, ("value", result, encoded, None))
        return result

    # -- async ------------------------------------------------------------------------------

    async def acall(
        self, run: Callable[[], Awaitable[T]], *, span: Span | None, arguments: Mapping[str, object]
    ) -> T:
        key = self._key(span, arguments)
        if key is None:
            return await run()
        remote = self._backend.is_remote
        try:
            stored = await asyncio.to_thread(self._backend.get, key) if remote else self._backend.get(key)
        except CacheUnavailableError as exc:
            self._unavailable(span, exc)
            return await self._alead(run, span, key, "unavailable")
        hit = self._hit(span, stored)
        if hit is not None:
            return hit[0]  # type: ignore[return-value]
        flight = self._flights.get(key)
        if flight is not None and key not in _leading.get() and flight.can_wait_async():
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            with self._lock:
                waiting = flight.outcome is None
                if waiting:
                    flight.waiters.append((loop, future))
            if waiting:
                try:
                    await future
                except BaseException:
                    with self._lock:
                        if (loop, future) in flight.waiters:
                            flight.waiters.remove((loop, future))
                    raise
            shared = self._shared(span, flight)
            if shared is not None:
                return shared[0]  # type: ignore[return-value]
        return await self._alead(run, span, key, "miss")

    async def _alead(self, run: Callable[[], Awaitable[T]], span: Span | None, key: str, kind: _Kind) -> T:
        with self._leading_call(span, key, kind) as flight:
            result = await run()
        if self._backend.is_remote and kind != "unavailable":
            encoded = await asyncio.to_thread(self._store, span, key, result, kind)
        else:
            encoded = self._store(span, key, result, kind)
        self._end(key, flight, ("value", result, encoded, None))
        return result

    # -- shared steps -----------------------------------------------------------------------

    def _key(self, span: Span | None, arguments: Mapping[str, object]) -> str | None:
        try:
            key = cache_key(self.config.key_prefix, self._tool, arguments)
        except Exception:  # noqa: BLE001 - an argument that cannot even be inspected: no caching
            key = None
        if key is None:
            self._once(
                "arguments",
                "agentwatch: tool %r was called with arguments that are not JSON data; such calls are "
                "not cached",
            )
            self._decision(span, "bypassed", "cache_bypassed")
        return key

    def _hit(self, span: Span | None, stored: bytes | None) -> tuple[object] | None:
        if stored is None:
            return None
        try:
            value = json.loads(stored)
        except ValueError:  # not written by agentwatch (a shared Redis): a miss
            report_internal_error("cache.decode")
            return None
        self._decision(span, "hit", "cache_hit")
        return (value,)

    def _shared(self, span: Span | None, flight: _Flight) -> tuple[object] | None:
        """The leader's outcome for this follower (raised if it is an exception), or ``None``
        when the leader was cancelled and the follower must make its own call."""
        outcome = flight.outcome
        if outcome is None or outcome[0] == "abandoned":
            return None
        self._decision(span, "shared", "cache_shared")
        kind, value, encoded, traceback = outcome
        if kind == "error":
            raise value.with_traceback(traceback)
        return (json.loads(encoded) if encoded is not None else value,)

    def _begin(self, span: Span | None, key: str, kind: _Kind) -> _Flight | None:
        if kind == "miss":
            self._decision(span, "miss", "cache_miss")
        else:
            self._mark(span, kind)
        flight = _Flight()
        with self._lock:
            if key in self._flights:
                return None  # a flight we could not join (same thread or loop): run beside it
            self._flights[key] = flight
        return flight

    def _end(self, key: str, flight: _Flight | None, outcome: _Outcome) -> None:
        if flight is None:
            return
        with self._lock:
            flight.outcome = outcome
            if self._flights.get(key) is flight:
                del self._flights[key]
            waiters, flight.waiters = flight.waiters, []
        flight.event.set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass

    def _store(self, span: Span | None, key: str, result: object, kind: _Kind) -> bytes | None:
        from agentwatch.resilience._pipeline import ToolUnavailable

        if isinstance(result, ToolUnavailable):
            return None
        encoded = encode(result)
        if encoded is None:
            self._once(
                f"result:{type(result).__qualname__}",
                "agentwatch: tool %r returned a result that the cache cannot store unchanged "
                f"({type(result).__qualname__}; only JSON data is stored): such results are not cached",
            )
            self._event(span, "cache_not_stored")
            return None
        if kind != "unavailable":
            try:
                self._backend.set(key, encoded, self._ttl)
            except CacheUnavailableError as exc:
                self._unavailable(span, exc)
        return encoded

    def _unavailable(self, span: Span | None, exc: CacheUnavailableError) -> None:
        from agentwatch.resilience._pipeline import error_type_of

        self._mark(span, "unavailable")
        self._event(span, "cache_unavailable", error_type_of(exc.cause))

    def _decision(self, span: Span | None, kind: _Kind, event: str) -> None:
        self._mark(span, kind)
        self._event(span, event)

    def _mark(self, span: Span | None, kind: _Kind) -> None:
        if span is not None and span.is_recording():
            try:
                span.set_attribute(CACHE_RESULT, kind)
            except Exception:  # noqa: BLE001 - a faulty span must not change the call's outcome
                report_internal_error("cache.span_attribute")

    def _event(self, span: Span | None, name: str, error_type: str | None = None) -> None:
        try:
            self._telemetry().event(
                span,
                name,
                "cache",
                kind=self._kind,
                subject=self._tool,
                error_type=error_type,
            )
        except Exception:  # noqa: BLE001 - telemetry faults never reach the application
            report_internal_error("cache.event")

    def _once(self, what: str, message: str) -> None:
        with self._lock:
            first = what not in self._said
            self._said.add(what)
        if first:
            _log.warning(message, self._tool)

    def forget_flights(self) -> None:
        """After ``fork()``: the leaders of the parent's flights do not exist in the child."""
        self._flights = {}
        self._lock = threading.Lock()


class _Tables:
    """Every live ToolCache, for the fork handler (weakly: caches go with their pipelines)."""

    def __init__(self) -> None:
        import weakref

        self._caches: weakref.WeakSet[ToolCache] = weakref.WeakSet()

    def add(self, cache: ToolCache) -> None:
        self._caches.add(cache)

    def after_fork(self) -> None:
        for cache in list(self._caches):
            cache.forget_flights()


_tables = _Tables()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_tables.after_fork)
