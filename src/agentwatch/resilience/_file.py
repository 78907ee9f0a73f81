"""Policies from a TOML file, for applications configured without code (``opentelemetry-instrument``).

The file is named by the ``AGENTWATCH_CONFIG`` environment variable::

    [tools."*"]                      # defaults for every tool
    timeout = 10.0
    [tools.search_knowledge_base]
    timeout = 5.0
    retry = { attempts = 3 }
    breaker = { failure_threshold = 5, break_duration = 30.0 }
    [tools.get_user_preferences]
    critical = false
    cache = { ttl = 300 }             # or { ttl = 300, backend = "redis" } (AGENTWATCH_CACHE_REDIS_URL)
    rate_limit = { requests = 120 }   # per minute
    [llm."gpt-4o"]
    retry = { attempts = 3 }
    fallback_models = ["gpt-4o-mini"]
    rate_limit = { requests = 500, tokens = 30000, max_wait = 5 }

Keys are the keyword arguments of ``Policy``, ``Retry`` (with ``budget`` a ``RetryBudget`` table),
``CircuitBreaker``, ``Bulkhead``, ``Cache`` and ``RateLimit``, with durations in seconds. TOML has no null: ``false`` stands
for ``None`` (``timeout = false``: no deadline; ``retry = false``: no retry) and ``true`` for a
sub-table with every default (``breaker = true``). A named table inherits each key it does not set
from the ``"*"`` table of its section (sub-tables such as ``retry`` are replaced, not merged). Any
unknown key, wrong type or invalid value raises ``ConfigError`` naming the dotted key.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from agentwatch._errors import ConfigError
from agentwatch.resilience._config import (
    Bulkhead,
    Cache,
    CircuitBreaker,
    Policy,
    RateLimit,
    Retry,
    RetryBudget,
    check_policy_kind,
    setting_names,
)
from agentwatch.resilience._errors import CallKind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["AGENTWATCH_CONFIG", "ResilienceConfig", "config_from_env", "load_config", "lookup_policy"]

AGENTWATCH_CONFIG = "AGENTWATCH_CONFIG"
_SECTIONS = ("tools", "llm")
_POLICY_KEYS = (
    "timeout",
    "attempt_timeout",
    "retry",
    "breaker",
    "bulkhead",
    "critical",
    "fallback_models",
    "first_chunk_timeout",
    "idle_timeout",
    "cache",
    "rate_limit",
)
_NULLABLE = frozenset({"timeout", "attempt_timeout", "first_chunk_timeout", "idle_timeout"})
_S = TypeVar("_S")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def lookup_policy(policies: Mapping[str, Policy], name: str) -> Policy | None:
    """``policies[name]``, else ``policies["*"]``, else ``None``."""
    policy = policies.get(name)
    return policies.get("*") if policy is None else policy


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """The policies of a configuration file, by tool name and by model (``"*"``: the default)."""

    tools: Mapping[str, Policy] = field(default_factory=lambda: MappingProxyType({}))
    llm: Mapping[str, Policy] = field(default_factory=lambda: MappingProxyType({}))

    def policy_for(self, name: str, *, kind: CallKind = "tool") -> Policy | None:
        """The policy of tool (or, with ``kind="llm"``, model) ``name``, falling back to ``"*"``."""
        return lookup_policy(self.tools if kind == "tool" else self.llm, name)


def config_from_env(environ: Mapping[str, str] | None = None) -> ResilienceConfig | None:
    """Load the file named by ``AGENTWATCH_CONFIG``; ``None`` when the variable is unset or empty."""
    path = (os.environ if environ is None else environ).get(AGENTWATCH_CONFIG, "").strip()
    return load_config(path) if path else None


def load_config(path: str | os.PathLike[str]) -> ResilienceConfig:
    """Parse and validate a policy file; raise ``ConfigError`` on any problem."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(
            AGENTWATCH_CONFIG, os.fspath(path), f"the path of a readable TOML file ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(AGENTWATCH_CONFIG, os.fspath(path), f"a UTF-8 TOML file ({exc})") from None
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(AGENTWATCH_CONFIG, os.fspath(path), f"a valid TOML file ({exc})") from None
    for key, value in data.items():
        if key not in _SECTIONS:
            raise ConfigError(_dotted(key), value, _known("the top level", _SECTIONS))
    sections = {section: _section(section, data.get(section, {})) for section in _SECTIONS}
    return ResilienceConfig(tools=sections["tools"], llm=sections["llm"])


