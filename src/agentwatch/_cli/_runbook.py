"""``agentwatch runbook``: one on-call runbook per tool, from the registry's own metadata.

The text is ``docs/runbook-template.md`` (shipped in the package as ``runbook_template.md``; a
test keeps the copy identical) with every field the registry knows filled in: name, description,
criticality, timeouts, retry, breaker and bulkhead from the tool's policy (its own, else the one
``AGENTWATCH_CONFIG`` gives its name), and the dashboard, Prometheus, Jaeger and admin links. The
dependency comes from ``--dependency TOOL=SERVICE`` or a ``Dependency:`` line in the tool's
docstring; what nobody knows (owning team, pager) is left as a visible *fill in* mark.

The "How errors are handled" table is generated per tool: each kind of error is run through the
tool's own classifier and policy (retried or not, counted by the breaker or not, degraded or
raised), and "who is told" lists the alert rules that exist in the Prometheus rule files
(:mod:`agentwatch._cli._alerts`), never a promise that nothing keeps.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from types import ModuleType
from typing import Any

from agentwatch._cli._alerts import AlertRule, RuleSet, load_rules
from agentwatch._cli._common import describe_policy, format_seconds, plural

__all__ = [
    "DASHBOARD_UIDS",
    "RunbookError",
    "ToolInfo",
    "add_parser",
    "error_rows",
    "load_tools",
    "render_runbook",
    "run",
]

# The uids of dashboards/*.json (a test checks them against the files).
DASHBOARD_UIDS = {"tools": "agentwatch-tools", "llm": "agentwatch-llm", "sessions": "agentwatch-sessions"}
DEFAULT_GRAFANA = "http://localhost:3000"
DEFAULT_PROMETHEUS = "http://localhost:9090"
DEFAULT_JAEGER = "http://localhost:16686"
DEFAULT_ADMIN = "http://127.0.0.1:9464"
FILL_IN = "_fill in_"
_DOCSTRING_FIELD = re.compile(r"^\s*(Dependency|Health)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# A rule counting sessions that did not complete (`!="completed"`, or `!~"completed|..."`).
_COUNTS_FAILED_SESSIONS = re.compile(r'agentwatch_session_outcome!(?:=|~)"completed\b')


class RunbookError(ValueError):
    """A bad ``--registry`` (or other input): reported with exit code 2."""


@dataclass(frozen=True)
class ToolInfo:
    name: str
    description: str | None
    policy: Any  # agentwatch.Policy | None
    policy_source: str  # "the tool's policy", "AGENTWATCH_CONFIG", "none"
    dependency: str | None
    health: str | None


# ------------------------------------------------------------------------------------------------
# Loading a registry
# ------------------------------------------------------------------------------------------------


def _import(module_name: str) -> ModuleType:
    # Like `python -m`, a registry in the current directory's packages must be importable even
    # when running the console script.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise RunbookError(
                f"cannot import module {module_name!r}: no module named {exc.name!r}"
            ) from None
        raise RunbookError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever the module raises is reported, not a traceback
        raise RunbookError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None


def _tools_of(target: object, where: str) -> list[Any]:
    from agentwatch.tools import Tool, ToolRegistry, get_tool

    if isinstance(target, ToolRegistry):
        return list(target)
    if isinstance(target, Tool):
        return [target]
    if get_tool(target) is not None:
        return [get_tool(target)]
    if isinstance(target, Mapping):
        found: list[Any] = []
        for key, value in target.items():
            made = get_tool(value)
            if made is not None:
                found.append(made)
            elif isinstance(key, str) and callable(value):
                # A dict not (yet) made observable: document it as the tool instrument_registry would make.
                found.append(Tool(value, name=key))
        return found
    if isinstance(target, ModuleType):
        registries = [v for v in vars(target).values() if isinstance(v, ToolRegistry)]
        if len(registries) == 1:
            return list(registries[0])
        decorated = {id(t): t for v in vars(target).values() if (t := get_tool(v)) is not None}
        return list(decorated.values())
    raise RunbookError(
        f"{where} is a {type(target).__name__}, not an agentwatch.ToolRegistry, a dict of tools "
        "(see agentwatch.instrument_registry) or a module with @agentwatch.tool functions"
    )


def load_tools(spec: str) -> list[Any]:
    """The :class:`agentwatch.Tool` objects named by ``module[:attribute]``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or (":" in spec and not attribute):
        raise RunbookError(
            f"--registry {spec!r}: expected MODULE:ATTRIBUTE (or MODULE), e.g. agentwatch._demo:REGISTRY"
        )
    module = _import(module_name)
    target: object = module
    if attribute:
        for part in attribute.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise RunbookError(f"module {module_name!r} has no attribute {attribute!r}") from None
    tools = _tools_of(target, spec)
    if not tools:
        raise RunbookError(f"{spec} holds no tools")
    return sorted(tools, key=lambda t: t.name)


