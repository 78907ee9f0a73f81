"""Containment of agentwatch's own faults: they are logged once per site and never reach the app."""

from __future__ import annotations

import logging
import threading

from opentelemetry import context

__all__ = ["instrumentation_enabled", "logger", "report_internal_error"]

logger = logging.getLogger("agentwatch")

_reported: set[str] = set()
_lock = threading.Lock()


def report_internal_error(site: str) -> None:
    """Log the exception being handled as an agentwatch fault, once per `site`.

    Call only from an ``except`` block. Later faults at the same site go to DEBUG so that a
    malformed stream of responses cannot flood the application's logs.
    """
    with _lock:
        first = site not in _reported
        _reported.add(site)
    if first:
        logger.warning(
            "agentwatch: internal error in %s; the application call is unaffected and this "
            "telemetry is incomplete (further errors here are logged at DEBUG)",
            site,
            exc_info=True,
        )
    else:
        logger.debug("agentwatch: internal error in %s", site, exc_info=True)


# The two keys opentelemetry.instrumentation.utils.is_instrumentation_enabled reads. That module is
# not imported for tool calls: it imports opentelemetry.propagate, which raises at import for a
# misspelled OTEL_PROPAGATORS entry, and neither `import agentwatch` nor a tool call may fail on it.
_SUPPRESS_KEY = context._SUPPRESS_INSTRUMENTATION_KEY
_SUPPRESS_KEY_PLAIN = "suppress_instrumentation"


def instrumentation_enabled() -> bool:
    """False inside ``suppress_instrumentation()``, as contrib's ``is_instrumentation_enabled``."""
    return not (context.get_value(_SUPPRESS_KEY) or context.get_value(_SUPPRESS_KEY_PLAIN))
