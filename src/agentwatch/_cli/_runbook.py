"""``agentwatch runbook``: one on-call runbook per tool, from the registry's own metadata.

The text is ``docs/runbook-template.md`` (shipped in the package as ``runbook_template.md``; a
test keeps the copy identical) with every field the registry knows filled in: name, description,
criticality, timeouts, retry, breaker and bulkhead from the tool's policy (its own, else the one
``AGENTWATCH_CONFIG`` gives its name), and the dashboard, Prometheus, Jaeger and admin links. The
dependency comes from ``--dependency TOOL=SERVICE`` or a ``Dependency:`` line in the tool's
docstring; what nobody knows (owning team, pager) is left as a visible *fill in* mark.
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

from agentwatch._cli._common import format_seconds

__all__ = ["DASHBOARD_UIDS", "RunbookError", "ToolInfo", "add_parser", "load_tools", "render_runbook", "run"]

# The uids of dashboards/*.json (a test checks them against the files).
DASHBOARD_UIDS = {"tools": "agentwatch-tools", "llm": "agentwatch-llm", "sessions": "agentwatch-sessions"}
DEFAULT_GRAFANA = "http://localhost:3000"
DEFAULT_PROMETHEUS = "http://localhost:9090"
DEFAULT_JAEGER = "http://localhost:16686"
DEFAULT_ADMIN = "http://127.0.0.1:9464"
FILL_IN = "_fill in_"
_DOCSTRING_FIELD = re.compile(r"^\s*(Dependency|Health)\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


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


def render_runbook(template: str, info: ToolInfo, links: Links, *, team: str | None, registry: str) -> str:
    text = template
    critical = info.policy is None or info.policy.critical
    # The template's own instructions give way to a note on where this copy came from.
    text = re.sub(
        r"^> \*\*Template\.\*\*.*?(?=^## )",
        f"> Generated by `agentwatch runbook --registry {registry}` on {time.strftime('%Y-%m-%d')} from the "
        "tool's metadata and policy; regenerate it when they change, and fill in what is marked "
        f"{FILL_IN}. The admin endpoints at {links.admin} have no authentication: reach them from "
        "inside your network only.\n\n",
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
        links = Links(args.grafana_url, args.prometheus_url, args.jaeger_url, args.admin_url)
        pages = {
            info.name: render_runbook(template, info, links, team=args.team, registry=args.registry)
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
