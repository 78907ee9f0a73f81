"""The instrumentations compared: agentwatch and each peer, behind one small interface.

Every target sends its spans to a SimpleSpanProcessor + InMemorySpanExporter and its metrics to an
InMemoryMetricReader (Logfire: as additional processor/reader of its own providers), and can be
switched on and off inside one process, so its bare and instrumented calls are measured in
interleaved rounds. Each peer runs with its defaults (content capture included): that is what
a user of it gets.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from harness import Signals, make_signals


class Target:
    name = "?"
    label = "?"
    distributions: tuple[str, ...] = ()
    note = ""

    def __init__(self) -> None:
        self.signals: Signals = make_signals()

    def setup(self) -> None:
        """Import and configure; called once, before the first :meth:`on`."""

    def on(self) -> None:
        raise NotImplementedError

    def off(self) -> None:
        raise NotImplementedError


class NoInstrumentation(Target):
    """Used where only the bare SDK is of interest (``--here`` without agentwatch)."""

    name = "none"
    label = "no instrumentation"

    def on(self) -> None:
        pass

    def off(self) -> None:
        pass


class Agentwatch(Target):
    """agentwatch through ``instrument()``, then switched like the peers (:class:`PatchToggle`).

    Re-instrumenting in every one of thousands of rounds would measure a cold agentwatch (new
    wrappers, new caches) against warm peers; switching the recorded patches measures the
    steady state of both.
    """

    name = "agentwatch"
    label = "agentwatch"
    distributions = ("agentwatch",)
    note = "content capture off (its default)"

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.settings = settings

    def setup(self) -> None:
        import agentwatch

        self.module = agentwatch
        # agentwatch patches each SDK module when it is imported: every module the items use is
        # imported (and its lazily initialised state settled) before the snapshot.
        _exercise_sdks(anthropic=True)
        self.toggle = PatchToggle()
        agentwatch.instrument(**self.signals.providers, configure_sdk=False, **self.settings)
        self.toggle.record()
        if not self.toggle.changes:
            raise RuntimeError("agentwatch patched nothing in the SDK")
        self.patched = self.toggle.describe()
        self.toggle.off()

    def on(self) -> None:
        self.toggle.on()

    def off(self) -> None:
        self.toggle.off()

    def rebind(self) -> None:
        """Instrument again, for the providers now in ``self.signals`` (left switched off)."""
        self.toggle.on()
        self.module.uninstrument()  # with its patches in place, so it restores the originals
        self.toggle.off()  # (or takes the recorded patches off, if agentwatch was uninstrumented)
        self.setup()


class AgentwatchCapture(Agentwatch):
    name = "agentwatch-capture"
    label = "agentwatch (content capture on)"
    note = "capture_message_content=span_and_event: content on the span and an event log record"

    def __init__(self) -> None:
        super().__init__(capture_message_content="span_and_event")


def _exercise_sdks(*, anthropic: bool = False) -> None:
    """One call of each kind the items make, so that the SDK's modules are imported and its
    lazily initialised class state is settled: snapshots then differ only by what was patched."""
    import mocks

    client = mocks.openai_client()
    client.chat.completions.create(**mocks.CHAT_KWARGS)
    list(client.chat.completions.create(**mocks.CHAT_KWARGS, stream=True))
    if anthropic:
        other = mocks.anthropic_client()
        list(other.messages.create(**mocks.ANTHROPIC_KWARGS, stream=True))


class PatchToggle:
    """Switches a peer's monkeypatches off and on without its uninstrument().

    Some peers cannot be uninstrumented (OpenLIT's and Traceloop's uninstrument leave their
    wrappers in place), and re-instrumenting every round is slow and not what is measured. So
    each peer is instrumented once, and the attributes it changed on the SDK's modules and
    classes (wrapt wrappers, replaced methods, markers) are recorded by comparing snapshots
    taken before and after. "Off" puts the original objects back; "on" re-applies the patched
    ones: the same wrappers the peer installed, with all of its state.
    """

    PREFIXES = ("openai", "anthropic", "httpx", "httpx2", "httpcore", "httpcore2")

    def __init__(self) -> None:
        self.before = self._snapshot()
        self.changes: list[tuple[object, str, object, object]] = []  # owner, name, old, new

    @classmethod
    def _owners(cls) -> list[object]:
        owners: list[object] = []
        for name, module in list(sys.modules.items()):
            if module is None or name.split(".", 1)[0] not in cls.PREFIXES:
                continue
            owners.append(module)
            for value in list(vars(module).values()):
                if isinstance(value, type) and getattr(value, "__module__", None) == name:
                    owners.append(value)
        return owners

    @classmethod
    def _snapshot(cls) -> dict[int, tuple[object, dict[str, object]]]:
        return {id(owner): (owner, dict(vars(owner))) for owner in cls._owners()}

    def record(self) -> None:
        for key, (owner, now) in self._snapshot().items():
            if key not in self.before:
                continue  # imported by the peer: not a patch of what existed
            was = self.before[key][1]
            for name in set(was) | set(now):
                old, new = was.get(name, _ABSENT), now.get(name, _ABSENT)
                if old is not new:
                    self.changes.append((owner, name, old, new))

    def _apply(self, index: int) -> None:
        for change in self.changes:
            owner, name, value = change[0], change[1], change[2 + index]
            if value is _ABSENT:
                if name in vars(owner):
                    delattr(owner, name)
            else:
                setattr(owner, name, value)

    def off(self) -> None:
        self._apply(0)

    def on(self) -> None:
        self._apply(1)

    def describe(self) -> list[str]:
        return sorted(
            f"{getattr(owner, '__qualname__', getattr(owner, '__name__', '?'))}.{name}"
            for owner, name, _, _ in self.changes
        )


_ABSENT = object()


class PeerTarget(Target):
    """A peer: instrumented once by its own API, then toggled with :class:`PatchToggle`."""

    def instrument(self) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        _exercise_sdks()
        self.toggle = PatchToggle()
        self.instrument()
        self.toggle.record()
        if not self.toggle.changes:
            raise RuntimeError(f"{self.label} patched nothing in the SDK")
        self.patched = self.toggle.describe()
        self.toggle.off()

    def on(self) -> None:
        self.toggle.on()

    def off(self) -> None:
        self.toggle.off()


class _BaseInstrumentorTarget(PeerTarget):
    """A peer built on opentelemetry-instrumentation's BaseInstrumentor."""

    module = ""
    cls = "OpenAIInstrumentor"
    kwargs_keys: tuple[str, ...] = ("tracer_provider", "meter_provider", "logger_provider")

    def instrument(self) -> None:
        instrumentor = getattr(importlib.import_module(self.module), self.cls)()
        providers = self.signals.providers
        instrumentor.instrument(**{k: providers[k] for k in self.kwargs_keys})
        if not instrumentor.is_instrumented_by_opentelemetry:
            raise RuntimeError(f"{self.label} did not instrument (dependency conflict?)")


