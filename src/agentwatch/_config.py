"""One resolver for agentwatch's settings: keyword argument > environment variable > default.

A value that cannot be used raises :class:`~agentwatch._errors.ConfigError` naming the setting and
the accepted values. That differs from opentelemetry-util-genai (warn and fall back) on purpose:
a typo in a capture or propagation setting should stop start-up rather than silently record (or
not record) content.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.environment_variables import OTEL_PROPAGATORS

from agentwatch import environment_variables as ev
from agentwatch._errors import ConfigError

if TYPE_CHECKING:
    from agentwatch.resilience import Policy, SharedState
    from agentwatch.resilience._errors import CallKind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

__all__ = [
    "ContentCapture",
    "HostPolicy",
    "ModelPrices",
    "Settings",
    "check_instrument_arguments",
    "finite_number",
    "otlp_protocol",
    "parse_bool",
    "resolve_settings",
    "sdk_exporter_names",
]

_CAPTURE_MODES = {
    "no_content": (False, False),
    "span_only": (True, False),
    "event_only": (False, True),
    "span_and_event": (True, True),
    # Legacy boolean form used by the contrib GenAI instrumentations.
    "false": (False, False),
    "true": (True, True),
}
_CAPTURE_ACCEPTED = "NO_CONTENT, SPAN_ONLY, EVENT_ONLY, SPAN_AND_EVENT (or true/false)"


@dataclass(frozen=True, slots=True)
class ContentCapture:
    """Where message content may be recorded. Both false by default."""

    span: bool = False
    event: bool = False

    @property
    def enabled(self) -> bool:
        return self.span or self.event


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which hosts receive trace-context headers: every host, none, or an allow-list."""

    allow_all: bool = True
    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()

    def allows(self, host: str) -> bool:
        if self.allow_all:
            return True
        host = host.lower()
        return host in self.hosts or host.endswith(self.suffixes)


PRICE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "output_reasoning_mtok")


@dataclass(frozen=True, slots=True)
class ModelPrices:
    """USD per million tokens for one model, given by the user (private and fine-tuned models).

    Cached and reasoning tokens without a price of their own are charged at the input and output
    price respectively, as genai-prices does.
    """

    input_mtok: float
    output_mtok: float
    cache_read_mtok: float | None = None
    cache_write_mtok: float | None = None
    output_reasoning_mtok: float | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    capture: ContentCapture = ContentCapture()
    propagate: HostPolicy = HostPolicy()
    openai_include_usage: bool = False
    # One gen_ai.client.operation.time_per_output_chunk value per streamed chunk (the conventions'
    # metric, ~8 µs of SDK work per chunk at the end of a stream): on unless switched off.
    time_per_output_chunk: bool = True
    prices: Mapping[str, ModelPrices] = field(default_factory=dict)
    # Resilience policies by tool name / model name, "*" being the default of each section.
    tool_policies: Mapping[str, Policy] = field(default_factory=dict)
    llm_policies: Mapping[str, Policy] = field(default_factory=dict)
    # Where operator state and rate limits are shared between replicas (None: in process).
    shared_state: SharedState | None = None


def parse_bool(setting: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(setting, value, "true, false")


def _capture(value: object, setting: str) -> ContentCapture:
    if isinstance(value, ContentCapture):
        return value
    if isinstance(value, bool):
        return ContentCapture(value, value)
    mode = _CAPTURE_MODES.get(str(value).strip().lower())
    if mode is None:
        raise ConfigError(setting, value, _CAPTURE_ACCEPTED)
    return ContentCapture(*mode)


# Dot-separated labels (letters, digits, "-", "_"), optionally after a leading "*." wildcard.
_HOST_PATTERN = re.compile(r"(?:\*\.)?[\w-]+(?:\.[\w-]+)*")
_HOSTS_ACCEPTED = (
    "'*', 'none', or comma-separated host names such as 'api.openai.com' or '*.internal' "
    "(a leading '*.' matches subdomains; no spaces, schemes, ports or paths)"
)


def _host_policy(value: object, setting: str) -> HostPolicy:
    if isinstance(value, HostPolicy):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "*", "all"):
            return HostPolicy()
        if text.lower() == "none":
            return HostPolicy(allow_all=False)
        items: Iterable[object] = text.split(",")
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ConfigError(setting, value, _HOSTS_ACCEPTED)
    hosts: set[str] = set()
    suffixes: list[str] = []
    every = False
    for item in items:
        host = item.strip().lower() if isinstance(item, str) else ""
        if host == "*":
            every = True
            continue
        # What could never match a request's host is refused rather than kept: "a.com b.com"
        # (one name with a space), "*." (an empty suffix), "api.*.com", "https://...".
        if not _HOST_PATTERN.fullmatch(host):
            raise ConfigError(setting, value, _HOSTS_ACCEPTED)
        if host.startswith("*."):
            suffixes.append(host[1:])
        else:
            hosts.add(host)
    if every:
        return HostPolicy()
    return HostPolicy(allow_all=False, hosts=frozenset(hosts), suffixes=tuple(suffixes))


