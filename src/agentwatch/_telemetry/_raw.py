"""Raw responses: ``with_raw_response`` and ``with_streaming_response`` of the Stainless SDKs.

Called that way, an SDK method returns a response wrapper (openai's ``LegacyAPIResponse`` for
``with_raw_response``, ``APIResponse``/``AsyncAPIResponse`` otherwise; anthropic alike) instead of
the completion. Its ``parse()`` builds the completion once and caches it per target type
(``_parsed_by_type``). LiteLLM and other libraries call the OpenAI SDK this way, so this path has
to give the telemetry of a plain call without changing what the caller gets:

* **Body already read** (``with_raw_response``, not streaming): agentwatch calls ``parse()`` and
  reads the result. The SDK caches it, so the caller's own ``parse()`` returns that very object:
  one parse in all. If the SDK cannot parse the body, the caller's ``parse()`` raises exactly as it
  would have and the span is read from the JSON body instead.
* **A stream**: ``parse()`` only builds the SDK's stream object (no I/O). agentwatch observes it
  (in place, or through its stream proxy, which it puts in the SDK's cache in the stream's
  place), so the stream the caller's ``parse()`` hands out is the observed one and the span
  ends with it, on every exit path
  (completed, error, closed, abandoned). Closing the response itself (the ``with`` of
  ``with_streaming_response`` exiting) ends it as ``closed`` too.
* **Body not read yet** (``with_streaming_response``, not streaming): nothing is read early (the
  caller may want the headers first, or the bytes). The span ends when the response is closed,
  normally at the exit of the ``with`` block, from what the caller parsed (the SDK's cache) or
  read; a response dropped unclosed ends it when it is garbage-collected, without a response.

Nothing here runs for ordinary calls: the wrappers check ``isinstance(result, types)`` first.
"""

from __future__ import annotations

import inspect
import json
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from agentwatch._internal import report_internal_error, sdk_type
from agentwatch._telemetry._inference import InferenceCall
from agentwatch._telemetry._stream import AsyncStreamProxy, Limits, OnItem, SyncStreamProxy

__all__ = ["RawResponses", "read_body"]


class _Reader(Protocol):
    """The parts of an ``Operation`` (instrumentation._wrappers) that read a response."""

    @property
    def name(self) -> str: ...
    @property
    def response(self) -> Callable[[InferenceCall, Any], None]: ...
    @property
    def stream_items(self) -> Callable[[bool], OnItem] | None: ...
    @property
    def stream_types(self) -> tuple[type, ...]: ...


def _streams(raw: Any) -> bool:
    # APIResponse calls its flag _is_sse_stream, LegacyAPIResponse _stream.
    for flag in ("_is_sse_stream", "_stream"):
        value = getattr(raw, flag, None)
        if isinstance(value, bool):
            return value
    return False


def _body_read(raw: Any) -> bool:
    # httpx closes a response once it has read the whole body; a body the SDK streams stays open.
    return getattr(getattr(raw, "http_response", None), "is_closed", None) is True


def _json_body(raw: Any) -> object:
    try:
        content = raw.http_response.content  # raises if the body was never read
        return json.loads(content)
    except Exception:  # noqa: BLE001 - no readable body: no response attributes
        return None


def _cached(raw: Any) -> object:
    """What the caller's ``parse()`` built, from the SDK's cache."""
    cache = getattr(raw, "_parsed_by_type", None)
    if not isinstance(cache, dict) or not cache:
        return None
    value = cache.get(getattr(raw, "_cast_to", None))
    return value if value is not None else next(iter(cache.values()))


_NOT_PARSED = object()


def _parse(raw: Any) -> object:
    """``raw.parse()`` (cached by the SDK); the JSON body where the SDK cannot parse it."""
    try:
        return raw.parse()
    except Exception:  # noqa: BLE001 - the caller's own parse() raises this again
        return _json_body(raw)


async def _aparse(raw: Any) -> object:
    try:
        parsed = raw.parse()
        return await parsed if inspect.isawaitable(parsed) else parsed
    except Exception:  # noqa: BLE001 - the caller's own parse() raises this again
        return _json_body(raw)


def read_body(raw: Any) -> object:
    """The completion in a raw response whose body has been read, for a hook that cannot await.

    Synchronous ``parse()`` goes through the SDK's cache (the caller gets the same object later);
    an ``AsyncAPIResponse`` is read from its JSON body instead. ``None`` for anything that is not
    a raw response, for streams and for unread bodies.
    """
    if not hasattr(raw, "_parsed_by_type") or _streams(raw) or not _body_read(raw):
        return None
    if inspect.iscoroutinefunction(getattr(type(raw), "parse", None)):
        return _json_body(raw)
    return _parse(raw)