def _section(section: str, tables: object) -> Mapping[str, Policy]:
    if not isinstance(tables, dict):
        raise ConfigError(
            section, tables, f"a table of {'tool' if section == 'tools' else 'model'} names to policy tables"
        )
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{section}.{_dotted(name)}", table, "a table of policy settings")
    policies: dict[str, Policy] = {}
    defaults: dict[str, Any] = tables.get("*", {})
    if "*" in tables:
        policies["*"] = _policy(f'{section}."*"', defaults, defaults)
    for name, table in tables.items():
        if name != "*":
            policies[name] = _policy(f"{section}.{_dotted(name)}", table, {**defaults, **table})
    kind = "tool" if section == "tools" else "llm"
    for name, policy in policies.items():
        check_policy_kind(policy, kind, f"{section}.{_dotted(name)}" if name != "*" else f'{section}."*"')
    return MappingProxyType(policies)


def _policy(path: str, own: dict[str, Any], merged: dict[str, Any]) -> Policy:
    _check_keys(path, own, _POLICY_KEYS)
    kwargs: dict[str, Any] = {}
    for key, value in merged.items():
        if key in _NULLABLE and value is False:
            kwargs[key] = None
        elif key == "retry":
            kwargs[key] = _sub(f"{path}.retry", value, Retry, _retry_kwargs)
        elif key == "breaker":
            kwargs[key] = _sub(f"{path}.breaker", value, CircuitBreaker)
        elif key == "bulkhead":
            kwargs[key] = _sub(f"{path}.bulkhead", value, Bulkhead)
        elif key == "cache":
            kwargs[key] = _sub(f"{path}.cache", value, Cache)
        elif key == "rate_limit":
            kwargs[key] = _sub(f"{path}.rate_limit", value, RateLimit)
        else:
            kwargs[key] = value
    return _build(path, Policy, kwargs)


def _retry_kwargs(path: str, table: dict[str, Any]) -> dict[str, Any]:
    if "budget" in table:
        table = {**table, "budget": _sub(f"{path}.budget", table["budget"], RetryBudget)}
    return table


def _sub(
    path: str,
    value: object,
    cls: type[_S],
    prepare: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None,
) -> _S | None:
    if value is False:
        return None
    table: object = {} if value is True else value
    if not isinstance(table, dict):
        raise ConfigError(path, value, f"a table of {cls.__name__} settings, true (defaults) or false (none)")
    _check_keys(path, table, setting_names(cls))
    if prepare is not None:
        table = prepare(path, table)
    return _build(path, cls, table)


def _build(path: str, cls: type[_S], kwargs: dict[str, Any]) -> _S:
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        # Rename the class-based setting (``Retry.attempts``) to the file's dotted key.
        prefix = f"{cls.__name__}."
        setting = path + exc.setting[len(cls.__name__) :] if exc.setting.startswith(prefix) else exc.setting
        accepted = (
            exc.accepted.replace(prefix, f"{path}.")
            .replace(" or a datetime.timedelta", "")
            .replace("None", "false")
            .replace("'True', 'False'", "true, false")
        )
        raise ConfigError(setting, exc.value, accepted) from None


def _check_keys(path: str, table: Mapping[str, object], accepted: tuple[str, ...]) -> None:
    for key, value in table.items():
        if key not in accepted:
            raise ConfigError(f"{path}.{_dotted(key)}", value, _known(f"[{path}]", accepted))


def _known(where: str, keys: tuple[str, ...]) -> str:
    return f"a known key of {where}: " + ", ".join(repr(k) for k in keys)


def _dotted(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