def finite_number(value: object) -> float | None:
    """``value`` as a float if it is an int or float (not a bool) with a finite float value.

    NaN and infinities (``nan``/``inf`` in TOML, ``NaN``/``Infinity``/``1e999`` in JSON, all of
    which the parsers accept) compare false with every bound, so a ``< 0`` check lets them
    through; an int too large for a float raises ``OverflowError`` on conversion.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _model_prices(model: str, value: object, setting: str) -> ModelPrices:
    if isinstance(value, ModelPrices):
        # Built in code, unchecked: the same rules as a table.
        value = {key: getattr(value, key) for key in PRICE_KEYS if getattr(value, key) is not None}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{setting}.{model}", value, f"a table with keys {', '.join(PRICE_KEYS)}")
    unknown = set(value) - set(PRICE_KEYS)
    if unknown:
        raise ConfigError(f"{setting}.{model}.{sorted(unknown)[0]}", value[sorted(unknown)[0]], PRICE_KEYS)
    numbers: dict[str, float] = {}
    for key, raw in value.items():
        number = finite_number(raw)
        if number is None or number < 0:
            raise ConfigError(
                f"{setting}.{model}.{key}", raw, "a finite number >= 0 (USD per million tokens)"
            )
        numbers[key] = number
    for required in ("input_mtok", "output_mtok"):
        if required not in numbers:
            raise ConfigError(
                f"{setting}.{model}.{required}", None, "a finite number >= 0 (USD per million tokens)"
            )
    return ModelPrices(**numbers)


def _prices(value: object, setting: str) -> dict[str, ModelPrices]:
    if not isinstance(value, Mapping):
        raise ConfigError(setting, value, "a mapping of model name to prices")
    return {str(model): _model_prices(str(model), prices, setting) for model, prices in value.items()}


def load_prices_file(path: str) -> dict[str, ModelPrices]:
    """Read ``AGENTWATCH_PRICES_FILE``: TOML (``[models."name"]`` tables) or JSON (``{"models": {...}}``)."""
    setting = ev.AGENTWATCH_PRICES_FILE
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(setting, path, f"a readable TOML or JSON file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(setting, path, f"a UTF-8 TOML or JSON file ({exc})") from None
    data: Any
    try:
        data = json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(setting, path, f"valid TOML or JSON ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"models"}:
        raise ConfigError(setting, path, 'a single top-level table "models"')
    return _prices(data.get("models", {}), f"{setting}:models")


# -- the SDK configuration instrument() does, as opentelemetry-instrument would ----------------------

OTLP_PROTOCOLS = ("grpc", "http/protobuf")
_OTLP_EXPORTER_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_SIGNALS = ("traces", "metrics", "logs")


def otlp_protocol(signal: str, environ: Mapping[str, str] | None = None) -> str:
    """The OTLP protocol of ``signal`` (``traces``, ``metrics``, ``logs``): ``grpc`` or ``http/protobuf``.

    Read as the SDK's configurator does (``opentelemetry.sdk._configuration``): the per-signal
    ``OTEL_EXPORTER_OTLP_{SIGNAL}_PROTOCOL`` if set, else ``OTEL_EXPORTER_OTLP_PROTOCOL``, else
    ``grpc`` (the distro's default). A value the SDK would refuse with a bare ``RuntimeError`` is a
    :class:`ConfigError` naming the variable that gave it.
    """
    env = os.environ if environ is None else environ
    specific = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    for name in (specific, "OTEL_EXPORTER_OTLP_PROTOCOL"):
        raw = env.get(name)
        if raw:
            value = raw.strip()
            if value not in OTLP_PROTOCOLS:
                raise ConfigError(name, raw, OTLP_PROTOCOLS)
            return value
    return "grpc"


def sdk_exporter_names(environ: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The exporters ``opentelemetry-instrument`` (with the default distro) would set up, by signal.

    The distro makes ``otlp`` the default of ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` and the SDK
    turns ``otlp`` into ``otlp_proto_grpc`` or ``otlp_proto_http`` by the signal's OTLP protocol.
    The list is what to pass to ``_OTelSDKConfigurator().configure`` for a signal whose variable is
    unset (the SDK reads a set variable itself, adding to this list, so it gets ``[]`` then). Every
    name the SDK would load is checked first, so that a typo is a :class:`ConfigError` naming the
    variable and the accepted values rather than a ``RuntimeError`` half-way through start-up.
    """
    from importlib.metadata import entry_points

    env = os.environ if environ is None else environ
    names: dict[str, list[str]] = {}
    for signal in _SIGNALS:
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        raw = env.get(variable)
        if not raw:
            names[signal] = [_OTLP_EXPORTER_BY_PROTOCOL[otlp_protocol(signal, env)]]
            continue
        names[signal] = []
        if raw.strip().lower() == "none":
            continue
        installed = {point.name for point in entry_points(group=f"opentelemetry_{signal}_exporter")}
        for name in (n.strip() for n in raw.split(",")):
            if name == "otlp":
                otlp_protocol(signal, env)
            elif name not in installed:
                raise ConfigError(
                    variable,
                    raw,
                    f"comma-separated installed exporters ({', '.join(sorted(installed))}) or 'none'",
                )
    return names


_PROVIDER_METHODS = {
    "tracer_provider": ("get_tracer", "an OpenTelemetry TracerProvider (with get_tracer), or None"),
    "meter_provider": ("get_meter", "an OpenTelemetry MeterProvider (with get_meter), or None"),
    "logger_provider": ("get_logger", "an OpenTelemetry LoggerProvider (with get_logger), or None"),
}


def check_instrument_arguments(*, providers: Mapping[str, object], flags: Mapping[str, object]) -> None:
    """Refuse a provider without its factory method (``None`` is fine), or a flag that is not a bool.

    ``configure_sdk="false"`` is a true string, and a provider without ``get_tracer`` fails only
    when the first tracer is made, after agentwatch has patched half the clients: both must stop
    ``instrument()`` before anything changes, naming the argument.
    """
    for name, value in providers.items():
        method, accepted = _PROVIDER_METHODS[name]
        if value is not None and not callable(getattr(value, method, None)):
            raise ConfigError(name, value, accepted)
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(name, value, "True or False (a bool)")


def check_propagators(environ: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ConfigError` naming ``OTEL_PROPAGATORS`` if an entry is not installed.

    ``opentelemetry.propagate`` loads the configured propagators when it is first imported and
    raises a bare ``ValueError`` that names neither the variable nor the installed choices.
    """
    env = os.environ if environ is None else environ
    raw = env.get(OTEL_PROPAGATORS)
    if raw is None:
        return
    from importlib.metadata import entry_points

    installed = {point.name for point in entry_points(group="opentelemetry_propagator")}
    # The SDK's own reading: names are stripped, and a "none" ends the list.
    for name in (n.strip() for n in raw.split(",")):
        if name.lower() == "none":
            return
        if name not in installed:
            raise ConfigError(
                OTEL_PROPAGATORS,
                raw,
                f"comma-separated installed propagators ({', '.join(sorted(installed))}) or 'none'",
            )


def _policies_arg(setting: str, value: object, kind: CallKind, key: str) -> dict[str, Policy]:
    """Validate a ``{name or "*": Policy}`` argument of ``instrument()``."""
    if value is None:
        return {}
    # Imported only when policies are given: instrument() without them loads no resilience code.
    from agentwatch.resilience import Policy
    from agentwatch.resilience._config import check_policy_kind

    if not isinstance(value, Mapping):
        raise ConfigError(setting, value, f'a mapping of {key} (or "*") to agentwatch.Policy')
    checked: dict[str, Policy] = {}
    for name, policy in value.items():
        if not isinstance(policy, Policy):
            raise ConfigError(f"{setting}[{name!r}]", policy, "an agentwatch.Policy")
        check_policy_kind(policy, kind, f"{setting}[{name!r}]")
        checked[str(name)] = policy
    return checked


def resolve_settings(
    *,
    capture_message_content: object = None,
    propagate_hosts: object = None,
    openai_include_usage: object = None,
    time_per_output_chunk: object = None,
    prices: object = None,
    llm_policies: object = None,
    tool_policies: object = None,
    shared_state: object = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ

    if capture_message_content is not None:
        capture = _capture(capture_message_content, "capture_message_content")
    elif (raw := env.get(ev.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)) is not None:
        capture = _capture(raw, ev.OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)
    else:
        capture = ContentCapture()

    if propagate_hosts is not None:
        propagate = _host_policy(propagate_hosts, "propagate_hosts")
    elif (raw := env.get(ev.AGENTWATCH_PROPAGATE_HOSTS)) is not None:
        propagate = _host_policy(raw, ev.AGENTWATCH_PROPAGATE_HOSTS)
    else:
        propagate = HostPolicy()

    if openai_include_usage is not None:
        check_instrument_arguments(providers={}, flags={"openai_include_usage": openai_include_usage})
        include_usage = bool(openai_include_usage)
    else:
        include_usage = parse_bool(
            ev.AGENTWATCH_OPENAI_INCLUDE_USAGE, env.get(ev.AGENTWATCH_OPENAI_INCLUDE_USAGE, "")
        )

    if time_per_output_chunk is not None:
        check_instrument_arguments(providers={}, flags={"time_per_output_chunk": time_per_output_chunk})
        per_chunk = bool(time_per_output_chunk)
    else:
        # Unset or empty: on, as the conventions define the metric.
        raw_chunk = env.get(ev.AGENTWATCH_TIME_PER_OUTPUT_CHUNK, "").strip()
        per_chunk = parse_bool(ev.AGENTWATCH_TIME_PER_OUTPUT_CHUNK, raw_chunk) if raw_chunk else True

    table: dict[str, ModelPrices] = {}
    if path := env.get(ev.AGENTWATCH_PRICES_FILE):
        table.update(load_prices_file(path))
    if prices is not None:
        # Prices given in code win over the file: code is the more specific place.
        table.update(_prices(prices, "prices"))

    # The policies are imported only when there are some: most applications have none, and
    # instrument() must not make them pay for loading the resilience machinery.
    policies = None
    if env.get(ev.AGENTWATCH_CONFIG, "").strip():
        from agentwatch.resilience._file import config_from_env

        policies = config_from_env(env)
    tools = dict(policies.tools) if policies is not None else {}
    llm = dict(policies.llm) if policies is not None else {}
    # Code is more specific than the file: a tool or model set in both takes the code's policy.
    llm.update(_policies_arg("llm_policies", llm_policies, "llm", "model name"))
    tools.update(_policies_arg("tool_policies", tool_policies, "tool", "tool name"))

    # Resilience is loaded only when state is to be shared: an application that asks for that
    # (in code or with AGENTWATCH_STATE_REDIS_URL) starts its backend at instrument() anyway.
    state: SharedState | None
    if shared_state is not None:
        from agentwatch.resilience._config import SharedState

        if not isinstance(shared_state, SharedState):
            raise ConfigError("shared_state", shared_state, "an agentwatch.SharedState, or None")
        state = shared_state
    elif url := env.get(ev.AGENTWATCH_STATE_REDIS_URL, "").strip():
        from agentwatch.resilience._config import SharedState, check_redis_url

        try:
            state = SharedState(redis_url=check_redis_url(ev.AGENTWATCH_STATE_REDIS_URL, url))
        except ConfigError as exc:
            # Named after the variable the user set, not the class it configures.
            raise ConfigError(ev.AGENTWATCH_STATE_REDIS_URL, exc.value, exc.accepted) from None
    else:
        state = None

    return Settings(
        capture=capture,
        propagate=propagate,
        openai_include_usage=include_usage,
        time_per_output_chunk=per_chunk,
        prices=table,
        tool_policies=tools,
        llm_policies=llm,
        shared_state=state,
    )
