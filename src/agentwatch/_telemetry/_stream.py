"""Observing SDK stream objects so that the call's span ends exactly once.

Exit paths: consumed to the end, ``break`` inside ``with``/``async with``, ``close()``, an
exception in the caller's loop (the caller's ``with`` exits), an error raised by the stream
itself mid-way (status ERROR), and a stream that is simply dropped: a ``weakref.finalize`` ends
the span when it is garbage-collected, with outcome ``abandoned`` and the end time of its last
chunk.

Two ways, chosen per stream class by what ``isinstance`` does (:meth:`SyncStreamProxy.observe`):

* **A proxy** (``wrapt.ObjectProxy`` subclasses below): ``isinstance`` checks and every attribute
  of the SDK stream (``response``, ``until_done`` ...) still work, because ``isinstance`` asks the
  proxy for its ``__class__``.
* **In place** (:class:`_InPlace`), where the stream's class answers ``isinstance`` itself and
  turns proxies away: anthropic 0.x's ``Stream``/``AsyncStream`` have a metaclass whose
  ``__instancecheck__`` is False for anything that is not exactly a ``Stream`` (Python only skips
  it for an exact type match), so ``isinstance(proxy, anthropic.Stream)`` would be False. The
  caller then gets the SDK's very object; its ``_iterator`` (the generator that ``__iter__`` and
  ``__next__`` read) is replaced by an observing generator over it, and its ``close`` by one that
  also ends the call.

Until the first item arrives, each read of a proxied stream runs with the call current: some
streams send their request only then (google-genai's generators, LiteLLM's Anthropic, Gemini...
streams), and that request must carry the call's trace context, and a second instrumented layer
under it must see that it is part of the call (one span: ``_wrappers``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import wrapt

from agentwatch._telemetry._inference import InferenceCall

__all__ = [
    "AsyncStreamManagerProxy",
    "AsyncStreamProxy",
    "IterableStreamProxy",
    "OnEnd",
    "OnItem",
    "SyncGeneratorProxy",
    "SyncStreamManagerProxy",
    "SyncStreamProxy",
]

OnItem = Callable[[InferenceCall, Any], None]
OnEnd = Callable[[InferenceCall, Any], None]
"""(call, the SDK stream): what the stream object itself tells when it ends (LiteLLM's keeps the
usage its provider reported with its chunks), read just before the call ends."""
Limits = tuple[float | None, float | None]
"""A policy's (first_chunk_timeout, idle_timeout) in seconds."""


if TYPE_CHECKING:
    _Proxy = wrapt.ObjectProxy[Any]
else:
    # wrapt 1.x, which the package still supports, cannot subscript ObjectProxy at runtime.
    _Proxy = wrapt.ObjectProxy


def _skip(call: InferenceCall, item: Any) -> None:
    pass


def _read_end(call: InferenceCall, read_end: Callable[[], None] | None) -> None:
    if read_end is not None:
        try:
            read_end()
        except Exception:  # noqa: BLE001 - the stream is the app's; its telemetry is incomplete
            call.fault("reading a stream's end")


def _abandon(call: InferenceCall, read_end: Callable[[], None] | None) -> None:
    _read_end(call, read_end)
    call.end(None, outcome="abandoned", at_last_activity=True)


def _is_timeout(exc: BaseException) -> bool:
    # httpx/httpx2 read timeouts are not builtin TimeoutErrors; match them by class name so
    # neither HTTP library has to be imported.
    return isinstance(exc, TimeoutError) or any("Timeout" in cls.__name__ for cls in type(exc).__mro__)