def _docstring_fields(tool: Any) -> dict[str, str]:
    """``Dependency:`` and ``Health:`` paragraphs of the tool's docstring (up to a blank line)."""
    fields: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (inspect.getdoc(tool.fn) or "").splitlines():
        match = _DOCSTRING_FIELD.match(line)
        if match:
            current = fields.setdefault(match.group(1).lower(), [])
            current.append(match.group(2))
        elif current is not None and line.strip():
            current.append(line.strip())
        else:
            current = None
    return {key: " ".join(" ".join(parts).split()) for key, parts in fields.items()}


def describe(tool: Any, dependencies: Mapping[str, str], health: Mapping[str, str]) -> ToolInfo:
    from agentwatch.resilience._file import lookup_policy

    policy, source = tool.policy, "the tool's own policy"
    if policy is None:
        # The policy the tool runs with when it has none of its own: AGENTWATCH_CONFIG's.
        from agentwatch.resilience._file import config_from_env

        try:
            config = config_from_env()
        except ValueError as exc:
            raise RunbookError(f"cannot read the tool policies: {exc}") from None
        policy = None if config is None else lookup_policy(config.tools, tool.name)
        source = "AGENTWATCH_CONFIG" if policy is not None else "none"
    fields = _docstring_fields(tool)
    return ToolInfo(
        name=tool.name,
        description=tool.description,
        policy=policy,
        policy_source=source,
        dependency=dependencies.get(tool.name) or fields.get("dependency"),
        health=health.get(tool.name) or fields.get("health"),
    )


# ------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    grafana: str = DEFAULT_GRAFANA
    prometheus: str = DEFAULT_PROMETHEUS
    jaeger: str = DEFAULT_JAEGER
    admin: str = DEFAULT_ADMIN


def _policy_line(info: ToolInfo) -> str:
    policy = info.policy
    if policy is None:
        return "none: no timeout, retry, breaker or bulkhead (set one in code or `AGENTWATCH_CONFIG`)"
    timeout = "none" if policy.timeout is None else format_seconds(policy.timeout)
    if policy.attempt_timeout is not None:
        timeout += f" ({format_seconds(policy.attempt_timeout)} per attempt)"
    retry = policy.retry
    retries = (
        "0"
        if retry is None
        else f"{retry.attempts - 1} (exponential backoff from {format_seconds(retry.backoff)}, at most {format_seconds(retry.max_delay)})"
    )
    breaker = policy.breaker
    if breaker is None:
        circuit = "none"
    elif breaker.mode == "consecutive":
        circuit = f"{breaker.failure_threshold} consecutive failures / {format_seconds(breaker.break_duration)} break"
    else:
        circuit = f"{breaker.failure_ratio:g} failure ratio over {format_seconds(breaker.window)} / {format_seconds(breaker.break_duration)} break"
    if breaker is not None:
        circuit += f" (growing x{breaker.break_growth:g} up to {format_seconds(breaker.max_break_duration)})"
    bulkhead = "none" if policy.bulkhead is None else f"{policy.bulkhead.max_concurrent} concurrent"
    fallback = "none: the error propagates" if policy.critical else "degradation message (`ToolUnavailable`)"
    return (
        f"timeout {timeout}, retries {retries}, circuit breaker {circuit}, bulkhead {bulkhead}, "
        f"fallback {fallback} — from {info.policy_source}"
    )


