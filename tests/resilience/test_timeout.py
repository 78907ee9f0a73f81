"""Timeouts: hanging sync and async tools return a structured timeout within the deadline."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch.resilience import AttemptContext, Pipeline, Policy, ResilienceTelemetry, ToolTimeoutError
from agentwatch.resilience._timeout import _run_with_cancel_timer
from resilience._support import FakeClock, events
from support import Signals

SLACK = 1.0  # generous: CI machines stall; the point is "returns", not "returns fast"


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets abandoned worker threads finish when the test ends."""
    event = threading.Event()
    yield event
    event.set()


def real_pipeline(policy: Policy, telemetry: ResilienceTelemetry, name: str = "slow_tool") -> Pipeline:
    return Pipeline(policy, name=name, telemetry=telemetry)


def test_hanging_sync_tool_times_out_within_the_deadline(
    telemetry: ResilienceTelemetry, signals: Signals, release: threading.Event
) -> None:
    pipeline = real_pipeline(Policy(timeout=0.3), telemetry)
    tracer = signals.tracer_provider.get_tracer("t")
    started = time.monotonic()
    with (
        tracer.start_as_current_span("execute_tool slow_tool") as span,
        pytest.raises(ToolTimeoutError) as caught,
    ):
        pipeline.call(lambda ctx: release.wait(60), span=span)
    elapsed = time.monotonic() - started
    assert elapsed < 0.3 + SLACK
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert (error.name, error.kind, error.scope, error.timeout, error.category.value) == (
        "slow_tool",
        "tool",
        "total",
        0.3,
        "timeout",
    )
    assert "slow_tool" in str(error)
    assert "0.3 s" in str(error)
    span_data = signals.only_span()
    assert span_data.attributes is not None
    assert span_data.attributes["error.type"] == "timeout"
    (timeout,) = events(span_data, "timeout")
    assert timeout["agentwatch.timeout.scope"] == "total"


def test_the_default_deadline_runs_sync_attempts_in_the_callers_thread(
    telemetry: ResilienceTelemetry,
) -> None:
    # Policy()'s own 30 s deadline costs no thread hand-off; a timeout the policy sets does.
    threads: list[threading.Thread] = []

    def attempt(ctx: AttemptContext) -> str:
        threads.append(threading.current_thread())
        assert ctx.attempt_timeout is not None and 0 < ctx.attempt_timeout <= 30.0
        return "ok"

    assert real_pipeline(Policy(), telemetry).call(attempt) == "ok"
    assert real_pipeline(Policy(timeout=30.0), telemetry, "explicit").call(attempt) == "ok"
    assert real_pipeline(Policy(attempt_timeout=5.0), telemetry, "per_attempt").call(attempt) == "ok"
    assert threads[0] is threading.current_thread()
    assert threads[1] is not threading.current_thread()
    assert threads[2] is not threading.current_thread()
    # The default survives dataclasses.replace(), an explicit 30 s does not become a default.
    assert type(dataclasses.replace(Policy(), critical=False).timeout) is type(Policy().timeout)
    assert Policy().timeout == 30.0 and repr(Policy()).startswith("Policy(timeout=30.0,")


@pytest.mark.parametrize("raises", [False, True])
def test_an_attempt_that_overruns_the_default_deadline_ends_as_a_timeout(
    telemetry: ResilienceTelemetry, signals: Signals, raises: bool
) -> None:
    clock = FakeClock()
    pipeline = Pipeline(Policy(), name="slow_tool", telemetry=telemetry, clock=clock, sleep=clock.sleep)

    def attempt(ctx: AttemptContext) -> str:
        clock.advance(31.0)  # the attempt outlives the 30 s deadline, in the caller's thread
        if raises:
            raise ConnectionError("late failure")
        return "late"

    tracer = signals.tracer_provider.get_tracer("t")
    with (
        tracer.start_as_current_span("execute_tool slow_tool") as span,
        pytest.raises(ToolTimeoutError) as caught,
    ):
        pipeline.call(attempt, span=span)
    assert (caught.value.scope, caught.value.timeout) == ("total", 30.0)
    assert caught.value.__cause__ is None
    (timeout,) = events(signals.only_span(), "timeout")
    assert timeout["agentwatch.timeout.scope"] == "total"


