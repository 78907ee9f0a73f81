"""Static checks of the shipped observability stack, with the real validators.

* the collector config passes ``validate`` of the ocb-built Collector (and uses exactly the
  components of its manifest, with the fleet configs: test_fleet_configs.py), the Jaeger config
  passes ``jaeger validate``, with the compose defaults and with the loopback addresses the e2e
  tests use;
* ``promtool check config`` / ``check rules`` (Prometheus 3, the shipped version) pass, and
  ``promtool test rules`` proves every alert fires on one side of its threshold only and that the
  SLO rules record nothing once traffic stops;
* the compose file parses, pins its images and mounts only files that exist, wired consistently
  with the configs, and starts Prometheus with the feature flag the stack relies on; every
  dashboard parses, uses only provisioned data sources, defines the variables it uses and names
  only metrics the stack really exposes; the LLM dashboard's span-metrics panel, evaluated by
  promtool, counts both LLM call operations (``chat``, Gemini's ``generate_content``).

Each validator also gets a broken input once (negative control), so these tests cannot pass
because a validator silently accepts anything.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from . import _paths
from ._dashboards import all_variable_refs, iter_datasource_refs, iter_targets, load_dashboards, substitute
from ._harness import run_bounded
from .metric_names import KNOWN_LABELS, KNOWN_METRICS, RECORDED_METRICS

VALIDATE_TIMEOUT = 60.0


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- collector / jaeger


@pytest.mark.parametrize("env", [{}, _paths.LOOPBACK_COLLECTOR_ENV], ids=["compose-defaults", "loopback-env"])
def test_collector_config_validates(otelcol_bin: Path, env: dict[str, str]) -> None:
    result = run_bounded(
        [str(otelcol_bin), "validate", "--config", str(_paths.COLLECTOR_CONFIG)],
        timeout=VALIDATE_TIMEOUT,
        env=env,
    )
    assert result.returncode == 0, f"otelcol validate failed:\n{result.stdout}\n{result.stderr}"


def test_jaeger_config_validates(jaeger_bin: Path) -> None:
    result = run_bounded(
        [str(jaeger_bin), "validate", "--config", str(_paths.JAEGER_CONFIG)], timeout=VALIDATE_TIMEOUT
    )
    assert result.returncode == 0, f"jaeger validate failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("send_batch_size: 8192", "send_batch_sizee: 8192"),  # unknown key
        (
            "exporters: [otlp/jaeger, otlp/tempo, spanmetrics]",
            "exporters: [otlp/jaeger, otlp/tempo, spanmetricz]",
        ),  # dangling reference
    ],
    ids=["unknown-key", "undefined-component"],
)
def test_validate_rejects_a_broken_collector_config(
    otelcol_bin: Path, tmp_path: Path, old: str, new: str
) -> None:
    text = _paths.COLLECTOR_CONFIG.read_text(encoding="utf-8")
    assert old in text, "negative control out of date with collector/otel-collector.yaml"
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace(old, new), encoding="utf-8")
    result = run_bounded([str(otelcol_bin), "validate", "--config", str(broken)], timeout=VALIDATE_TIMEOUT)
    assert result.returncode != 0, "otelcol validate accepted a broken config"


def test_collector_config_uses_only_env_addresses() -> None:
    """Every listen/target address is an ${env:...:-default}, so the same file runs on loopback."""
    config = _load_yaml(_paths.COLLECTOR_CONFIG)
    addresses = [
        config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        config["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        config["exporters"]["otlp/jaeger"]["endpoint"],
        config["exporters"]["otlp/tempo"]["endpoint"],
        config["exporters"]["prometheus"]["endpoint"],
        config["extensions"]["healthcheckv2"]["http"]["endpoint"],
    ]
    for address in addresses:
        assert re.fullmatch(r"\$\{env:[A-Z_]+:-[^}]+\}", address), address
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["processors"][0] == "memory_limiter"
    assert pipelines["metrics"]["processors"][0] == "memory_limiter"
    assert pipelines["logs"]["processors"][0] == "memory_limiter"
    assert set(pipelines["traces"]["exporters"]) == {"otlp/jaeger", "otlp/tempo", "spanmetrics"}
    assert set(pipelines["metrics"]["receivers"]) == {"otlp", "spanmetrics"}
    assert pipelines["metrics"]["exporters"] == ["prometheus"]
    # Every signal the SDK exports over OTLP has a pipeline: an OTLP logs export to a Collector
    # without one fails with UNIMPLEMENTED and the records are lost.
    assert {"traces", "metrics", "logs"} == {name.split("/")[0] for name in pipelines}
    assert "otlp" in pipelines["logs"]["receivers"]
    dims = {d["name"] for d in config["connectors"]["spanmetrics"]["dimensions"]}
    assert {"gen_ai.operation.name", "gen_ai.request.model", "gen_ai.tool.name", "error.type"} <= dims


# ----------------------------------------------------------------------------- prometheus


def test_promtool_check_config(promtool_bin: Path) -> None:
    result = run_bounded(
        [str(promtool_bin), "check", "config", str(_paths.PROMETHEUS_CONFIG)], timeout=VALIDATE_TIMEOUT
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    # rule_files resolve (relative to the config file) to exactly the shipped rule files
    assert f"SUCCESS: {len(_paths.rule_files())} rule files found" in result.stdout, result.stdout


def test_promtool_check_rules(promtool_bin: Path) -> None:
    files = _paths.rule_files()
    assert {f.name for f in files} == {"agentwatch-alerts.yml", "agentwatch-slo.yml"}
    result = run_bounded([str(promtool_bin), "check", "rules", *map(str, files)], timeout=VALIDATE_TIMEOUT)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert result.stdout.count("SUCCESS") == len(files), result.stdout


def test_promtool_check_rules_rejects_a_broken_rule(promtool_bin: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum by (job (rate(x[5m]))\n",
        encoding="utf-8",
    )
    result = run_bounded([str(promtool_bin), "check", "rules", str(broken)], timeout=VALIDATE_TIMEOUT)
    assert result.returncode != 0


def _rules_without_annotations(dest: Path, mutate: dict[str, tuple[str, str]] | None = None) -> None:
    """Copy the shipped rule files to ``dest`` without annotations (optionally editing one expr)."""
    for path in _paths.rule_files():
        doc = _load_yaml(path)
        for group in doc["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
                if mutate and rule.get("alert") in mutate:
                    old, new = mutate[rule["alert"]]
                    assert old in rule["expr"], f"mutation {old!r} not found in {rule['alert']}"
                    rule["expr"] = rule["expr"].replace(old, new)
        (dest / path.name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    shutil.copy(Path(__file__).parent / "promtool" / "rules-test.yml", dest / "rules-test.yml")


def test_alert_rules_unit_tests(promtool_bin: Path, tmp_path: Path) -> None:
    """Each seed threshold / SLO alert fires above its threshold, stays silent below, after `for:`."""
    _rules_without_annotations(tmp_path)
    result = run_bounded(
        [str(promtool_bin), "test", "rules", "rules-test.yml"], timeout=VALIDATE_TIMEOUT, cwd=tmp_path
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout


def test_alert_rules_unit_tests_catch_a_wrong_threshold(promtool_bin: Path, tmp_path: Path) -> None:
    _rules_without_annotations(tmp_path, mutate={"AgentwatchToolErrorRateCritical": (">= 0.25", ">= 0.35")})
    result = run_bounded(
        [str(promtool_bin), "test", "rules", "rules-test.yml"], timeout=VALIDATE_TIMEOUT, cwd=tmp_path
    )
    assert result.returncode != 0, (
        "promtool rule tests did not notice a critical threshold moved from 25% to 35%"
    )
    assert "AgentwatchToolErrorRateCritical" in result.stdout + result.stderr


def test_every_alert_has_severity_and_an_existing_runbook_section() -> None:
    runbook = (_paths.REPO_ROOT / "docs" / "runbook-template.md").read_text(encoding="utf-8")
    anchors = {_github_anchor(line.lstrip("#")) for line in runbook.splitlines() if line.startswith("#")}
    alerts = [
        r for f in _paths.rule_files() for g in _load_yaml(f)["groups"] for r in g["rules"] if "alert" in r
    ]
    assert len(alerts) >= 11
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), rule["alert"]
        path, _, anchor = rule["annotations"]["runbook_url"].partition("#")
        assert path == "docs/runbook-template.md", rule["alert"]
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor} in docs/runbook-template.md"


def _github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# ----------------------------------------------------------------------------- docker compose


def _compose() -> dict[str, Any]:
    doc = _load_yaml(_paths.COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path (resolved against collector/) of each bind mount."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        assert source.startswith("."), f"only relative bind mounts expected, got {volume}"
        mounts[target] = (_paths.COLLECTOR_DIR / source).resolve()
    return mounts


def test_compose_parses_pins_images_and_mounts_existing_files() -> None:
    services = _compose()["services"]
    assert set(services) == {"otel-collector", "jaeger", "tempo", "prometheus", "grafana"}
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert re.fullmatch(r"[\w./-]+", repo), f"{name}: image without a tag: {image}"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: image not pinned to a release: {image}"
        for target, source in _bind_mounts(service).items():
            assert source.exists(), f"{name}: mount source for {target} does not exist: {source}"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} is not bound to loopback"


def test_compose_mounts_match_the_configs() -> None:
    services = _compose()["services"]

    def config_arg(service: dict[str, Any], flag: str) -> str:
        args = [a for a in service["command"] if a.startswith(flag + "=")]
        assert len(args) == 1, service["command"]
        return str(args[0].split("=", 1)[1])

    collector = services["otel-collector"]
    assert _bind_mounts(collector)[config_arg(collector, "--config")] == _paths.COLLECTOR_CONFIG
    jaeger = services["jaeger"]
    assert _bind_mounts(jaeger)[config_arg(jaeger, "--config")] == _paths.JAEGER_CONFIG
    tempo = services["tempo"]
    assert (
        _bind_mounts(tempo)[config_arg(tempo, "-config.file")]
        == _paths.COLLECTOR_DIR / "tempo" / "tempo.yaml"
    )

    prometheus = services["prometheus"]
    prom_mounts = _bind_mounts(prometheus)
    prom_config_path = config_arg(prometheus, "--config.file")
    assert prom_mounts[prom_config_path] == _paths.PROMETHEUS_CONFIG
    # rule_files are relative to the config file; the rules directory must be mounted there
    for pattern in _load_yaml(_paths.PROMETHEUS_CONFIG)["rule_files"]:
        container_dir = str(Path(prom_config_path).parent / Path(pattern).parent)
        assert prom_mounts[container_dir] == _paths.PROMETHEUS_RULES_DIR

    grafana_mounts = _bind_mounts(services["grafana"])
    assert grafana_mounts["/etc/grafana/provisioning/datasources"] == _paths.GRAFANA_DATASOURCES.parent
    providers = _load_yaml(
        _paths.COLLECTOR_DIR / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
    )["providers"]
    for provider in providers:
        assert grafana_mounts[provider["options"]["path"]] == _paths.DASHBOARDS_DIR
    home = services["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (_paths.DASHBOARDS_DIR / Path(home).name).is_file()


def test_compose_hostnames_in_configs_are_compose_services() -> None:
    services = set(_compose()["services"])
    hosts: list[str] = []
    for default in re.findall(
        r"\$\{env:[A-Z_]+:-([^}]+)\}", _paths.COLLECTOR_CONFIG.read_text(encoding="utf-8")
    ):
        if ":" in default and not default.startswith(("0.0.0.0", "http")):
            hosts.append(default.split(":")[0])
    for job in _load_yaml(_paths.PROMETHEUS_CONFIG)["scrape_configs"]:
        for static in job["static_configs"]:
            hosts.extend(t.split(":")[0] for t in static["targets"])
    for ds in _load_yaml(_paths.GRAFANA_DATASOURCES)["datasources"]:
        hosts.append(urlparse(ds["url"]).hostname or "")
    jaeger_prom = re.search(
        r"JAEGER_PROMETHEUS_URL:-([^}]+)\}", _paths.JAEGER_CONFIG.read_text(encoding="utf-8")
    )
    assert jaeger_prom is not None
    hosts.append(urlparse(jaeger_prom.group(1)).hostname or "")
    assert {"jaeger", "tempo", "otel-collector", "prometheus"} <= set(hosts)
    assert set(hosts) <= services, f"unknown hosts: {set(hosts) - services}"


@pytest.mark.parametrize(
    ("config", "targets"),
    [
        (_paths.PROMETHEUS_CONFIG, ["otel-collector:8889"]),
        (_paths.FLEET_PROMETHEUS_CONFIG, ["otel-agent:8889", "otel-gateway-1:8889", "otel-gateway-2:8889"]),
    ],
    ids=["example", "fleet"],
)
def test_prometheus_keeps_the_exporters_labels_and_created_timestamps(
    config: Path, targets: list[str]
) -> None:
    scrape = _load_yaml(config)
    assert scrape["global"]["scrape_interval"] == "15s"
    jobs = {j["job_name"]: j for j in scrape["scrape_configs"]}
    app = jobs["otel-collector"]
    assert app.get("honor_labels") is True, (
        "without honor_labels, job/instance become exported_job/exported_instance"
    )
    assert app["static_configs"][0]["targets"] == targets
    # The protobuf format carries the created timestamps that count a new series from zero.
    assert app["scrape_protocols"][0] == "PrometheusProto"


@pytest.mark.parametrize(
    "compose", [_paths.COMPOSE_FILE, _paths.FLEET_COMPOSE_FILE], ids=["example", "fleet"]
)
def test_compose_prometheus_is_the_tested_release_with_its_feature_flag(
    compose: Path, prometheus_bin: Path
) -> None:
    prometheus = _load_yaml(compose)["services"]["prometheus"]
    version = run_bounded([str(prometheus_bin), "--version"], timeout=VALIDATE_TIMEOUT).stdout.split()[2]
    assert prometheus["image"] == f"prom/prometheus:v{version}"
    for feature in _paths.PROMETHEUS_FEATURES:
        assert f"--enable-feature={feature}" in prometheus["command"]


# ----------------------------------------------------------------------------- dashboards


def _provisioned_datasources() -> dict[str, str]:
    return {ds["uid"]: ds["type"] for ds in _load_yaml(_paths.GRAFANA_DATASOURCES)["datasources"]}


def test_datasources_are_provisioned_with_fixed_uids() -> None:
    assert _provisioned_datasources() == {"prometheus": "prometheus", "jaeger": "jaeger", "tempo": "tempo"}


def test_dashboards_parse_and_use_only_provisioned_datasources() -> None:
    provisioned = _provisioned_datasources()
    dashboards = load_dashboards()
    assert {d["uid"] for d in dashboards.values()} == {
        "agentwatch-llm",
        "agentwatch-tools",
        "agentwatch-sessions",
    }
    for path, dashboard in dashboards.items():
        refs = list(iter_datasource_refs(dashboard))
        assert refs, path
        for ref in refs:
            if ref.get("uid") == "-- Grafana --":  # Grafana's built-in annotations source
                continue
            assert ref.get("uid") in provisioned, f"{path}: unknown datasource {ref}"
            assert ref.get("type") == provisioned[ref["uid"]], f"{path}: datasource type mismatch {ref}"


def test_dashboards_are_well_formed() -> None:
    for path, dashboard in load_dashboards().items():
        panels = [p for p in dashboard["panels"] if p["type"] != "row"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path}: duplicate panel ids"
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        assert "service" in defined, path
        targets = list(iter_targets(dashboard))
        assert len(targets) >= len(panels), f"{path}: a panel without a query"
        for panel, target in targets:
            assert target["expr"].strip(), f"{path}: {panel['title']}: empty query"
            assert 'job=~"$service"' in target["expr"] or target["expr"].startswith("agentwatch:"), (
                f"{path}: {panel['title']}: query ignores the service variable"
            )
        used = all_variable_refs(dashboard)
        builtin = {"__rate_interval", "__interval", "__range"}
        assert used - builtin <= defined, f"{path}: undefined variables {used - builtin - defined}"
        assert defined <= used, f"{path}: variables never used {defined - used}"


# gen_ai.operation.name of an LLM call: `chat`, and `generate_content` for google-genai (v1.41).
_LLM_CALL_SPANS = {"chat": "chat gpt-4o-mini", "generate_content": "generate_content gemini-2.5-flash"}


def _span_panel_samples(promtool_bin: Path, tmp_path: Path, expr: str) -> subprocess.CompletedProcess[str]:
    """``expr`` evaluated by promtool over one span-metrics series per operation (1 call/s each)."""
    query = substitute(expr, {"service": ".*", "model": ".*", "__rate_interval": "5m"})
    spans = {**_LLM_CALL_SPANS, "execute_tool": "execute_tool get_weather", "embeddings": "embeddings e5"}
    series = [
        {
            "series": (
                f'traces_span_metrics_calls_total{{job="app",gen_ai_operation_name="{operation}",'
                f'span_name="{name}",status_code="STATUS_CODE_UNSET"}}'
            ),
            "values": "0+60x20",
        }
        for operation, name in spans.items()
    ]
    expected = [
        {"labels": f'{{span_name="{name}",status_code="STATUS_CODE_UNSET"}}', "value": 1}
        for name in _LLM_CALL_SPANS.values()
    ]
    test = {
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [{"expr": query, "eval_time": "15m", "exp_samples": expected}],
            }
        ]
    }
    (tmp_path / "panel-test.yml").write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    return run_bounded(
        [str(promtool_bin), "test", "rules", "panel-test.yml"], timeout=VALIDATE_TIMEOUT, cwd=tmp_path
    )


def _llm_span_panel_expr() -> str:
    dashboard = load_dashboards()[_paths.DASHBOARDS_DIR / "agentwatch-llm.json"]
    (expr,) = (
        t["expr"] for _, t in iter_targets(dashboard) if "traces_span_metrics_calls_total" in t["expr"]
    )
    return expr


def test_the_llm_span_panel_shows_chat_and_generate_content_calls(promtool_bin: Path, tmp_path: Path) -> None:
    """The LLM dashboard's span-metrics panel, evaluated by Prometheus' engine: one series per LLM
    call span name (Gemini's generate_content next to chat), none of tools or embeddings."""
    result = _span_panel_samples(promtool_bin, tmp_path, _llm_span_panel_expr())
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "SUCCESS" in result.stdout


def test_the_llm_span_panel_check_catches_a_chat_only_query(promtool_bin: Path, tmp_path: Path) -> None:
    expr = re.sub(r'gen_ai_operation_name=~?"[^"]*"', 'gen_ai_operation_name="chat"', _llm_span_panel_expr())
    result = _span_panel_samples(promtool_bin, tmp_path, expr)
    assert result.returncode != 0, "promtool accepted a panel query that drops generate_content spans"
    assert "generate_content gemini-2.5-flash" in result.stdout + result.stderr


def test_dashboard_and_rule_metric_names_are_ones_the_stack_exposes() -> None:
    """Names must be the Prometheus names after the collector's translation (see metric_names.py,
    checked against the live stack by the e2e test)."""
    exprs: list[tuple[str, str]] = []
    for path, dashboard in load_dashboards().items():
        exprs.extend(
            (f"{path.name}: {panel['title']}", target["expr"]) for panel, target in iter_targets(dashboard)
        )
        for variable in dashboard["templating"]["list"]:
            exprs.append((f"{path.name}: ${variable['name']}", variable["definition"]))
    for path in _paths.rule_files():
        for group in _load_yaml(path)["groups"]:
            exprs.extend(
                (f"{path.name}: {r.get('alert') or r.get('record')}", r["expr"]) for r in group["rules"]
            )
    recorded = {
        r["record"]
        for p in _paths.rule_files()
        for g in _load_yaml(p)["groups"]
        for r in g["rules"]
        if "record" in r
    }
    assert recorded == RECORDED_METRICS
    name_re = re.compile(r"\b((?:gen_ai_|agentwatch_|traces_span_metrics_|agentwatch:)[A-Za-z0-9_:]*)")
    seen: set[str] = set()
    for where, expr in exprs:
        for name in name_re.findall(re.sub(r'"[^"]*"', '""', expr)):  # ignore label values
            assert name in KNOWN_METRICS | RECORDED_METRICS | KNOWN_LABELS, (
                f"{where}: unknown metric or label {name}"
            )
            seen.add(name)
    assert seen & KNOWN_METRICS, "no metric names found"


def _matched_events(expr: str) -> set[str]:
    match = re.search(r'agentwatch_resilience_event=~"([^"]+)"', expr)
    assert match is not None, expr
    return set(match.group(1).split("|"))


def test_the_rejections_panel_counts_every_rejection_the_resilience_layer_emits() -> None:
    """The events of calls refused without being made are REJECTION_EVENTS (the resilience tests
    check that each refusal emits one of them); the Tools dashboard's panel selects exactly those."""
    from agentwatch.resilience._telemetry import REJECTION_EVENTS

    dashboard = next(d for d in load_dashboards().values() if d["uid"] == "agentwatch-tools")
    (target,) = [t for p, t in iter_targets(dashboard) if p["title"] == "Rejections per second"]
    assert _matched_events(target["expr"]) == REJECTION_EVENTS
    panel = next(p for p, t in iter_targets(dashboard) if t is target)
    for event in REJECTION_EVENTS:
        assert event in panel["description"], event


def _outcome_selectors(expr: str) -> set[tuple[str, frozenset[str]]]:
    return {
        (op, frozenset(values.split("|")))
        for op, values in re.findall(r'agentwatch_session_outcome(!~|=~|!=|=)"([^"]*)"', expr)
    }


def test_the_completion_slo_rules_and_panel_split_outcomes_as_agentwatch_does() -> None:
    """Answered and no-verdict outcomes are agentwatch._semconv's sets (the CLI summary uses them
    too); the rules' behaviour on each kind of outcome is tested by promtool (rules-test.yml)."""
    from agentwatch._semconv import SLO_ANSWERED_OUTCOMES, SLO_EXCLUDED_OUTCOMES

    assert {"completed", "refused"} == SLO_ANSWERED_OUTCOMES
    assert {"interrupted", "cancelled"} == SLO_EXCLUDED_OUTCOMES
    failures = ("!~", SLO_ANSWERED_OUTCOMES | SLO_EXCLUDED_OUTCOMES)
    judged = ("!~", SLO_EXCLUDED_OUTCOMES)
    rules = [
        r
        for p in _paths.rule_files()
        for g in _load_yaml(p)["groups"]
        for r in g["rules"]
        if r.get("record", "").startswith("agentwatch:session_failure:")
    ]
    assert len(rules) == 4
    for rule in rules:
        assert _outcome_selectors(rule["expr"]) == {failures, judged}, rule["record"]
    dashboard = next(d for d in load_dashboards().values() if d["uid"] == "agentwatch-sessions")
    (target,) = [t for p, t in iter_targets(dashboard) if p["title"] == "Session completion rate"]
    assert _outcome_selectors(target["expr"]) == {("=~", SLO_ANSWERED_OUTCOMES), judged}


def test_dashboard_json_is_stable_formatting() -> None:
    """Files are plain JSON objects (Grafana imports them as-is) with a trailing newline."""
    for path in _paths.dashboard_files():
        text = path.read_text(encoding="utf-8")
        assert isinstance(json.loads(text), dict)
        assert text.endswith("\n")


# ----------------------------------------------------------------------------- setup script


def test_setup_script_and_tests_agree_on_binary_paths(
    jaeger_bin: Path, prometheus_bin: Path, promtool_bin: Path, otelcol_bin: Path
) -> None:
    result = run_bounded(["bash", str(_paths.SETUP_SCRIPT)], timeout=60)
    assert result.returncode == 0, result.stderr
    printed = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert Path(printed["JAEGER"]) == jaeger_bin
    assert Path(printed["PROMETHEUS"]) == prometheus_bin
    assert Path(printed["PROMTOOL"]) == promtool_bin
    assert Path(printed["OTELCOL"]) == otelcol_bin
