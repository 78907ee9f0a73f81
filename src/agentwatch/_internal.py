"""Small shared internals: containment of agentwatch's own faults (logged once per site, never
raised into the app), the suppression check, and how a callable is called."""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from opentelemetry import context

__all__ = ["instrumentation_enabled", "is_async_callable", "logger", "report_internal_error"]

logger = logging.getLogger("agentwatch")

_reported: set[str] = set()
_lock = threading.Lock()


def report_internal_error(site: str) -> None:
    """Log the exception being handled as an agentwatch fault, once per `site`.

    Call only from an ``except`` block. Later faults at the same site go to DEBUG so that a
    malformed stream of responses cannot flood the application's logs. The exception's message
    is left out (its class and stack are kept) unless content capture is on: an agentwatch fault
    reading a response can quote that response (``invalid literal for int(): '<content>'``), and
    logs are exported like any other signal.
    """
    with _lock:
        first = site not in _reported
        _reported.add(site)
    exc = sys.exc_info()[1]
    details: dict[str, Any]
    if exc is None or _messages_allowed():
        details = {"exc_info": True}
        stack = ""
    else:
        details = {}
        stack = "\n" + _stack_without_messages(exc)
    if first:
        logger.warning(
            "agentwatch: internal error in %s; the application call is unaffected and this "
            "telemetry is incomplete (further errors here are logged at DEBUG)%s",
            site,
            stack,
            **details,
        )
    else:
        logger.debug("agentwatch: internal error in %s%s", site, stack, **details)


def _messages_allowed() -> bool:
    try:
        from agentwatch._telemetry._core import current_settings

        return current_settings().capture.enabled
    except Exception:  # noqa: BLE001 - an unusable setting: withhold, as by default
        return False


def _stack_without_messages(exc: BaseException) -> str:
    """The traceback of ``exc`` and of the exceptions it chains, each ending with its class only."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for error in reversed(chain):
        cls = type(error)
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(error.__traceback__))
        parts.append(f"{cls.__module__}.{cls.__qualname__} (message withheld: content capture is off)\n")
    return "".join(parts).rstrip("\n")


# The two keys opentelemetry.instrumentation.utils.is_instrumentation_enabled reads. That module is
# not imported for tool calls: it imports opentelemetry.propagate, which raises at import for a
# misspelled OTEL_PROPAGATORS entry, and neither `import agentwatch` nor a tool call may fail on it.
_SUPPRESS_KEY = context._SUPPRESS_INSTRUMENTATION_KEY
_SUPPRESS_KEY_PLAIN = "suppress_instrumentation"


def instrumentation_enabled() -> bool:
    """False inside ``suppress_instrumentation()``, as contrib's ``is_instrumentation_enabled``."""
    return not (context.get_value(_SUPPRESS_KEY) or context.get_value(_SUPPRESS_KEY_PLAIN))


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calls of ``fn`` must be awaited: ``async def``, or an object with an async ``__call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)
