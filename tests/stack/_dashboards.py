"""Read the Grafana dashboards: their panels' queries, variables and data source references, and
turn a panel query into the PromQL Grafana would send (variables substituted)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import _paths

_VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def load_dashboards() -> dict[Path, dict[str, Any]]:
    return {path: json.loads(path.read_text(encoding="utf-8")) for path in _paths.dashboard_files()}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def iter_targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query of every (non-row) panel."""
    for panel in iter_panels(dashboard):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            if not target.get("hide"):
                yield panel, target


def iter_datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    """Every ``"datasource": {...}`` object anywhere in the dashboard."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                assert isinstance(value, dict), f"datasource must be a {{type, uid}} reference, got {value!r}"
                yield value
            else:
                yield from iter_datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_datasource_refs(item)


def variable_refs(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VAR_RE.finditer(text)}


def all_variable_refs(dashboard: Mapping[str, Any]) -> set[str]:
    used: set[str] = set()
    for _, target in iter_targets(dashboard):
        used |= variable_refs(target["expr"])
    for variable in dashboard["templating"]["list"]:
        used |= variable_refs(variable.get("definition", ""))
    return used


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace $var / ${var} / [[var]] with ``values[var]``; an unknown variable is an error."""

    def repl(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for variable ${name} in {expr!r}")
        return values[name]

    return _VAR_RE.sub(repl, expr)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<match>.+),\s*)?(?P<label>\w+)\s*\)\s*$")


def parse_label_values(definition: str) -> tuple[str | None, str]:
    """``label_values(metric{sel}, label)`` -> (series selector or None, label)."""
    m = _LABEL_VALUES.match(definition)
    if m is None:
        raise ValueError(f"unsupported variable query {definition!r}")
    return m.group("match"), m.group("label")


def panel_query(uid: str, title: str, values: Mapping[str, str]) -> str:
    """The (only) query of the panel ``title`` on the dashboard ``uid``, variables substituted."""
    for dashboard in load_dashboards().values():
        if dashboard["uid"] != uid:
            continue
        exprs = [target["expr"] for panel, target in iter_targets(dashboard) if panel["title"] == title]
        if len(exprs) != 1:
            raise KeyError(f"{uid}: {len(exprs)} queries in panel {title!r}")
        return substitute(exprs[0], values)
    raise KeyError(f"no dashboard {uid}")
