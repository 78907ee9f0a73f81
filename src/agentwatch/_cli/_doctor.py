"""``agentwatch doctor``: what agentwatch would do in this environment, and what stands in its way.

Exit code 0: nothing wrong; 1: a problem was found (an invalid setting, an unknown propagator, a
configured OTLP endpoint that does not answer, another instrumentor that would double the spans);
2: bad arguments. Nothing is instrumented, exported or imported from the LLM SDKs themselves: the
versions come from the installed distributions' metadata.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import Distribution, EntryPoint, PackageNotFoundError, entry_points, version
from typing import Any

from agentwatch import environment_variables as ev
from agentwatch._cli._common import describe_policy, parse_endpoint, probe

__all__ = ["Report", "add_parser", "diagnose", "documented_variables", "run"]

_INSTRUMENTOR_GROUP = "opentelemetry_instrumentor"
_PROPAGATOR_GROUP = "opentelemetry_propagator"
_DISABLED = "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"
# Libraries other than an integration's own whose instrumentors would duplicate agentwatch's spans
# are declared by each integration (its package.py, _duplicated_by); see instrumentation/_registry.py.
_EXPORTER_VARIABLES = (
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
    "OTEL_SDK_DISABLED",
)
# Defaults as opentelemetry-instrument with opentelemetry-distro (or agentwatch.instrument()) applies them.
_EXPORTER_DEFAULTS = {
    "OTEL_SERVICE_NAME": "unknown_service",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    "OTEL_METRIC_EXPORT_INTERVAL": "60000",
}
_SECRET_VARIABLES = frozenset({"OTEL_EXPORTER_OTLP_HEADERS"})
_DEFAULT_PROPAGATORS = "tracecontext,baggage"
_SIGNALS = ("traces", "metrics", "logs")


@dataclass
class Client:
    library: str
    installed: str | None
    supported: str
    instrumentor: str
    activates: bool
    reason: str


@dataclass
class OtherInstrumentor:
    name: str
    distribution: str
    instruments: list[str]
    overlaps: list[str]
    disabled: bool
    effect: str


@dataclass
class Setting:
    name: str
    value: str
    source: str  # "env" | "default"
    meaning: str = ""
    error: str | None = None


@dataclass
class EndpointCheck:
    url: str
    signals: list[str]
    protocol: str
    configured: bool
    answers: bool
    detail: str


@dataclass
class Report:
    python: str
    agentwatch: str
    clients: list[Client] = field(default_factory=list)
    other_instrumentors: list[OtherInstrumentor] = field(default_factory=list)
    settings: list[Setting] = field(default_factory=list)
    exporter_settings: list[Setting] = field(default_factory=list)
    endpoints: list[EndpointCheck] = field(default_factory=list)
    content_capture: str = ""
    policies: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    propagators: list[dict[str, Any]] = field(default_factory=list)
    propagators_source: str = "default"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": not self.problems}


# ------------------------------------------------------------------------------------------------
# Diagnosis
# ------------------------------------------------------------------------------------------------


def _version_of(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _disabled(environ: Mapping[str, str]) -> set[str]:
    return {name.strip() for name in environ.get(_DISABLED, "").split(",") if name.strip()}


def _instrumentor_points() -> list[EntryPoint]:
    return sorted(entry_points(group=_INSTRUMENTOR_GROUP), key=lambda ep: ep.name)


def _dist_name(entry_point: EntryPoint) -> str:
    dist: Distribution | None = getattr(entry_point, "dist", None)
    return dist.metadata["Name"] if dist is not None else "(unknown distribution)"


def _clients(report: Report, environ: Mapping[str, str]) -> None:
    from opentelemetry.instrumentation.dependencies import (
        get_dependency_conflicts,
        get_dist_dependency_conflicts,
    )

    from agentwatch.instrumentation._registry import load_registry

    disabled = _disabled(environ)
    registry = load_registry()
    report.problems.extend(registry.problems)
    for integration in registry.integrations:
        library, name, point = integration.library, integration.name, integration.entry_point
        installed = _version_of(library)
        supported, activates, reason = "", False, ""
        try:
            dependencies = list(point.load()().instrumentation_dependencies())
            supported = ", ".join(dependencies)
            conflict = get_dist_dependency_conflicts(point.dist) if point.dist is not None else None
            conflict = conflict or get_dependency_conflicts(dependencies)
        except Exception as exc:  # noqa: BLE001 - a broken install is a finding, not a crash
            reason = f"cannot load {point.value}: {type(exc).__name__}: {exc}"
            report.problems.append(f"{name}: {reason}")
        else:
            if "*" in disabled or name in disabled:
                reason = f"disabled by {_DISABLED}"
            elif installed is None:
                reason = f"{library} is not installed"
            elif conflict is not None:
                reason = f"{library} {installed} is outside the supported range {supported}"
            else:
                activates, reason = True, "activates"
        report.clients.append(Client(library, installed, supported, name, activates, reason))


def _requirement_names(dist: Distribution | None) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    names: list[str] = []
    for line in (dist.requires or []) if dist is not None else []:
        if "extra" not in line or "instruments" not in line:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is not None and (
            marker.evaluate({"extra": "instruments"}) or marker.evaluate({"extra": "instruments-any"})
        ):
            names.append(requirement.name.lower())
    return names


def _duplicates() -> dict[str, str]:
    """Library -> what another instrumentor of it does next to agentwatch, from every integration."""
    from agentwatch.instrumentation._registry import load_registry

    effects: dict[str, str] = {}
    for integration in load_registry().integrations:
        for library, effect in integration.duplicated_by.items():
            effects.setdefault(library, effect)
    return effects


def _resolved() -> set[str]:
    """Libraries whose other instrumentors agentwatch makes stand aside (see ``_registry``)."""
    from agentwatch.instrumentation._registry import load_registry

    return {library for integration in load_registry().integrations for library in integration.resolved}


def _others(report: Report, environ: Mapping[str, str]) -> None:
    disabled = _disabled(environ)
    duplicates = _duplicates()
    resolved = _resolved()
    for point in _instrumentor_points():
        distribution = _dist_name(point)
        if distribution == "agentwatch":
            continue
        names = _requirement_names(getattr(point, "dist", None))
        if not names:
            # No metadata to go by: the entry point names its library by convention (openai_v2...).
            names = [
                lib
                for lib in duplicates
                if point.name.split("_")[0].replace("-", "_") == lib.replace("-", "_")
            ]
        overlaps = sorted(lib for lib in names if lib in duplicates)
        off = "*" in disabled or point.name in disabled
        dist_version = _version_of(distribution) or "?"
        effect = "; ".join(duplicates[lib] for lib in overlaps)
        report.other_instrumentors.append(
            OtherInstrumentor(point.name, f"{distribution} {dist_version}", names, overlaps, off, effect)
        )
        # An instrumentor of a library that is not installed never activates, so it doubles nothing.
        live = [lib for lib in overlaps if _version_of(lib) is not None and lib not in resolved]
        if live and not off:
            report.problems.append(
                f"instrumentor {point.name} ({distribution}) also instruments {', '.join(live)}: {effect}; "
                f"keep one of them, e.g. {_DISABLED}={point.name}"
            )


def documented_variables() -> list[str]:
    """Every variable of :mod:`agentwatch.environment_variables`, in the order it documents them:
    the one list the doctor reports, so a new variable cannot be left out."""
    return [value for name, value in vars(ev).items() if name.isupper() and value == name]


@dataclass(frozen=True)
class _Describer:
    """How the doctor shows one setting: its default, what a value means (raises when invalid),
    and how the value is printed (secrets never are)."""

    default: str
    meaning: Callable[[str], str]
    shown: Callable[[str], str] = lambda value: value


def _hidden(value: str) -> str:
    return "(set)" if value.strip() else "(unset)"


def _setting(report: Report, environ: Mapping[str, str], name: str, describer: _Describer) -> None:
    raw = environ.get(name)
    source = "default" if raw is None else "env"
    value = describer.default if raw is None else raw
    try:
        shown = describer.shown(value)
    except Exception:  # noqa: BLE001 - never fall back to printing a value that may be secret
        shown = "(value hidden)"
    try:
        meaning = describer.meaning(value)
        report.settings.append(Setting(name, shown, source, meaning))
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported with its message
        message = str(exc) if name in str(exc) else f"{name}: {exc}"
        report.settings.append(Setting(name, shown, source, "", message))
        report.problems.append(message)


def _redis_setting(name: str, unset: str, used_for: str, without_it: str) -> _Describer:
    """A Redis URL setting: where it points (password hidden) and whether that Redis answers."""
    from agentwatch.resilience._config import check_redis_url, redacted_url

    def meaning(value: str) -> str:
        if not value.strip():
            return unset
        url = check_redis_url(name, value)
        where = redacted_url(url)
        endpoint = None if url.startswith("unix://") else parse_endpoint(url, 6379)
        if endpoint is None:
            return f"{used_for} Redis at {where}"
        problem = probe(endpoint.host, endpoint.port)
        if problem is not None:
            raise ValueError(f"{name}: Redis at {where} does not answer ({problem}); {without_it}")
        return f"{used_for} Redis at {where} (answers)"

    return _Describer("", meaning, redacted_url)


def _describers(report: Report) -> dict[str, _Describer]:
    from agentwatch._admin_auth import configured_token
    from agentwatch._config import _capture, _host_policy, load_prices_file, parse_bool
    from agentwatch.resilience._file import load_config

    def capture(value: str) -> str:
        mode = _capture(value, ev.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)
        where = [w for w, on in (("span attributes", mode.span), ("log events", mode.event)) if on]
        text = (
            "prompts, completions and tool arguments/results recorded on " + " and ".join(where)
            if where
            else "no prompt, completion or tool argument/result content is recorded"
        )
        report.content_capture = text
        return text

    def hosts(value: str) -> str:
        policy = _host_policy(value, ev.AGENTWATCH_PROPAGATE_HOSTS)
        if policy.allow_all:
            return "trace headers go to every LLM host"
        listed = sorted(policy.hosts) + [f"*{s}" for s in policy.suffixes]
        return "trace headers go to " + (", ".join(listed) if listed else "no host")

    def usage(value: str) -> str:
        on = parse_bool(ev.AGENTWATCH_OPENAI_INCLUDE_USAGE, value)
        return (
            "OpenAI streams ask for usage" if on else "OpenAI streams are sent as the application wrote them"
        )

    def per_chunk(value: str) -> str:
        on = parse_bool(ev.AGENTWATCH_TIME_PER_OUTPUT_CHUNK, value) if value.strip() else True
        return (
            "streams record gen_ai.client.operation.time_per_output_chunk (one value per chunk)"
            if on
            else "streams do not record gen_ai.client.operation.time_per_output_chunk"
        )

    def prices(value: str) -> str:
        if not value:
            return "genai-prices data only"
        table = load_prices_file(value)
        return f"{len(table)} model price(s) over the genai-prices data: {', '.join(sorted(table))}"

    def config(value: str) -> str:
        if not value.strip():
            return "no policy file: tools and models run without policies unless code gives them"
        loaded = load_config(value.strip())
        for section, policies in (("tools", loaded.tools), ("llm", loaded.llm)):
            for key, policy in policies.items():
                report.policies.setdefault(section, {})[key] = describe_policy(policy, kind=section)
        count = len(loaded.tools) + len(loaded.llm)
        return (
            f"{count} polic{'y' if count == 1 else 'ies'} ({len(loaded.tools)} tool, {len(loaded.llm)} model)"
        )

    def admin_token(value: str) -> str:
        token = configured_token(value)
        if token is None:
            return "none: every agentwatch.admin route answers 403 (the admin API is off)"
        if len(token) < 32:
            report.notes.append(
                f"{ev.AGENTWATCH_ADMIN_TOKEN} is shorter than 32 characters: use a long random value "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
        return "every agentwatch.admin route needs Authorization: Bearer <this token>"

    return {
        ev.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: _Describer("NO_CONTENT", capture),
        ev.AGENTWATCH_PROPAGATE_HOSTS: _Describer("*", hosts),
        ev.AGENTWATCH_OPENAI_INCLUDE_USAGE: _Describer("false", usage),
        ev.AGENTWATCH_TIME_PER_OUTPUT_CHUNK: _Describer("true", per_chunk),
        ev.AGENTWATCH_PRICES_FILE: _Describer("", prices),
        ev.AGENTWATCH_CONFIG: _Describer("", config),
        ev.AGENTWATCH_CACHE_REDIS_URL: _redis_setting(
            ev.AGENTWATCH_CACHE_REDIS_URL,
            'none: a Cache(backend="redis") needs a redis_url of its own',
            'tool-result caches with backend="redis" and no redis_url of their own use',
            "cached tools would run uncached until it does",
        ),
        ev.AGENTWATCH_STATE_REDIS_URL: _redis_setting(
            ev.AGENTWATCH_STATE_REDIS_URL,
            "in-process: each replica has its own disabled tools, forced circuits and rate limits",
            "shared by every replica through",
            "replicas would run on their local state until it does",
        ),
        ev.AGENTWATCH_ADMIN_TOKEN: _Describer("", admin_token, _hidden),
    }


def _agentwatch_settings(report: Report, environ: Mapping[str, str]) -> None:
    describers = _describers(report)
    for name in documented_variables():
        # A variable documented but not yet described here is still listed, its value hidden
        # (it may be a secret); the tests require a describer for each.
        describer = describers.get(name, _Describer("", lambda _: "", _hidden))
        _setting(report, environ, name, describer)


def _signal_endpoint(environ: Mapping[str, str], signal: str) -> tuple[str, str, bool]:
    """(endpoint URL, protocol, configured) that an OTLP exporter of ``signal`` would use."""
    protocol = (
        environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or _EXPORTER_DEFAULTS["OTEL_EXPORTER_OTLP_PROTOCOL"]
    ).strip()
    specific = environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT", "").strip()
    generic = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if specific:
        return specific, protocol, True
    if generic:
        return generic, protocol, True
    return ("http://localhost:4317" if protocol == "grpc" else "http://localhost:4318"), protocol, False


def _exporters(report: Report, environ: Mapping[str, str]) -> None:
    for name in _EXPORTER_VARIABLES:
        raw = environ.get(name)
        if raw is None:
            default = _EXPORTER_DEFAULTS.get(name)
            report.exporter_settings.append(Setting(name, default or "(unset)", "default"))
        else:
            shown = "(set; values hidden)" if name in _SECRET_VARIABLES else raw
            report.exporter_settings.append(Setting(name, shown, "env"))
    for variable in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        *(f"OTEL_EXPORTER_OTLP_{s.upper()}_PROTOCOL" for s in _SIGNALS),
    ):
        value = environ.get(variable, "").strip()
        if value and value not in ("grpc", "http/protobuf"):
            report.problems.append(
                f"{variable}: invalid value {value!r}: accepted values are 'grpc', 'http/protobuf' "
                "(the Python OTLP exporters have no http/json)"
            )
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        report.notes.append("OTEL_SDK_DISABLED=true: the SDK records and exports nothing")
    by_endpoint: dict[tuple[str, str], list[str]] = {}
    configured: dict[tuple[str, str], bool] = {}
    for signal in _SIGNALS:
        exporters = environ.get(f"OTEL_{signal.upper()}_EXPORTER", "otlp")
        if "otlp" not in [e.strip() for e in exporters.split(",")]:
            continue
        url, protocol, given = _signal_endpoint(environ, signal)
        by_endpoint.setdefault((url, protocol), []).append(signal)
        configured[(url, protocol)] = given
    for (url, protocol), signals in by_endpoint.items():
        given = configured[(url, protocol)]
        parsed = parse_endpoint(url, 4317 if protocol == "grpc" else 4318)
        if parsed is None:
            report.endpoints.append(EndpointCheck(url, signals, protocol, given, False, "not a valid URL"))
            report.problems.append(f"OTLP endpoint {url!r} ({', '.join(signals)}) is not a valid URL")
            continue
        problem = probe(parsed.host, parsed.port)
        answers = problem is None
        detail = f"answers on {parsed.host}:{parsed.port}" if answers else f"does not answer ({problem})"
        report.endpoints.append(EndpointCheck(url, signals, protocol, given, answers, detail))
        if not answers:
            message = f"OTLP endpoint {url} ({', '.join(signals)}, {protocol}) does not answer: {problem}"
            if given:
                report.problems.append(message)
            else:
                report.notes.append(
                    f"no OTLP endpoint is configured and the default {url} does not answer ({problem}): "
                    "set OTEL_EXPORTER_OTLP_ENDPOINT (agentwatch demo writes a local file instead)"
                )


def _propagators(report: Report, environ: Mapping[str, str]) -> None:
    raw = environ.get("OTEL_PROPAGATORS")
    report.propagators_source = "default" if raw is None else "env"
    names = [n.strip() for n in (raw if raw is not None else _DEFAULT_PROPAGATORS).split(",") if n.strip()]
    available = {ep.name: ep for ep in entry_points(group=_PROPAGATOR_GROUP)}
    for name in names:
        if name == "none":
            report.propagators.append({"name": name, "available": True, "source": "no propagation"})
            continue
        point = available.get(name)
        entry: dict[str, Any] = {
            "name": name,
            "available": point is not None,
            "source": f"{_dist_name(point)}: {point.value}" if point is not None else "",
        }
        if name == "x-trace-id":
            entry["note"] = "agentwatch's X-Trace-ID header (the trace id, for services that log it)"
        report.propagators.append(entry)
        if point is None:
            report.problems.append(
                f"OTEL_PROPAGATORS: no propagator named {name!r} is installed "
                f"(available: {', '.join(sorted(available))}); the SDK fails to start with it"
            )
    if "x-trace-id" not in names and "x-trace-id" in available:
        report.notes.append(
            "x-trace-id is available but not enabled: add it to OTEL_PROPAGATORS to send X-Trace-ID"
        )


def diagnose(environ: Mapping[str, str] | None = None) -> Report:
    env = dict(os.environ if environ is None else environ)
    report = Report(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        agentwatch=_version_of("agentwatch") or "(not installed)",
    )
    for section in (_clients, _others, _agentwatch_settings, _exporters, _propagators):
        try:
            section(report, env)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others
            report.problems.append(
                f"doctor could not check {section.__name__.strip('_')}: {type(exc).__name__}: {exc}"
            )
    return report


# ------------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------------


def _rows(headers: list[str], rows: Iterable[list[str]]) -> list[str]:
    from agentwatch._cli._summary import table

    return table(headers, list(rows), left=range(len(headers)))


def render(report: Report) -> str:
    lines = [f"agentwatch doctor: agentwatch {report.agentwatch}, {report.python}", ""]
    lines.append("Clients and frameworks (what opentelemetry-instrument would activate)")
    lines += _rows(
        ["library", "installed", "supported", "instrumentor", "under opentelemetry-instrument"],
        (
            [c.library, c.installed or "no", c.supported or "?", c.instrumentor, c.reason]
            for c in report.clients
        ),
    )
    lines += ["", "Other instrumentors"]
    overlapping = [o for o in report.other_instrumentors if o.overlaps]
    if not overlapping:
        lines.append("  none that instrument the same libraries as agentwatch")
    for other in overlapping:
        state = "disabled" if other.disabled else "ACTIVE"
        lines.append(
            f"  {other.name} ({other.distribution}), {state}: instruments {', '.join(other.overlaps)}"
        )
        lines.append(f"    next to agentwatch: {other.effect}")
    rest = [o.name for o in report.other_instrumentors if not o.overlaps]
    if rest:
        lines.append(f"  unrelated: {', '.join(rest)}")

    lines += ["", "Configuration (agentwatch settings)"]
    lines += _rows(
        ["setting", "value", "source", "meaning"],
        (
            [s.name, s.value or '""', s.source, f"INVALID: {s.error}" if s.error else s.meaning]
            for s in report.settings
        ),
    )
    lines.append(f"  content capture: {report.content_capture or 'unknown (invalid setting)'}")
    lines += ["", "Resilience policies (AGENTWATCH_CONFIG)"]
    if not report.policies:
        lines.append("  none")
    for section, policies in sorted(report.policies.items()):
        for key, parts in sorted(policies.items()):
            described = "; ".join(f"{layer} {text}" for layer, text in parts.items())
            lines.append(f'  [{section}."{key}"] {described}')

    lines += [
        "",
        "OpenTelemetry export (as opentelemetry-instrument or agentwatch.instrument() would set it up)",
    ]
    lines += _rows(
        ["variable", "value", "source"], ([s.name, s.value, s.source] for s in report.exporter_settings)
    )
    for endpoint in report.endpoints:
        origin = "configured" if endpoint.configured else "default"
        lines.append(
            f"  OTLP endpoint {endpoint.url} ({origin}; {', '.join(endpoint.signals)}; {endpoint.protocol}): "
            f"{endpoint.detail}"
        )
    if not report.endpoints:
        lines.append("  no signal is exported over OTLP")

    lines += ["", f"Propagators (OTEL_PROPAGATORS, {report.propagators_source})"]
    for entry in report.propagators:
        status = entry["source"] if entry["available"] else "NOT INSTALLED"
        note = f" — {entry['note']}" if entry.get("note") else ""
        lines.append(f"  {entry['name']}: {status}{note}")

    if report.notes:
        lines += ["", "Notes"]
        lines += [f"  - {note}" for note in report.notes]
    lines.append("")
    if report.problems:
        lines.append(f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''} found:")
        lines += [f"  - {problem}" for problem in report.problems]
    else:
        lines.append("No problems found.")
    return "\n".join(lines)


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "doctor",
        help="check the environment: clients, instrumentors, configuration, exporters, propagators",
        description=(
            "Report which supported clients and frameworks are installed and which instrumentors would "
            "activate, other instrumentors that would double the spans, the resolved configuration "
            "(with any invalid setting named), whether the OTLP endpoints answer, and the propagators. "
            "Exit code 0: no problem; 1: a problem was found."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    report = diagnose()
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report), flush=True)
    return 1 if report.problems else 0
