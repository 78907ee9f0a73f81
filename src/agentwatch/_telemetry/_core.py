"""The tracer, instruments, event logger and settings one instrumentation works with."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from opentelemetry import _logs, metrics, trace

from agentwatch._config import Settings, resolve_settings
from agentwatch._internal import renew_locks_at_fork
from agentwatch._telemetry._instruments import InferenceInstruments
from agentwatch._telemetry._pricing import Pricer
from agentwatch._version import __version__

__all__ = ["SCHEMA_URL", "Telemetry", "current_settings", "default_telemetry", "set_default_telemetry"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"


class Telemetry:
    """Built once per instrumentor (at instrument time), never per call."""

    __slots__ = ("__weakref__", "event_logger", "instruments", "meter", "pricer", "settings", "tracer")

    def __init__(
        self,
        scope: str,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        logger_provider: _logs.LoggerProvider | None = None,
        settings: Settings | None = None,
        pricer: Pricer | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.tracer = trace.get_tracer(scope, __version__, tracer_provider, schema_url=SCHEMA_URL)
        self.meter = metrics.get_meter(scope, __version__, meter_provider, schema_url=SCHEMA_URL)
        self.instruments = InferenceInstruments.create(self.meter)
        self.event_logger = _logs.get_logger(
            scope, __version__, logger_provider=logger_provider, schema_url=SCHEMA_URL
        )
        self.pricer = pricer or Pricer(self.settings.prices)


_default: dict[str, Telemetry] = {}
_default_lock = threading.Lock()
renew_locks_at_fork(globals(), "_default_lock")
_default_kwargs: Mapping[str, object] = {}
_env_settings: Settings | None = None


def set_default_telemetry(**kwargs: object) -> None:
    """Set the providers/settings that code outside an instrumentor (tools, sessions) uses.

    Called by :func:`agentwatch.instrument`; until then, the global providers are used, which
    resolve lazily, so a ``@tool`` defined at import time still reports to providers set later.
    """
    global _default_kwargs, _env_settings
    with _default_lock:
        _default_kwargs = dict(kwargs)
        _default.clear()
        _env_settings = None


def current_settings() -> Settings:
    """The settings given to :func:`agentwatch.instrument`, else those of the environment.

    The environment is read once (a bad value raises ``ConfigError`` each time it is asked, so a
    ``@tool`` defined at import time fails start-up rather than running without its policy).
    """
    global _env_settings
    settings = _default_kwargs.get("settings")
    if isinstance(settings, Settings):
        return settings
    if _env_settings is None:
        _env_settings = resolve_settings()
    return _env_settings


def default_telemetry(scope: str) -> Telemetry:
    telemetry = _default.get(scope)
    if telemetry is None:
        with _default_lock:
            telemetry = _default.get(scope)
            if telemetry is None:
                kwargs = dict(_default_kwargs)
                kwargs.setdefault("settings", current_settings())
                telemetry = Telemetry(scope, **kwargs)  # type: ignore[arg-type]
                _default[scope] = telemetry
    return telemetry