def _row(text: str, label: str, value: str) -> str:
    """Replace the value cell of the summary-table row whose first cell is ``label``."""
    pattern = re.compile(rf"^\| {re.escape(label)} \|.*\|$", re.MULTILINE)
    if not pattern.search(text):
        raise RunbookError(f"the runbook template has no summary row {label!r}")
    return pattern.sub(lambda _: f"| {label} | {value} |", text, count=1)


# ------------------------------------------------------------------------------------------------
# How errors are handled: from the policy and the alert rules
# ------------------------------------------------------------------------------------------------


class _HTTPError(Exception):
    """A stand-in for an HTTP client's error, as the classifiers read one (status and headers)."""

    def __init__(self, status_code: int, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        self.response = type("Response", (), {"status_code": status_code, "headers": dict(headers or {})})()


def _classification(policy: Any, exc: Exception) -> Any:
    """What the tool's pipeline decides for ``exc``: the policies' own errors have fixed meanings,
    the rest goes through the policy's classifier (the default one unless it sets its own)."""
    from agentwatch.resilience import ToolTimeoutError
    from agentwatch.resilience._classify import default_classifier
    from agentwatch.resilience._pipeline import _DEADLINE_IN_ATTEMPT, _own_classification

    if isinstance(exc, ToolTimeoutError) and exc.scope == "total":
        # What a hung dependency meets: the deadline cuts the attempt while it runs.
        return _DEADLINE_IN_ATTEMPT
    own = _own_classification(exc)
    if own is not None:
        return own
    classifier = policy.classifier or default_classifier
    try:
        return classifier(exc)
    except Exception:  # noqa: BLE001 - the pipeline falls back to the default classifier too
        return default_classifier(exc)


@dataclass(frozen=True)
class _Alerting:
    errors: list[AlertRule]  # tool alerts counting every failed call of a tool
    validation: list[AlertRule]  # tool alerts on validation errors specifically
    latency: list[tuple[AlertRule, float | None]]  # tool latency alerts, with their threshold (s)
    sessions: list[AlertRule]  # alerts on sessions that did not complete
    sources: list[Path]

    @classmethod
    def of(cls, rules: RuleSet) -> _Alerting:
        tools = [rule for rule in rules.alerts if rule.component == "tool"]
        expanded = {rule.name: rules.expanded(rule) for rule in rules.alerts}
        return cls(
            errors=[r for r in tools if 'error_type!=""' in expanded[r.name]],
            validation=[r for r in tools if r.mentions("validation", "invalid_arguments")],
            latency=[(r, _threshold(r.expr)) for r in tools if "histogram_quantile" in expanded[r.name]],
            sessions=[
                r
                for r in rules.alerts
                if r.component == "session" and _COUNTS_FAILED_SESSIONS.search(expanded[r.name])
            ],
            sources=rules.sources,
        )


def _threshold(expr: str) -> float | None:
    match = re.search(r"(?:>=|>)\s*([0-9]+(?:\.[0-9]+)?)\s*$", expr.strip())
    return float(match.group(1)) if match else None


def _names(rules: list[AlertRule]) -> str:
    return ", ".join(f"`{rule.name}` ({rule.severity or 'no severity'})" for rule in rules)


def _degrades(policy: Any, classification: Any) -> bool:
    return not policy.critical and bool(classification.fallback)


def _what_happens(policy: Any, classification: Any) -> str:
    """Retry, breaker and end of the call for one kind of failure, as the policy handles it."""
    parts: list[str] = []
    retry = policy.retry
    if not classification.retryable:
        parts.append("never retried")
    elif retry is None or retry.attempts <= 1:
        parts.append("not retried (the policy has no `retry`)")
    else:
        wait = (
            "each after the server's `Retry-After` when it sends one "
            f"(at most {format_seconds(retry.retry_after_cap)}), else with backoff from {format_seconds(retry.backoff)}"
            if classification.category.value == "rate_limit"
            else f"with exponential backoff from {format_seconds(retry.backoff)} (at most {format_seconds(retry.max_delay)})"
        )
        limits = [] if policy.timeout is None else [f"the {format_seconds(policy.timeout)} deadline"]
        if retry.budget is not None:
            limits.append("the retry budget")
        within = f", as far as {' and '.join(limits)} allow" if limits else ""
        parts.append(f"retried up to {plural(retry.attempts - 1, 'time')}, {wait}{within}")
    if policy.breaker is not None:
        parts.append(
            "counts towards the circuit breaker"
            if classification.counts_as_failure
            else "not counted by the circuit breaker"
        )
    if _degrades(policy, classification):
        parts.append(
            "then the tool returns its degradation result (`ToolUnavailable`, span event `fallback`) "
            "and the model carries on without it"
        )
    elif not policy.critical:
        parts.append("then raised to the agent although the tool is optional: a bug to fix, not an outage")
    else:
        parts.append(
            "then raised to the agent: the tool is critical, so the session fails unless the agent handles it"
        )
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "."


def _session_alerts(alerting: _Alerting) -> str:
    return f"a session that fails counts against the completion SLO: {_names(alerting.sessions)}"


def _told(degrades: bool, alerting: _Alerting, extra: list[str] | None = None) -> str:
    told = list(extra or [])
    if alerting.errors:
        told.append("the tool's error-rate alerts (below)")
    if not degrades and alerting.sessions:
        told.append(_session_alerts(alerting))
    return "; ".join(told) if told else "no alert rule covers it: nobody is notified"


def _timeout_row(policy: Any, alerting: _Alerting) -> tuple[str, str, str]:
    from agentwatch.resilience import ToolTimeoutError

    if policy.timeout is None and policy.attempt_timeout is None:
        exc: Exception = TimeoutError()
        handling = _what_happens(policy, _classification(policy, exc))
        what = (
            "No timeout in the policy: a hung dependency holds the call (and its thread) for as long as "
            f"it hangs. A `TimeoutError` the tool raises itself: {handling[:1].lower()}{handling[1:]}"
        )
    else:
        exc = ToolTimeoutError(
            name="tool",
            kind="tool",
            timeout=1.0,
            scope="attempt" if policy.attempt_timeout is not None else "total",
        )
        if policy.attempt_timeout is not None:
            limits = f"Each attempt is cut at {format_seconds(policy.attempt_timeout)}"
            if policy.timeout is not None:
                limits += f", the whole call at {format_seconds(policy.timeout)}"
        else:
            limits = f"The call is cut at {format_seconds(policy.timeout)}"
            if policy.retry is not None:
                limits += " (a call cut by this deadline is not retried: no time is left)"
        what = f"{limits}. {_what_happens(policy, _classification(policy, exc))}"
    extra: list[str] = []
    for rule, threshold in alerting.latency:
        if threshold is not None and policy.timeout is not None and policy.timeout < threshold:
            extra.append(
                f"`{rule.name}` cannot fire: the {format_seconds(policy.timeout)} deadline keeps calls "
                f"under its {threshold:g} s"
            )
        else:
            limit = "" if threshold is None else f", p95 ≥ {threshold:g} s"
            extra.append(f"slow calls: `{rule.name}` ({rule.severity}{limit})")
    return (
        "timeout (`timeout` when the policy cuts the call, `TimeoutError` when the tool raises it)",
        what,
        _told(_degrades(policy, _classification(policy, exc)), alerting, extra),
    )


def error_rows(policy: Any, alerting: _Alerting) -> list[tuple[str, str, str]]:
    """(error, what the policy does, who is told) for each kind of failure ``policy`` can see."""
    from agentwatch.resilience import BulkheadFullError, CircuitOpenError, Policy

    if policy is None:
        policy = Policy(timeout=None)  # what a tool without a policy does: nothing in between
    rows = [_timeout_row(policy, alerting)]
    for label, exc in (
        ("rate limited (HTTP 429)", _HTTPError(429, {"retry-after": "1"})),
        ("dependency failure (`ConnectionError` and other `OSError`, HTTP 5xx and 409)", ConnectionError()),
    ):
        classification = _classification(policy, exc)
        rows.append(
            (label, _what_happens(policy, classification), _told(_degrades(policy, classification), alerting))
        )
    validation = _classification(policy, ValueError())
    if alerting.validation:
        told = _told(_degrades(policy, validation), alerting, [_names(alerting.validation)])
    elif alerting.errors:
        told = (
            "no alert of its own: it counts with every other error in the tool's error-rate alerts "
            "(below); *Tool errors by type* on the Tools dashboard tells them apart"
        )
        if not _degrades(policy, validation) and alerting.sessions:
            told += f"; {_session_alerts(alerting)}"
    else:
        told = _told(_degrades(policy, validation), alerting)
    rows.append(
        (
            "validation error (bad arguments: `ValueError`, `TypeError`, `KeyError`, other HTTP 4xx)",
            _what_happens(policy, validation),
            told,
        )
    )
    unknown = _classification(policy, RuntimeError())
    rows.append(
        ("any other exception", _what_happens(policy, unknown), _told(_degrades(policy, unknown), alerting))
    )
    if policy.breaker is not None:
        rejected = _classification(
            policy, CircuitOpenError(name="tool", kind="tool", circuit="tool", retry_in=1.0)
        )
        rows.append(
            (
                "circuit open (`circuit_open`)",
                f"The breaker {describe_policy(policy)['breaker']}. While it is open, calls are rejected at "
                "once without reaching the dependency, then one probe call is let through. "
                + _what_happens(policy, rejected),
                _told(_degrades(policy, rejected), alerting),
            )
        )
    bulkhead = policy.bulkhead
    if bulkhead is not None:
        shed = _classification(
            policy, BulkheadFullError(name="tool", kind="tool", max_concurrent=1, max_queue=0)
        )
        queue = (
            f", after waiting up to {format_seconds(bulkhead.queue_timeout)} in a queue of {bulkhead.max_queue}"
            if bulkhead.max_queue
            else " (no queue)"
        )
        rows.append(
            (
                "bulkhead full (`bulkhead_full`)",
                f"Calls beyond {bulkhead.max_concurrent} at once are rejected{queue}. "
                + _what_happens(policy, shed),
                _told(_degrades(policy, shed), alerting),
            )
        )
    outcome = (
        "it returns its degradation result at once (span event `tool_disabled`)"
        if not policy.critical
        else "it raises `ToolDisabledError` at once (span event `tool_disabled`), so the session fails "
        "unless the agent handles it"
    )
    rows.append(
        (
            "disabled by an operator (`tool_disabled`)",
            f"No call is made until the tool is enabled again (see Rollback): {outcome}.",
            _told(not policy.critical, alerting),
        )
    )
    return rows


def _error_section(info: ToolInfo, alerting: _Alerting) -> str:
    rows = error_rows(info.policy, alerting)
    lines = ["| error (`error.type`) | what the policy does | who is told |", "|---|---|---|"]
    lines.extend(
        f"| {a} | {b} | {c} |"
        for a, b, c in (tuple(cell.replace("|", "\\|") for cell in row) for row in rows)
    )
    sources = ", ".join(f"`{source.name}`" for source in alerting.sources)
    if alerting.errors:
        lines += [
            "",
            "The tool's error-rate alerts count every failed call of this tool, degraded ones included, "
            f"whatever its `error.type`: {_names(alerting.errors)} (from {sources}).",
        ]
    elif alerting.sources:
        lines += ["", f"No rule in {sources} alerts on this tool's errors: nobody is notified of them."]
    else:
        lines += [
            "",
            "No alert rules were found (give them with `--alert-rules`): nothing above notifies anyone "
            "unless your own rules do.",
        ]
    return "\n".join(lines) + "\n"


def render_runbook(
    template: str,
    info: ToolInfo,
    links: Links,
    *,
    team: str | None,
    registry: str,
    alerting: _Alerting | None = None,
) -> str:
    text = template
    critical = info.policy is None or info.policy.critical
    alerting = alerting or _Alerting.of(RuleSet())
    # The template's own instructions give way to a note on where this copy came from.
    text = re.sub(
        r"^> \*\*Template\.\*\*.*?(?=^## )",
        f"> Generated by `agentwatch runbook --registry {registry}` on {time.strftime('%Y-%m-%d')} from the "
        "tool's metadata and policy and the alert rules; regenerate it when they change, and fill in "
        f"what is marked {FILL_IN}. The `curl` lines call the admin endpoints at {links.admin} with the "
        "token in `$AGENTWATCH_ADMIN_TOKEN`; they change behaviour live: reach them from inside your "
        "network only.\n\n",
        text,
        count=1,
        flags=re.MULTILINE | re.DOTALL,
    )
    heading = "### How errors are handled\n"
    if heading not in text:
        raise RunbookError("the runbook template has no '### How errors are handled' section")
    text = re.sub(
        r"^### How errors are handled\n.*?(?=^## )",
        lambda _: f"{heading}\n{_error_section(info, alerting)}\n",
        text,
        count=1,
        flags=re.MULTILINE | re.DOTALL,
    )
    code = f"`{info.name}`"
    text = _row(text, "Tool name (`gen_ai.tool.name`)", code)
    description = " ".join((info.description or "").split()).replace("|", "\\|") or FILL_IN
    text = text.replace(
        f"| Tool name (`gen_ai.tool.name`) | {code} |",
        f"| Tool name (`gen_ai.tool.name`) | {code} |\n| Description | {description} |",
        1,
    )
    text = _row(
        text, "Owning team / on-call rotation", f"{team} / {FILL_IN}" if team else f"{FILL_IN} / {FILL_IN}"
    )
    text = _row(text, "Dependency", (info.dependency or FILL_IN).replace("|", "\\|"))
    text = _row(text, "Dependency owner and escalation", f"{FILL_IN}, {FILL_IN}")
    text = _row(text, "Dependency health endpoint", f"`{info.health}`" if info.health else FILL_IN)
    text = _row(text, "Criticality", f"**{'critical' if critical else 'optional'}** (see below)")
    text = _row(text, "Resilience policy", _policy_line(info))
    text = text.replace(
        "### Criticality\n",
        f"### Criticality\n\n`{info.name}` is **{'critical' if critical else 'optional'}**.\n",
        1,
    )
    if info.health:
        text = text.replace("<dependency health endpoint>", info.health)
    else:
        text = text.replace(
            "`curl -sf <dependency health endpoint>`", f"{FILL_IN} (the dependency's health check)"
        )
    replacements = {
        "<tool_name>": info.name,
        "<ADMIN_URL>": links.admin,
        "<circuit key>": info.name,
        "http://localhost:3000/d/agentwatch-tools": f"{links.grafana}/d/{DASHBOARD_UIDS['tools']}",
        "(`/d/agentwatch-llm`)": f"(`{links.grafana}/d/{DASHBOARD_UIDS['llm']}`)",
        "http://localhost:16686": links.jaeger,
        "http://localhost:9090": links.prometheus,
    }
    for old, new in replacements.items():
        text = text.replace(old, new)
    if info.policy is None or info.policy.breaker is None:
        text = text.replace(
            "### Circuit open\n",
            f"### Circuit open\n\n`{info.name}` has no circuit breaker in its policy today.\n",
            1,
        )
    return text


# ------------------------------------------------------------------------------------------------
# Command
# ------------------------------------------------------------------------------------------------


def _pairs(values: list[str], option: str, parser: argparse.ArgumentParser) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        tool, sep, text = value.partition("=")
        if not sep or not tool or not text.strip():
            parser.error(f"{option} {value!r}: expected TOOL=VALUE")
        pairs[tool.strip()] = text.strip()
    return pairs


def _url(value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "runbook",
        help="write one Markdown on-call runbook per tool of a registry",
        description=(
            "Write DIR/<tool>.md for every tool of a registry, following docs/runbook-template.md: "
            "description, dependency, criticality, timeout, retry, breaker and bulkhead settings, "
            "with the dashboard, Prometheus, Jaeger and admin links filled in."
        ),
    )
    parser.add_argument(
        "--registry",
        required=True,
        metavar="MODULE[:ATTRIBUTE]",
        help="an agentwatch.ToolRegistry, a dict of tools, or a module of @agentwatch.tool functions, "
        "e.g. agentwatch._demo:REGISTRY",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runbooks"),
        metavar="DIR",
        help="where to write (default: ./runbooks)",
    )
    parser.add_argument(
        "--dependency",
        action="append",
        default=[],
        metavar="TOOL=SERVICE",
        help="the service a tool calls (repeatable; default: a 'Dependency:' line of the tool's docstring)",
    )
    parser.add_argument(
        "--health-url",
        action="append",
        default=[],
        metavar="TOOL=URL",
        help="the dependency's health endpoint (repeatable; default: a 'Health:' docstring line)",
    )
    parser.add_argument("--team", default=None, help="the owning team, for every runbook")
    parser.add_argument(
        "--grafana-url", type=_url, default=DEFAULT_GRAFANA, metavar="URL", help=f"default: {DEFAULT_GRAFANA}"
    )
    parser.add_argument(
        "--prometheus-url",
        type=_url,
        default=DEFAULT_PROMETHEUS,
        metavar="URL",
        help=f"default: {DEFAULT_PROMETHEUS}",
    )
    parser.add_argument(
        "--jaeger-url", type=_url, default=DEFAULT_JAEGER, metavar="URL", help=f"default: {DEFAULT_JAEGER}"
    )
    parser.add_argument(
        "--admin-url",
        type=_url,
        default=DEFAULT_ADMIN,
        metavar="URL",
        help=f"where agentwatch.admin.app is served (default: {DEFAULT_ADMIN})",
    )
    parser.add_argument(
        "--alert-rules",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="Prometheus rule files (or directories of them) whose alerts the runbooks name "
        "(repeatable; default: the rules agentwatch ships, collector/prometheus/rules/)",
    )
    parser.add_argument(
        "--template", type=Path, default=None, metavar="PATH", help="another template with the same headings"
    )
    parser.set_defaults(run=run, command_parser=parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    dependencies = _pairs(args.dependency, "--dependency", parser)
    health = _pairs(args.health_url, "--health-url", parser)
    try:
        tools = load_tools(args.registry)
        names = {t.name for t in tools}
        for option, given in (("--dependency", dependencies), ("--health-url", health)):
            unknown = sorted(set(given) - names)
            if unknown:
                raise RunbookError(
                    f"{option}: unknown tool {unknown[0]!r}; {args.registry} has {', '.join(sorted(names))}"
                )
        bad = sorted(n for n in names if not _TOOL_NAME.match(n))
        if bad:
            raise RunbookError(f"tool name {bad[0]!r} cannot be a file name")
        infos = [describe(t, dependencies, health) for t in tools]
        if args.template is not None:
            try:
                template = args.template.read_text(encoding="utf-8")
            except OSError as exc:
                raise RunbookError(f"--template {str(args.template)!r}: {exc.strerror or exc}") from None
        else:
            template = files("agentwatch._cli").joinpath("runbook_template.md").read_text(encoding="utf-8")
        try:
            rules = load_rules(args.alert_rules)
        except OSError as exc:
            raise RunbookError(f"--alert-rules: {exc.filename or ''}: {exc.strerror or exc}") from None
        if args.alert_rules and not rules.alerts:
            raise RunbookError(f"--alert-rules: no alerting rule in {', '.join(map(str, args.alert_rules))}")
        alerting = _Alerting.of(rules)
        links = Links(args.grafana_url, args.prometheus_url, args.jaeger_url, args.admin_url)
        pages = {
            info.name: render_runbook(
                template, info, links, team=args.team, registry=args.registry, alerting=alerting
            )
            for info in infos
        }
    except RunbookError as exc:
        parser.error(str(exc))
    directory: Path = args.output_dir
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, page in pages.items():
            path = directory / f"{name}.md"
            path.write_text(page, encoding="utf-8")
            print(f"wrote {path}")
    except OSError as exc:
        parser.error(f"--output-dir {str(directory)!r}: {exc.strerror or exc}")
    return 0
