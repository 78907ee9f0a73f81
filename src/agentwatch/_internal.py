"""Small shared internals: containment of agentwatch's own faults (logged once per site, never
raised into the app), the suppression check, how a callable is called, and stand-ins for SDK
classes that are not imported yet."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import context, trace

__all__ = [
    "NO_SPAN_CONTEXT",
    "at_fork_in_child",
    "instrumentation_enabled",
    "is_async_callable",
    "logger",
    "renew_locks_at_fork",
    "report_internal_error",
    "reset_in_forked_child",
    "sdk_type",
]

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


NO_SPAN_CONTEXT = trace.set_span_in_context(trace.INVALID_SPAN)
"""For ``Histogram.record(..., context=)`` inside a call's own span: no exemplar of that span is
sampled (one costs more than the record), as for the metrics recorded after a call. An empty
context would not do: the SDK takes a falsy one to mean the current context."""


def instrumentation_enabled() -> bool:
    """False inside ``suppress_instrumentation()``, as contrib's ``is_instrumentation_enabled``."""
    return not (context.get_value(_SUPPRESS_KEY) or context.get_value(_SUPPRESS_KEY_PLAIN))


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calls of ``fn`` must be awaited: ``async def``, or an object with an async ``__call__``."""
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with an async __call__
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


# -- fork: what a child must not inherit ---------------------------------------------------------
# os.fork() copies the memory of every thread but keeps only the one that forked: a lock another
# thread held stays locked forever, a worker thread waiting for jobs is gone, a bulkhead slot or a
# half-open circuit's probe held by another thread is never given back. Prefork servers (gunicorn,
# uWSGI) and multiprocessing's fork start method all fork after the parent made calls. State that
# must not be inherited is registered here and reset in the child only.

_module_resets: list[Callable[[], None]] = []
_instances: weakref.WeakKeyDictionary[Any, tuple[str, ...]] = weakref.WeakKeyDictionary()


def at_fork_in_child(reset: Callable[[], None]) -> Callable[[], None]:
    """Run ``reset`` in the child after ``os.fork()`` (a decorator for module-level state)."""
    _module_resets.append(reset)
    return reset


def renew_locks_at_fork(namespace: dict[str, Any], *names: str) -> None:
    """Give the module whose ``globals()`` is ``namespace`` new locks ``names`` in a forked child."""

    def renew() -> None:
        for name in names:
            namespace[name] = threading.Lock()

    _module_resets.append(renew)


def reset_in_forked_child(instance: Any, *locks: str) -> None:
    """In a forked child, give ``instance`` new locks in the attributes ``locks`` and call its
    ``_reset_after_fork()`` if it has one; for as long as ``instance`` lives."""
    _instances[instance] = locks


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    # Each reset only replaces state: none can fail in a way worth more than skipping it, and an
    # exception escaping a fork hook is printed into the child's stderr.
    for reset in _module_resets:
        try:
            reset()
        except Exception:  # noqa: BLE001
            pass
    for instance, locks in list(_instances.items()):
        try:
            for name in locks:
                setattr(instance, name, threading.Lock())
            hook = getattr(instance, "_reset_after_fork", None)
            if hook is not None:
                hook()
        except Exception:  # noqa: BLE001
            pass


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _SdkTypeMeta(type):
    """The metaclass of :func:`sdk_type`'s stand-ins: ``isinstance`` asks the real class."""

    _sdk_module: str
    _sdk_name: str
    _sdk_class: type | None

    def __instancecheck__(cls, instance: object) -> bool:
        target = cls._sdk_class
        if target is None:
            # Not imported yet: then no instance of it exists either. Never imported from here.
            target = getattr(sys.modules.get(cls._sdk_module), cls._sdk_name, None)
            if not isinstance(target, type):
                return False
            cls._sdk_class = target
        return isinstance(instance, target)


def sdk_type(module: str, name: str) -> type:
    """A stand-in for the SDK class ``module.name`` in ``isinstance`` checks (stream types,
    exception classes), for wrappers built at instrument time without importing the SDK.

    It looks the class up in ``sys.modules`` at the first check after ``module`` is imported
    (which is when such an instance can first exist) and then delegates to it; a name the
    installed version lacks matches nothing.
    """
    namespace = {"_sdk_module": module, "_sdk_name": name, "_sdk_class": None, "__slots__": ()}
    return _SdkTypeMeta(f"sdk_type[{module}.{name}]", (), namespace)