@pytest.mark.anyio
async def test_hanging_async_tool_is_cancelled_within_the_deadline(telemetry: ResilienceTelemetry) -> None:
    cancelled = asyncio.Event()

    async def hang(ctx: AttemptContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    pipeline = real_pipeline(Policy(timeout=5.0, attempt_timeout=0.2), telemetry)
    started = time.monotonic()
    with pytest.raises(ToolTimeoutError) as caught:
        await pipeline.acall(hang)
    assert time.monotonic() - started < 0.2 + SLACK
    assert caught.value.scope == "attempt"
    assert caught.value.timeout == 0.2
    assert cancelled.is_set()


@pytest.mark.anyio
async def test_async_tool_raising_its_own_timeout_error_keeps_it(telemetry: ResilienceTelemetry) -> None:
    own = TimeoutError("the tool's own")

    async def tool(ctx: AttemptContext) -> None:
        raise own

    with pytest.raises(TimeoutError) as caught:
        await real_pipeline(Policy(timeout=5.0), telemetry).acall(tool)
    assert caught.value is own


def test_sync_errors_cross_the_worker_thread_unchanged(telemetry: ResilienceTelemetry) -> None:
    own = KeyError("city")

    def tool(ctx: AttemptContext) -> None:
        raise own

    with pytest.raises(KeyError) as caught:
        real_pipeline(Policy(timeout=5.0), telemetry).call(tool)
    assert caught.value is own


def test_sync_attempt_sees_the_callers_context(telemetry: ResilienceTelemetry, signals: Signals) -> None:
    tracer = signals.tracer_provider.get_tracer("t")
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("caller")
    seen: list[tuple[str, str]] = []

    def tool(ctx: AttemptContext) -> str:
        with tracer.start_as_current_span("inner"):
            seen.append((marker.get(), threading.current_thread().name))
        return "done"

    with tracer.start_as_current_span("outer"):
        assert real_pipeline(Policy(timeout=5.0), telemetry).call(tool) == "done"
    inner, outer = signals.spans.get_finished_spans()
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert seen == [("caller", "agentwatch-tool-slow_tool")]


def test_no_timeout_runs_in_the_callers_thread(telemetry: ResilienceTelemetry) -> None:
    names: list[str] = []
    real_pipeline(Policy(timeout=None), telemetry).call(
        lambda ctx: names.append(threading.current_thread().name)
    )
    assert names == [threading.current_thread().name]


def test_attempt_context_reports_the_limits(telemetry: ResilienceTelemetry) -> None:
    contexts: list[AttemptContext] = []
    real_pipeline(Policy(timeout=5.0, attempt_timeout=2.0), telemetry).call(contexts.append)
    (ctx,) = contexts
    assert ctx.attempt == 1
    assert ctx.model is None
    assert ctx.disable_sdk_retries is False
    assert ctx.attempt_timeout == 2.0
    assert ctx.deadline_remaining is not None
    assert 4.0 < ctx.deadline_remaining <= 5.0


@pytest.mark.anyio
async def test_python_310_timer_path(telemetry: ResilienceTelemetry) -> None:
    async def hang() -> None:
        await asyncio.sleep(60)

    async def quick() -> str:
        return "fast"

    error = ToolTimeoutError(name="x", kind="tool", timeout=0.05, scope="attempt")
    with pytest.raises(ToolTimeoutError) as caught:
        await _run_with_cancel_timer(hang, 0.05, lambda: error)
    assert caught.value is error
    assert await _run_with_cancel_timer(quick, 0.05, lambda: error) == "fast"
    await asyncio.sleep(0.1)  # the timer was cancelled: this task is not cancelled later


@pytest.mark.anyio
async def test_python_310_timer_path_lets_external_cancellation_through() -> None:
    async def hang() -> None:
        await asyncio.sleep(60)

    def unused() -> BaseException:
        raise AssertionError("not a timeout")

    task: asyncio.Task[Any] = asyncio.create_task(_run_with_cancel_timer(hang, 30, unused))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_timed_sync_attempts_reuse_idle_workers() -> None:
    from agentwatch.resilience._timeout import run_sync_with_timeout

    idents = {
        run_sync_with_timeout(threading.get_ident, 1.0, TimeoutError, thread_name="t") for _ in range(20)
    }
    # Sequential attempts find the previous worker idle: no thread is started per attempt.
    assert len(idents) == 1
    assert threading.get_ident() not in idents


def test_a_hung_attempt_keeps_its_worker_to_itself() -> None:
    from agentwatch.resilience._timeout import run_sync_with_timeout

    release = threading.Event()
    hung: list[int] = []

    def hang() -> None:
        hung.append(threading.get_ident())
        release.wait(5)

    try:
        with pytest.raises(TimeoutError):
            run_sync_with_timeout(hang, 0.05, TimeoutError, thread_name="hung")
        others = {
            run_sync_with_timeout(threading.get_ident, 1.0, TimeoutError, thread_name="t") for _ in range(5)
        }
        assert hung and hung[0] not in others
    finally:
        release.set()


class _Payload:
    pass


@pytest.mark.parametrize("timed_out", [False, True], ids=["returned", "timed-out"])
def test_an_idle_worker_keeps_nothing_of_its_last_attempt(timed_out: bool) -> None:
    from agentwatch.resilience._timeout import run_sync_with_timeout

    release = threading.Event()
    marker: contextvars.ContextVar[_Payload] = contextvars.ContextVar("marker")
    in_context, argument = _Payload(), _Payload()
    refs = [weakref.ref(in_context), weakref.ref(argument)]

    def tool(argument: _Payload) -> _Payload:
        if timed_out:
            release.wait(5)
        result = _Payload()
        refs.append(weakref.ref(result))
        return result

    def caller(value: _Payload, fn: functools.partial[_Payload]) -> None:
        marker.set(value)
        try:
            run_sync_with_timeout(fn, 0.05 if timed_out else 5.0, TimeoutError, thread_name="t")
        except TimeoutError:
            release.set()

    contextvars.copy_context().run(caller, in_context, functools.partial(tool, argument))
    del in_context, argument
    # The span of the caller's context, the tool's arguments and its result are all garbage now,
    # although the worker that ran them is still alive, waiting for its next attempt.
    deadline = time.monotonic() + 5
    while len(refs) < 3 or any(ref() is not None for ref in refs):
        assert time.monotonic() < deadline, [ref() for ref in refs]
        gc.collect()
        time.sleep(0.01)
