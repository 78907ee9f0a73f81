"""Static checks of the fleet shape (collector/fleet/) and of the ocb manifest, with the real
Collector: its configs validate (and a broken resolver set-up does not), the Collector is built
with exactly the components the shipped configs use, the gateways compute span metrics before
sampling and keep what the README promises, and the Kubernetes manifests (not applied here: no
cluster) and the compose variant are wired consistently with the configs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import _paths
from ._fleet import documented_resilience_events, routine_resilience_events
from ._harness import run_bounded

VALIDATE_TIMEOUT = 60.0
INSTANCE_ENV = {"OTELCOL_INSTANCE": "static-check"}
LOOPBACK_ENV = _paths.LOOPBACK_COLLECTOR_ENV
AGENT_STATIC = (_paths.FLEET_AGENT_CONFIG, _paths.FLEET_AGENT_STATIC_RESOLVER)
AGENT_DNS = (_paths.FLEET_AGENT_CONFIG, _paths.FLEET_AGENT_DNS_RESOLVER)
GATEWAY = (_paths.FLEET_GATEWAY_CONFIG,)


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _validate(otelcol_bin: Path, configs: tuple[Path, ...], env: dict[str, str]) -> tuple[int, str]:
    argv = [str(otelcol_bin), "validate", *(f"--config={c}" for c in configs)]
    result = run_bounded(argv, timeout=VALIDATE_TIMEOUT, env=env)
    return result.returncode, result.stdout + result.stderr


# ----------------------------------------------------------------------------- collector configs


@pytest.mark.parametrize("env", [INSTANCE_ENV, LOOPBACK_ENV], ids=["container-defaults", "loopback-env"])
@pytest.mark.parametrize(
    "configs", [AGENT_STATIC, AGENT_DNS, GATEWAY], ids=["agent-static", "agent-dns", "gateway"]
)
def test_fleet_configs_validate(otelcol_bin: Path, configs: tuple[Path, ...], env: dict[str, str]) -> None:
    code, output = _validate(otelcol_bin, configs, env)
    assert code == 0, output


@pytest.mark.parametrize(
    ("configs", "message"),
    [
        ((_paths.FLEET_AGENT_CONFIG,), "no resolvers specified"),
        ((*AGENT_STATIC, _paths.FLEET_AGENT_DNS_RESOLVER), "only one resolver"),
    ],
    ids=["no-resolver", "two-resolvers"],
)
def test_the_agent_needs_exactly_one_resolver_file(
    otelcol_bin: Path, configs: tuple[Path, ...], message: str
) -> None:
    code, output = _validate(otelcol_bin, configs, INSTANCE_ENV)
    assert code != 0 and message in output, output


def _used_components(config: dict[str, Any]) -> dict[str, set[str]]:
    """Component types (``otlp`` for ``otlp/jaeger``) per kind that the service really uses."""
    used: dict[str, set[str]] = {
        k: set() for k in ("receivers", "processors", "exporters", "connectors", "extensions")
    }
    service = config["service"]
    used["extensions"] |= {e.split("/")[0] for e in service.get("extensions", [])}
    for pipeline in service["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for name in pipeline.get(kind, []):
                target = "connectors" if name in config.get("connectors", {}) else kind
                used[target].add(name.split("/")[0])
    return used


def test_the_collector_is_built_with_exactly_the_components_the_configs_use(otelcol_bin: Path) -> None:
    used: dict[str, set[str]] = {}
    for files in ((_paths.COLLECTOR_CONFIG,), AGENT_STATIC, AGENT_DNS, GATEWAY):
        merged: dict[str, Any] = {}
        for path in files:
            for key, value in _load(path).items():
                merged.setdefault(key, {}).update(value)
        for kind, types in _used_components(merged).items():
            used.setdefault(kind, set()).update(types)
    result = run_bounded([str(otelcol_bin), "components"], timeout=VALIDATE_TIMEOUT)
    assert result.returncode == 0, result.stderr
    built = yaml.safe_load(result.stdout)
    for kind, types in used.items():
        assert {c["name"] for c in built.get(kind) or []} == types, kind
    manifest = _load(_paths.OCB_MANIFEST)
    modules = {c["gomod"] for kind in used for c in manifest.get(kind, [])}
    assert {c["module"] for kind in used for c in built.get(kind) or []} == modules
    assert built["buildinfo"]["version"] == manifest["dist"]["version"]


def test_gateways_compute_the_example_span_metrics_before_sampling() -> None:
    gateway = _load(_paths.FLEET_GATEWAY_CONFIG)
    example = _load(_paths.COLLECTOR_CONFIG)
    # Same dimensions, buckets and names: the dashboards and Jaeger's Monitor tab read both alike.
    assert gateway["connectors"]["spanmetrics"] == example["connectors"]["spanmetrics"]
    pipelines = gateway["service"]["pipelines"]
    first = pipelines["traces"]
    assert first["receivers"] == ["otlp"] and "tail_sampling" not in first["processors"]
    assert set(first["exporters"]) == {"spanmetrics", "forward/sampling"}
    sampled = pipelines["traces/sampled"]
    assert sampled["receivers"] == ["forward/sampling"] and sampled["processors"][0] == "tail_sampling"
    assert pipelines["metrics/spanmetrics"]["receivers"] == ["spanmetrics"]
    assert gateway["exporters"]["prometheus"]["const_labels"] == {
        "otelcol_instance": "${env:OTELCOL_INSTANCE}"
    }


def test_gateways_keep_errors_resilience_events_slow_and_costly_sessions() -> None:
    policies = {
        p["name"]: p for p in _load(_paths.FLEET_GATEWAY_CONFIG)["processors"]["tail_sampling"]["policies"]
    }
    assert policies["errors"]["status_code"]["status_codes"] == ["ERROR"]
    (condition,) = policies["resilience-events"]["ottl_condition"]["spanevent"]
    pattern = re.fullmatch(r'IsMatch\(name, "(.+)"\)', condition)
    assert pattern is not None, condition
    events = documented_resilience_events()
    assert len(events) >= 10
    assert {e for e in events if re.search(pattern.group(1), e)} == events
    routine = routine_resilience_events()
    assert len(routine) >= 5 and not routine & events
    assert not {e for e in routine if re.search(pattern.group(1), e)}
    assert not re.search(pattern.group(1), "retry_budget")  # anchored: whole names only
    assert (
        policies["slow-sessions"]["latency"]["threshold_ms"]
        == "${env:AGENTWATCH_SLO_SESSION_LATENCY_MS:-15000}"
    )
    (cost,) = policies["costly-sessions"]["ottl_condition"]["span"]
    assert cost.endswith(
        'attributes["gen_ai.usage.cost.amount"] > ${env:AGENTWATCH_SLO_SESSION_COST_USD:-0.10}'
    )
    assert policies["baseline"]["type"] == "probabilistic"
    assert list(policies) == ["errors", "resilience-events", "slow-sessions", "costly-sessions", "baseline"]


# ----------------------------------------------------------------------------- kubernetes


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = _load(_paths.FLEET_KUSTOMIZATION)
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(
            d for d in yaml.safe_load_all((_paths.FLEET_DIR / resource).read_text(encoding="utf-8")) if d
        )
    return docs


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_kustomization_generates_the_configs_from_the_shipped_files() -> None:
    kustomization = _load(_paths.FLEET_KUSTOMIZATION)
    generated = {g["name"]: g["files"] for g in kustomization["configMapGenerator"]}
    assert generated == {
        "otel-agent-config": ["agent.yaml", "agent-resolver-dns.yaml"],
        "otel-gateway-config": ["gateway.yaml"],
    }
    namespace = kustomization["namespace"]
    assert _one(_k8s_documents(), "Namespace", namespace)
    for name, files in generated.items():
        for file in files:
            assert (_paths.FLEET_DIR / file).is_file(), f"{name}: {file} missing"


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, containers
    return containers[0]


@pytest.mark.parametrize(
    ("deployment", "config_map"),
    [("otel-agent", "otel-agent-config"), ("otel-gateway", "otel-gateway-config")],
)
def test_deployments_run_their_generated_configs(deployment: str, config_map: str) -> None:
    docs = _k8s_documents()
    spec = _one(docs, "Deployment", deployment)["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    container = _container(_one(docs, "Deployment", deployment))
    compose = _load(_paths.FLEET_COMPOSE_FILE)["services"]
    assert container["image"] == compose["otel-agent"]["image"]
    (volume,) = pod["spec"]["volumes"]
    assert volume["configMap"]["name"] == config_map
    (mount,) = container["volumeMounts"]
    assert mount["name"] == volume["name"]
    generated = {g["name"]: g["files"] for g in _load(_paths.FLEET_KUSTOMIZATION)["configMapGenerator"]}
    assert container["args"] == [f"--config={mount['mountPath']}/{f}" for f in generated[config_map]]
    env = {e["name"]: e for e in container["env"]}
    assert env["OTELCOL_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["otlp-grpc"] == 4317 and ports["metrics"] == 8889 and ports["health"] == 13133
    assert container["readinessProbe"]["httpGet"] == {"path": "/status", "port": "health"}
    assert "memory" in container["resources"]["limits"], "memory_limiter works on a percentage of the limit"
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == str(
        ports["metrics"]
    )


def test_agents_resolve_the_gateways_headless_service() -> None:
    docs = _k8s_documents()
    namespace = _load(_paths.FLEET_KUSTOMIZATION)["namespace"]
    headless = _one(docs, "Service", "otel-gateway-headless")
    assert headless["spec"]["clusterIP"] == "None"
    gateway_pod = _one(docs, "Deployment", "otel-gateway")["spec"]["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= gateway_pod.items()
    (port,) = headless["spec"]["ports"]
    dns = _load(_paths.FLEET_AGENT_DNS_RESOLVER)["exporters"]["loadbalancing"]["resolver"]["dns"]
    assert dns["hostname"] == f"otel-gateway-headless.{namespace}.svc.cluster.local"
    assert int(dns["port"]) == port["port"] == 4317
    agent_service = _one(docs, "Service", "otel-agent")
    agent_pod = _one(docs, "Deployment", "otel-agent")["spec"]["template"]["metadata"]["labels"]
    assert agent_service["spec"]["selector"].items() <= agent_pod.items()
    assert {p["port"] for p in agent_service["spec"]["ports"]} == {4317, 4318}


# ----------------------------------------------------------------------------- compose


def _bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (_paths.FLEET_DIR / source).resolve()
    return mounts


def test_fleet_compose_wires_the_agent_to_both_gateways() -> None:
    services = _load(_paths.FLEET_COMPOSE_FILE)["services"]
    assert set(services) == {
        "otel-agent",
        "otel-gateway-1",
        "otel-gateway-2",
        "jaeger",
        "prometheus",
        "grafana",
    }
    for name, service in services.items():
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", service["image"]), name
        for target, source in _bind_mounts(service).items():
            assert source.exists(), f"{name}: {target} <- {source} does not exist"
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"
    agent = services["otel-agent"]
    mounts = _bind_mounts(agent)
    configs = [a.split("=", 1)[1] for a in agent["command"]]
    assert [mounts[c] for c in configs] == [p.resolve() for p in AGENT_STATIC]
    default = re.search(
        r"OTELCOL_GATEWAYS:-(\[[^]]+\])", _paths.FLEET_AGENT_STATIC_RESOLVER.read_text(encoding="utf-8")
    )
    assert default is not None
    gateways = yaml.safe_load(default.group(1))
    assert gateways == ["otel-gateway-1:4317", "otel-gateway-2:4317"]
    instances = set()
    for host in (g.split(":")[0] for g in gateways):
        gateway = services[host]
        config = gateway["command"][0].split("=", 1)[1]
        assert _bind_mounts(gateway)[config] == _paths.FLEET_GATEWAY_CONFIG.resolve()
        instances.add(gateway["environment"]["OTELCOL_INSTANCE"])
    assert len(instances) == 2, "each gateway needs its own otelcol_instance"
    assert _bind_mounts(services["jaeger"])["/etc/jaeger/config.yaml"] == _paths.JAEGER_CONFIG
    prom_mounts = _bind_mounts(services["prometheus"])
    assert prom_mounts["/etc/prometheus/prometheus.yml"] == _paths.FLEET_PROMETHEUS_CONFIG
    assert prom_mounts["/etc/prometheus/rules"] == _paths.PROMETHEUS_RULES_DIR
    targets = {
        t.split(":")[0]
        for job in _load(_paths.FLEET_PROMETHEUS_CONFIG)["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
    }
    assert targets <= set(services)
    gateway_default = re.search(
        r"TRACES_OTLP_ENDPOINT:-([^}]+)\}", _paths.FLEET_GATEWAY_CONFIG.read_text(encoding="utf-8")
    )
    assert gateway_default is not None and gateway_default.group(1).split(":")[0] in services
