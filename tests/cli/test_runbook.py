"""``agentwatch runbook`` end to end, in subprocesses: the README command, registries of each kind, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentwatch._cli._runbook import DASHBOARD_UIDS
from cli._support import AGENTWATCH, PYTHON_M, REPO, run

TEMPLATE = REPO / "docs" / "runbook-template.md"
DEMO_TOOLS = ("fetch_related_content", "get_user_preferences", "search_knowledge_base")


def _headings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#")]


def _placeholders(text: str) -> list[str]:
    return re.findall(r"<[^<>\n]+>", text)


def test_packaged_template_is_the_documented_one() -> None:
    packaged = REPO / "src" / "agentwatch" / "_cli" / "runbook_template.md"
    assert packaged.read_text(encoding="utf-8") == TEMPLATE.read_text(encoding="utf-8")


def test_dashboard_uids_are_the_shipped_dashboards() -> None:
    uids = {json.loads(path.read_text())["uid"] for path in (REPO / "dashboards").glob("*.json")}
    assert set(DASHBOARD_UIDS.values()) == uids


def test_readme_runbook_command_for_the_demo_registry(tmp_path: Path) -> None:
    result = run(
        [AGENTWATCH, "runbook", "--registry", "agentwatch._demo:REGISTRY", "--output-dir", "runbooks"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    written = sorted(p.name for p in (tmp_path / "runbooks").iterdir())
    assert written == [f"{tool}.md" for tool in DEMO_TOOLS]
    assert result.stdout.splitlines() == [f"wrote runbooks/{name}" for name in written]
    template_headings = _headings(TEMPLATE.read_text(encoding="utf-8"))
    for tool in DEMO_TOOLS:
        text = (tmp_path / "runbooks" / f"{tool}.md").read_text(encoding="utf-8")
        assert _headings(text) == [h.replace("<tool_name>", tool) for h in template_headings]
        assert _placeholders(text) == []
        assert f"| Tool name (`gen_ai.tool.name`) | `{tool}` |" in text
        assert f"http://localhost:3000/d/agentwatch-tools?var-tool={tool}" in text
        assert "http://127.0.0.1:9464/admin/circuits" in text
        assert f"curl -X POST http://127.0.0.1:9464/admin/tools/{tool}/disable" in text
        assert f'ALERTS{{gen_ai_tool_name="{tool}", alertstate="firing"}}' in text
        assert "from the tool's own policy" in text
    search = (tmp_path / "runbooks" / "search_knowledge_base.md").read_text(encoding="utf-8")
    assert (
        "| Description | Search the support knowledge base for articles that answer the user's question. |"
        in search
    )
    assert "| Dependency | knowledge-base search API (kb-search), a flaky dependency:" in search
    assert "| Criticality | **critical** (see below) |" in search
    assert (
        "timeout 5 s (2 s per attempt), retries 2 (exponential backoff from 0.05 s, at most 0.4 s)" in search
    )
    assert "circuit breaker 5 consecutive failures / 2 s break" in search
    assert "fallback none: the error propagates" in search
    related = (tmp_path / "runbooks" / "fetch_related_content.md").read_text(encoding="utf-8")
    assert "| Criticality | **optional** (see below) |" in related
    assert (
        "circuit breaker 3 consecutive failures / 1 s break" in related and "bulkhead 8 concurrent" in related
    )
    assert "fallback degradation message (`ToolUnavailable`)" in related


def test_links_and_metadata_from_options(tmp_path: Path) -> None:
    result = run(
        [
            *PYTHON_M,
            "runbook",
            "--registry",
            "agentwatch._demo:REGISTRY",
            "--output-dir",
            tmp_path / "out",
            "--dependency",
            "search_knowledge_base=kb-api at https://kb.internal/search",
            "--health-url",
            "search_knowledge_base=https://kb.internal/healthz",
            "--team",
            "search-team",
            "--grafana-url",
            "https://grafana.example/",
            "--prometheus-url",
            "https://prometheus.example",
            "--jaeger-url",
            "https://jaeger.example",
            "--admin-url",
            "https://ops.example/agentwatch",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out" / "search_knowledge_base.md").read_text(encoding="utf-8")
    assert "| Dependency | kb-api at https://kb.internal/search |" in text
    assert "| Dependency health endpoint | `https://kb.internal/healthz` |" in text
    assert "curl -sf https://kb.internal/healthz" in text
    assert "| Owning team / on-call rotation | search-team / _fill in_ |" in text
    assert "https://grafana.example/d/agentwatch-tools?var-tool=search_knowledge_base" in text
    assert "https://grafana.example/d/agentwatch-llm" in text
    assert "Prometheus** (`https://prometheus.example`)" in text
    assert "Jaeger (`https://jaeger.example`)" in text
    assert "curl -X POST https://ops.example/agentwatch/admin/tools/search_knowledge_base/disable" in text
    assert "localhost" not in text and "127.0.0.1" not in text


def test_dict_and_module_registries(tmp_path: Path) -> None:
    (tmp_path / "shop_tools.py").write_text(
        "import agentwatch\n\n"
        "def lookup_order(order_id: str) -> dict:\n"
        '    """Look up an order by id.\n\n    Dependency: orders-api (https://orders.internal)\n    """\n'
        "    return {}\n\n"
        "def refund(order_id: str) -> dict:\n"
        '    """Refund an order."""\n'
        "    return {}\n\n"
        "TOOLS = agentwatch.instrument_registry(\n"
        "    {'lookup_order': lookup_order, 'refund': refund},\n"
        "    policies={'lookup_order': agentwatch.Policy(critical=False, timeout=3.0)},\n"
        ")\n\n"
        "@agentwatch.tool\n"
        "def track_parcel(parcel_id: str) -> dict:\n"
        '    """Where a parcel is."""\n'
        "    return {}\n"
    )
    config = tmp_path / "policies.toml"
    config.write_text("[tools.refund]\ntimeout = 7.0\nretry = { attempts = 2 }\n")
    result = run(
        [AGENTWATCH, "runbook", "--registry", "shop_tools:TOOLS", "--output-dir", "dict"],
        cwd=tmp_path,
        env={"AGENTWATCH_CONFIG": str(config)},
    )
    assert result.returncode == 0, result.stderr
    lookup = (tmp_path / "dict" / "lookup_order.md").read_text(encoding="utf-8")
    assert "| Description | Look up an order by id. |" in lookup
    assert "| Dependency | orders-api (https://orders.internal) |" in lookup
    assert "| Criticality | **optional** (see below) |" in lookup
    assert "timeout 3 s, retries 0" in lookup
    refund = (tmp_path / "dict" / "refund.md").read_text(encoding="utf-8")
    assert "timeout 7 s, retries 1 (exponential backoff from 0.5 s, at most 8 s)" in refund
    assert "from AGENTWATCH_CONFIG" in refund
    assert "| Dependency | _fill in_ |" in refund

    result = run([AGENTWATCH, "runbook", "--registry", "shop_tools", "--output-dir", "module"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "module").iterdir()) == ["track_parcel.md"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--registry", "no_such_module:TOOLS"],
            "cannot import module 'no_such_module': no module named 'no_such_module'",
        ),
        (["--registry", "agentwatch._demo:NOPE"], "module 'agentwatch._demo' has no attribute 'NOPE'"),
        (
            ["--registry", "agentwatch._demo:AGENT_NAME"],
            "agentwatch._demo:AGENT_NAME is a str, not an agentwatch.ToolRegistry",
        ),
        (["--registry", "agentwatch._demo:"], "expected MODULE:ATTRIBUTE (or MODULE)"),
        (["--registry", "json"], "json holds no tools"),
        (
            ["--registry", "agentwatch._demo:REGISTRY", "--dependency", "web_search=search-api"],
            "--dependency: unknown tool 'web_search'",
        ),
        (
            ["--registry", "agentwatch._demo:REGISTRY", "--dependency", "search_knowledge_base"],
            "expected TOOL=VALUE",
        ),
        (
            ["--registry", "agentwatch._demo:REGISTRY", "--grafana-url", "grafana:3000"],
            "must be an http:// or https:// URL",
        ),
        ([], "the following arguments are required: --registry"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, argv: list[str], message: str) -> None:
    result = run([*PYTHON_M, "runbook", *argv, "--output-dir", "out"], cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
