"""``agentwatch.instrument()`` / ``agentwatch.uninstrument()``: one call at application start-up."""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry import _logs, metrics, trace

from agentwatch._config import check_propagators, resolve_settings
from agentwatch._internal import logger
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch._telemetry._pricing import Pricer
from agentwatch.resilience import Policy, configure_resilience_telemetry

__all__ = ["instrument", "uninstrument"]

# (distribution that must be importable, module, class). Each instrumentor still checks its own
# version range through instrumentation_dependencies().
_INSTRUMENTORS: tuple[tuple[str, str, str], ...] = (
    ("openai", "agentwatch.instrumentation.openai", "OpenAIInstrumentor"),
    ("anthropic", "agentwatch.instrumentation.anthropic", "AnthropicInstrumentor"),
    ("mcp", "agentwatch.instrumentation.mcp", "MCPInstrumentor"),
    ("langchain_core", "agentwatch.instrumentation.langchain", "LangChainInstrumentor"),
    ("langgraph", "agentwatch.instrumentation.langgraph", "LangGraphInstrumentor"),
)

_lock = threading.Lock()
# Set by instrument(), cleared by uninstrument(): a second instrument() must change nothing, not
# give tools and sessions new settings while the LLM clients keep the first ones.
_instrumented = False


def _sdk_configured() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider) or not isinstance(
        metrics.get_meter_provider(), metrics._internal._ProxyMeterProvider
    )


def _configure_sdk_from_environment() -> None:
    """Set up global SDK providers from the ``OTEL_*`` variables, as ``opentelemetry-instrument``
    with the default distro does: OTLP exporters unless ``OTEL_{TRACES,METRICS,LOGS}_EXPORTER``
    say otherwise, resource from ``OTEL_SERVICE_NAME``/``OTEL_RESOURCE_ATTRIBUTES``, sampler from
    ``OTEL_TRACES_SAMPLER``. The providers shut down (flushing) at interpreter exit.
    """
    from opentelemetry.sdk._configuration import _OTelSDKConfigurator

    def default(variable: str) -> list[str]:
        return [] if os.environ.get(variable) else ["otlp"]

    _OTelSDKConfigurator().configure(  # type: ignore[no-untyped-call]
        trace_exporter_names=default("OTEL_TRACES_EXPORTER"),
        metric_exporter_names=default("OTEL_METRICS_EXPORTER"),
        log_exporter_names=default("OTEL_LOGS_EXPORTER"),
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
    prices: Mapping[str, Mapping[str, float]] | None = None,
    llm_policies: Mapping[str, Policy] | None = None,
    tool_policies: Mapping[str, Policy] | None = None,
) -> None:
    """Instrument every supported LLM client that is installed.

    Providers: those passed, else the global ones. If neither a provider is passed nor one set
    globally, and ``configure_sdk`` is true (the default), global SDK providers are configured
    from the standard ``OTEL_*`` environment variables first, so that one call sends telemetry
    to ``OTEL_EXPORTER_OTLP_ENDPOINT``.

    Settings (keyword > environment variable > default; see the README's configuration table):
    ``capture_message_content`` (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``),
    ``propagate_hosts`` (``AGENTWATCH_PROPAGATE_HOSTS``), ``openai_include_usage``
    (``AGENTWATCH_OPENAI_INCLUDE_USAGE``), ``prices`` (merged over ``AGENTWATCH_PRICES_FILE``),
    ``llm_policies`` (model name or ``"*"`` -> :class:`agentwatch.Policy`, merged over the
    ``[llm]`` section of ``AGENTWATCH_CONFIG``), ``tool_policies`` (tool name or ``"*"`` ->
    :class:`agentwatch.Policy`, merged over its ``[tools]`` section: the policies of framework
    tools such as LangChain's, and of ``@agentwatch.tool`` tools given none of their own).
    An invalid value raises :class:`ValueError` naming the setting and the accepted values,
    before anything is configured or patched.

    Calling it again is harmless (already instrumented clients are left as they are); call
    :func:`uninstrument` first to change settings.
    """
    check_propagators()
    settings = resolve_settings(
        capture_message_content=capture_message_content,
        propagate_hosts=propagate_hosts,
        openai_include_usage=openai_include_usage,
        prices=prices,
        llm_policies=llm_policies,
        tool_policies=tool_policies,
    )
    global _instrumented
    with _lock:
        if _instrumented:
            logger.debug("agentwatch: already instrumented; call uninstrument() first to change settings")
            return
        _instrumented = True
        if configure_sdk and tracer_provider is None and meter_provider is None and not _sdk_configured():
            _configure_sdk_from_environment()
        pricer = Pricer(settings.prices)
        providers: dict[str, Any] = {
            "tracer_provider": tracer_provider,
            "meter_provider": meter_provider,
            "logger_provider": logger_provider,
        }
        set_default_telemetry(**providers, settings=settings, pricer=pricer)
        configure_resilience_telemetry(meter_provider)
        for distribution, module, name in _INSTRUMENTORS:
            if importlib.util.find_spec(distribution) is None:
                continue
            instrumentor = getattr(importlib.import_module(module), name)()
            if instrumentor.is_instrumented_by_opentelemetry:
                continue
            instrumentor.instrument(**providers, settings=settings, pricer=pricer)
            if not instrumentor.is_instrumented_by_opentelemetry:
                logger.info("agentwatch: %s not instrumented (installed version out of range)", distribution)


def uninstrument() -> None:
    """Restore every method agentwatch patched (the original function objects)."""
    global _instrumented
    with _lock:
        _instrumented = False
        for distribution, module, name in _INSTRUMENTORS:
            if importlib.util.find_spec(distribution) is None:
                continue
            instrumentor = getattr(importlib.import_module(module), name)()
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
