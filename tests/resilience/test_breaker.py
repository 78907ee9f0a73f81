"""Circuit breaker: both modes, half-open with exactly one probe, growth, manual control, concurrency."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.resilience import (
    AttemptContext,
    Circuit,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    Policy,
    Retry,
    ToolTimeoutError,
    circuit,
    circuits,
)
from agentwatch.resilience._breaker import Transition
from resilience._support import FakeClock


@pytest.fixture
def racy() -> Iterator[None]:
    """Switch threads as often as possible, so that an unguarded read-modify-write loses updates."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def make_circuit(clock: FakeClock, **config: Any) -> Circuit:
    return Circuit("search", CircuitBreaker(**config), name="search", kind="tool", clock=clock)


def fail(c: Circuit) -> Transition | None:
    permit, _ = c.acquire()
    return c.record_failure(permit)


def succeed(c: Circuit) -> Transition | None:
    permit, _ = c.acquire()
    return c.record_success(permit)


def test_consecutive_mode_opens_after_threshold_failures_in_a_row(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=3)
    assert fail(c) is None
    assert fail(c) is None
    assert succeed(c) is None  # a success resets the run
    assert fail(c) is None
    assert fail(c) is None
    transition = fail(c)
    assert transition is not None
    assert transition.event == "circuit_opened"
    assert c.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as caught:
        c.acquire()
    assert caught.value.retry_in == pytest.approx(30.0)
    assert (caught.value.name, caught.value.kind, caught.value.category.value) == (
        "search",
        "tool",
        "dependency",
    )
    assert "search" in str(caught.value)
    assert "30.0 s" in str(caught.value)


def test_half_open_admits_one_probe_and_closes_on_success(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=1, break_duration=10.0)
    fail(c)
    clock.advance(9.9)
    with pytest.raises(CircuitOpenError):
        c.acquire()
    clock.advance(0.1)
    probe, transition = c.acquire()
    assert probe.probe
    assert transition is not None
    assert transition.event == "circuit_half_opened"
    with pytest.raises(CircuitOpenError) as caught:
        c.acquire()
    assert caught.value.retry_in is None
    closed = c.record_success(probe)
    assert closed is not None
    assert closed.event == "circuit_closed"
    assert c.state is CircuitState.CLOSED
    assert c.acquire()[0].probe is False


def test_break_duration_grows_on_each_reopen_and_resets_after_close(clock: FakeClock) -> None:
    c = make_circuit(
        clock, failure_threshold=1, break_duration=10.0, break_growth=2.0, max_break_duration=35.0
    )
    fail(c)
    breaks = []
    for _ in range(3):
        breaks.append(c.snapshot().break_duration)
        clock.advance(c.snapshot().break_duration)
        probe, _ = c.acquire()
        assert c.record_failure(probe) is not None
    breaks.append(c.snapshot().break_duration)
    assert breaks == [10.0, 20.0, 35.0, 35.0]
    clock.advance(35.0)
    probe, _ = c.acquire()
    c.record_success(probe)
    fail(c)
    assert c.snapshot().break_duration == 10.0
    clock.advance(9.0)
    with pytest.raises(CircuitOpenError):
        c.acquire()


def test_ratio_mode_needs_minimum_calls(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_ratio=0.5, minimum_calls=4, window=10.0)
    for _ in range(3):
        assert fail(c) is None  # 3 of 3 failed, but fewer than minimum_calls
    assert succeed(c) is None
    assert fail(c) is not None  # 4 failures of 5 calls
    assert c.state is CircuitState.OPEN


def test_ratio_mode_below_ratio_stays_closed(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_ratio=0.5, minimum_calls=4, window=10.0)
    for _ in range(3):
        succeed(c)
    assert fail(c) is None
    assert c.state is CircuitState.CLOSED
    snap = c.snapshot()
    assert (snap.window_calls, snap.window_failures) == (4, 1)


def test_ratio_mode_forgets_outcomes_older_than_the_window(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_ratio=0.5, minimum_calls=4, window=10.0)
    for _ in range(3):
        fail(c)
    clock.advance(11.0)
    assert c.snapshot().window_calls == 0
    assert fail(c) is None  # only 1 call in the window now
    assert c.state is CircuitState.CLOSED
    for _ in range(3):
        fail(c)
    assert c.state is CircuitState.OPEN


def test_manual_open_holds_until_close(clock: FakeClock) -> None:
    seen: list[Transition] = []
    c = Circuit(
        "kb",
        CircuitBreaker(break_duration=1.0),
        name="kb",
        kind="tool",
        clock=clock,
        listener=lambda _, t: seen.append(t),
    )
    c.open()
    clock.advance(3600)
    with pytest.raises(CircuitOpenError) as caught:
        c.acquire()
    assert caught.value.retry_in is None
    assert c.snapshot().forced_open is True
    c.close()
    assert c.acquire()[0].probe is False
    assert [(t.event, t.manual) for t in seen] == [("circuit_opened", True), ("circuit_closed", True)]


