"""``agentwatch.instrument()`` / ``agentwatch.uninstrument()``: one call at application start-up."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from opentelemetry import _logs, metrics, trace
from wrapt import register_post_import_hook

from agentwatch._config import (
    check_instrument_arguments,
    check_propagators,
    resolve_settings,
    sdk_exporter_names,
)
from agentwatch._internal import logger, renew_locks_at_fork, report_internal_error
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch._telemetry._pricing import Pricer
from agentwatch.instrumentation._registry import load_registry

if TYPE_CHECKING:
    from agentwatch.resilience import Policy, SharedState

__all__ = ["instrument", "uninstrument"]

_lock = threading.Lock()
renew_locks_at_fork(globals(), "_lock")
# Set by instrument(), cleared by uninstrument(): a second instrument() must change nothing, not
# give tools and sessions new settings while the LLM clients keep the first ones.
_instrumented = False
# The meter provider instrument() was given, for the resilience metrics (see _configure_resilience).
_resilience_meter_provider: metrics.MeterProvider | None = None
_resilience_hooked = False
# Whether instrument() started a shared state backend, which uninstrument() then stops.
_state_started = False


def _sdk_configured() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) or not isinstance(
        metrics.get_meter_provider(), metrics._internal._ProxyMeterProvider
    )


def _configure_sdk_from_environment(exporters: Mapping[str, list[str]]) -> None:
    """Set up global SDK providers from the ``OTEL_*`` variables, as ``opentelemetry-instrument``
    with the default distro does: OTLP exporters (gRPC or HTTP by ``OTEL_EXPORTER_OTLP_PROTOCOL``
    and its per-signal forms) unless ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` say otherwise,
    resource from ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``, sampler from
    ``OTEL_TRACES_SAMPLER``. ``exporters`` comes from :func:`sdk_exporter_names`, checked before
    anything changed. The providers shut down (flushing) at interpreter exit.
    """
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator

    _OTelSDKConfigurator().configure(  # type: ignore[no-untyped-call]
        trace_exporter_names=exporters["traces"],
        metric_exporter_names=exporters["metrics"],
        log_exporter_names=exporters["logs"],
    )


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: _logs.LoggerProvider | None = None,
    configure_sdk: bool = True,
    capture_message_content: str | bool | None = None,
    propagate_hosts: str | list[str] | None = None,
    openai_include_usage: bool | None = None,
    time_per_output_chunk: bool | None = None,
    prices: Mapping[str, Mapping[str, float]] | None = None,
    llm_policies: Mapping[str, Policy] | None = None,
    tool_policies: Mapping[str, Policy] | None = None,
    shared_state: SharedState | None = None,
) -> None:
    """Instrument every supported LLM client that is installed.

    No client library is imported: each is patched when the application imports it, or at once if
    it already has (see docs/architecture.md, "Start-up").

    Providers: those passed, else the global ones. If neither a provider is passed nor one set
    globally, and ``configure_sdk`` is true (the default), global SDK providers are configured
    from the standard ``OTEL_*`` environment variables first, so that one call sends telemetry
    to ``OTEL_EXPORTER_OTLP_ENDPOINT``.

    Settings (keyword > environment variable > default; see the README's configuration table):
    ``capture_message_content`` (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``),
    ``propagate_hosts`` (``AGENTWATCH_PROPAGATE_HOSTS``), ``openai_include_usage``
    (``AGENTWATCH_OPENAI_INCLUDE_USAGE``), ``time_per_output_chunk``
    (``AGENTWATCH_TIME_PER_OUTPUT_CHUNK``: ``False`` leaves out the per-chunk stream metric), ``prices`` (merged over ``AGENTWATCH_PRICES_FILE``),
    ``llm_policies`` (model name or ``"*"`` -> :class:`agentwatch.Policy`, merged over the
    ``[llm]`` section of ``AGENTWATCH_CONFIG``), ``tool_policies`` (tool name or ``"*"`` ->
    :class:`agentwatch.Policy`, merged over its ``[tools]`` section: tools called by name, such as
    LangChain's and the OpenAI Agents SDK's function tools, and ``@agentwatch.tool`` functions
    without a policy of their own), ``shared_state`` (``AGENTWATCH_STATE_REDIS_URL``: operator
    state and rate limits shared by every replica through Redis; loaded before this returns,
    bounded by its ``timeout``).
    An invalid value (a setting, a provider without ``get_tracer``/``get_meter``/``get_logger``,
    a ``configure_sdk`` that is not a bool, an ``OTEL_*_EXPORTER`` or OTLP protocol the SDK
    cannot load) raises :class:`~agentwatch.ConfigError` (a :class:`ValueError`) naming it and
    the accepted values, before anything is configured or patched.

    Calling it again is harmless (already instrumented clients are left as they are); call
    :func:`uninstrument` first to change settings.
    """
    providers: dict[str, Any] = {
        "tracer_provider": tracer_provider,
        "meter_provider": meter_provider,
        "logger_provider": logger_provider,
    }
    # Every argument and setting is checked before anything changes: a refused call leaves
    # agentwatch uninstrumented, so a corrected call afterwards still takes effect.
    check_instrument_arguments(providers=providers, flags={"configure_sdk": configure_sdk})
    check_propagators()
    settings = resolve_settings(
        capture_message_content=capture_message_content,
        propagate_hosts=propagate_hosts,
        openai_include_usage=openai_include_usage,
        time_per_output_chunk=time_per_output_chunk,
        prices=prices,
        llm_policies=llm_policies,
        tool_policies=tool_policies,
        shared_state=shared_state,
    )
    global _instrumented, _state_started
    with _lock:
        if _instrumented:
            logger.debug("agentwatch: already instrumented; call uninstrument() first to change settings")
            return
        if configure_sdk and tracer_provider is None and meter_provider is None and not _sdk_configured():
            _configure_sdk_from_environment(sdk_exporter_names())
        pricer = Pricer(settings.prices)
        done: list[Any] = []
        try:
            set_default_telemetry(**providers, settings=settings, pricer=pricer)
            _configure_resilience(meter_provider)
            if settings.shared_state is not None:
                # Asked for: resilience is loaded now (its metrics configured by the hook above),
                # and the backend's state is read before instrument() returns.
                from agentwatch.resilience import configure_shared_state

                configure_shared_state(settings.shared_state)
                _state_started = True
            # The integrations are agentwatch's entry points (instrumentation/_registry.py); one
            # whose library is not installed is skipped without importing anything. Each
            # instrumentor still checks its own version range through instrumentation_dependencies().
            registry = load_registry()
            for problem in registry.problems:
                logger.warning("agentwatch: %s", problem)
            for integration in registry.integrations:
                if not integration.installed():
                    continue
                instrumentor = integration.instrumentor()
                if instrumentor.is_instrumented_by_opentelemetry:
                    continue
                instrumentor.instrument(**providers, settings=settings, pricer=pricer)
                done.append(instrumentor)
                if not instrumentor.is_instrumented_by_opentelemetry:
                    logger.info(
                        "agentwatch: %s not instrumented (installed version out of range)",
                        integration.library,
                    )
        except BaseException:
            # Half-instrumented is the worst state: undo what was done, so that the error is the
            # only effect and a later call starts afresh.
            for instrumentor in done:
                if instrumentor.is_instrumented_by_opentelemetry:
                    instrumentor.uninstrument()
            set_default_telemetry()
            _stop_shared_state()
            raise
        _instrumented = True


def _configure_resilience(meter_provider: metrics.MeterProvider | None) -> None:
    """Send the resilience metrics to ``meter_provider`` (``None``: the global one), now if the
    policies are loaded, else when they are: importing them here would make every application pay
    for policies it may never use."""
    global _resilience_meter_provider, _resilience_hooked
    _resilience_meter_provider = meter_provider
    if _resilience_hooked:
        return  # the hook is still waiting and reads the provider when it fires
    _resilience_hooked = True
    register_post_import_hook(_resilience_imported, "agentwatch.resilience._telemetry")


def _resilience_imported(module: ModuleType) -> None:
    # As when instrument() configured them eagerly: the last instrument()'s provider, kept after
    # uninstrument(). May run inside the application's import: never raises.
    global _resilience_hooked
    _resilience_hooked = False
    try:
        module.configure_resilience_telemetry(_resilience_meter_provider)
    except Exception:  # noqa: BLE001
        report_internal_error("configuring the resilience metrics")


def uninstrument() -> None:
    """Restore every method agentwatch patched (the original function objects)."""
    global _instrumented
    with _lock:
        _instrumented = False
        _uninstrument_all()
        _stop_shared_state()


def _stop_shared_state() -> None:
    """Back to in-process state if instrument() started a shared backend: its Redis poller thread
    and connections end here. (Started means resilience is loaded: this imports nothing new.)"""
    global _state_started
    if _state_started:
        from agentwatch.resilience import configure_shared_state

        configure_shared_state(None)
        _state_started = False


def _uninstrument_all() -> None:
    for integration in load_registry().integrations:
        if not integration.installed():
            continue
        instrumentor = integration.instrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