def _chunk_timeout(call: InferenceCall, limits: Limits, *, sync: bool = False) -> Exception:
    from agentwatch.resilience import ToolTimeoutError

    first, idle = limits
    if call.first_chunk_at is None:
        scope, limit = "first_chunk", first if first is not None else idle
    else:
        scope, limit = "idle", idle if idle is not None else first
    if sync:
        # The SDK's read timeout bounds every read of a sync stream at the larger of the two
        # limits (see instrumentation._policies): report the limit that actually ran out.
        limit = max(t for t in limits if t is not None)
    error = ToolTimeoutError(name=call.request_model or "", kind="llm", timeout=limit or 0.0, scope=scope)  # type: ignore[arg-type]
    # A policy decision like the pipeline's own timeouts: a span event and a point of the events
    # counter (the pipeline has returned the stream by now, so it cannot record this itself).
    try:
        from agentwatch.resilience._telemetry import current_telemetry

        current_telemetry().event(
            call.span,
            "timeout",
            "timeout",
            kind="llm",
            subject=call.request_model or "",
            error_type=error.error_type,
            attributes={"agentwatch.timeout.scope": scope, "agentwatch.timeout.seconds": error.timeout},
        )
    except Exception:  # noqa: BLE001
        call.fault("recording a stream timeout")
    return error


class _Observing:
    """What a stream observer does with each chunk and at the end.

    Shared by the proxies (which keep these attributes on themselves: wrapt's ``_self_`` prefix)
    and :class:`_InPlace`.
    """

    _self_call: InferenceCall
    _self_on_item: OnItem
    _self_limits: Limits | None
    _self_read_end: Callable[[], None] | None
    _self_finalizer: weakref.finalize[[InferenceCall, Callable[[], None] | None], Any]

    def _self_watch(
        self,
        watched: object,
        call: InferenceCall,
        on_item: OnItem,
        limits: Limits | None,
        read_end: Callable[[], None] | None = None,
    ) -> None:
        self._self_call = call
        self._self_on_item = on_item
        self._self_limits = limits
        self._self_read_end = read_end
        # The finalizer must not reference the watched object, or it would keep it alive.
        self._self_finalizer = weakref.finalize(watched, _abandon, call, read_end)

    def _self_end(self, error: BaseException | None, outcome: str) -> None:
        # Only the first end reads the stream's own end (the finalizer is still attached).
        if self._self_finalizer.detach() is not None:
            _read_end(self._self_call, self._self_read_end)
        self._self_call.end(error, outcome=outcome)

    def _self_item(self, item: Any) -> None:
        call = self._self_call
        call.chunk_received()
        try:
            self._self_on_item(call, item)
        except Exception:  # noqa: BLE001 - a chunk we cannot parse is still the app's chunk
            call.fault("reading a stream chunk")
            # What was read so far is kept; a reader whose state may now be inconsistent reads
            # no more of this stream (timing is still measured).
            self._self_on_item = _skip

    def _self_failed(self, exc: BaseException) -> None:
        self._self_end(exc, "error" if isinstance(exc, Exception) else "closed")

    def _self_failed_sync(self, exc: BaseException) -> BaseException | None:
        """End the call for ``exc``, raised by a sync stream; what to raise instead, if anything."""
        limits = self._self_limits
        # agentwatch's own errors (a policy's attempt timeout, an open circuit) stay as raised.
        if limits is not None and _is_timeout(exc) and getattr(exc, "otel_error_type", None) is None:
            # The policy's chunk timeout, enforced by the SDK's read timeout (see _policies).
            timeout = _chunk_timeout(self._self_call, limits, sync=True)
            self._self_failed(timeout)
            return timeout
        self._self_failed(exc)
        return None

    def _self_observe(self, next_item: Callable[[], Any]) -> Any:
        """The next item of a sync stream, observed; ends the call when the stream ends or fails."""
        try:
            item = next_item()
        except StopIteration:
            self._self_end(None, "completed")
            raise
        except BaseException as exc:
            timeout = self._self_failed_sync(exc)
            if timeout is None:
                raise
            raise timeout from exc
        self._self_item(item)
        return item

    async def _self_next_within_limits(self, source: AsyncIterator[Any], limits: Limits) -> Any:
        call = self._self_call
        first, idle = limits
        limit = first if call.first_chunk_at is None else idle
        if limit is None:
            return await source.__anext__()
        try:
            return await _within(source.__anext__(), limit)
        except TimeoutError:
            timeout = _chunk_timeout(call, limits)
        # The HTTP response is abandoned mid-read: close it so the connection is not reused.
        try:
            await self._self_close_sdk_stream()
        except Exception:  # noqa: BLE001
            call.fault("closing a timed-out stream")
        raise timeout

    async def _self_close_sdk_stream(self) -> None:
        raise NotImplementedError


