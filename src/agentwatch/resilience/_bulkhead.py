"""A concurrency cap shared by sync callers (threads) and async callers (any event loop).

The count lives under a ``threading.Lock`` held only to update it. A leaving caller hands its slot
straight to the oldest queued waiter (thread or task), so a newcomer cannot overtake the queue
and a woken waiter never finds the slot gone.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
from collections.abc import Callable

from agentwatch._internal import reset_in_forked_child
from agentwatch.resilience._config import Bulkhead, seconds
from agentwatch.resilience._errors import BulkheadFullError, CallKind

__all__ = ["BulkheadGate"]


class _Waiter:
    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], object]) -> None:
        self.wake = wake
        self.granted = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class BulkheadGate:
    def __init__(self, config: Bulkhead, *, name: str, kind: CallKind) -> None:
        self._name = name
        self._kind: CallKind = kind
        self._limit = config.max_concurrent
        self._queue_limit = config.max_queue
        self._queue_timeout = seconds(config.queue_timeout)
        self._lock = threading.Lock()
        self._active = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        reset_in_forked_child(self, "_lock")

    def _reset_after_fork(self) -> None:
        # In a forked child only the forking thread exists: the slots and queue places of every
        # other thread are free.
        self._active = 0
        self._waiters = collections.deque()

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def _full(self) -> BulkheadFullError:
        return BulkheadFullError(
            name=self._name, kind=self._kind, max_concurrent=self._limit, max_queue=self._queue_limit
        )

    def _wait_limit(self, remaining: float | None) -> float:
        return self._queue_timeout if remaining is None else max(0.0, min(self._queue_timeout, remaining))

    def _admit_or_queue(self) -> bool:
        """Take a free slot (True), or report that the caller must queue (False). Lock held."""
        if self._active < self._limit:
            self._active += 1
            return True
        if len(self._waiters) >= self._queue_limit:
            raise self._full()
        return False

    def enter(self, remaining: float | None = None) -> None:
        """Take a slot, waiting in the queue if there is one; raise ``BulkheadFullError`` otherwise."""
        with self._lock:
            if self._admit_or_queue():
                return
            event = threading.Event()
            waiter = _Waiter(event.set)
            self._waiters.append(waiter)
        event.wait(self._wait_limit(remaining))
        self._leave_queue(waiter)

    async def aenter(self, remaining: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._admit_or_queue():
                return
            future: asyncio.Future[None] = loop.create_future()
            waiter = _Waiter(functools.partial(loop.call_soon_threadsafe, _wake, future))
            self._waiters.append(waiter)
        try:
            await asyncio.wait((future,), timeout=self._wait_limit(remaining))
        except BaseException:
            # Cancelled while queued: give back a slot that was handed over meanwhile.
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self.leave()
            raise
        self._leave_queue(waiter)

    def _leave_queue(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter.granted:
                return
            self._waiters.remove(waiter)
        raise self._full()

    def leave(self) -> None:
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
                try:
                    waiter.wake()
                    return
                except RuntimeError:
                    # Its event loop is closed: nobody is left to use the slot; try the next waiter.
                    continue
            # Never below zero: a call that was running in the thread that forked leaves in the
            # child too, after the child's count started afresh.
            if self._active > 0:
                self._active -= 1