class OpenAIV2(_BaseInstrumentorTarget):
    name = "openai-v2"
    label = "OTel openai-v2"
    distributions = ("opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai")
    module = "opentelemetry.instrumentation.openai_v2"
    note = "content capture off (its default)"


class GenAIOpenAI(_BaseInstrumentorTarget):
    name = "genai-openai"
    label = "OTel genai-openai"
    distributions = ("opentelemetry-instrumentation-genai-openai", "opentelemetry-util-genai")
    module = "opentelemetry.instrumentation.genai.openai"
    note = "content capture off (its default)"


class OpenInference(_BaseInstrumentorTarget):
    name = "openinference"
    label = "OpenInference"
    distributions = ("openinference-instrumentation-openai", "openinference-instrumentation")
    module = "openinference.instrumentation.openai"
    kwargs_keys = ("tracer_provider",)
    note = "spans only (no metrics); records messages as span attributes by default"


class Traceloop(_BaseInstrumentorTarget):
    name = "traceloop"
    label = "Traceloop (OpenLLMetry)"
    distributions = ("opentelemetry-instrumentation-openai", "opentelemetry-semantic-conventions-ai")
    module = "opentelemetry.instrumentation.openai"
    note = "records prompts/completions by default (TRACELOOP_TRACE_CONTENT)"


class Logfire(PeerTarget):
    name = "logfire"
    label = "Logfire"
    distributions = ("logfire",)
    note = "configure(send_to_logfire=False, console=False) + instrument_openai(); records content by default"

    def __init__(self) -> None:
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        spans = InMemorySpanExporter()
        reader = InMemoryMetricReader()
        self._processor = SimpleSpanProcessor(spans)
        self.signals = Signals(None, None, None, spans, reader, None)

    def instrument(self) -> None:
        import logfire

        logfire.configure(
            send_to_logfire=False,
            console=False,
            additional_span_processors=[self._processor],
            metrics=logfire.MetricsOptions(additional_readers=[self.signals.metrics]),
            inspect_arguments=False,
        )
        self._keep = logfire.instrument_openai()  # its context manager would uninstrument when collected


class OpenLIT(PeerTarget):
    name = "openlit"
    label = "OpenLIT"
    distributions = ("openlit",)
    note = (
        "openlit.init(disable_batch=True) on global SDK providers, every other instrumentor disabled, "
        "prices from a local file; records content by default"
    )

    def instrument(self) -> None:
        import json
        import tempfile

        from opentelemetry import _logs, metrics, trace

        trace.set_tracer_provider(self.signals.tracer_provider)
        metrics.set_meter_provider(self.signals.meter_provider)
        _logs.set_logger_provider(self.signals.logger_provider)
        import openlit
        from openlit import MODULE_NAME_MAP

        # Without a local price list OpenLIT downloads one at start-up.
        prices = {"chat": {"gpt-4o-mini": {"promptPrice": 0.00015, "completionPrice": 0.0006}}}
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(prices, handle)
        others = [name for name in MODULE_NAME_MAP if name != "openai"]
        openlit.init(disable_batch=True, disabled_instrumentors=others, pricing_json=handle.name)


TARGETS: dict[str, Callable[[], Target]] = {
    "agentwatch": Agentwatch,
    "agentwatch-capture": AgentwatchCapture,
    "openai-v2": OpenAIV2,
    "genai-openai": GenAIOpenAI,
    "openinference": OpenInference,
    "traceloop": Traceloop,
    "logfire": Logfire,
    "openlit": OpenLIT,
    "none": NoInstrumentation,
}
