"""A small ASGI app to look at circuits and switch tools off and on while the application runs.

**Internal use only.** It changes behaviour live: never expose it on a public interface. It is off
unless you mount it::

    from agentwatch.admin import app as agentwatch_admin
    # Starlette: Mount("/ops", app=agentwatch_admin); or serve it on 127.0.0.1 only:
    # uvicorn.run(agentwatch_admin, host="127.0.0.1", port=9464)

Every route needs ``Authorization: Bearer <token>``, the token being the ``AGENTWATCH_ADMIN_TOKEN``
environment variable (or ``make_app(token=...)``); with no token configured every route answers
403. 401 answers carry ``WWW-Authenticate: Bearer``. Each request is logged on the
``agentwatch.admin`` logger and counted (``agentwatch.admin.requests``) with who, what and the
answer, never the token. See ``agentwatch._admin_auth``.

It is a plain ASGI 3 callable (no web framework). Routes, relative to the mount point:

- ``GET /admin/circuits``: ``{"circuits": [<CircuitSnapshot.to_dict()>...], "disabled_tools": [...],
  "replica": id, "shared_state": {...}, "fleet": {...}}``: this replica's circuits, the tools
  disabled (fleet-wide with shared state), where the state lives and whether it is shared right
  now (``shared_state.shared``), and the fleet's view: every live replica (``fleet.replicas``) and,
  per circuit key, each replica's state (``fleet.circuits[].replicas``, counts in ``.states``)
  and whether an operator forced it open. In-process state: the fleet is this process.
- ``POST /admin/tools/{name}/disable`` and ``/enable``: ``{"tool": name, "disabled": bool, "known": bool,
  "scope": "fleet" | "replica"}`` (``known``: a pipeline was built for that tool name in this
  process; ``scope``: ``fleet`` when every replica follows, ``replica`` when only this process does:
  in-process state, or Redis unavailable, in which case the action reaches the fleet when it answers)
- ``POST /admin/circuits/{key}/open``, ``/close`` and ``/reset``: the circuit's snapshot plus
  ``scope``; 404 if no replica has a circuit with that key. With shared state a key known only to
  other replicas is accepted (the answer is then ``{"key": key, "scope": ..., "here": false}``).

Path segments are percent-decoded, then decoded as UTF-8, so ``openai%3Agpt-4o`` names the circuit
``openai:gpt-4o`` and ``caf%C3%A9`` the tool ``café``; an invalid escape (``%zz``) or bytes that
are not UTF-8 answer 400 and change nothing. Other paths answer 404, other methods 405.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from agentwatch._admin_auth import audit, authenticate
from agentwatch.resilience._breaker import ManualAction
from agentwatch.resilience._registry import Registry, default_registry
from agentwatch.resilience._state import LocalState

__all__ = ["app", "make_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_CIRCUIT_ACTIONS = ("open", "close", "reset")
_MANUAL: dict[str, ManualAction] = {"open": "open", "close": "close", "reset": "reset"}
_TOOL_ACTIONS = ("disable", "enable")


def make_app(registry: Registry | None = None, *, token: str | None = None) -> ASGIApp:
    """An admin app over ``registry`` (default: the process-wide one, which ``app`` uses).

    ``token``: the bearer token requests must carry (default: ``AGENTWATCH_ADMIN_TOKEN``, read at
    each request).
    """

    def resolve() -> Registry:
        return registry or default_registry()

    async def admin_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method = scope.get("method", "GET")
        segments = _segments(scope)
        # Authentication comes first, so that an unauthenticated client learns nothing about the
        # routes (not even which paths would decode).
        denial = authenticate(scope, token)
        if denial is not None:
            audit(scope, method, segments or [], denial.status, denial)
            await _respond(send, denial.status, denial.body, allow=None, extra=denial.headers)
            return
        if segments is None:
            audit(scope, method, [], 400, None)
            await _respond(send, 400, {"error": "invalid percent-escape or UTF-8 in the path"}, allow=None)
            return
        registry = resolve()
        if isinstance(registry._backend, LocalState) and not registry._from_settings:
            status, body = _route(registry, method, segments)
        else:
            # Shared state: reads and writes go to Redis (bounded by its timeout), off the loop.
            status, body = await asyncio.to_thread(_route, registry, method, segments)
        audit(scope, method, segments, status, None)
        await _respond(send, status, body, allow=_allowed(segments))

    return admin_app


def _segments(scope: Scope) -> list[str] | None:
    """The path's segments, each percent-decoded and then UTF-8 decoded; ``None`` if it cannot be.

    Decoded from ``raw_path`` (the bytes on the wire) so that an encoded "/" inside a tool name
    stays in its segment and ``caf%C3%A9`` and a raw ``caf\xc3\xa9`` both name ``café``. An
    escape that is not ``%`` plus two hex digits, or bytes that are not UTF-8, make the request
    invalid: acting on a literal ``%zz`` or on a mojibake name would switch off the wrong tool.
    """
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        path = raw.split(b"?", 1)[0]
        if _BAD_ESCAPE.search(path):
            return None
        try:
            segments = [unquote_to_bytes(s).decode("utf-8") for s in path.strip(b"/").split(b"/")]
        except UnicodeDecodeError:
            return None
    else:
        # No raw_path (it is optional in ASGI): ``path`` is already decoded, so not again.
        text = scope.get("path", "")
        segments = text.strip("/").split("/")
    if segments == [""]:
        segments = []
    # Servers and mounts disagree on whether the path still contains the mount prefix.
    root = [s for s in scope.get("root_path", "").strip("/").split("/") if s]
    if root and segments[: len(root)] == root:
        segments = segments[len(root) :]
    return segments


_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _allowed(segments: list[str]) -> str | None:
    if segments == ["admin", "circuits"]:
        return "GET"
    if len(segments) == 4 and segments[0] == "admin" and segments[1] in ("tools", "circuits"):
        return "POST"
    return None


def _route(registry: Registry, method: str, segments: list[str]) -> tuple[int, object]:
    match segments:
        case ["admin", "circuits"]:
            if method != "GET":
                return 405, {"error": "method not allowed"}
            state = registry.state
            fleet = registry.fleet_view()
            return 200, {
                "circuits": [s.to_dict() for s in registry.snapshots()],
                "disabled_tools": sorted(registry.disabled_tools),
                "replica": state.replica,
                "shared_state": state.status(),
                "fleet": fleet,
            }
        case ["admin", "tools", name, action] if action in _TOOL_ACTIONS and name:
            if method != "POST":
                return 405, {"error": "method not allowed"}
            scope = registry.disable_tool(name) if action == "disable" else registry.enable_tool(name)
            return 200, {
                "tool": name,
                "disabled": registry.is_tool_disabled(name),
                "known": name in registry.tools,
                "scope": scope,
            }
        case ["admin", "circuits", key, action] if action in _CIRCUIT_ACTIONS:
            if method != "POST":
                return 405, {"error": "method not allowed"}
            circuit = registry.get(key)
            if circuit is None and not (registry.state.kind != "memory" and registry.knows_circuit(key)):
                return 404, {"error": f"no circuit named {key!r}"}
            scope = registry.circuit_action(key, _MANUAL[action])
            if circuit is None:
                return 200, {"key": key, "scope": scope, "here": False}
            return 200, {**circuit.snapshot().to_dict(), "scope": scope}
    return 404, {"error": "not found"}


async def _respond(
    send: Send,
    status: int,
    body: object,
    *,
    allow: str | None,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    payload = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"cache-control", b"no-store"),
        *extra,
    ]
    if status == 405 and allow:
        headers.append((b"allow", allow.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


app: ASGIApp = make_app()
"""The admin app over the process-wide registry, authenticated by ``AGENTWATCH_ADMIN_TOKEN``.
Internal use only: see the module docstring."""
