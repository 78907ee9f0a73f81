"""Operator state and rate limits shared through a real redis-server (tests/_redis.py).

Each "replica" here is a :class:`Registry` with its own :class:`RedisState` (its own connections,
poller thread and replica id) in this process: the same code paths as separate processes, which
tests/resilience/test_fleet.py runs too. Propagation is polled for, never timed: ``eventually``
fails after a bound far above the poll interval used here (0.05 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

import agentwatch
from _redis import RedisServer, private_redis, silent_redis
from agentwatch import CircuitBreaker, ConfigError, Policy, RateLimit, RateLimitedError, SharedState
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.admin import make_app
from agentwatch.resilience import (
    AttemptContext,
    CircuitState,
    Pipeline,
    Registry,
    ResilienceTelemetry,
    ToolDisabledError,
    ToolUnavailable,
    default_registry,
)
from agentwatch.resilience._state import LocalState, RedisState
from support import Signals

POLL = 0.05
BOUND = 5.0  # far above POLL + timeout: only a broken propagation reaches it


def eventually(check: Callable[[], object], what: str, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {bound} s")
        time.sleep(0.01)


def ok(ctx: AttemptContext) -> str:
    return "ok"


@pytest.fixture
def replicas() -> Iterator[Callable[..., Registry]]:
    made: list[Registry] = []

    def replica(url: str, **kwargs: Any) -> Registry:
        registry = Registry(RedisState(SharedState(redis_url=url, **{"poll_interval": POLL, **kwargs})))
        made.append(registry)
        return registry

    yield replica
    for registry in made:
        registry.state.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop and start."""
    with private_redis() as server:
        yield server


def tool_pipeline(registry: Registry, name: str = "search", **policy: Any) -> Pipeline:
    return Pipeline(Policy(timeout=None, **policy), name=name, registry=registry)


# -- settings ------------------------------------------------------------------------------------


def test_settings_are_validated_and_the_password_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        SharedState()  # neither in code nor in the environment
    assert caught.value.setting == "SharedState.redis_url"
    assert "AGENTWATCH_STATE_REDIS_URL" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        SharedState(redis_url="http://:hunter2@host")
    assert "hunter2" not in str(caught.value)
    for kwargs in ({"timeout": 0}, {"poll_interval": -1}, {"key_prefix": 3}):
        with pytest.raises(ConfigError) as caught:
            SharedState(redis_url="redis://h/0", **kwargs)
        assert caught.value.setting == f"SharedState.{next(iter(kwargs))}"
    monkeypatch.setenv("AGENTWATCH_STATE_REDIS_URL", "redis://:hunter2@cache.internal:6379/2")
    state = SharedState()
    assert state.url == "redis://:hunter2@cache.internal:6379/2"
    assert "hunter2" not in repr(state)