def _read(call: InferenceCall, op: _Reader, parsed: object) -> None:
    if parsed is None:
        return
    try:
        op.response(call, parsed)
    except Exception:  # noqa: BLE001
        call.fault(f"reading a raw {op.name} response")


class RawResponses:
    """The raw-response classes of one SDK, and the responses whose span ends when they close."""

    __slots__ = ("_on_close", "types")

    def __init__(self, types: tuple[type, ...]) -> None:
        self.types = types
        # response -> what to do when it is closed. Keyed weakly; the values never reference the
        # response, or it could not be collected.
        self._on_close: weakref.WeakKeyDictionary[Any, Callable[[Any], None]] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, package: str) -> RawResponses:
        """The raw-response classes of the Stainless SDK ``package``, resolved when first checked:
        built at instrument time, this must not import the SDK (a class the installed version
        lacks matches nothing)."""
        return cls(
            (
                sdk_type(f"{package}._legacy_response", "LegacyAPIResponse"),
                sdk_type(f"{package}._response", "BaseAPIResponse"),
            )
        )

    # -- the call returned a raw response -------------------------------------------------------

    def finish(
        self,
        call: InferenceCall,
        op: _Reader,
        raw: Any,
        proxy: type[SyncStreamProxy] | type[AsyncStreamProxy],
        limits: Limits | None,
        parsed: object = _NOT_PARSED,
    ) -> Any:
        """End or hand on ``call`` for the raw response ``raw``; return ``raw``."""
        try:
            if _streams(raw):
                stream = raw.parse() if parsed is _NOT_PARSED else parsed
                self._observe(call, op, raw, stream, proxy, limits)
            elif _body_read(raw):
                _read(call, op, _parse(raw) if parsed is _NOT_PARSED else parsed)
                call.end()
            else:
                self._defer(call, op, raw)
        except Exception:  # noqa: BLE001
            call.fault("reading a raw response")
            call.end()
        return raw

    async def afinish(
        self, call: InferenceCall, op: _Reader, raw: Any, proxy: type[AsyncStreamProxy], limits: Limits | None
    ) -> Any:
        """:meth:`finish` after an async call, whose ``parse()`` may be a coroutine (``AsyncAPIResponse``)."""
        parsed: object = _NOT_PARSED
        try:
            if _streams(raw):
                parsed = raw.parse()
                if inspect.isawaitable(parsed):
                    parsed = await parsed
            elif _body_read(raw):
                parsed = await _aparse(raw)
        except Exception:  # noqa: BLE001
            call.fault("reading a raw response")
            call.end()
            return raw
        return self.finish(call, op, raw, proxy, limits, parsed)

    def _observe(
        self,
        call: InferenceCall,
        op: _Reader,
        raw: Any,
        stream: Any,
        proxy: type[SyncStreamProxy] | type[AsyncStreamProxy],
        limits: Limits | None,
    ) -> None:
        cache = getattr(raw, "_parsed_by_type", None)
        if not isinstance(cache, dict):
            cache = {}
        keys = [k for k, v in cache.items() if v is stream]
        if op.stream_items is None or not isinstance(stream, op.stream_types) or not keys:
            # Without the SDK's cache the caller's parse() would build a stream agentwatch never
            # sees: end now rather than leave a span open.
            call.end()
            return
        observed, observer = proxy.observe(stream, call, op.stream_items(call.capture_content), limits)
        for key in keys:
            cache[key] = observed
        end = observer._self_end
        self._on_close[raw] = lambda _raw: end(None, "closed")

    def _defer(self, call: InferenceCall, op: _Reader, raw: Any) -> None:
        # A response dropped unclosed still ends its span (the finalizer holds only the call).
        dropped = weakref.finalize(raw, call.end)

        def closed(response: Any) -> None:
            dropped.detach()
            parsed = _cached(response)
            _read(call, op, parsed if parsed is not None else _json_body(response))
            call.end()

        self._on_close[raw] = closed

    # -- the caller closed a raw response -------------------------------------------------------

    def _closed(self, raw: Any) -> None:
        try:
            action = self._on_close.pop(raw, None)
            if action is not None:
                action(raw)
        except Exception:  # noqa: BLE001
            report_internal_error("ending a raw response's span")

    def close_wrapper(self) -> Callable[..., Any]:
        """For ``APIResponse.close``."""

        def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            try:
                return wrapped(*args, **kwargs)
            finally:
                self._closed(instance)

        return traced

    def aclose_wrapper(self) -> Callable[..., Any]:
        """For ``AsyncAPIResponse.close``."""

        async def traced(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
            try:
                return await wrapped(*args, **kwargs)
            finally:
                self._closed(instance)

        return traced