class _InPlace(_Observing):
    """Observes an SDK stream object from inside it (see the module docstring).

    Holds the SDK's own ``close`` of the stream (a reference to the stream, in the cycle the
    stream's generator already makes with it: anthropic 0.x streams are collected by the cyclic
    garbage collector, with or without agentwatch). Raises where the stream keeps no iterator of
    its own in its ``__dict__`` for its ``__iter__``/``__next__`` to read: it cannot be observed
    in place, and nothing has been changed. Nothing reads such a stream's own end (``OnEnd``):
    the finalizer could not hold the stream it would read.
    """

    def __init__(
        self, stream: Any, call: InferenceCall, on_item: OnItem, limits: Limits | None, *, sync: bool
    ) -> None:
        state = vars(stream)
        source = state.get("_iterator")
        self._self_close: Callable[..., Any] = stream.close
        items: Iterator[Any] | AsyncIterator[Any]
        if sync and isinstance(source, Iterator):
            items, close = _sync_items(self, source), _sync_close(self)
        elif not sync and isinstance(source, AsyncIterator):
            items, close = _async_items(self, source), _async_close(self)
        else:
            raise TypeError(f"{type(stream).__qualname__} cannot be observed in place")
        self._self_watch(stream, call, on_item, limits)
        state["_iterator"] = items
        # Also what the stream's __exit__/__aexit__ calls: self.close().
        state["close"] = functools.wraps(self._self_close)(close)

    async def _self_close_sdk_stream(self) -> None:
        await self._self_close()


def _sync_close(observer: _InPlace) -> Callable[..., Any]:
    sdk_close = observer._self_close

    def close(*args: Any, **kwargs: Any) -> Any:
        try:
            return sdk_close(*args, **kwargs)
        finally:
            observer._self_end(None, "closed")

    return close


def _async_close(observer: _InPlace) -> Callable[..., Any]:
    sdk_close = observer._self_close

    async def close(*args: Any, **kwargs: Any) -> Any:
        try:
            return await sdk_close(*args, **kwargs)
        finally:
            observer._self_end(None, "closed")

    return close


def _sync_items(observer: _InPlace, source: Iterator[Any]) -> Iterator[Any]:
    """``source`` observed: the in-place counterpart of :meth:`SyncStreamProxy.__next__`."""
    # The proxies' one observed step; a GeneratorExit at ``yield`` (the dropped stream closed by
    # the garbage collector) passes through, and the stream's finalizer ends the call.
    while True:
        try:
            item = observer._self_observe(source.__next__)
        except StopIteration:
            return
        yield item


