"""The one way agentwatch builds a Redis client (the tool-result cache, the shared state).

Every command is bounded: ``timeout`` to connect and ``timeout`` for each reply, and nothing is
retried. redis-py's defaults are not a bound: ``redis.Redis()`` retries a failed connection three
times with up to seconds of backoff, and whether a client made by ``from_url`` does depends on the
redis-py release. So a Redis that is down, unreachable or silent costs a caller at most
``2 * timeout`` per command (a connect, then the first reply), whatever redis-py does by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

__all__ = ["redis_client"]


def redis_client(url: str, timeout: float) -> redis.Redis:
    """A client of ``url`` whose every command takes at most ``2 * timeout`` seconds, then raises."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )
