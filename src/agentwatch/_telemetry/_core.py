"""The tracer, instruments, event logger and settings one instrumentation works with."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from opentelemetry import _logs, metrics, trace

from agentwatch._config import Settings
from agentwatch._telemetry._instruments import InferenceInstruments
from agentwatch._telemetry._pricing import Pricer
from agentwatch._version import __version__

__all__ = ["SCHEMA_URL", "Telemetry", "default_telemetry", "set_default_telemetry"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"


class Telemetry:
    """Built once per instrumentor (at instrument time), never per call."""

    __slots__ = ("event_logger", "instruments", "meter", "pricer", "settings", "tracer")

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
        self.event_logger = _logs.get_logger(scope, __version__, logger_provider=logger_provider, schema_url=SCHEMA_URL)
        self.pricer = pricer or Pricer(self.settings.prices)


_default: dict[str, Telemetry] = {}
_default_lock = threading.Lock()
_default_kwargs: Mapping[str, object] = {}


def set_default_telemetry(**kwargs: object) -> None:
    """Set the providers/settings that code outside an instrumentor (tools, sessions) uses.

    Called by :func:`agentwatch.instrument`; until then, the global providers are used, which
    resolve lazily, so a ``@tool`` defined at import time still reports to providers set later.
    """
    global _default_kwargs
    with _default_lock:
        _default_kwargs = dict(kwargs)
        _default.clear()


def default_telemetry(scope: str) -> Telemetry:
    telemetry = _default.get(scope)
    if telemetry is None:
        with _default_lock:
            telemetry = _default.get(scope)
            if telemetry is None:
                telemetry = Telemetry(scope, **_default_kwargs)  # type: ignore[arg-type]
                _default[scope] = telemetry
    return telemetry
