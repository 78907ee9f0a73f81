"""Authentication and audit of ``agentwatch.admin``: a bearer token, and one log record and one
metric point per request (who, what, when, the answer; never the token).

Every route, reads included, needs ``Authorization: Bearer <token>`` where the token is the
``AGENTWATCH_ADMIN_TOKEN`` environment variable (read per request) or the ``token`` given to
``make_app``. Without a configured token every route answers 403: the app is safe to mount by
mistake. A missing or malformed header answers 401 with ``WWW-Authenticate: Bearer
realm="agentwatch-admin"``, a wrong token 401 with ``error="invalid_token"`` (RFC 6750). The
token is compared in constant time (SHA-256 digests of both sides, so not even its length leaks).
Authentication comes before routing, so an unauthenticated client cannot tell routes apart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentwatch._internal import report_internal_error

__all__ = ["ADMIN_LOGGER", "ADMIN_TOKEN_ENV", "Denial", "audit", "authenticate", "describe"]

ADMIN_TOKEN_ENV = "AGENTWATCH_ADMIN_TOKEN"
ADMIN_LOGGER = "agentwatch.admin"
REALM = "agentwatch-admin"

_log = logging.getLogger(ADMIN_LOGGER)
_TOOL_ACTIONS = ("disable", "enable")
_CIRCUIT_ACTIONS = ("open", "close", "reset")


@dataclass(frozen=True, slots=True)
class Denial:
    status: int
    body: Mapping[str, str]
    headers: Sequence[tuple[bytes, bytes]]
    reason: str


def configured_token(token: str | None) -> str | None:
    """The token requests must carry: ``token`` if given, else the environment's; ``None`` if none."""
    if token is None:
        token = os.environ.get(ADMIN_TOKEN_ENV, "")
    token = token.strip()
    return token or None


def _header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if isinstance(key, bytes) and key.lower() == name and isinstance(value, bytes):
            return value.decode("latin-1")
    return None


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def authenticate(scope: MutableMapping[str, Any], token: str | None) -> Denial | None:
    """``None`` when the request carries the configured token, else what to answer."""
    expected = configured_token(token)
    if expected is None:
        return Denial(
            403,
            {
                "error": f"the admin API is disabled: no token is configured (set {ADMIN_TOKEN_ENV} "
                "and send 'Authorization: Bearer <token>')"
            },
            (),
            "no_token_configured",
        )
    given = _header(scope, b"authorization")
    scheme, _, credentials = (given or "").strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        return Denial(
            401,
            {"error": "authentication required: send 'Authorization: Bearer <token>'"},
            ((b"www-authenticate", f'Bearer realm="{REALM}"'.encode()),),
            "missing_credentials",
        )
    if not hmac.compare_digest(_digest(credentials), _digest(expected)):
        return Denial(
            401,
            {"error": "invalid token"},
            ((b"www-authenticate", f'Bearer realm="{REALM}", error="invalid_token"'.encode()),),
            "invalid_token",
        )
    return None


def describe(method: str, segments: Sequence[str]) -> tuple[str, str | None]:
    """(action, target) of a request, e.g. ``("tool.disable", "search")``; ``unknown`` otherwise."""
    if list(segments) == ["admin", "circuits"]:
        return "circuits.list", None
    if len(segments) == 4 and segments[0] == "admin":
        kind, target, action = segments[1], segments[2], segments[3]
        if kind == "tools" and action in _TOOL_ACTIONS:
            return f"tool.{action}", target
        if kind == "circuits" and action in _CIRCUIT_ACTIONS:
            return f"circuit.{action}", target
    return "unknown", None


def _client(scope: MutableMapping[str, Any]) -> str | None:
    client = scope.get("client")
    if isinstance(client, (tuple, list)) and len(client) == 2:
        return f"{client[0]}:{client[1]}"
    return None


def audit(
    scope: MutableMapping[str, Any],
    method: str,
    segments: Sequence[str],
    status: int,
    denial: Denial | None,
) -> None:
    """One ``agentwatch.admin`` log record and one ``agentwatch.admin.requests`` point per request."""
    try:
        action, target = describe(method, segments)
        client = _client(scope)
        outcome = denial.reason if denial is not None else ("ok" if status < 400 else "rejected")
        extra = {
            "admin_action": action,
            "admin_target": target,
            "admin_method": method,
            "admin_client": client,
            "admin_user_agent": _header(scope, b"user-agent"),
            "admin_authenticated": denial is None,
            "admin_outcome": outcome,
            "http_status": status,
        }
        level = logging.INFO if denial is None else logging.WARNING
        subject = action if target is None else f"{action} {target!r}"
        _log.log(
            level, "admin %s by %s: %d %s", subject, client or "unknown client", status, outcome, extra=extra
        )
        from agentwatch.resilience._telemetry import current_telemetry

        current_telemetry().admin_request(action, status, outcome)
    except Exception:  # noqa: BLE001 - auditing must not change the answer
        report_internal_error("admin.audit")
