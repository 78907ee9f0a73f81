"""The admin ASGI app, served by a real uvicorn server on 127.0.0.1 and called over HTTP."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn

from agentwatch.admin import app
from agentwatch.resilience import (
    AttemptContext,
    CircuitBreaker,
    CircuitOpenError,
    Policy,
    ToolDisabledError,
    ToolUnavailable,
    disabled_tools,
)

TOKEN = "test-admin-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def _admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", TOKEN)


@pytest.fixture(scope="module")
def admin() -> Iterator[httpx.Client]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        assert thread.is_alive(), "uvicorn stopped during start-up (lifespan?)"
        time.sleep(0.01)
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        yield client
    server.should_exit = True
    thread.join(10)
    sock.close()
    assert not thread.is_alive()


def tool(ctx: AttemptContext) -> str:
    return "results"


def test_disable_and_enable_change_behaviour_live(admin: httpx.Client, make: Any) -> None:
    critical = make(Policy(timeout=None), name="search_knowledge_base")
    optional = make(Policy(timeout=None, critical=False), name="get_user_preferences")
    assert critical.call(tool) == "results"

    response = admin.post("/admin/tools/search_knowledge_base/disable")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "tool": "search_knowledge_base",
        "disabled": True,
        "known": True,
        "scope": "replica",
    }
    admin.post("/admin/tools/get_user_preferences/disable")
    with pytest.raises(ToolDisabledError):
        critical.call(tool)
    assert optional.call(tool) == ToolUnavailable.for_tool("get_user_preferences", "tool_disabled")
    listing = admin.get("/admin/circuits").json()
    assert listing["disabled_tools"] == ["get_user_preferences", "search_knowledge_base"]

    assert admin.post("/admin/tools/search_knowledge_base/enable").json()["disabled"] is False
    assert admin.post("/admin/tools/get_user_preferences/enable").json()["disabled"] is False
    assert critical.call(tool) == "results"
    assert optional.call(tool) == "results"
    assert admin.post("/admin/tools/typo/disable").json() == {
        "tool": "typo",
        "disabled": True,
        "known": False,
        "scope": "replica",
    }


def test_circuits_listing_and_manual_control(admin: httpx.Client, make: Any) -> None:
    policy = Policy(timeout=None, breaker=CircuitBreaker(failure_threshold=5))
    search = make(policy, name="search_knowledge_base")
    make(policy, name="gpt-4o", kind="llm", provider="openai")
    search.call(tool)

    circuits = admin.get("/admin/circuits").json()["circuits"]
    assert [c["key"] for c in circuits] == ["openai:gpt-4o", "search_knowledge_base"]
    kb = circuits[1]
    assert (kb["state"], kb["kind"], kb["mode"], kb["successes"], kb["failures"]) == (
        "closed",
        "tool",
        "consecutive",
        1,
        0,
    )
    assert kb["break_duration"] == 30.0
    assert kb["opened_at"] is None
    assert kb["next_probe_at"] is None

    opened = admin.post("/admin/circuits/search_knowledge_base/open")
    assert opened.status_code == 200
    assert opened.json()["state"] == "open"
    assert opened.json()["forced_open"]
    with pytest.raises(CircuitOpenError):
        search.call(tool)
    assert admin.post("/admin/circuits/search_knowledge_base/close").json()["state"] == "closed"
    assert search.call(tool) == "results"
    assert admin.post("/admin/circuits/openai%3Agpt-4o/open").json()["key"] == "openai:gpt-4o"
    assert admin.post("/admin/circuits/search_knowledge_base/reset").json()["successes"] == 0


def test_tool_names_with_encoded_slashes(admin: httpx.Client, make: Any) -> None:
    pipeline = make(Policy(timeout=None), name="files/read")
    assert admin.post("/admin/tools/files%2Fread/disable").json()["known"] is True
    with pytest.raises(ToolDisabledError):
        pipeline.call(tool)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/", 404),
        ("GET", "/admin", 404),
        ("GET", "/admin/tools/x/explode", 404),
        ("POST", "/admin/circuits/nope/open", 404),
        ("POST", "/admin/circuits", 405),
        ("GET", "/admin/tools/x/disable", 405),
        ("DELETE", "/admin/circuits/x/open", 405),
    ],
)
def test_other_routes_and_methods(admin: httpx.Client, method: str, path: str, status: int) -> None:
    response = admin.request(method, path)
    assert response.status_code == status
    assert "error" in json.loads(response.content)
    if status == 405:
        assert response.headers["allow"] in ("GET", "POST")


@pytest.mark.anyio
async def test_mounted_under_a_root_path() -> None:
    transport = httpx.ASGITransport(app=app, root_path="/ops")
    async with httpx.AsyncClient(
        transport=transport, base_url="http://admin", headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        response = await client.get("/ops/admin/circuits")
    assert response.status_code == 200
    body = response.json()
    assert (body["circuits"], body["disabled_tools"]) == ([], [])
    assert body["shared_state"] == {"backend": "memory", "shared": False, "replica": body["replica"]}
    assert body["fleet"]["replicas"] == [body["replica"]]


# -- path decoding (issue 11, item 12): UTF-8 names from the raw path; bad escapes are a 400 -------


def _raw_post(admin: httpx.Client, target: bytes) -> tuple[int, dict[str, Any]]:
    """POST a request target byte for byte (an HTTP client would re-encode it)."""
    with socket.create_connection(("127.0.0.1", admin.base_url.port or 80), timeout=5) as conn:
        conn.sendall(
            b"POST "
            + target
            + b" HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n"
            + b"Authorization: Bearer "
            + TOKEN.encode()
            + b"\r\n\r\n"
        )
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


async def _asgi_post(raw_path: bytes | None, path: str) -> tuple[int, dict[str, Any]]:
    """Call the app as a server that passes non-ASCII bytes through would (uvicorn's h11 refuses them)."""
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode())],
    }
    if raw_path is not None:
        scope["raw_path"] = raw_path
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.parametrize(
    "target",
    [
        b"/admin/tools/%zz/disable",
        b"/admin/tools/caf%C3/disable",  # a truncated UTF-8 sequence
        b"/admin/tools/caf%e9/disable",  # Latin-1, not UTF-8
        b"/admin/tools/%/disable",
        b"/admin/tools/ok%2/disable",
        b"/admin/circuits/openai%3Agpt-4o%G0/open",
    ],
)
def test_an_invalid_escape_or_non_utf8_name_is_a_400_and_changes_nothing(
    admin: httpx.Client, make: Any, target: bytes
) -> None:
    make(Policy(timeout=None), name="%zz")
    status, body = _raw_post(admin, target)
    assert status == 400 and "error" in body
    assert admin.get("/admin/circuits").json()["disabled_tools"] == []