def test_the_environment_variable_selects_redis_and_a_bad_one_names_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agentwatch._config import resolve_settings

    assert resolve_settings().shared_state is None
    monkeypatch.setenv("AGENTWATCH_STATE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert resolve_settings().shared_state == SharedState(redis_url="redis://127.0.0.1:1/0")
    monkeypatch.setenv("AGENTWATCH_STATE_REDIS_URL", "http://nope")
    with pytest.raises(ConfigError) as caught:
        resolve_settings()
    assert caught.value.setting == "AGENTWATCH_STATE_REDIS_URL"
    with pytest.raises(ConfigError) as caught:
        agentwatch.instrument(configure_sdk=False, shared_state="redis://x")  # type: ignore[arg-type]
    assert caught.value.setting == "shared_state"


def test_instrument_shares_the_state_and_uninstrument_stops_sharing(redis_url: str, signals: Signals) -> None:
    agentwatch.instrument(
        **signals.providers, configure_sdk=False, shared_state=SharedState(redis_url=redis_url)
    )
    try:
        state = default_registry().state
        assert isinstance(state, RedisState) and state.shared
        assert agentwatch.disable_tool("search") == "fleet"
        assert redis.Redis.from_url(redis_url).hexists("agentwatch:state:tools", "search")
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert isinstance(default_registry().state, LocalState)
    assert agentwatch.disable_tool("search") == "replica"


# -- operator actions reach every replica ---------------------------------------------------------


def test_a_tool_disabled_on_one_replica_degrades_on_the_others(
    redis_url: str, replicas: Callable[..., Registry]
) -> None:
    a, b, c = replicas(redis_url), replicas(redis_url), replicas(redis_url)
    optional = {r: tool_pipeline(r, critical=False) for r in (b, c)}
    critical = tool_pipeline(a)

    assert a.disable_tool("search") == "fleet"
    for pipeline in optional.values():
        eventually(lambda p=pipeline: isinstance(p.call(ok), ToolUnavailable), "disabled on another replica")
    with pytest.raises(ToolDisabledError):
        critical.call(ok)

    assert b.enable_tool("search") == "fleet"
    eventually(lambda: _runs(critical), "enabled again on the first replica")
    eventually(lambda: optional[c].call(ok) == "ok", "enabled again on the third")


def test_forcing_a_circuit_open_and_closed_reaches_every_replica(
    redis_url: str, replicas: Callable[..., Registry]
) -> None:
    a, b = replicas(redis_url), replicas(redis_url)
    breaker = CircuitBreaker(failure_threshold=1, break_duration=300)
    pa, pb = tool_pipeline(a, breaker=breaker), tool_pipeline(b, breaker=breaker)

    circuit = a.get("search")
    assert circuit is not None
    circuit.open()  # the public Circuit API, not only the admin app
    eventually(lambda: b.get("search").state is CircuitState.OPEN, "opened on the other replica")  # type: ignore[union-attr]
    assert b.get("search").snapshot().forced_open  # type: ignore[union-attr]

    # An automatic opening stays local...
    def fail(ctx: AttemptContext) -> None:
        raise ConnectionError("down")

    b.circuit_action("search", "close")
    eventually(lambda: a.get("search").state is CircuitState.CLOSED, "closed on the first replica")  # type: ignore[union-attr]
    with pytest.raises(ConnectionError):
        pa.call(fail)
    assert a.get("search").state is CircuitState.OPEN  # type: ignore[union-attr]
    time.sleep(10 * POLL)
    assert b.get("search").state is CircuitState.CLOSED  # type: ignore[union-attr]
    assert pb.call(ok) == "ok"
    # ...and an operator's close closes it, wherever it is open.
    b.circuit_action("search", "close")
    eventually(lambda: a.get("search").state is CircuitState.CLOSED, "an automatic opening closed by hand")  # type: ignore[union-attr]


def test_state_survives_a_replica_restart_and_reaches_circuits_built_later(
    redis_url: str, replicas: Callable[..., Registry]
) -> None:
    first = replicas(redis_url)
    tool_pipeline(first, breaker=CircuitBreaker())
    first.disable_tool("lookup")
    first.circuit_action("search", "open")
    first.state.stop()

    # A replica started afterwards has the state before its first call...
    restarted = replicas(redis_url)
    lookup = tool_pipeline(restarted, name="lookup", critical=False)
    assert isinstance(lookup.call(ok), ToolUnavailable)
    # ...including for a circuit it builds only now, lazily, as pipelines are.
    search = tool_pipeline(restarted, breaker=CircuitBreaker())
    assert restarted.get("search").state is CircuitState.OPEN  # type: ignore[union-attr]
    with pytest.raises(agentwatch.CircuitOpenError):
        search.call(ok)


def test_no_redis_round_trip_on_the_call_path(redis_url: str, replicas: Callable[..., Registry]) -> None:
    registry = replicas(redis_url, poll_interval=5.0)
    pipeline = tool_pipeline(registry, breaker=CircuitBreaker())
    client = redis.Redis.from_url(redis_url)

    def commands() -> int:
        return int(client.info("stats")["total_commands_processed"])

    before = commands()
    for _ in range(200):
        pipeline.call(ok)
    # The INFO calls themselves are the only commands (the poller sleeps 5 s between reads).
    assert commands() - before <= 3


@pytest.mark.anyio
async def test_the_admin_app_shows_the_fleet_and_acts_on_a_circuit_only_another_replica_has(
    redis_url: str, replicas: Callable[..., Registry]
) -> None:
    a, b = replicas(redis_url), replicas(redis_url)
    tool_pipeline(b, breaker=CircuitBreaker())
    transport = httpx.ASGITransport(app=make_app(a, token="t"))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://admin", headers={"Authorization": "Bearer t"}
    ) as client:

        async def listed() -> dict[str, Any]:
            body: dict[str, Any] = (await client.get("/admin/circuits")).json()
            return body

        async def until(check: Callable[[dict[str, Any]], object], what: str) -> dict[str, Any]:
            deadline = time.monotonic() + BOUND
            while not check(body := await listed()):
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what}: not within {BOUND} s: {body}")
                await asyncio.sleep(0.02)
            return body

        body = await until(lambda b: len(b["fleet"]["replicas"]) == 2 and b["fleet"]["circuits"], "the fleet")
        assert body["replica"] == a.state.replica
        assert body["shared_state"]["backend"] == "redis"
        assert body["shared_state"]["shared"] is True
        assert body["circuits"] == []  # this replica has none of its own
        (view,) = body["fleet"]["circuits"]
        assert view["replicas"] == {b.state.replica: "closed"}

        answer = await client.post("/admin/circuits/search/open")
        assert answer.status_code == 200
        assert answer.json() == {"key": "search", "scope": "fleet", "here": False}
        body = await until(
            lambda body: body["fleet"]["circuits"][0]["replicas"] == {b.state.replica: "open"},
            "the fleet view shows it open",
        )
        assert b.get("search").state is CircuitState.OPEN  # type: ignore[union-attr]
        assert body["fleet"]["forced_open"] == ["search"]
        assert body["fleet"]["circuits"][0]["forced_open"] is True
        assert (await client.post("/admin/circuits/nowhere/open")).status_code == 404
        disabled = (await client.post("/admin/tools/search/disable")).json()
        assert disabled["scope"] == "fleet"
    eventually(lambda: b.is_tool_disabled("search"), "disabled through the admin app")


