"""Raw HTTP responses of instrumented calls (``with_raw_response``, ``with_streaming_response``).

With these the SDK returns the HTTP response and the caller asks for the result later, with
``parse()``: the OpenAI Agents SDK streams Responses this way, LiteLLM calls the OpenAI SDK this
way. The call's span must end with what ``parse()`` returns (a stream ends with its last chunk;
anything else is read as the response), or, for a response never parsed, when the caller closes
it or drops it. The proxies are ``wrapt.ObjectProxy`` subclasses: every other attribute of the
response (headers, ``http_response``, ``request_id``...) is the SDK's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import wrapt

from agentwatch._internal import report_internal_error
from agentwatch._telemetry._inference import InferenceCall

__all__ = ["AsyncRawResponseProxy", "SyncRawResponseProxy"]

if TYPE_CHECKING:
    _Proxy = wrapt.ObjectProxy[Any]
else:
    _Proxy = wrapt.ObjectProxy

Finish = Callable[[Any], Any]
"""The parsed result -> what the caller gets (the call is ended, or handed to a stream proxy)."""

_UNSET: Any = object()


def _unread(call: InferenceCall) -> None:
    call.end(None, outcome="closed")


class _RawResponseProxyBase(_Proxy):
    def __init__(self, wrapped: Any, call: InferenceCall, finish: Finish) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_finish = finish
        self._self_result: Any = _UNSET
        # Not referencing the proxy, which it would keep alive.
        self._self_finalizer = weakref.finalize(self, _unread, call)

    def _self_parsed(self, parsed: Any) -> Any:
        """The first default ``parse()`` hands its result to the call; later ones (the SDK caches
        the parsed object) get the same object back."""
        if self._self_result is _UNSET:
            self._self_finalizer.detach()
            try:
                self._self_result = self._self_finish(parsed)
            except Exception:  # noqa: BLE001
                report_internal_error("reading a raw response")
                self._self_result = parsed
        return self._self_result

    def _self_failed(self, exc: BaseException) -> None:
        if self._self_result is _UNSET:
            self._self_finalizer.detach()
            self._self_call.end(exc)

    def _self_closed(self) -> None:
        if self._self_result is _UNSET:
            self._self_finalizer.detach()
            _unread(self._self_call)


class SyncRawResponseProxy(_RawResponseProxyBase):
    def parse(self, *, to: Any = None) -> Any:
        if to is not None:  # a type of the caller's: not the SDK result the call reads
            return self.__wrapped__.parse(to=to)
        if self._self_result is not _UNSET:
            return self._self_result
        try:
            parsed = self.__wrapped__.parse()
        except BaseException as exc:
            self._self_failed(exc)
            raise
        return self._self_parsed(parsed)

    @property
    def close(self) -> Callable[[], Any]:
        # Only where the SDK response has one (the legacy raw response has none).
        original = self.__wrapped__.close

        def close() -> Any:
            try:
                return original()
            finally:
                self._self_closed()

        return close


class AsyncRawResponseProxy(_RawResponseProxyBase):
    async def parse(self, *, to: Any = None) -> Any:
        if to is not None:
            return await self.__wrapped__.parse(to=to)
        if self._self_result is not _UNSET:
            return self._self_result
        try:
            parsed = await self.__wrapped__.parse()
        except BaseException as exc:
            self._self_failed(exc)
            raise
        return self._self_parsed(parsed)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_closed()