def test_names_are_decoded_as_utf8_over_http(admin: httpx.Client, make: Any) -> None:
    pipeline = make(Policy(timeout=None), name="café")
    status, body = _raw_post(admin, b"/admin/tools/caf%C3%A9/disable")
    assert (status, body) == (200, {"tool": "café", "disabled": True, "known": True, "scope": "replica"})
    with pytest.raises(ToolDisabledError):
        pipeline.call(tool)
    admin.post("/admin/tools/caf%C3%A9/enable")


@pytest.mark.anyio
async def test_raw_utf8_bytes_name_the_tool_and_other_bytes_are_a_400(make: Any) -> None:
    pipeline = make(Policy(timeout=None), name="café")
    assert await _asgi_post(b"/admin/tools/caf\xc3\xa9/disable", "/admin/tools/café/disable") == (
        200,
        {"tool": "café", "disabled": True, "known": True, "scope": "replica"},
    )
    with pytest.raises(ToolDisabledError):
        pipeline.call(tool)
    status, _ = await _asgi_post(b"/admin/tools/caf\xe9/enable", "/admin/tools/caf\ufffd/enable")
    assert status == 400
    assert disabled_tools() == frozenset({"café"})


@pytest.mark.anyio
async def test_without_raw_path_the_decoded_path_is_not_decoded_again(make: Any) -> None:
    # A server that gives no raw_path has decoded "100%2525" into "100%25" already.
    make(Policy(timeout=None), name="100%25")
    assert await _asgi_post(None, "/admin/tools/100%25/disable") == (
        200,
        {"tool": "100%25", "disabled": True, "known": True, "scope": "replica"},
    )


@pytest.mark.anyio
async def test_an_unauthenticated_bad_path_is_a_401_not_a_400() -> None:
    # Authentication comes before decoding: without the token nothing about the path is revealed.
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/admin/tools/%zz/disable", "root_path": ""}
    await app({**scope, "raw_path": b"/admin/tools/%zz/disable", "headers": []}, receive, send)
    assert sent[0]["status"] == 401