async def _async_items(observer: _InPlace, source: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``source`` observed: the in-place counterpart of :meth:`AsyncStreamProxy.__anext__`."""
    limits = observer._self_limits
    try:
        if limits is None:
            async for item in source:
                observer._self_item(item)
                yield item
        else:
            while True:
                try:
                    item = await observer._self_next_within_limits(source, limits)
                except StopAsyncIteration:
                    break
                observer._self_item(item)
                yield item
    except GeneratorExit:
        raise
    except BaseException as exc:
        observer._self_failed(exc)
        raise
    observer._self_end(None, "completed")


# Stream class -> whether a proxy of one of its streams passes ``isinstance`` for it.
_PROXY_PASSES: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _proxy_passes_isinstance(stream: Any) -> bool:
    """Asked of the class itself, once per class: no SDK versions to know of."""
    cls = type(stream)
    passes = _PROXY_PASSES.get(cls)
    if passes is None:
        try:
            passes = isinstance(_Proxy(stream), cls)
        except Exception:  # noqa: BLE001 - a class whose check fails would fail the caller's too
            passes = False
        _PROXY_PASSES[cls] = passes
    return passes


class _StreamProxyBase(_Observing, _Proxy):
    def __init__(
        self,
        wrapped: Any,
        call: InferenceCall,
        on_item: OnItem,
        limits: Limits | None = None,
        on_end: OnEnd | None = None,
    ) -> None:
        super().__init__(wrapped)
        # The stream, not the proxy, is what the end reader holds: the proxy's finalizer runs.
        read_end = None if on_end is None else functools.partial(on_end, call, wrapped)
        self._self_watch(self, call, on_item, limits, read_end)

    _sync = True

    @classmethod
    def observe(
        cls,
        stream: Any,
        call: InferenceCall,
        on_item: OnItem,
        limits: Limits | None = None,
        on_end: OnEnd | None = None,
    ) -> tuple[Any, _Observing]:
        """Observe the SDK stream ``stream`` for ``call``: (what to hand the caller, its observer).

        A proxy of ``stream`` where a proxy passes ``isinstance`` for its class; otherwise
        ``stream`` itself, observed in place. Raises where neither can be done (the caller then
        hands out ``stream`` unobserved and ends the call).
        """
        if _proxy_passes_isinstance(stream):
            proxy = cls(stream, call, on_item, limits, on_end)
            return proxy, proxy
        return stream, _InPlace(stream, call, on_item, limits, sync=cls._sync)

    async def _self_close_sdk_stream(self) -> None:
        wrapped = self.__wrapped__
        # aclose() where the stream has it: async generators (google-genai) have only that, and
        # LiteLLM's async streams also have a sync close() that cannot await the body.
        closed = wrapped.aclose() if hasattr(wrapped, "aclose") else wrapped.close()
        if inspect.isawaitable(closed):
            await closed


class SyncStreamProxy(_StreamProxyBase):
    def __iter__(self) -> SyncStreamProxy:
        return self

    def _self_pull(self) -> Any:
        """The stream's next item, unobserved (a subclass may make the first one differently)."""
        return self.__wrapped__.__next__()

    def __next__(self) -> Any:
        call = self._self_call
        if call.first_chunk_at is not None:
            return self._self_observe(self._self_pull)
        tokens = call.enter()  # until the first item: see the module docstring
        try:
            return self._self_observe(self._self_pull)
        finally:
            call.leave(tokens)

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_end(None, "closed")

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(None, "closed")


_OPENED: Any = object()


class SyncGeneratorProxy(SyncStreamProxy):
    """A sync stream whose request is sent at its first ``next()``: a generator (google-genai).

    Without agentwatch the request is made when the caller starts iterating, so it is made then
    here too, with the call's span current as for every proxied stream's first read (trace
    headers, the SDK's own retries inside the span). ``opener``, when given, makes that first step instead: it returns the first item (or
    raises ``StopIteration``) and may replace ``__wrapped__`` with the generator that made it (a
    policy's attempts each open a generator of their own).
    """

    def __init__(
        self,
        wrapped: Any,
        call: InferenceCall,
        on_item: OnItem,
        limits: Limits | None = None,
        opener: Callable[[SyncGeneratorProxy], Any] | None = None,
    ) -> None:
        super().__init__(wrapped, call, on_item, limits)
        self._self_opener = opener

    def _self_pull(self) -> Any:
        opener = self._self_opener
        if opener is _OPENED:
            return self.__wrapped__.__next__()
        self._self_opener = _OPENED
        return self.__wrapped__.__next__() if opener is None else opener(self)


class IterableStreamProxy(_StreamProxyBase):
    """A stream that is an iterable, not an iterator: botocore's ``EventStream``, whose every
    ``iter()`` is a new generator over one shared source of events.

    Each ``for`` loop gets a generator of its own that observes the events it yields, so a loop
    left with ``break`` and a later loop over the rest of the same stream are one call; the call
    ends when the events run out, when one raises, at ``close()``, or when the stream is dropped.
    """

    def __iter__(self) -> Iterator[Any]:
        return self._self_events(iter(self.__wrapped__))

    def _self_events(self, events: Iterator[Any]) -> Iterator[Any]:
        while True:
            try:
                item = self._self_observe(events.__next__)
            except StopIteration:
                return
            yield item

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(None, "closed")


class AsyncStreamProxy(_StreamProxyBase):
    _sync = False

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call = self._self_call
        if call.first_chunk_at is not None:
            return await self._self_next()
        tokens = call.enter()  # until the first item: see the module docstring
        try:
            return await self._self_next()
        finally:
            call.leave(tokens)

    async def _self_next(self) -> Any:
        try:
            if self._self_limits is None:
                item = await self.__wrapped__.__anext__()
            else:
                item = await self._self_next_within_limits(self.__wrapped__, self._self_limits)
        except StopAsyncIteration:
            self._self_end(None, "completed")
            raise
        except BaseException as exc:
            self._self_failed(exc)
            raise
        self._self_item(item)
        return item

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_end(None, "closed")

    def close(self) -> Any:
        # As the stream's own close(): a coroutine for the SDKs' async streams, a plain call for
        # LiteLLM's (whose async streams close with aclose() and also have a sync close()).
        try:
            closed = self.__wrapped__.close()
        except BaseException:
            self._self_end(None, "closed")
            raise
        if inspect.isawaitable(closed):
            return self._self_closing(closed)
        self._self_end(None, "closed")
        return closed

    async def _self_closing(self, closing: Awaitable[Any]) -> Any:
        try:
            return await closing
        finally:
            self._self_end(None, "closed")

    @property
    def aclose(self) -> Callable[[], Any]:
        # Only where the SDK stream has one, so a missing method still raises AttributeError
        # at attribute access, exactly as without agentwatch.
        original = self.__wrapped__.aclose

        async def aclose() -> Any:
            try:
                return await original()
            finally:
                self._self_end(None, "closed")

        return aclose


async def _within(awaitable: Awaitable[Any], seconds: float) -> Any:
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await awaitable
    return await asyncio.wait_for(awaitable, seconds)  # pragma: no cover - Python 3.10


class _ManagerProxyBase(_Proxy):
    """Proxy of an SDK stream *manager* (``messages.stream()``, ``chat.completions.stream()``).

    The request is made when the manager is entered, so the call starts there. The helper stream
    it returns reads its events from a raw SDK stream kept in ``_raw_stream``; the raw stream is
    observed (swapped for a :class:`SyncStreamProxy`, or observed in place) before the helper
    starts iterating, so every way of consuming the helper (iteration, ``text_stream``,
    ``get_final_message()``) is observed. When the raw stream is already ours
    (``chat.completions.stream()`` goes through the instrumented ``create``), exiting the manager
    ends it: the helper closes the HTTP response directly.
    """

    def __init__(
        self, wrapped: Any, start: Callable[[], InferenceCall | None], on_item: Callable[[bool], OnItem]
    ) -> None:
        super().__init__(wrapped)
        self._self_start = start
        self._self_on_item = on_item
        self._self_call: InferenceCall | None = None
        self._self_observer: _Observing | None = None

    def _self_adopt(self, helper: Any, call: InferenceCall | None, proxy: type[_StreamProxyBase]) -> None:
        raw = getattr(helper, "_raw_stream", None)
        if isinstance(raw, _StreamProxyBase):
            self._self_observer = raw  # made by an instrumented create: ended at exit
            return
        if call is None or raw is None:
            return
        try:
            observed, self._self_observer = proxy.observe(raw, call, self._self_on_item(call.capture_content))
            if observed is not raw:
                helper._raw_stream = observed
        except Exception:  # noqa: BLE001 - without the swap the call still ends at exit
            call.fault("observing a stream helper")

    def _self_finish(self) -> None:
        observer = self._self_observer
        if observer is not None:
            observer._self_end(None, "closed")
        if self._self_call is not None:
            self._self_call.end(None, outcome="closed")


class SyncStreamManagerProxy(_ManagerProxyBase):
    def __enter__(self) -> Any:
        call = self._self_call = self._self_start()
        if call is None:
            helper = self.__wrapped__.__enter__()
        else:
            call.activate()
            try:
                helper = self.__wrapped__.__enter__()
            except BaseException as exc:
                call.end(exc)
                raise
            finally:
                call.deactivate()
        self._self_adopt(helper, call, SyncStreamProxy)
        return helper

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            self._self_finish()


class AsyncStreamManagerProxy(_ManagerProxyBase):
    async def __aenter__(self) -> Any:
        call = self._self_call = self._self_start()
        if call is None:
            helper = await self.__wrapped__.__aenter__()
        else:
            call.activate()
            try:
                helper = await self.__wrapped__.__aenter__()
            except BaseException as exc:
                call.end(exc)
                raise
            finally:
                call.deactivate()
        self._self_adopt(helper, call, AsyncStreamProxy)
        return helper

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            self._self_finish()
