"""Containment of agentwatch's own faults: they are logged once per site and never reach the app."""

from __future__ import annotations

import logging
import threading

__all__ = ["logger", "report_internal_error"]

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
