"""Bearer-token authentication and audit of the admin app (in-process ASGI, real httpx client)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from agentwatch import _admin_auth
from agentwatch.admin import make_app
from agentwatch.resilience import Registry, configure_resilience_telemetry
from support import Signals

TOKEN = "s3cret-admin-token-0123456789"
ROUTES = [
    ("GET", "/admin/circuits"),
    ("POST", "/admin/tools/search/disable"),
    ("POST", "/admin/tools/search/enable"),
    ("POST", "/admin/circuits/search/open"),
    ("GET", "/admin/nowhere"),
]


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def metrics(signals: Signals) -> Iterator[Signals]:
    configure_resilience_telemetry(signals.meter_provider)
    yield signals
    configure_resilience_telemetry(None)


@pytest.fixture
async def client(registry: Registry) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(registry), client=("10.1.2.3", 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        yield c


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_without_a_configured_token_every_route_refuses(
    client: httpx.AsyncClient, registry: Registry, method: str, path: str
) -> None:
    response = await client.request(method, path, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 403
    assert "AGENTWATCH_ADMIN_TOKEN" in response.json()["error"]
    assert response.headers["cache-control"] == "no-store"
    assert registry.disabled_tools == frozenset()


@pytest.mark.anyio
@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer", None),
        ("Bearer wrong-token", "invalid_token"),
        (f"Bearer {TOKEN}x", "invalid_token"),
        (f"Bearer {TOKEN[:-1]}", "invalid_token"),
    ],
)
async def test_missing_or_wrong_credentials_get_401_with_a_bearer_challenge(
    client: httpx.AsyncClient,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    header: str | None,
    error: str | None,
) -> None:
    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", TOKEN)
    headers = {"Authorization": header} if header is not None else {}
    response = await client.request(method, path, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="agentwatch-admin"')
    assert (f'error="{error}"' in challenge) == (error is not None)
    assert TOKEN not in response.text
    assert registry.disabled_tools == frozenset()


@pytest.mark.anyio
async def test_the_right_token_is_accepted_case_insensitive_scheme(
    client: httpx.AsyncClient, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", f"  {TOKEN}\n")  # surrounding blanks are ignored
    response = await client.post("/admin/tools/search/disable", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200
    assert registry.disabled_tools == frozenset({"search"})
    response = await client.get("/admin/circuits", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.json()["disabled_tools"] == ["search"]
    response = await client.get("/admin/nowhere", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 404  # routing only after authentication


@pytest.mark.anyio
async def test_a_token_given_in_code_wins_over_the_environment(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", "from-the-environment")
    transport = httpx.ASGITransport(app=make_app(registry, token=TOKEN))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
        assert (
            await c.get("/admin/circuits", headers={"Authorization": f"Bearer {TOKEN}"})
        ).status_code == 200
        denied = await c.get("/admin/circuits", headers={"Authorization": "Bearer from-the-environment"})
        assert denied.status_code == 401


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(_admin_auth.hmac, "compare_digest", spy)
    scope = {"type": "http", "headers": [(b"authorization", b"Bearer short")]}
    assert _admin_auth.authenticate(scope, TOKEN) is not None
    # Digests of equal length: neither the token nor its length shapes the comparison.
    assert len(compared) == 1 and len(compared[0][0]) == len(compared[0][1]) == 32


@pytest.mark.anyio
async def test_every_request_is_logged_and_counted_with_who_what_and_never_the_token(
    client: httpx.AsyncClient,
    metrics: Signals,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", TOKEN)
    caplog.set_level(logging.INFO, logger="agentwatch.admin")
    ok = {"Authorization": f"Bearer {TOKEN}", "User-Agent": "oncall-cli/1.0"}
    await client.post("/admin/tools/search/disable", headers=ok)
    await client.post("/admin/circuits/nope/open", headers=ok)
    await client.get("/admin/circuits", headers={"Authorization": "Bearer guess"})

    records = [r for r in caplog.records if r.name == "agentwatch.admin"]
    assert [(r.admin_action, r.admin_target, r.http_status, r.admin_outcome) for r in records] == [  # type: ignore[attr-defined]
        ("tool.disable", "search", 200, "ok"),
        ("circuit.open", "nope", 404, "rejected"),
        ("circuits.list", None, 401, "invalid_token"),
    ]
    assert {r.admin_client for r in records} == {"10.1.2.3:5555"}  # type: ignore[attr-defined]
    assert records[0].admin_user_agent == "oncall-cli/1.0"  # type: ignore[attr-defined]
    assert records[2].levelno == logging.WARNING and records[0].created > 0
    assert TOKEN not in caplog.text and "guess" not in caplog.text

    counted = {
        (p.attributes["agentwatch.admin.action"], p.attributes["http.response.status_code"]): p.value
        for p in metrics.points("agentwatch.admin.requests")
    }
    assert counted == {("tool.disable", 200): 1, ("circuit.open", 404): 1, ("circuits.list", 401): 1}
    assert TOKEN not in metrics.dump()
