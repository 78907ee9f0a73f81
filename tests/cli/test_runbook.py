"""``agentwatch runbook`` end to end, in subprocesses: the README command, registries of each kind, bad input."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentwatch._cli._alerts import RuleSet, parse_rules
from agentwatch._cli._runbook import DASHBOARD_UIDS, Links, _Alerting, describe, load_tools, render_runbook
from agentwatch.resilience import CircuitBreaker
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
        assert f'curl -X POST -H "$auth" http://127.0.0.1:9464/admin/tools/{tool}/disable' in text
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
    assert (
        'curl -X POST -H "$auth" https://ops.example/agentwatch/admin/tools/search_knowledge_base/disable'
        in text
    )
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


# ------------------------------------------------------------------------------------------------
# How errors are handled: generated from each tool's policy and the alert rules that exist
# ------------------------------------------------------------------------------------------------


DEMO_RUNBOOKS = [AGENTWATCH, "runbook", "--registry", "agentwatch._demo:REGISTRY", "--output-dir", "out"]


def _error_table(text: str) -> dict[str, tuple[str, str]]:
    """error label -> (what the policy does, who is told), from a runbook's table."""
    section = text.split("### How errors are handled\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| error ")
    ]
    table = {}
    for row in rows:
        label, what, told = (cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:4])
        table[label.split(" (")[0]] = (what, told)
    return table