def test_reset_zeroes_totals(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=2)
    fail(c)
    succeed(c)
    c.reset()
    snap = c.snapshot()
    assert (snap.successes, snap.failures, snap.rejections, snap.state) == (0, 0, 0, CircuitState.CLOSED)


def test_outcome_of_a_call_started_before_a_transition_is_ignored(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=1, break_duration=5.0)
    slow, _ = c.acquire()
    fail(c)  # opens
    clock.advance(5.0)
    probe, _ = c.acquire()
    c.record_success(probe)  # closes
    assert c.record_failure(slow) is None  # a stale failure must not re-open it
    assert c.state is CircuitState.CLOSED
    assert c.snapshot().failures == 2  # but it still counts in the totals


def test_probe_without_verdict_frees_the_slot(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=1, break_duration=5.0)
    fail(c)
    clock.advance(5.0)
    probe, _ = c.acquire()
    c.release(probe)
    assert c.state is CircuitState.HALF_OPEN
    second, transition = c.acquire()
    assert second.probe
    assert transition is None


def test_external_outcomes_open_but_never_close(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=2, break_duration=5.0)
    c.record_outcome(False)
    assert c.record_outcome(False) is not None
    clock.advance(5.0)
    c.acquire()  # half-open, probe in flight
    assert c.record_outcome(True) is None
    assert c.state is CircuitState.HALF_OPEN


def test_snapshot_reports_times_as_unix_timestamps(clock: FakeClock) -> None:
    import time

    c = make_circuit(clock, failure_threshold=1, break_duration=20.0)
    fail(c)
    clock.advance(5.0)
    snap = c.snapshot()
    assert snap.opened_at is not None
    assert snap.next_probe_at is not None
    assert snap.opened_at == pytest.approx(time.time() - 5.0, abs=1.0)
    assert snap.next_probe_at - snap.opened_at == pytest.approx(20.0)
    as_dict = snap.to_dict()
    assert as_dict["state"] == "open"
    assert as_dict["key"] == "search"
    assert as_dict["failures"] == 1


# -- through the pipeline -----------------------------------------------------------------------


def opened_pipeline(make: Any, clock: FakeClock) -> Any:
    pipeline = make(Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=1, break_duration=5.0)))

    def broken(ctx: AttemptContext) -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        pipeline.call(broken)
    assert pipeline.circuits["search"].state is CircuitState.OPEN
    clock.advance(5.0)
    return pipeline


@pytest.mark.anyio
async def test_exactly_one_probe_with_100_concurrent_tasks(make: Any, clock: FakeClock) -> None:
    pipeline = opened_pipeline(make, clock)
    release = asyncio.Event()
    calls = 0

    async def probe(ctx: AttemptContext) -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "ok"

    tasks = [asyncio.create_task(pipeline.acall(probe)) for _ in range(100)]
    for _ in range(100):
        await asyncio.sleep(0)
        if sum(t.done() for t in tasks) == 99:
            break
    assert calls == 1
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results.count("ok") == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 99
    assert calls == 1
    assert pipeline.circuits["search"].state is CircuitState.CLOSED


@pytest.mark.usefixtures("racy")
def test_exactly_one_probe_with_100_concurrent_threads(make: Any, clock: FakeClock) -> None:
    pipeline = opened_pipeline(make, clock)
    clock.yield_thread = True
    release = threading.Event()
    start = threading.Barrier(100)
    lock = threading.Lock()
    calls = 0
    results: list[object] = []

    def probe(ctx: AttemptContext) -> str:
        nonlocal calls
        with lock:
            calls += 1
        release.wait(10)
        return "ok"

    def caller() -> None:
        start.wait()
        try:
            outcome: object = pipeline.call(probe)
        except CircuitOpenError as exc:
            outcome = exc
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=caller) for _ in range(100)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the 99 rejections return while the probe is held
        with lock:
            if len(results) == 99:
                break
        time.sleep(0.005)
    release.set()
    for t in threads:
        t.join(10)
    assert calls == 1
    assert results.count("ok") == 1
    assert sum(isinstance(r, CircuitOpenError) for r in results) == 99
    assert pipeline.circuits["search"].state is CircuitState.CLOSED