# -- rate limits across replicas -----------------------------------------------------------------


def test_replicas_draw_from_one_budget(redis_url: str, replicas: Callable[..., Registry]) -> None:
    limit = RateLimit(requests=2, period=60.0, burst=1.0, max_wait=0)
    a, b = (tool_pipeline(r, rate_limit=limit) for r in (replicas(redis_url), replicas(redis_url)))
    assert a.call(ok) == "ok"
    assert b.call(ok) == "ok"
    for pipeline in (a, b):
        with pytest.raises(RateLimitedError) as caught:
            pipeline.call(ok)
        assert caught.value.scope == "fleet"
        assert 29 < caught.value.retry_in <= 30


def test_token_corrections_reach_the_shared_budget(redis_url: str, replicas: Callable[..., Registry]) -> None:
    limit = RateLimit(tokens=60, period=60.0, max_wait=0)  # one token a second
    registries = (replicas(redis_url), replicas(redis_url))
    a, b = (
        Pipeline(Policy(timeout=None, rate_limit=limit), name="m", kind="llm", registry=r) for r in registries
    )
    grants = []

    def attempt(ctx: AttemptContext) -> str:
        grants.append(ctx.rate_limit)
        return "ok"

    a.call(attempt, tokens=100)
    with pytest.raises(RateLimitedError):
        b.call(attempt, tokens=1)
    grants[0].settle(1)  # applied by a's poller thread, off the call path
    eventually(lambda: _admitted(b, attempt), "the refund reached the shared budget")


def _runs(pipeline: Pipeline) -> bool:
    try:
        return pipeline.call(ok) == "ok"
    except ToolDisabledError:
        return False


def _admitted(pipeline: Pipeline, attempt: Callable[[AttemptContext], str]) -> bool:
    try:
        pipeline.call(attempt, tokens=1)
    except RateLimitedError:
        return False
    return True


# -- Redis down or slow --------------------------------------------------------------------------


