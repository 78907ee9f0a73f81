"""The demo's three tools, their resilience policies, and the dependencies they simulate.

``REGISTRY`` is an ordinary :class:`agentwatch.ToolRegistry`: ``agentwatch runbook --registry
agentwatch._demo:REGISTRY`` documents exactly the policies the demo runs with. Outside a demo run
the tools answer at once with canned data; during a run they follow the run's fault plan.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from agentwatch._demo._plan import PREFERENCES, RELATED, SEARCH, PlannedCall
from agentwatch._demo._provider import ToolSpec
from agentwatch._demo._world import World, current_call
from agentwatch.resilience import Bulkhead, Cache, CircuitBreaker, Policy, Retry
from agentwatch.tools import ToolRegistry

__all__ = ["POLICIES", "REGISTRY", "TOOL_SPECS", "bound_world"]

# The slow tool's slow attempts take this long: past its attempt timeout, so the policy cuts them.
SLOW_ATTEMPT = 0.8

POLICIES: dict[str, Policy] = {
    # Critical: without it the task fails. Flaky: transient failures are retried; five failed
    # attempts in a row open the breaker so a broken knowledge base is not hammered. Articles
    # change rarely: the same search within a minute is answered from the cache.
    SEARCH: Policy(
        timeout=5.0,
        attempt_timeout=2.0,
        retry=Retry(attempts=3, backoff=0.05, max_delay=0.4),
        breaker=CircuitBreaker(failure_threshold=5, break_duration=2.0, max_break_duration=10.0),
        cache=Cache(ttl=60.0),
    ),
    # Optional and slow: an attempt may take 0.5 s, one retry, then the model proceeds without it.
    PREFERENCES: Policy(
        critical=False,
        timeout=2.0,
        attempt_timeout=0.5,
        retry=Retry(attempts=2, backoff=0.05, max_delay=0.2),
    ),
    # Optional enrichment, not retried: three failures in a row open the breaker for a second
    # (growing while the dependency stays down), and calls degrade at once while it is open.
    RELATED: Policy(
        critical=False,
        timeout=2.0,
        breaker=CircuitBreaker(
            failure_threshold=3, break_duration=1.0, max_break_duration=3.0, break_growth=1.5
        ),
        bulkhead=Bulkhead(max_concurrent=8),
    ),
}

_lock = threading.Lock()
_world: World | None = None


@contextmanager
def bound_world(world: World) -> Iterator[None]:
    """Make the tools follow ``world``'s fault plan for the duration of a run (one run at a time)."""
    global _world
    with _lock:
        if _world is not None:
            raise RuntimeError("a demo run is already in progress in this process")
        _world = world
    try:
        yield
    finally:
        with _lock:
            _world = None


def _attempt() -> tuple[World | None, PlannedCall | None, int]:
    world, planned = _world, current_call.get()
    if world is None or planned is None:
        return world, planned, 1
    return world, planned, world.next_attempt(planned.call_id)


REGISTRY = ToolRegistry()


@REGISTRY.register(policy=POLICIES[SEARCH])
def search_knowledge_base(query: str, top_k: int = 3) -> dict[str, Any]:
    """Search the support knowledge base for articles that answer the user's question.

    Dependency: knowledge-base search API (kb-search), a flaky dependency: some calls fail
    with a reset connection and succeed when retried.
    """
    world, planned, attempt = _attempt()
    if world is not None and planned is not None:
        if attempt <= planned.failing_attempts:
            world.sleep(planned.latency / 3)
            raise ConnectionError("knowledge base search: connection reset by peer")
        world.sleep(planned.latency)
    return {
        "results": [
            {
                "id": f"kb-{100 + n}",
                "title": f"{query.capitalize()} ({n + 1})",
                "score": round(0.9 - n * 0.1, 2),
            }
            for n in range(max(0, min(int(top_k), 10)))
        ]
    }


@REGISTRY.register(policy=POLICIES[PREFERENCES])
def get_user_preferences(user_id: str) -> dict[str, Any]:
    """Look up the user's language, plan and notification preferences.

    Dependency: user-preferences service (prefs-api), a slow dependency: some requests take
    longer than the tool's attempt timeout.
    """
    world, planned, attempt = _attempt()
    if world is not None and planned is not None:
        world.sleep(SLOW_ATTEMPT if attempt <= planned.slow_attempts else planned.latency)
    return {"user_id": user_id, "language": "en", "plan": "team", "notifications": "email"}


@REGISTRY.register(policy=POLICIES[RELATED])
def fetch_related_content(topic: str, limit: int = 3) -> dict[str, Any]:
    """Fetch related articles and videos to suggest after the answer.

    Dependency: related-content recommendation service (recs-api), which goes down for a
    while in the middle of a demo run.
    """
    world, planned, _ = _attempt()
    if world is not None and planned is not None:
        if world.outage_active():
            world.sleep(0.02)
            raise ConnectionError("related-content service unavailable (HTTP 503)")
        world.sleep(planned.latency)
    return {
        "items": [{"type": "article", "title": f"More about {topic} #{n + 1}"} for n in range(int(limit))]
    }


# In the neutral form of the demo's provider seam: each provider's adapter renders them its way.
TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec(
        SEARCH,
        REGISTRY.get(SEARCH).description or "",
        {
            "type": "object",
            "properties": {"query": {"type": "string"}, "top_k": {"type": "integer", "minimum": 1}},
            "required": ["query"],
        },
    ),
    ToolSpec(
        PREFERENCES,
        REGISTRY.get(PREFERENCES).description or "",
        {"type": "object", "properties": {"user_id": {"type": "string"}}, "required": ["user_id"]},
    ),
    ToolSpec(
        RELATED,
        REGISTRY.get(RELATED).description or "",
        {
            "type": "object",
            "properties": {"topic": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
            "required": ["topic"],
        },
    ),
)
