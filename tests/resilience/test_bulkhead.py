"""Bulkhead: the (N+1)th concurrent call is rejected, or queued when a queue is configured."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.resilience import (
    AttemptContext,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitState,
    Policy,
    ToolTimeoutError,
)
from agentwatch.resilience._bulkhead import BulkheadGate
from resilience._support import FakeClock, events
from support import Signals


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def run_blocked(
    pipeline: Any, count: int, release: threading.Event
) -> tuple[list[threading.Thread], threading.Barrier]:
    """Start ``count`` calls that hold their slot until ``release`` is set."""
    inside = threading.Barrier(count + 1)

    def blocked(ctx: AttemptContext) -> str:
        inside.wait(5)
        release.wait(5)
        return "done"

    threads = [threading.Thread(target=pipeline.call, args=(blocked,)) for _ in range(count)]
    for t in threads:
        t.start()
    inside.wait(5)
    return threads, inside


def test_the_extra_sync_call_is_rejected_at_once(
    make: Any, signals: Signals, release: threading.Event
) -> None:
    pipeline = make(Policy(timeout=None, bulkhead=Bulkhead(max_concurrent=3)))
    threads, _ = run_blocked(pipeline, 3, release)
    calls = 0

    def extra(ctx: AttemptContext) -> None:
        nonlocal calls
        calls += 1

    with (
        signals.tracer_provider.get_tracer("t").start_as_current_span("call") as span,
        pytest.raises(BulkheadFullError) as caught,
    ):
        pipeline.call(extra, span=span)
    assert calls == 0
    error = caught.value
    assert (error.name, error.max_concurrent, error.max_queue, error.category.value) == (
        "search",
        3,
        0,
        "rate_limit",
    )
    assert "3 concurrent calls" in str(error)
    span_data = signals.only_span()
    assert span_data.attributes is not None
    assert span_data.attributes["error.type"] == "bulkhead_full"
    assert len(events(span_data, "bulkhead_rejected")) == 1
    release.set()
    for t in threads:
        t.join(5)
    assert pipeline.call(lambda ctx: "free again") == "free again"


@pytest.mark.anyio
async def test_the_extra_async_call_is_rejected_at_once(make: Any) -> None:
    pipeline = make(Policy(timeout=None, bulkhead=Bulkhead(max_concurrent=2)))
    gate = asyncio.Event()
    inside = 0

    async def blocked(ctx: AttemptContext) -> str:
        nonlocal inside
        inside += 1
        await gate.wait()
        return "done"

    held = [asyncio.create_task(pipeline.acall(blocked)) for _ in range(2)]
    while inside < 2:
        await asyncio.sleep(0)
    with pytest.raises(BulkheadFullError):
        await pipeline.acall(blocked)
    gate.set()
    assert await asyncio.gather(*held) == ["done", "done"]
    assert await pipeline.acall(blocked) == "done"


def test_queued_sync_call_gets_the_next_free_slot(make: Any, release: threading.Event) -> None:
    pipeline = make(
        Policy(timeout=None, bulkhead=Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=10.0))
    )
    threads, _ = run_blocked(pipeline, 1, release)
    results: list[object] = []
    waiter = threading.Thread(target=lambda: results.append(pipeline.call(lambda ctx: "queued")))
    waiter.start()
    while pipeline._bulkhead.queued == 0:
        threading.Event().wait(0.001)
    with pytest.raises(BulkheadFullError):  # the queue holds one
        pipeline.call(lambda ctx: "third")
    release.set()
    waiter.join(5)
    for t in threads:
        t.join(5)
    assert results == ["queued"]
    assert pipeline._bulkhead.active == 0


def test_queue_timeout_rejects(make: Any, release: threading.Event) -> None:
    pipeline = make(
        Policy(timeout=None, bulkhead=Bulkhead(max_concurrent=1, max_queue=5, queue_timeout=0.05))
    )
    run_blocked(pipeline, 1, release)
    with pytest.raises(BulkheadFullError):
        pipeline.call(lambda ctx: "late")
    assert pipeline._bulkhead.queued == 0


@pytest.mark.anyio
async def test_async_queue_and_cancellation_do_not_leak_slots() -> None:
    gate = BulkheadGate(Bulkhead(max_concurrent=1, max_queue=2, queue_timeout=10.0), name="t", kind="tool")
    await gate.aenter()
    first = asyncio.create_task(gate.aenter())
    second = asyncio.create_task(gate.aenter())
    await asyncio.sleep(0.01)
    assert gate.queued == 2
    first.cancel()  # a cancelled waiter leaves the queue
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.leave()  # the slot goes to the remaining waiter
    await asyncio.wait_for(second, 5)
    assert (gate.active, gate.queued) == (1, 0)
    gate.leave()
    assert gate.active == 0


@pytest.mark.anyio
async def test_slot_handed_from_a_thread_to_a_task() -> None:
    gate = BulkheadGate(Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=10.0), name="t", kind="tool")
    gate.enter()
    waiting = asyncio.create_task(gate.aenter())
    await asyncio.sleep(0.01)
    threading.Thread(target=gate.leave).start()
    await asyncio.wait_for(waiting, 5)
    assert gate.active == 1


def wait_until(condition: Any) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.001)


def queue_behind_a_held_slot(
    pipeline: Any, clock: FakeClock, queued_for: float, attempt: Any
) -> list[object]:
    """Call ``attempt`` while another call holds the only slot for ``queued_for`` (fake) seconds;
    return what the queued call returned or raised."""
    release = threading.Event()
    threads, _ = run_blocked(pipeline, 1, release)
    outcome: list[object] = []

    def queued() -> None:
        try:
            outcome.append(pipeline.call(attempt))
        except Exception as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=queued)
    waiter.start()
    wait_until(lambda: pipeline._bulkhead.queued == 1)
    clock.advance(queued_for)
    release.set()
    for t in [*threads, waiter]:
        t.join(5)
    return outcome


def test_time_queued_in_the_bulkhead_comes_off_the_deadline(make: Any, clock: FakeClock) -> None:
    pipeline = make(
        Policy(timeout=10.0, bulkhead=Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=10.0))
    )
    contexts: list[AttemptContext] = []
    queue_behind_a_held_slot(pipeline, clock, 4.0, contexts.append)
    (ctx,) = contexts
    # The SDK's timeout of an LLM attempt is the attempt_timeout: it must not outlast the deadline.
    assert (ctx.deadline_remaining, ctx.attempt_timeout) == (6.0, 6.0)


def test_a_deadline_spent_in_the_queue_times_out_and_frees_the_slot(make: Any, clock: FakeClock) -> None:
    pipeline = make(
        Policy(
            timeout=3.0,
            breaker=CircuitBreaker(failure_threshold=1),
            bulkhead=Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=10.0),
        )
    )
    called: list[AttemptContext] = []
    (error,) = queue_behind_a_held_slot(pipeline, clock, 5.0, called.append)
    assert isinstance(error, ToolTimeoutError)
    assert (error.scope, called) == ("total", [])
    assert pipeline._bulkhead.active == 0
    # The dependency was never called, so its circuit learnt nothing.
    assert pipeline.circuits["search"].state is CircuitState.CLOSED
    assert pipeline.call(lambda ctx: "free again") == "free again"


@pytest.mark.anyio
async def test_async_time_queued_in_the_bulkhead_comes_off_the_deadline(make: Any, clock: FakeClock) -> None:
    pipeline = make(
        Policy(timeout=10.0, bulkhead=Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=10.0))
    )
    release = asyncio.Event()

    async def held(ctx: AttemptContext) -> None:
        await release.wait()

    async def record(ctx: AttemptContext) -> AttemptContext:
        return ctx

    holder = asyncio.create_task(pipeline.acall(held))
    while pipeline._bulkhead.active == 0:
        await asyncio.sleep(0)
    queued = asyncio.create_task(pipeline.acall(record))
    while pipeline._bulkhead.queued == 0:
        await asyncio.sleep(0)
    clock.advance(4.0)
    release.set()
    await holder
    ctx = await queued
    assert (ctx.deadline_remaining, ctx.attempt_timeout) == (6.0, 6.0)


def test_a_timed_out_sync_attempt_keeps_its_slot_until_it_returns(make: Any) -> None:
    # Real time: the attempt's worker waits on it.
    pipeline = make(Policy(timeout=0.05, bulkhead=Bulkhead(max_concurrent=1)), clock=time.monotonic)
    release = threading.Event()
    running = 0

    def hang(ctx: AttemptContext) -> None:
        nonlocal running
        running += 1
        release.wait(5)

    try:
        with pytest.raises(ToolTimeoutError):
            pipeline.call(hang)
        # The first body still runs in its abandoned thread, so there is no room for a second.
        with pytest.raises(BulkheadFullError):
            pipeline.call(hang)
        assert (running, pipeline._bulkhead.active) == (1, 1)
    finally:
        release.set()
    wait_until(lambda: pipeline._bulkhead.active == 0)
    assert pipeline.call(lambda ctx: "free again") == "free again"
    assert pipeline._bulkhead.active == 0


class _Stop(BaseException):
    pass


def test_a_threaded_attempt_gives_its_slot_back_exactly_once(make: Any) -> None:
    pipeline = make(Policy(timeout=5.0, bulkhead=Bulkhead(max_concurrent=1)), clock=time.monotonic)

    def fail(ctx: AttemptContext) -> None:
        raise ConnectionError("down")

    def stop(ctx: AttemptContext) -> None:
        raise _Stop

    # Back to back with one slot: the slot must be free when each call returns, and a second
    # release would show as a negative count.
    for _ in range(20):
        assert pipeline.call(lambda ctx: "ok") == "ok"
        with pytest.raises(ConnectionError):
            pipeline.call(fail)
        with pytest.raises(_Stop):
            pipeline.call(stop)
    assert pipeline._bulkhead.active == 0