@pytest.fixture(scope="module")
def demo_runbooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, tuple[str, str]]]:
    cwd = tmp_path_factory.mktemp("runbooks")
    result = run(DEMO_RUNBOOKS, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return {
        tool: _error_table((cwd / "out" / f"{tool}.md").read_text(encoding="utf-8")) for tool in DEMO_TOOLS
    }


def test_each_row_says_what_the_tools_own_policy_does(
    demo_runbooks: dict[str, dict[str, tuple[str, str]]],
) -> None:
    search, related, preferences = (
        demo_runbooks[t] for t in ("search_knowledge_base", "fetch_related_content", "get_user_preferences")
    )
    # search_knowledge_base: critical, 3 attempts, a breaker, no fallback.
    assert search["timeout"][0].startswith(
        "Each attempt is cut at 2 s, the whole call at 5 s. Retried up to 2 times"
    )
    assert search["dependency failure"][0].startswith(
        "Retried up to 2 times, with exponential backoff from 0.05 s"
    )
    for what, _ in search.values():
        assert "degradation" not in what and "fallback" not in what  # it has none
    assert "raised to the agent: the tool is critical" in search["dependency failure"][0]
    assert "circuit open" in search and "bulkhead full" not in search
    # fetch_related_content: optional, no retry, a breaker and a bulkhead.
    assert related["timeout"][0].startswith("The call is cut at 2 s. Never retried")
    assert not any("etried up to" in what for what, _ in related.values())
    assert related["rate limited"][0].startswith("Not retried (the policy has no `retry`)")
    assert "returns its degradation result (`ToolUnavailable`" in related["dependency failure"][0]
    assert related["bulkhead full"][0].startswith("Calls beyond 8 at once are rejected (no queue).")
    # Validation errors are bugs: never retried, and raised even by an optional tool.
    assert related["validation error"][0] == (
        "Never retried; not counted by the circuit breaker; then raised to the agent although the tool is "
        "optional: a bug to fix, not an outage."
    )
    # get_user_preferences: optional, one retry per attempt timeout, no breaker.
    assert "circuit open" not in preferences
    assert "counts towards the circuit breaker" not in preferences["dependency failure"][0]


def test_who_is_told_comes_from_the_alert_rules(demo_runbooks: dict[str, dict[str, tuple[str, str]]]) -> None:
    search, related = demo_runbooks["search_knowledge_base"], demo_runbooks["fetch_related_content"]
    # The shipped rules watch validation errors per tool: the runbook names that rule, not a vague
    # "developers notified".
    assert search["validation error"][1].startswith("`AgentwatchToolValidationErrors` (warning)")
    assert "notified" not in search["validation error"][1]
    # The latency alert cannot fire for a tool whose deadline is below its threshold.
    assert (
        "`AgentwatchToolLatencyHigh` cannot fire: the 2 s deadline keeps calls under its 5 s"
        in related["timeout"][1]
    )
    assert "slow calls: `AgentwatchToolLatencyHigh` (warning, p95 ≥ 5 s)" in search["timeout"][1]
    # A critical tool's failure fails the session: the completion SLO alerts; an optional tool's does not.
    assert "`AgentwatchSessionCompletionBudgetBurnFast` (critical)" in search["dependency failure"][1]
    assert "Completion" not in related["dependency failure"][1]


def test_without_a_validation_alert_rule_the_runbook_says_so(tmp_path: Path) -> None:
    # The row follows the rules the operator runs: drop the validation rule and the runbook must
    # stop naming it rather than promise a notification nothing sends.
    rules = tmp_path / "rules"
    rules.mkdir()
    for source in (REPO / "collector" / "prometheus" / "rules").glob("*.yml"):
        text = source.read_text(encoding="utf-8")
        if "- name: agentwatch-tool-arguments" in text:
            text = text[: text.index("  - name: agentwatch-tool-arguments")]
        (rules / source.name).write_text(text, encoding="utf-8")
    assert "AgentwatchToolValidationErrors" not in "".join(p.read_text() for p in rules.glob("*.yml"))
    result = run(
        [*DEMO_RUNBOOKS, "--alert-rules", rules],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    table = _error_table((tmp_path / "out" / "search_knowledge_base.md").read_text(encoding="utf-8"))
    assert table["validation error"][1].startswith("no alert of its own: it counts with every other error")
    assert "notified" not in table["validation error"][1]


def test_without_alert_rules_nobody_is_said_to_be_told(tmp_path: Path) -> None:
    rules = tmp_path / "none.yml"
    rules.write_text("groups:\n  - name: recording\n    rules:\n      - record: x\n        expr: vector(1)\n")
    refused = run(
        [*DEMO_RUNBOOKS, "--alert-rules", rules],
        cwd=tmp_path,
    )
    assert refused.returncode == 2 and "--alert-rules: no alerting rule in" in refused.stderr
    info = describe(load_tools("agentwatch._demo:REGISTRY")[0], {}, {})
    template = TEMPLATE.read_text(encoding="utf-8")
    text = render_runbook(template, info, Links(), team=None, registry="r", alerting=_Alerting.of(RuleSet()))
    table = _error_table(text)
    assert {told for _, told in table.values()} == {"no alert rule covers it: nobody is notified"}
    assert "No alert rules were found (give them with `--alert-rules`)" in text


def test_a_custom_classifier_changes_the_rows(tmp_path: Path) -> None:
    """The rows come from running the errors through the tool's classifier, not from a fixed table."""
    (tmp_path / "custom_tools.py").write_text(
        "import agentwatch\n"
        "from agentwatch.resilience import Classification, ErrorCategory, default_classifier\n\n"
        "def retry_bad_input(exc):\n"
        "    if isinstance(exc, ValueError):\n"
        "        return Classification(category=ErrorCategory.DEPENDENCY, retryable=True, counts_as_failure=True)\n"
        "    return default_classifier(exc)\n\n"
        "@agentwatch.tool(policy=agentwatch.Policy(retry=agentwatch.Retry(attempts=4), classifier=retry_bad_input))\n"
        "def parse(text: str) -> str:\n"
        '    """Parse."""\n'
        "    return text\n"
    )
    result = run([AGENTWATCH, "runbook", "--registry", "custom_tools", "--output-dir", "out"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = _error_table((tmp_path / "out" / "parse.md").read_text(encoding="utf-8"))
    assert table["validation error"][0].startswith("Retried up to 3 times")


def test_alert_rules_are_read_as_prometheus_reads_them() -> None:
    """The small YAML reader agrees with PyYAML on every shipped rule."""
    for path in sorted((REPO / "collector" / "prometheus" / "rules").glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        ours = parse_rules(text)
        reference = [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]
        alerts = [rule for rule in reference if "alert" in rule]
        assert [rule.name for rule in ours.alerts] == [rule["alert"] for rule in alerts]
        for rule, expected in zip(ours.alerts, alerts, strict=True):
            assert rule.expr == "\n".join(line.strip() for line in expected["expr"].strip().splitlines())
            assert rule.duration == expected.get("for")
            assert rule.labels == {k: str(v) for k, v in expected.get("labels", {}).items()}
            assert rule.annotations == expected.get("annotations", {})
        assert ours.records == {
            rule["record"]: "\n".join(line.strip() for line in str(rule["expr"]).strip().splitlines())
            for rule in reference
            if "record" in rule
        }


def test_every_admin_call_in_a_runbook_is_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The routes and methods the curl lines use exist in agentwatch.admin, with the token they send."""
    from agentwatch.admin import make_app
    from agentwatch.resilience._registry import Registry

    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", "s3cret")
    registry = Registry()
    registry.circuit_for("search_knowledge_base", CircuitBreaker(), name="search_knowledge_base", kind="tool")
    app = make_app(registry)
    text = (
        TEMPLATE.read_text(encoding="utf-8")
        .replace("<ADMIN_URL>", "")
        .replace("<circuit key>", "search_knowledge_base")
    )
    text = text.replace("<tool_name>", "search_knowledge_base")
    calls = re.findall(
        r"curl (-X POST |-s )?-H \"(?:Authorization: Bearer \$AGENTWATCH_ADMIN_TOKEN|\$auth)\" (/admin/\S+?)[`\s]",
        text,
    )
    assert len(calls) >= 6
    assert 'auth="Authorization: Bearer $AGENTWATCH_ADMIN_TOKEN"' in text
    for method, path in calls:
        status = asyncio.run(_call(app, "POST" if "POST" in method else "GET", path, "s3cret"))
        assert status == 200, (method, path)


_ADMIN_URL = re.compile(r"(?:<ADMIN_URL>|https?://[\w.:\[\]-]+)/admin/")
_AUTHENTICATED_CURL = re.compile(
    r'curl [^`|]*-H "(?:Authorization: Bearer \$AGENTWATCH_ADMIN_TOKEN|\$auth)" [^`|]*$'
)


def _unauthenticated_admin_urls(text: str) -> list[str]:
    """Lines that give an admin URL outside a curl command sending the bearer token: since every
    admin route answers 401/403 without it, such a line would send on-call to an error."""
    return [
        line.strip()
        for line in text.splitlines()
        for match in _ADMIN_URL.finditer(line)
        if not _AUTHENTICATED_CURL.search(line[: match.start()])
    ]


def test_every_admin_url_in_the_docs_and_runbooks_sends_the_token(tmp_path: Path) -> None:
    assert _unauthenticated_admin_urls("see <ADMIN_URL>/admin/circuits") != []  # the check can fail
    documents = {
        path: path.read_text(encoding="utf-8")
        for path in (TEMPLATE, REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
    }
    result = run(
        [AGENTWATCH, "runbook", "--registry", "agentwatch._demo:REGISTRY", "--output-dir", "out"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    documents.update({path: path.read_text(encoding="utf-8") for path in (tmp_path / "out").glob("*.md")})
    assert len(documents) >= 3 + len(DEMO_TOOLS)
    for path, text in documents.items():
        assert _unauthenticated_admin_urls(text) == [], path
    runbook = documents[tmp_path / "out" / "search_knowledge_base.md"]
    assert len(_ADMIN_URL.findall(runbook)) >= 8
    assert "no authentication" not in runbook.lower() and "$AGENTWATCH_ADMIN_TOKEN" in runbook


async def _call(app: Any, method: str, path: str, token: str) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {token}".encode())],
    }
    await app(scope, receive, send)
    return int(sent[0]["status"])


ADMIN_CALLS = [
    ("GET", "/admin/circuits"),
    ("POST", "/admin/circuits/{key}/open"),
    ("POST", "/admin/circuits/{key}/close"),
    ("POST", "/admin/circuits/{key}/reset"),
    ("POST", "/admin/tools/{name}/disable"),
    ("POST", "/admin/tools/{name}/enable"),
]


def test_the_readme_lists_every_admin_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README names the routes the runbooks use, and each is served."""
    from agentwatch.admin import make_app
    from agentwatch.resilience._registry import Registry

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    bullet = readme.split("- `agentwatch.admin.app` is", 1)[1].split("\n- ", 1)[0]
    assert "`GET /admin/circuits`" in bullet
    assert "`POST /admin/circuits/{key}/open`, `/close` and `/reset`" in bullet
    assert "`POST /admin/tools/{name}/disable` and `/enable`" in bullet
    monkeypatch.setenv("AGENTWATCH_ADMIN_TOKEN", "s3cret")
    registry = Registry()
    registry.circuit_for("openai:gpt-4o", CircuitBreaker(), name="gpt-4o", kind="llm")
    app = make_app(registry)
    for method, route in ADMIN_CALLS:
        path = route.replace("{key}", "openai%3Agpt-4o").replace("{name}", "search")
        assert asyncio.run(_call(app, method, path, "s3cret")) == 200, route
    assert asyncio.run(_call(app, "POST", "/admin/circuits/openai%3Agpt-4o/frobnicate", "s3cret")) == 404
