"""Running one attempt under a time limit.

Async attempts run in the caller's task and are *cancelled* when the limit passes, so they stop
at their next ``await``. Sync attempts cannot be interrupted in Python: they run in a daemon
worker thread (with a copy of the caller's contextvars, so spans started inside still have the
caller's span as parent) and the caller stops *waiting* when the limit passes. The abandoned
worker keeps running until the callable returns on its own; its result or exception is discarded.
A tool that hangs forever therefore holds one thread per timed-out call: give such tools their
own socket or client timeouts too. Thread-local state of the caller (not contextvars) is not
visible inside.

Workers are reused: starting a thread costs ~100 µs, several times everything else a policy does
per call. A finished worker waits for the next attempt; at most ``_MAX_IDLE`` idle workers are
kept, and a busy (or hung) worker is never handed a second attempt.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from agentwatch._internal import at_fork_in_child

__all__ = ["run_async_with_timeout", "run_sync_with_timeout"]

T = TypeVar("T")

_MAX_IDLE = 16


class _Worker:
    """A daemon thread running one attempt at a time, handed over through its own inbox."""

    __slots__ = ("inbox",)

    def __init__(self, name: str) -> None:
        self.inbox: queue.SimpleQueue[tuple[Callable[[], None], str]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        current = threading.current_thread()
        while True:
            job, name = self.inbox.get()
            # Named after the attempt's tool, so a thread dump of a hung call says which tool it is.
            current.name = name
            job()
            # An idle worker must not keep the last attempt alive: its copied context (the span),
            # its arguments and its result are garbage once the caller has them.
            del job
            if not _release(self):
                return


_idle: list[_Worker] = []
_idle_lock = threading.Lock()


@at_fork_in_child
def _forget_workers() -> None:
    # The idle workers' threads do not exist in a forked child: a job handed to one would never
    # run, and the attempt would wait out its whole timeout.
    global _idle, _idle_lock
    _idle = []
    _idle_lock = threading.Lock()


def _release(worker: _Worker) -> bool:
    with _idle_lock:
        if len(_idle) >= _MAX_IDLE:
            return False
        _idle.append(worker)
        return True


def _dispatch(job: Callable[[], None], thread_name: str) -> None:
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker(thread_name)
    worker.inbox.put((job, thread_name))


class _Outcome(Generic[T]):
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.value: T | None = None


def run_sync_with_timeout(
    fn: Callable[[], T],
    timeout: float,
    on_timeout: Callable[[], BaseException],
    *,
    thread_name: str,
    on_done: Callable[[], object] | None = None,
) -> T:
    """Return ``fn()`` run in a worker thread, or raise ``on_timeout()`` after ``timeout`` seconds.

    ``on_done`` is called exactly once, when ``fn`` has really finished (or could not be started):
    after a timeout that is later than this function returns, in the worker thread.
    """
    outcome: _Outcome[T] = _Outcome()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            outcome.value = context.run(fn)
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting caller unchanged
            outcome.error = exc
        finally:
            try:
                # Before waking the caller, so that what on_done frees is free when the call returns.
                if on_done is not None:
                    on_done()
            finally:
                outcome.done.set()

    try:
        _dispatch(work, thread_name)
    except BaseException:
        # No worker will run the attempt, so none will call on_done.
        if on_done is not None:
            on_done()
        raise
    if not outcome.done.wait(timeout):
        raise on_timeout()
    if outcome.error is not None:
        error, outcome.error = outcome.error, None
        raise error
    return outcome.value  # type: ignore[return-value]


async def _run_with_cancel_timer(
    make: Callable[[], Awaitable[T]], timeout: float, on_timeout: Callable[[], BaseException]
) -> T:
    """The Python 3.10 path: cancel the current task from a timer.

    Without ``Task.uncancel`` (3.11) an external cancellation landing in the same loop iteration
    as the timer is reported as a timeout rather than a cancellation.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("an attempt timeout needs a running asyncio task")
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await make()
    except asyncio.CancelledError:
        if fired:
            raise on_timeout() from None
        raise
    finally:
        handle.cancel()


if sys.version_info >= (3, 11):

    async def run_async_with_timeout(
        make: Callable[[], Awaitable[T]], timeout: float, on_timeout: Callable[[], BaseException]
    ) -> T:
        """Await ``make()`` in the current task; cancel it and raise ``on_timeout()`` after ``timeout`` s."""
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await make()
        except TimeoutError:
            if scope.expired():
                raise on_timeout() from None
            raise

else:
    run_async_with_timeout = _run_with_cancel_timer