@pytest.mark.parametrize(
    "breaker",
    [
        CircuitBreaker(failure_threshold=10**9),
        CircuitBreaker(failure_ratio=1.0, minimum_calls=10**9, window=60.0),
    ],
    ids=["consecutive", "ratio"],
)
@pytest.mark.usefixtures("racy")
def test_no_lost_updates_with_16_threads(make: Any, breaker: CircuitBreaker) -> None:
    pipeline = make(Policy(timeout=None, breaker=breaker))
    per_thread = 400
    start = threading.Barrier(16)

    def ok(ctx: AttemptContext) -> int:
        return 1

    def broken(ctx: AttemptContext) -> int:
        raise ConnectionError

    def hammer() -> None:
        start.wait()
        for i in range(per_thread):
            try:
                pipeline.call(ok if i % 2 else broken)
            except ConnectionError:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = circuit("search").snapshot()  # type: ignore[union-attr]
    assert (snap.successes, snap.failures) == (16 * per_thread // 2, 16 * per_thread // 2)
    if breaker.mode == "ratio":
        assert (snap.window_calls, snap.window_failures) == (16 * per_thread, 16 * per_thread // 2)


@pytest.mark.usefixtures("racy")
def test_no_lost_consecutive_failures_with_16_threads(clock: FakeClock) -> None:
    c = make_circuit(clock, failure_threshold=10**9)
    start = threading.Barrier(16)

    def hammer() -> None:
        start.wait()
        for _ in range(1000):
            fail(c)

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = c.snapshot()
    assert (snap.consecutive_failures, snap.failures) == (16_000, 16_000)


@pytest.mark.anyio
async def test_cancellation_is_never_counted(make: Any, clock: FakeClock) -> None:
    pipeline = make(Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=1, break_duration=5.0)))
    started = asyncio.Event()

    async def hang(ctx: AttemptContext) -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(pipeline.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    snap = circuits()[0]
    assert (snap.state, snap.failures, snap.consecutive_failures) == (CircuitState.CLOSED, 0, 0)


@pytest.mark.anyio
async def test_cancelled_probe_lets_the_next_caller_probe(make: Any, clock: FakeClock) -> None:
    pipeline = opened_pipeline(make, clock)
    started = asyncio.Event()

    async def hang(ctx: AttemptContext) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(pipeline.acall(hang))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def ok(ctx: AttemptContext) -> str:
        return "ok"

    assert await pipeline.acall(ok) == "ok"
    assert pipeline.circuits["search"].state is CircuitState.CLOSED


def test_keyboard_interrupt_is_not_counted(make: Any) -> None:
    pipeline = make(Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=1)))

    def interrupted(ctx: AttemptContext) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.call(interrupted)
    assert circuits()[0].failures == 0


def test_validation_errors_do_not_count(make: Any) -> None:
    pipeline = make(Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=2)))

    def invalid(ctx: AttemptContext) -> None:
        raise ValueError("bad arguments")

    for _ in range(5):
        with pytest.raises(ValueError, match="bad arguments"):
            pipeline.call(invalid)
    assert circuits()[0].state is CircuitState.CLOSED


def test_a_hang_cut_by_the_total_deadline_opens_the_circuit(make: Any) -> None:
    # Policy's default is a total deadline and no attempt timeout: the deadline is what cuts a hang.
    policy = Policy(
        timeout=0.05,
        retry=Retry(attempts=3, backoff=0.0, max_delay=0.0),
        breaker=CircuitBreaker(failure_threshold=1),
    )
    pipeline = make(policy, clock=time.monotonic)
    release = threading.Event()
    made = 0

    def hang(ctx: AttemptContext) -> None:
        nonlocal made
        made += 1
        release.wait(5)

    try:
        with pytest.raises(ToolTimeoutError) as caught:
            pipeline.call(hang)
        assert caught.value.scope == "total"
        with pytest.raises(CircuitOpenError):
            pipeline.call(hang)
    finally:
        release.set()
    assert made == 1  # counted, but not retried: the deadline is spent
    assert circuits()[0].failures == 1


@pytest.mark.anyio
async def test_an_async_hang_cut_by_the_total_deadline_opens_the_circuit(make: Any) -> None:
    pipeline = make(Policy(timeout=0.05, breaker=CircuitBreaker(failure_threshold=1)), clock=time.monotonic)

    async def hang(ctx: AttemptContext) -> None:
        await asyncio.sleep(30)

    with pytest.raises(ToolTimeoutError) as caught:
        await pipeline.acall(hang)
    assert caught.value.scope == "total"
    assert pipeline.circuits["search"].state is CircuitState.OPEN


def test_llm_circuits_are_keyed_per_provider_and_model(make: Any) -> None:
    policy = Policy(breaker=CircuitBreaker(), fallback_models=["gpt-4o-mini"])
    pipeline = make(policy, name="gpt-4o", kind="llm", provider="openai")
    assert {k: c.key for k, c in pipeline.circuits.items()} == {
        "gpt-4o": "openai:gpt-4o",
        "gpt-4o-mini": "openai:gpt-4o-mini",
    }
    again = make(Policy(breaker=CircuitBreaker()), name="gpt-4o-mini", kind="llm", provider="openai")
    assert again.circuits["gpt-4o-mini"] is pipeline.circuits["gpt-4o-mini"]
    shared = make(Policy(breaker=CircuitBreaker()), name="lookup", breaker_key="kb-backend")
    assert shared.circuits["lookup"].key == "kb-backend"
    assert [s.key for s in circuits()] == ["kb-backend", "openai:gpt-4o", "openai:gpt-4o-mini"]
