"""Iterators whose work runs inside an operation's context, one item at a time.

A framework run that is consumed as a stream (``graph.stream()``, ``chat_model.stream()``) does
its work inside each ``next()``: the nodes, model calls and tools of a step run then, in the
consumer's context. Attaching the run's context once, at the first item, and detaching it at the
last would leak it into the consumer's own code between items and forever after a ``break``;
attaching and detaching around every ``next()`` keeps it exactly where the run's work is (and
in the threads and tasks the framework starts from there, which copy the context).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol, TypeVar

__all__ = ["Steps", "async_steps", "sync_steps"]

T = TypeVar("T")


class Steps(Protocol):
    """An operation driven by an iterator. None of these may raise."""

    def enter(self) -> object:
        """Make the operation current (starting it on the first call); return what :meth:`leave` needs."""

    def leave(self, token: object) -> None: ...

    def item(self, item: Any) -> None:
        """One item the iterator produced."""

    def end(self, error: BaseException | None) -> None:
        """Once: exhausted (``None``), failed, or closed by the consumer (``GeneratorExit``)."""


def sync_steps(iterator: Iterator[T], steps: Steps) -> Iterator[T]:
    """Yield what ``iterator`` yields, running each step inside ``steps``; raise what it raises."""
    error: BaseException | None = None
    try:
        while True:
            token = steps.enter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            finally:
                steps.leave(token)
            steps.item(item)
            yield item
    except BaseException as exc:  # GeneratorExit: the consumer stopped early (break, close, GC)
        error = exc
        raise
    finally:
        close = getattr(iterator, "close", None)
        if error is not None and close is not None:
            # The framework's own clean-up (cancelling its tasks) belongs to the run too.
            token = steps.enter()
            try:
                close()
            finally:
                steps.leave(token)
                steps.end(error)
        else:
            steps.end(error)


async def async_steps(iterator: AsyncIterator[T], steps: Steps) -> AsyncIterator[T]:
    """:func:`sync_steps` for an async iterator (``aclose()`` when the consumer stops)."""
    error: BaseException | None = None
    try:
        while True:
            token = steps.enter()
            try:
                item = await iterator.__anext__()
            except StopAsyncIteration:
                return
            finally:
                steps.leave(token)
            steps.item(item)
            yield item
    except BaseException as exc:  # GeneratorExit, CancelledError
        error = exc
        raise
    finally:
        aclose = getattr(iterator, "aclose", None)
        if error is not None and aclose is not None:
            token = steps.enter()
            try:
                await aclose()
            finally:
                steps.leave(token)
                steps.end(error)
        else:
            steps.end(error)
