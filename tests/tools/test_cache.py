"""The tool-result cache: settings, hits and misses, what is stored, single flight, telemetry, and the
Redis backend against a real redis-server (tests/_redis.py)."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

import agentwatch
from _redis import RedisServer, redis_server_binary, silent_redis
from agentwatch import Cache, ConfigError, Policy, ToolRegistry, ToolUnavailable
from agentwatch.resilience import (
    CircuitBreaker,
    ResilienceTelemetry,
    configure_resilience_telemetry,
    disable_tool,
    load_config,
)
from agentwatch.resilience import _cache as cache_module
from agentwatch.resilience._cache import cache_key
from resilience._support import events
from support import Signals
from tools._support import attrs, duration_points, tool_spans


@pytest.fixture
def rt(tele: Signals) -> Iterator[ResilienceTelemetry]:
    telemetry = configure_resilience_telemetry(tele.meter_provider)
    yield telemetry
    configure_resilience_telemetry(None)


def cache_events(signals: Signals) -> dict[str, int]:
    totals: dict[str, int] = {}
    for point in signals.points("agentwatch.resilience.events"):
        a = dict(point.attributes)
        if a["agentwatch.resilience.policy"] == "cache":
            totals[a["agentwatch.resilience.event"]] = (
                totals.get(a["agentwatch.resilience.event"], 0) + point.value
            )
    return totals


def counting_registry(cache: Cache, calls: list[dict[str, Any]], **policy: Any) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.register(policy=Policy(cache=cache, **policy))
    def weather(city: str, days: int = 1) -> dict[str, Any]:
        calls.append({"city": city, "days": days})
        return {"city": city, "days": days, "forecast": ["sun", "rain"][:days]}

    return registry


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"ttl": 0}, "Cache.ttl"),
        ({"ttl": "5"}, "Cache.ttl"),
        ({"max_entries": 0}, "Cache.max_entries"),
        ({"backend": "memcached"}, "Cache.backend"),
        ({"redis_url": "redis://h:6379/0"}, "Cache.redis_url"),  # only with backend="redis"
        ({"backend": "redis", "redis_url": "http://h"}, "Cache.redis_url"),
        ({"backend": "redis"}, "Cache.redis_url"),  # neither in code nor in the environment
        ({"redis_timeout": -1}, "Cache.redis_timeout"),
    ],
)
def test_invalid_cache_settings_name_the_setting(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Cache(**kwargs)
    assert caught.value.setting == setting


def test_redis_url_comes_from_the_environment_and_its_password_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTWATCH_CACHE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert Cache(backend="redis").redis_url is None  # read when the pipeline is built
    monkeypatch.setenv("AGENTWATCH_CACHE_REDIS_URL", "http://:hunter2@host")
    with pytest.raises(ConfigError) as caught:
        Cache(backend="redis")
    assert caught.value.setting == "AGENTWATCH_CACHE_REDIS_URL"
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Cache(redis_url="redis://user:hunter2@host/0")
    assert "hunter2" not in str(caught.value)


def test_a_cache_on_an_llm_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"llm_policies\['gpt-4o'\]\.cache"):
        agentwatch.instrument(llm_policies={"gpt-4o": Policy(cache=Cache())}, configure_sdk=False)
    config = tmp_path / "policies.toml"
    config.write_text('[llm."gpt-4o"]\ncache = { ttl = 60 }\n')
    with pytest.raises(ConfigError, match=r"llm\.gpt-4o\.cache"):
        load_config(config)


def test_the_config_file_sets_a_cache(tmp_path: Path) -> None:
    config = tmp_path / "policies.toml"
    config.write_text(
        "[tools.weather]\ncache = { ttl = 300, max_entries = 10 }\n[tools.other]\ncache = true\n"
    )
    loaded = load_config(config)
    assert loaded.policy_for("weather") == Policy(cache=Cache(ttl=300, max_entries=10))
    assert loaded.policy_for("other") == Policy(cache=Cache())
    config.write_text("[tools.weather]\ncache = { ttl = 0 }\n")
    with pytest.raises(ConfigError, match=r"tools\.weather\.cache\.ttl"):
        load_config(config)
    config.write_text("[tools.weather]\ncache = { size = 3 }\n")
    with pytest.raises(ConfigError, match=r"tools\.weather\.cache\.size"):
        load_config(config)


def test_a_config_file_cache_applies_to_a_tool_without_its_own_policy(
    tele: Signals, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "policies.toml"
    config.write_text("[tools.lookup]\ncache = { ttl = 300 }\n")
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(config))
    calls: list[str] = []

    @agentwatch.tool
    def lookup(key: str) -> str:
        calls.append(key)
        return key.upper()

    try:
        assert [lookup("a"), lookup("a"), lookup(key="a")] == ["A", "A", "A"]
    finally:
        agentwatch.uninstrument()
    assert calls == ["a"]


# -- hits, misses and what is stored ---------------------------------------------------------------


def test_identical_calls_hit_and_the_hit_is_still_a_span_and_a_duration_point(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    calls: list[dict[str, Any]] = []
    registry = counting_registry(Cache(ttl=300), calls)
    first = registry.call("weather", {"city": "Paris"})
    # The same call written differently: JSON text, the default spelled out, another key order.
    second = registry.call("weather", '{"days": 1, "city": "Paris"}')
    third = registry.call("weather", {"city": "Rome"})

    assert first == second == {"city": "Paris", "days": 1, "forecast": ["sun"]}
    assert third["city"] == "Rome"
    assert calls == [{"city": "Paris", "days": 1}, {"city": "Rome", "days": 1}]
    spans = tool_spans(tele, "weather")
    assert [attrs(s)["agentwatch.cache.result"] for s in spans] == ["miss", "hit", "miss"]
    assert [e["name"] for e in events(spans[1])] == ["cache_hit"]
    assert "error.type" not in attrs(spans[1])
    assert len(duration_points(tele)) == 1 and duration_points(tele)[0]["count"] == 3
    assert cache_events(tele) == {"cache_miss": 2, "cache_hit": 1}


def test_entries_expire_after_the_ttl(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[dict[str, Any]] = []
    registry = counting_registry(Cache(ttl=0.2), calls)
    registry.call("weather", {"city": "Paris"})
    registry.call("weather", {"city": "Paris"})
    time.sleep(0.25)
    registry.call("weather", {"city": "Paris"})
    assert len(calls) == 2


def test_the_lru_keeps_max_entries(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[dict[str, Any]] = []
    registry = counting_registry(Cache(max_entries=2), calls)
    for city in ("A", "B", "A", "C", "A", "B"):  # B is the least recently used when C arrives
        registry.call("weather", {"city": city})
    assert [c["city"] for c in calls] == ["A", "B", "C", "B"]


def test_a_hit_returns_an_equal_fresh_copy_that_the_caller_may_mutate(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    calls: list[dict[str, Any]] = []
    registry = counting_registry(Cache(), calls)
    registry.call("weather", {"city": "Paris"})["forecast"].append("snow")
    hit = registry.call("weather", {"city": "Paris"})
    assert hit == {"city": "Paris", "days": 1, "forecast": ["sun"]}
    hit["city"] = "changed"
    assert registry.call("weather", {"city": "Paris"})["city"] == "Paris"
    assert len(calls) == 1


def test_failures_and_degradation_results_are_never_cached(tele: Signals, rt: ResilienceTelemetry) -> None:
    attempts: list[str] = []
    registry = ToolRegistry()

    @registry.register(policy=Policy(cache=Cache(), critical=False))
    def flaky(key: str) -> str:
        attempts.append(key)
        if len(attempts) <= 2:
            raise ConnectionError("down")
        return "ok"

    @registry.register(policy=Policy(cache=Cache()))
    def broken(key: str) -> str:
        attempts.append(key)
        raise RuntimeError("bug")

    assert isinstance(registry.call("flaky", {"key": "k"}), ToolUnavailable)
    assert isinstance(registry.call("flaky", {"key": "k"}), ToolUnavailable)
    assert registry.call("flaky", {"key": "k"}) == "ok"
    assert registry.call("flaky", {"key": "k"}) == "ok"  # now a hit
    for _ in range(2):
        with pytest.raises(RuntimeError):
            registry.call("broken", {"key": "k"})
    assert attempts == ["k", "k", "k", "k", "k"]
    spans = tool_spans(tele, "flaky")
    assert attrs(spans[0])["error.type"] == "ConnectionError"  # the degradation keeps its cause
    assert [attrs(s)["agentwatch.cache.result"] for s in spans] == ["miss", "miss", "miss", "hit"]


def test_results_that_cannot_be_stored_unchanged_are_not_cached_and_said_once(
    tele: Signals, rt: ResilienceTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @agentwatch.tool(policy=Policy(cache=Cache()))
    def when(key: str) -> Any:
        calls.append(key)
        return {"at": datetime.date(2024, 1, 1)} if key == "date" else (1, 2)

    for key in ("date", "date", "tuple", "tuple"):
        when(key)
    assert calls == ["date", "date", "tuple", "tuple"]
    warnings = [r.getMessage() for r in caplog.records if "cannot store" in r.getMessage()]
    assert len(warnings) == 2  # once per kind of result (dict holding a date; tuple)
    assert "'when'" in warnings[0]
    assert cache_events(tele)["cache_not_stored"] == 4


def test_calls_whose_arguments_are_not_json_data_bypass_the_cache(
    tele: Signals, rt: ResilienceTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[object] = []

    @agentwatch.tool(policy=Policy(cache=Cache()))
    def measure(value: object) -> int:
        calls.append(value)
        return 1

    measure(value=object())
    measure(value=(1, 2))
    measure(value=(1, 2))
    assert len(calls) == 3
    assert cache_events(tele) == {"cache_bypassed": 3}
    assert len([r for r in caplog.records if "not JSON data" in r.getMessage()]) == 1


def test_a_disabled_tool_serves_no_cached_result(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[dict[str, Any]] = []
    registry = counting_registry(Cache(), calls, critical=False)
    registry.call("weather", {"city": "Paris"})
    disable_tool("weather")
    result = registry.call("weather", {"city": "Paris"})
    assert isinstance(result, ToolUnavailable) and result.reason == "tool_disabled"


def test_keys_hold_no_argument_value() -> None:
    key = cache_key("agentwatch:cache:", "lookup", {"email": "alice@example.com"})
    assert key is not None and key.startswith("agentwatch:cache:lookup:")
    assert "alice" not in key and len(key.rsplit(":", 1)[1]) == 64
    assert key == cache_key("agentwatch:cache:", "lookup", {"email": "alice@example.com"})
    assert key != cache_key("agentwatch:cache:", "other", {"email": "alice@example.com"})


def test_no_argument_value_reaches_telemetry_without_content_capture(
    tele: Signals, rt: ResilienceTelemetry, caplog: pytest.LogCaptureFixture
) -> None:
    registry = counting_registry(Cache(), [])
    registry.call("weather", {"city": "Zanzibar-secret"})
    registry.call("weather", {"city": "Zanzibar-secret"})
    assert "Zanzibar-secret" not in tele.dump()
    assert "Zanzibar-secret" not in caplog.text


# -- single flight -----------------------------------------------------------------------------------


def test_concurrent_identical_calls_share_one_execution(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[str] = []
    release = threading.Event()

    @agentwatch.tool(policy=Policy(cache=Cache()))
    def slow(key: str) -> dict[str, str]:
        calls.append(key)
        release.wait(5)
        return {"key": key}

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(slow("k"))) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # every thread is waiting for the first one
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["k"]
    assert results == [{"key": "k"}] * 6
    assert results[0] is not results[1] or results[1] is not results[2]  # copies, not one object
    kinds = sorted(attrs(s)["agentwatch.cache.result"] for s in tool_spans(tele, "slow"))
    assert kinds == ["miss"] + ["shared"] * 5


def test_a_failure_is_shared_too_and_not_cached(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[str] = []
    release = threading.Event()

    @agentwatch.tool(policy=Policy(cache=Cache()))
    def failing(key: str) -> str:
        calls.append(key)
        release.wait(5)
        raise ConnectionError("dependency down")

    errors: list[BaseException] = []

    def run() -> None:
        try:
            failing("k")
        except ConnectionError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert calls == ["k"] and len(errors) == 4
    assert {attrs(s)["error.type"] for s in tool_spans(tele, "failing")} == {"ConnectionError"}
    with pytest.raises(ConnectionError):
        failing("k")  # not cached: the next call runs again
    assert calls == ["k", "k"]


@pytest.mark.anyio
async def test_async_identical_calls_share_one_execution(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[str] = []

    @agentwatch.tool(policy=Policy(cache=Cache()))
    async def search(query: str) -> list[str]:
        calls.append(query)
        await asyncio.sleep(0.05)
        return [query]

    results = await asyncio.gather(*(search(query="q") for _ in range(5)), search(query="other"))
    assert results == [["q"]] * 5 + [["other"]]
    assert calls == ["q", "other"]
    assert await search(query="q") == ["q"]
    kinds = [attrs(s)["agentwatch.cache.result"] for s in tool_spans(tele, "search")]
    assert sorted(kinds) == ["hit", "miss", "miss", "shared", "shared", "shared", "shared"]


@pytest.mark.anyio
async def test_a_cancelled_leader_lets_the_waiting_calls_run_themselves(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    calls: list[str] = []

    @agentwatch.tool(policy=Policy(cache=Cache(), timeout=None))
    async def search(query: str) -> str:
        calls.append(query)
        await asyncio.sleep(0.1)
        return query

    leader = asyncio.ensure_future(search(query="q"))
    await asyncio.sleep(0.01)
    follower = asyncio.ensure_future(search(query="q"))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await follower == "q"
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert calls == ["q", "q"]


def test_a_tool_calling_itself_with_the_same_arguments_does_not_wait_for_itself(
    tele: Signals, rt: ResilienceTelemetry
) -> None:
    depth: list[int] = []

    @agentwatch.tool(policy=Policy(cache=Cache(), timeout=None))
    def recurse(n: int) -> int:
        depth.append(n)
        return 0 if len(depth) > 2 else recurse(n)

    assert recurse(1) == 0
    assert depth == [1, 1, 1]


def test_the_breaker_sees_no_cache_hit(tele: Signals, rt: ResilienceTelemetry) -> None:
    calls: list[dict[str, Any]] = []
    registry = counting_registry(Cache(), calls, breaker=CircuitBreaker(failure_threshold=1))
    for _ in range(5):
        registry.call("weather", {"city": "Paris"})
    assert len(calls) == 1
    assert agentwatch.circuits()[0].state.value == "closed"


# -- Redis (a real redis-server) ---------------------------------------------------------------------


def test_replicas_share_results_through_redis_and_they_survive_the_round_trip(
    tele: Signals, rt: ResilienceTelemetry, redis_url: str
) -> None:
    calls: list[dict[str, Any]] = []
    result = {
        "text": "héllo \u2603 \U0001f600",
        "n": 2**70,
        "x": 0.1,
        "none": None,
        "ok": True,
        "list": [{"a": []}],
    }

    def replica() -> ToolRegistry:
        registry = ToolRegistry()

        @registry.register(policy=Policy(cache=Cache(backend="redis", redis_url=redis_url, ttl=30)))
        def profile(user_id: str) -> dict[str, Any]:
            calls.append({"user_id": user_id})
            return result

        return registry

    first, second = replica(), replica()  # two pipelines, as in two processes
    assert first.call("profile", {"user_id": "u-1"}) == result
    assert second.call("profile", {"user_id": "u-1"}) == result
    assert len(calls) == 1

    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("*")
    assert key.startswith(b"agentwatch:cache:profile:") and b"u-1" not in key
    assert 0 < client.pttl(key) <= 30_000
    assert json.loads(client.get(key) or b"") == result
    client.close()


@pytest.mark.anyio
async def test_async_tools_use_redis_too(tele: Signals, rt: ResilienceTelemetry, redis_url: str) -> None:
    calls: list[str] = []

    @agentwatch.tool(policy=Policy(cache=Cache(backend="redis", redis_url=redis_url)))
    async def lookup(key: str) -> str:
        calls.append(key)
        return key * 2

    assert [await lookup("a"), await lookup("a")] == ["aa", "aa"]
    assert calls == ["a"]


def test_the_redis_url_comes_from_the_environment(
    tele: Signals, rt: ResilienceTelemetry, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_CACHE_REDIS_URL", redis_url)
    calls: list[dict[str, Any]] = []
    counting_registry(Cache(backend="redis"), calls).call("weather", {"city": "Paris"})
    counting_registry(Cache(backend="redis"), calls).call("weather", {"city": "Paris"})
    assert len(calls) == 1


def test_a_redis_outage_degrades_to_no_caching_without_an_error(
    tele: Signals, rt: ResilienceTelemetry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = RedisServer(redis_server_binary(), tmp_path).start()
    try:
        calls: list[dict[str, Any]] = []
        registry = counting_registry(Cache(backend="redis", redis_url=server.url, redis_timeout=0.2), calls)
        registry.call("weather", {"city": "Paris"})
        assert registry.call("weather", {"city": "Paris"})["city"] == "Paris"
        assert len(calls) == 1

        server.stop()
        started = time.monotonic()
        for _ in range(5):
            assert registry.call("weather", {"city": "Paris"})["city"] == "Paris"
        assert len(calls) == 6
        assert time.monotonic() - started < 2.0  # one failed attempt, then Redis is left alone
        outage = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(outage) == 1 and "127.0.0.1" in outage[0].getMessage()
        spans = tool_spans(tele, "weather")[2:]
        assert {attrs(s)["agentwatch.cache.result"] for s in spans} == {"unavailable"}
        assert all("error.type" not in attrs(s) for s in spans)
        unavailable = events(spans[0], "cache_unavailable")
        assert unavailable and unavailable[0]["error.type"].startswith("redis.")
    finally:
        server.stop()


# -- a Redis outage costs a bounded wait: one connection attempt, no retries, one probe at a time ----

REDIS_TIMEOUT = 0.2
# The bound the cache states: a connect and a reply, each cut at redis_timeout (not a speed goal:
# the slack only absorbs a loaded machine; a retrying client takes seconds).
OUTAGE_BOUND = 2 * REDIS_TIMEOUT + 1.0


def _connection_attempts(monkeypatch: pytest.MonkeyPatch, port: int) -> list[float]:
    """When the process connected to 127.0.0.1:``port``; observes the real sockets, changes nothing."""
    attempts: list[float] = []
    real = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[1] == port:
            attempts.append(time.monotonic())
        real(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def test_a_stopped_redis_costs_one_connection_attempt_per_retry_window(
    tele: Signals, rt: ResilienceTelemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "_REDIS_RETRY_AFTER", 0.5)
    server = RedisServer(redis_server_binary(), tmp_path).start()
    try:
        calls: list[dict[str, Any]] = []
        cache = Cache(backend="redis", redis_url=server.url, redis_timeout=REDIS_TIMEOUT)
        registry = counting_registry(cache, calls)
        registry.call("weather", {"city": "Paris"})
        server.stop()
        attempts = _connection_attempts(monkeypatch, server.port)

        started = time.monotonic()
        assert registry.call("weather", {"city": "Paris"})["city"] == "Paris"
        assert time.monotonic() - started < OUTAGE_BOUND
        # redis-py's Redis() default would retry the refused connection 3 times with backoff.
        assert len(attempts) == 1
        for _ in range(5):
            assert registry.call("weather", {"city": "Paris"})["city"] == "Paris"
        assert len(attempts) == 1  # within the retry window Redis is not tried at all
        time.sleep(0.6)
        assert registry.call("weather", {"city": "Paris"})["city"] == "Paris"
        assert len(attempts) == 2  # then once again, still without retries
        assert len(calls) == 8
        spans = tool_spans(tele, "weather")[1:]
        assert {attrs(s)["agentwatch.cache.result"] for s in spans} == {"unavailable"}
    finally:
        server.stop()


@pytest.fixture
def silent_url() -> Iterator[str]:
    with silent_redis() as url:
        yield url


def test_a_silent_redis_is_cut_at_the_timeout_and_probed_by_one_call_at_a_time(
    tele: Signals, rt: ResilienceTelemetry, silent_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "_REDIS_RETRY_AFTER", 0.5)
    attempts = _connection_attempts(monkeypatch, urlsplit(silent_url).port or 0)
    calls: list[dict[str, Any]] = []
    url = silent_url
    registry = counting_registry(Cache(backend="redis", redis_url=url, redis_timeout=REDIS_TIMEOUT), calls)

    started = time.monotonic()
    assert registry.call("weather", {"city": "Oslo"})["city"] == "Oslo"
    assert time.monotonic() - started < OUTAGE_BOUND
    assert len(attempts) == 1  # cut by the reply timeout, not retried
    (span,) = tool_spans(tele, "weather")
    assert attrs(span)["agentwatch.cache.result"] == "unavailable"
    assert "Timeout" in events(span, "cache_unavailable")[0]["error.type"]

    # After the retry window, calls arriving together: one of them waits for Redis, the others go
    # on uncached at once instead of each paying the same timeout.
    time.sleep(0.6)
    barrier = threading.Barrier(6)
    durations: list[float] = []

    def call() -> None:
        barrier.wait()
        began = time.monotonic()
        assert registry.call("weather", {"city": "Oslo"})["city"] == "Oslo"
        durations.append(time.monotonic() - began)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(durations) == 6 and len(calls) == 7
    assert len(attempts) == 2, f"{len(attempts) - 1} calls tried the silent Redis at once"
    assert max(durations) < OUTAGE_BOUND