def test_redis_down_replicas_run_on_local_state_and_catch_up_when_it_returns(
    own_redis: RedisServer,
    replicas: Callable[..., Registry],
    caplog: pytest.LogCaptureFixture,
    signals: Signals,
) -> None:
    a, b = replicas(own_redis.url), replicas(own_redis.url)
    gauge = ResilienceTelemetry(meter_provider=signals.meter_provider, registry=a)
    del gauge  # its callback lives on in the meter
    limit = RateLimit(requests=600, period=60.0, max_wait=1.0)
    pa = tool_pipeline(a, critical=False, rate_limit=limit)
    pb = tool_pipeline(b, critical=False, rate_limit=limit)
    a.disable_tool("search")
    eventually(lambda: b.is_tool_disabled("search"), "disabled before the outage")
    assert _shared_gauge(signals) == [1]

    caplog.set_level(logging.WARNING, logger="agentwatch")
    own_redis.stop()
    eventually(lambda: not a.state.shared and not b.state.shared, "both replicas noticed the outage")
    assert _shared_gauge(signals) == [0]
    # Calls go on, on each replica's last known state; nothing raises into the application.
    assert isinstance(pb.call(ok), ToolUnavailable)
    assert a.enable_tool("search") == "replica"  # applies here now, reaches the fleet later
    results = [pa.call(ok) for _ in range(5)]
    assert results == ["ok"] * 5
    assert b.is_tool_disabled("search")
    time.sleep(10 * POLL)
    down = [r for r in caplog.records if "is unavailable" in r.getMessage()]
    assert len(down) == 2  # once per replica, however many polls and calls failed

    # Redis comes back empty (no persistence): the replicas restore it, then the queued action.
    own_redis.start()
    eventually(lambda: a.state.shared and b.state.shared, "both replicas follow Redis again")
    eventually(lambda: not b.is_tool_disabled("search"), "the action taken during the outage reached b")
    assert pb.call(ok) == "ok"
    assert _shared_gauge(signals) == [1]
    assert [r for r in caplog.records if "answers again" in r.getMessage()]
    # Shared again: a new switch reaches the other replica.
    b.disable_tool("search")
    eventually(lambda: a.is_tool_disabled("search"), "shared again after the outage")


def _shared_gauge(signals: Signals) -> list[int]:
    return [int(p.value) for p in signals.points("agentwatch.state.shared")]


def test_a_redis_that_never_answers_costs_a_bounded_wait_and_no_error(
    replicas: Callable[..., Registry],
) -> None:
    # Accepts connections and never replies: the slow-Redis case, where only timeouts help.
    with silent_redis() as url:
        registry = replicas(url, timeout=0.1)  # its first load times out instead of hanging
        assert not registry.state.shared
        pipeline = tool_pipeline(registry, rate_limit=RateLimit(requests=600, max_wait=1.0))
        assert [pipeline.call(ok) for _ in range(20)] == ["ok"] * 20
        assert registry.disable_tool("search") == "replica"
        assert isinstance(tool_pipeline(registry, name="search", critical=False).call(ok), ToolUnavailable)


# -- fork ----------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_is_a_replica_of_its_own(redis_url: str, replicas: Callable[..., Registry]) -> None:
    parent = replicas(redis_url)
    pipeline = tool_pipeline(parent, critical=False)
    other = replicas(redis_url)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own id, connections and poller, which sees a later switch
        try:
            os.close(read)
            state = parent.state
            os.write(write, json.dumps({"replica": state.replica}).encode() + b"\n")
            deadline = time.monotonic() + BOUND
            while not isinstance(pipeline.call(ok), ToolUnavailable) and time.monotonic() < deadline:
                time.sleep(0.01)
            os.write(write, json.dumps({"disabled": isinstance(pipeline.call(ok), ToolUnavailable)}).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            first = json.loads(pipe.readline())
            other.disable_tool("search")
            second = json.loads(pipe.read())
    finally:
        os.waitpid(pid, 0)
    assert first["replica"] != parent.state.replica
    assert second == {"disabled": True}
    eventually(lambda: isinstance(pipeline.call(ok), ToolUnavailable), "the parent follows too")
