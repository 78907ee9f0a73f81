"""The Prometheus alert rules that exist, read from the rule files, for the generated runbooks.

A runbook must say who is told about each kind of error, and only the rule files know: the
runbook command reads them (``--alert-rules``, else the source checkout's
``collector/prometheus/rules/*.yml``, else the copies shipped in the wheel) instead of a list that could drift from
them. PyYAML is not a dependency of agentwatch, so this reads the subset of YAML that Prometheus
rule files use: ``- alert:``/``- record:`` items with scalar fields, ``labels:``/``annotations:``
maps and literal or folded ``expr:`` blocks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

__all__ = ["AlertRule", "RuleSet", "default_rules_dir", "load_rules", "parse_rules"]

PACKAGED_DIR = "alert_rules"
_RULE = re.compile(r"^(?P<indent>\s*)-\s+(?P<kind>alert|record):\s*(?P<name>\S+)\s*$")
_FIELD = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w]*):\s?(?P<value>.*)$")


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str  # with the expressions of the recording rules it uses appended (see RuleSet)
    duration: str | None = None  # the rule's ``for:``
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def component(self) -> str:
        return self.labels.get("component", "")

    def mentions(self, *words: str) -> bool:
        text = f"{self.name} {self.expr}".lower()
        return any(word.lower() in text for word in words)


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))  # YAML's double-quoted escapes are JSON's, for what rules use
        except ValueError:
            return text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text.split(" #", 1)[0].strip()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _mapping(lines: list[str]) -> dict[str, str]:
    """A YAML block mapping of scalars: plain, quoted, or ``|``/``>`` blocks (joined by newlines
    or spaces); nested values are kept as their raw text."""
    content = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not content:
        return {}
    base = _indent(content[0])
    found: dict[str, str] = {}
    index = 0
    while index < len(content):
        line = content[index]
        index += 1
        match = _FIELD.match(line)
        if match is None or _indent(line) != base:
            continue
        block: list[str] = []
        while index < len(content) and _indent(content[index]) > base:
            block.append(content[index])
            index += 1
        value = match.group("value").strip()
        if value[:1] in ("|", ">"):
            found[match.group("key")] = ("\n" if value[0] == "|" else " ").join(
                item.strip() for item in block
            )
        elif block and not value:
            found[match.group("key")] = "\n".join(block)
        else:
            found[match.group("key")] = " ".join([_scalar(value), *(item.strip() for item in block)]).strip()
    return found


def _rule(name: str, body: list[str]) -> AlertRule:
    fields = _mapping(body)
    # ``expr`` keeps its line structure: a literal block's newlines are part of the query text.
    return AlertRule(
        name=name,
        expr=fields.get("expr", "").strip(),
        duration=fields.get("for"),
        labels=_mapping(fields.get("labels", "").splitlines()),
        annotations=_mapping(fields.get("annotations", "").splitlines()),
    )


@dataclass
class RuleSet:
    alerts: list[AlertRule] = field(default_factory=list)
    records: dict[str, str] = field(default_factory=dict)  # recording rule name -> expr
    sources: list[Path] = field(default_factory=list)

    def add(self, text: str) -> None:
        lines = text.splitlines()
        index = 0
        while index < len(lines):
            match = _RULE.match(lines[index])
            index += 1
            if match is None:
                continue
            dash = len(match.group("indent"))
            body: list[str] = []
            while index < len(lines):
                line = lines[index]
                if line.strip() and _indent(line) <= dash:
                    break
                body.append(line)
                index += 1
            rule = _rule(match.group("name"), body)
            if match.group("kind") == "record":
                self.records[rule.name] = rule.expr
            else:
                self.alerts.append(rule)

    def expanded(self, alert: AlertRule) -> str:
        """The alert's expression followed by those of the recording rules it reads (to a fixed
        point), so that what it counts can be seen without evaluating anything."""
        text, seen = alert.expr, set()
        changed = True
        while changed:
            changed = False
            for name, expr in self.records.items():
                if name not in seen and re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", text):
                    seen.add(name)
                    text += "\n" + expr
                    changed = True
        return text


def parse_rules(text: str) -> RuleSet:
    """The alerting and recording rules of a Prometheus rules file."""
    rules = RuleSet()
    rules.add(text)
    return rules


def default_rules_dir() -> Path | None:
    """The rule files agentwatch ships: those of the source checkout it runs from (the files
    Prometheus is given), else the copies in the wheel (``pyproject.toml`` force-includes them)."""
    checkout = Path(__file__).resolve().parents[3] / "collector" / "prometheus" / "rules"
    if checkout.is_dir():
        return checkout
    packaged = files("agentwatch._cli").joinpath(PACKAGED_DIR)
    return Path(str(packaged)) if packaged.is_dir() else None


def load_rules(paths: list[Path]) -> RuleSet:
    """The rules of ``paths`` (files, or directories of ``*.yml``/``*.yaml``; default: the shipped
    ones). Raises ``OSError`` when a given path cannot be read."""
    if not paths:
        default = default_rules_dir()
        paths = [] if default is None else [default]
    rules = RuleSet()
    for path in paths:
        found = sorted([*path.glob("*.yml"), *path.glob("*.yaml")]) if path.is_dir() else [path]
        for source in found:
            rules.add(source.read_text(encoding="utf-8"))
            rules.sources.append(source)
    return rules
