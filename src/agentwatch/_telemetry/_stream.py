"""Proxies around SDK stream objects that end the call's span exactly once.

Exit paths: consumed to the end, ``break`` inside ``with``/``async with``, ``close()``, an
exception in the caller's loop (the caller's ``with`` exits), an error raised by the stream
itself mid-way (status ERROR), and a stream that is simply dropped: a ``weakref.finalize`` on
the proxy ends the span when it is garbage-collected, with outcome ``abandoned`` and the end
time of its last chunk. The proxies are ``wrapt.ObjectProxy`` subclasses, so ``isinstance``
checks and every attribute of the SDK stream (``response``, ``until_done`` ...) still work.

Until the first item arrives, each read runs with the call current: some streams send their
request only then (LiteLLM starts its Anthropic, Gemini... streams at the first read), and that
request must carry the call's trace context and be recognised as part of the call.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import wrapt

from agentwatch._telemetry._inference import InferenceCall

__all__ = [
    "AsyncStreamManagerProxy",
    "AsyncStreamProxy",
    "OnEnd",
    "OnItem",
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


def _read_end(call: InferenceCall, stream: Any, on_end: OnEnd | None) -> None:
    if on_end is not None:
        try:
            on_end(call, stream)
        except Exception:  # noqa: BLE001 - the stream is the app's; its telemetry is incomplete
            call.fault("reading a stream's end")


def _abandon(call: InferenceCall, stream: Any, on_end: OnEnd | None) -> None:
    _read_end(call, stream, on_end)
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


class _StreamProxyBase(_Proxy):
    def __init__(
        self,
        wrapped: Any,
        call: InferenceCall,
        on_item: OnItem,
        limits: Limits | None = None,
        on_end: OnEnd | None = None,
    ) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_on_item = on_item
        self._self_limits = limits
        self._self_on_end = on_end
        # The finalizer must not reference the proxy, or it would keep it alive.
        self._self_finalizer = weakref.finalize(self, _abandon, call, wrapped, on_end)

    def _self_end(self, error: BaseException | None, outcome: str) -> None:
        if self._self_finalizer.detach() is not None:
            _read_end(self._self_call, self.__wrapped__, self._self_on_end)
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


class SyncStreamProxy(_StreamProxyBase):
    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        call = self._self_call
        if call.first_chunk_at is not None:
            return self._self_next()
        tokens = call.enter()
        try:
            return self._self_next()
        finally:
            call.leave(tokens)

    def _self_next(self) -> Any:
        try:
            item = self.__wrapped__.__next__()
        except StopIteration:
            self._self_end(None, "completed")
            raise
        except BaseException as exc:
            limits = self._self_limits
            if limits is not None and _is_timeout(exc):
                # The policy's chunk timeout, enforced by the SDK's read timeout (see _policies).
                timeout = _chunk_timeout(self._self_call, limits, sync=True)
                self._self_failed(timeout)
                raise timeout from exc
            self._self_failed(exc)
            raise
        self._self_item(item)
        return item

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


class AsyncStreamProxy(_StreamProxyBase):
    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call = self._self_call
        if call.first_chunk_at is not None:
            return await self._self_next()
        tokens = call.enter()
        try:
            return await self._self_next()
        finally:
            call.leave(tokens)

    async def _self_next(self) -> Any:
        try:
            if self._self_limits is None:
                item = await self.__wrapped__.__anext__()
            else:
                item = await self._self_next_within_limits(self._self_limits)
        except StopAsyncIteration:
            self._self_end(None, "completed")
            raise
        except BaseException as exc:
            self._self_failed(exc)
            raise
        self._self_item(item)
        return item

    async def _self_next_within_limits(self, limits: Limits) -> Any:
        call = self._self_call
        first, idle = limits
        limit = first if call.first_chunk_at is None else idle
        if limit is None:
            return await self.__wrapped__.__anext__()
        try:
            return await _within(self.__wrapped__.__anext__(), limit)
        except TimeoutError:
            timeout = _chunk_timeout(call, limits)
        # The HTTP response is abandoned mid-read: close it so the connection is not reused.
        try:
            stream = self.__wrapped__
            # aclose() where the stream has both (LiteLLM's sync close() cannot await the body).
            closed = stream.aclose() if hasattr(stream, "aclose") else stream.close()
            if inspect.isawaitable(closed):
                await closed
        except Exception:  # noqa: BLE001
            call.fault("closing a timed-out stream")
        raise timeout

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
    swapped for a :class:`SyncStreamProxy` before the helper starts iterating, so every way of
    consuming the helper (iteration, ``text_stream``, ``get_final_message()``) is observed. When
    the raw stream is already ours (``chat.completions.stream()`` goes through the instrumented
    ``create``), exiting the manager ends it: the helper closes the HTTP response directly.
    """

    def __init__(
        self, wrapped: Any, start: Callable[[], InferenceCall | None], on_item: Callable[[bool], OnItem]
    ) -> None:
        super().__init__(wrapped)
        self._self_start = start
        self._self_on_item = on_item
        self._self_call: InferenceCall | None = None
        self._self_helper: Any = None

    def _self_adopt(self, helper: Any, call: InferenceCall | None, proxy: type[_StreamProxyBase]) -> None:
        self._self_helper = helper
        raw = getattr(helper, "_raw_stream", None)
        if call is None or raw is None or isinstance(raw, _StreamProxyBase):
            return
        try:
            helper._raw_stream = proxy(raw, call, self._self_on_item(call.capture_content))
        except Exception:  # noqa: BLE001 - without the swap the call still ends at exit
            call.fault("observing a stream helper")

    def _self_finish(self) -> None:
        raw = getattr(self._self_helper, "_raw_stream", None)
        if isinstance(raw, _StreamProxyBase):
            raw._self_end(None, "closed")
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
