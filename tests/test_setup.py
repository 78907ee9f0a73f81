"""agentwatch.instrument()/uninstrument(): what is patched, restored, configured and refused."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import openai
import openai._base_client
import openai.resources.chat.completions
import openai.resources.embeddings
import openai.resources.responses
import pytest

import agentwatch
from agentwatch._fakellm import FakeLLMServer
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.instrumentation._registry import load_registry
from support import OPENAI_KEY, OPENAI_MODEL, Signals, json_documents, user

# (module, owner in it, attribute): every place agentwatch patches, in any supported SDK version;
# those this version does not have are left out (parse() and stream() moved out of `beta` in 1.92).
_PATCH_POINTS = [
    *(
        (module, owner, name)
        for module in ("openai.resources.chat.completions", "openai.resources.beta.chat.completions")
        for owner in ("Completions", "AsyncCompletions")
        for name in ("create", "parse", "stream")
    ),
    *(
        ("openai.resources.responses", owner, name)
        for owner in ("Responses", "AsyncResponses")
        for name in ("create", "stream")
    ),
    ("openai.resources.embeddings", "Embeddings", "create"),
    ("openai.resources.embeddings", "AsyncEmbeddings", "create"),
    ("openai._base_client", "BaseClient", "_build_request"),
    *(
        (module, owner, name)
        for module in ("anthropic.resources.messages", "anthropic.resources.beta.messages")
        for owner in ("Messages", "AsyncMessages")
        for name in ("create", "stream", "parse")
    ),
    ("anthropic._base_client", "BaseClient", "_build_request"),
    ("anthropic._base_client", None, "start_api_call_span"),
    ("anthropic._base_client", None, "finish_api_call_span"),
    # Closing a raw response ends its span.
    *(
        (f"{sdk}._response", owner, "close")
        for sdk in ("openai", "anthropic")
        for owner in ("APIResponse", "AsyncAPIResponse")
    ),
]


def _present(module: str, owner: str | None) -> Any:
    try:
        found: Any = importlib.import_module(module)
    except ImportError:
        return None
    return found if owner is None else getattr(found, owner, None)


PATCHED: list[tuple[Any, str]] = [
    (holder, name)
    for module, owner, name in _PATCH_POINTS
    if (holder := _present(module, owner)) is not None and name in vars(holder)
]


def _originals() -> list[object]:
    return [vars(owner)[name] for owner, name in PATCHED]


def _same(now: list[object], before: list[object]) -> bool:
    # By identity: a wrapt wrapper compares equal to the function it wraps.
    return all(n is b for n, b in zip(now, before, strict=True))


def test_uninstrument_restores_every_original(signals: Signals) -> None:
    before = _originals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    during = _originals()
    agentwatch.uninstrument()
    after = _originals()
    set_default_telemetry()

    assert all(d is not b for d, b in zip(during, before, strict=True)), "something was not patched"
    assert all(a is b for a, b in zip(after, before, strict=True))


def test_instrumenting_twice_is_harmless(signals: Signals, openai_client: openai.OpenAI) -> None:
    before = _originals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert len(signals.finished()) == 1
    assert _same(_originals(), before)
    agentwatch.uninstrument()  # and uninstrumenting twice too


def test_a_second_instrument_changes_no_setting(signals: Signals) -> None:
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_ONLY")
    try:

        @agentwatch.tool
        def echo(text: str) -> str:
            return text

        echo(text="SECRET-ARGUMENT")
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    (span,) = signals.finished()
    assert span.name == "execute_tool echo"
    assert "SECRET-ARGUMENT" not in signals.dump()


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "yes please", "NO_CONTENT, SPAN_ONLY"),
        ("AGENTWATCH_PROPAGATE_HOSTS", "https://api.openai.com/", "host names"),
        ("AGENTWATCH_OPENAI_INCLUDE_USAGE", "maybe", "true, false"),
        ("AGENTWATCH_TIME_PER_OUTPUT_CHUNK", "sometimes", "true, false"),
        ("AGENTWATCH_PRICES_FILE", "/nonexistent/prices.toml", "readable TOML or JSON"),
    ],
)
def test_bad_setting_is_refused_before_anything_is_patched(
    signals: Signals, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, accepted: str
) -> None:
    monkeypatch.setenv(variable, value)
    before = _originals()
    with pytest.raises(ValueError, match=variable) as raised:
        agentwatch.instrument(**signals.providers, configure_sdk=False)
    assert accepted in str(raised.value)
    assert _same(_originals(), before)


def test_prices_from_code_and_file(
    signals: Signals, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[models."ft:gpt-4o-mini:acme"]\ninput_mtok = 2.0\noutput_mtok = 8.0\ncache_read_mtok = 0.5\n'
    )
    monkeypatch.setenv("AGENTWATCH_PRICES_FILE", str(prices))
    agentwatch.instrument(
        **signals.providers,
        configure_sdk=False,
        prices={"my-private-model": {"input_mtok": 1, "output_mtok": 1}},
    )
    try:
        with openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as client:
            from agentwatch._fakellm import Reply

            fake_llm.enqueue(
                Reply.text(input_tokens=1000, cached_tokens=400, output_tokens=100),
                Reply.text(input_tokens=1000, output_tokens=1000),
            )
            client.chat.completions.create(model="ft:gpt-4o-mini:acme", messages=user())
            client.chat.completions.create(model="my-private-model", messages=user())
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    from_file, from_code = (dict(s.attributes or {})["gen_ai.usage.cost.amount"] for s in signals.finished())
    assert from_file == pytest.approx((600 * 2.0 + 400 * 0.5 + 100 * 8.0) / 1e6)
    assert from_code == pytest.approx(2000 / 1e6)


# -- in a fresh interpreter (global providers, exit-time flush) ---------------------------------

APP = textwrap.dedent(
    """
    import os, sys
    import openai
    import agentwatch
    from opentelemetry import trace

    if os.environ.get("APP_OWN_PROVIDER") == "1":
        # The application's own tracing, set up before agentwatch is called.
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        own_spans = InMemorySpanExporter()
        own_provider = TracerProvider()
        own_provider.add_span_processor(SimpleSpanProcessor(own_spans))
        trace.set_tracer_provider(own_provider)
    if os.environ.get("APP_INSTRUMENT") == "1":
        agentwatch.instrument(configure_sdk=os.environ.get("APP_CONFIGURE_SDK") != "0")
    with openai.OpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    if os.environ.get("APP_THEN_BAD_SETTING") == "1":
        agentwatch.instrument(capture_message_content="loud")
    print("PROVIDER", type(trace.get_tracer_provider()).__name__, file=sys.stderr)
    if os.environ.get("APP_OWN_PROVIDER") == "1":
        print("OWN_PROVIDER_KEPT", trace.get_tracer_provider() is own_provider, file=sys.stderr)
        print("OWN_SPANS", [s.name for s in own_spans.get_finished_spans()], file=sys.stderr)
    """
)


def _run(tmp_path: Path, server: FakeLLMServer, *prefix: str, **env: str) -> subprocess.CompletedProcess[str]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTWATCH_"))},
        "FAKE_OPENAI_URL": server.openai_base_url,
        "OTEL_SERVICE_NAME": "setup-test",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        **env,
    }
    return subprocess.run(
        [*prefix, sys.executable, str(app)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_instrument_configures_the_sdk_from_the_environment(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    result = _run(tmp_path, fake_llm, APP_INSTRUMENT="1")
    assert result.returncode == 0, result.stderr
    (span,) = json_documents(result.stdout)
    assert span["name"] == "chat gpt-4o-mini"
    assert span["resource"]["attributes"]["service.name"] == "setup-test"
    assert "PROVIDER TracerProvider" in result.stderr


def test_telemetry_recorded_before_a_bad_setting_is_still_exported(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    result = _run(tmp_path, fake_llm, APP_INSTRUMENT="1", APP_THEN_BAD_SETTING="1")
    assert result.returncode != 0
    assert "invalid value 'loud' for capture_message_content" in result.stderr
    assert [s["name"] for s in json_documents(result.stdout)] == ["chat gpt-4o-mini"]


def test_a_provider_the_application_set_is_used_not_replaced(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    # Console metrics too: the application's tracer provider cannot be replaced once set, so only
    # metrics exported from the environment's settings would show that agentwatch configured the SDK.
    result = _run(
        tmp_path, fake_llm, APP_OWN_PROVIDER="1", APP_INSTRUMENT="1", OTEL_METRICS_EXPORTER="console"
    )
    assert result.returncode == 0, result.stderr
    assert "OWN_PROVIDER_KEPT True" in result.stderr
    assert "OWN_SPANS ['chat gpt-4o-mini']" in result.stderr
    assert result.stdout == ""


def test_configure_sdk_false_leaves_the_sdk_alone(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    result = _run(
        tmp_path, fake_llm, APP_INSTRUMENT="1", APP_CONFIGURE_SDK="0", OTEL_METRICS_EXPORTER="console"
    )
    assert result.returncode == 0, result.stderr
    assert len(fake_llm.requests) == 1
    # The call was made, but with no provider set up nothing is exported, despite the exporters
    # the environment names.
    assert result.stdout == ""
    assert "PROVIDER ProxyTracerProvider" in result.stderr


def test_opentelemetry_instrument_zero_code(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    bindir = Path(sys.executable).parent
    result = _run(tmp_path, fake_llm, str(bindir / "opentelemetry-instrument"))
    assert result.returncode == 0, result.stderr
    spans = json_documents(result.stdout)
    assert [s["name"] for s in spans] == ["chat gpt-4o-mini"]
    assert spans[0]["attributes"]["gen_ai.provider.name"] == "openai"
    assert spans[0]["attributes"]["gen_ai.usage.cost.currency"] == "USD"


def test_disabling_one_entry_point_by_name(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    bindir = Path(sys.executable).parent
    result = _run(
        tmp_path,
        fake_llm,
        str(bindir / "opentelemetry-instrument"),
        OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="agentwatch_openai",
    )
    assert result.returncode == 0, result.stderr
    assert json_documents(result.stdout) == []


def test_zero_code_start_up_stops_on_an_invalid_setting(tmp_path: Path, fake_llm: FakeLLMServer) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text('[llm."gpt-4o"]\nretry = { attempts = 0 }\n')
    bindir = Path(sys.executable).parent
    result = _run(tmp_path, fake_llm, str(bindir / "opentelemetry-instrument"), AGENTWATCH_CONFIG=str(config))
    assert result.returncode == 2
    assert "not starting" in result.stderr and "llm.gpt-4o.retry.attempts" in result.stderr
    assert "PROVIDER" not in result.stderr  # the application never ran
    assert fake_llm.requests == []


def test_a_missing_client_does_not_disable_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """The distribution-level check opentelemetry-instrument runs, with anthropic uninstalled."""
    from importlib.metadata import PackageNotFoundError, distribution

    from opentelemetry.instrumentation import dependencies

    real_version = dependencies.version
    missing: set[str] = set()

    def version(name: str) -> str:
        if name in missing:
            raise PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(dependencies, "version", version)
    dist = distribution("agentwatch")
    missing.add("anthropic")
    assert dependencies.get_dist_dependency_conflicts(dist) is None
    # Every other library of a registered integration missing too: nothing left to instrument.
    missing.update(i.library for i in load_registry().integrations)
    assert dependencies.get_dist_dependency_conflicts(dist) is not None


# -- arguments are checked before anything changes (issue 11, items 6 and 9) ---------------------


@pytest.mark.parametrize(
    ("argument", "value", "accepted"),
    [
        ("tracer_provider", object(), "get_tracer"),
        ("meter_provider", object(), "get_meter"),
        ("logger_provider", "not a provider", "get_logger"),
        ("configure_sdk", "false", "a bool"),
        ("configure_sdk", None, "a bool"),
        ("openai_include_usage", "false", "a bool"),
        ("time_per_output_chunk", "no", "a bool"),
    ],
)
def test_a_wrong_argument_is_refused_and_changes_nothing(
    signals: Signals, openai_client: openai.OpenAI, argument: str, value: object, accepted: str
) -> None:
    before = _originals()
    arguments: dict[str, Any] = {**signals.providers, "configure_sdk": False, argument: value}
    with pytest.raises(agentwatch.ConfigError, match=argument) as raised:
        agentwatch.instrument(**arguments)
    assert accepted in str(raised.value)
    assert _same(_originals(), before)

    # Nothing was marked instrumented: a corrected call takes effect, and tools work.
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:

        @agentwatch.tool
        def echo(text: str) -> str:
            return text

        assert echo(text="hi") == "hi"
        openai_client.chat.completions.create(model=OPENAI_MODEL, messages=user())
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert sorted(s.name for s in signals.finished()) == ["chat gpt-4o-mini", "execute_tool echo"]


def test_the_instrumentor_api_refuses_a_wrong_provider_and_stays_uninstrumented() -> None:
    from agentwatch.instrumentation.openai import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    with pytest.raises(agentwatch.ConfigError, match="tracer_provider"):
        instrumentor.instrument(tracer_provider=object())
    assert not instrumentor.is_instrumented_by_opentelemetry


def test_a_fault_half_way_through_instrument_undoes_what_it_did(
    signals: Signals, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentwatch.instrumentation.anthropic import AnthropicInstrumentor

    def broken(self: object, **kwargs: object) -> None:
        raise RuntimeError("instrumentor failed")

    # OpenAI is instrumented first, then anthropic fails.
    monkeypatch.setattr(AnthropicInstrumentor, "_instrument", broken)
    before = _originals()
    with pytest.raises(RuntimeError, match="instrumentor failed"):
        agentwatch.instrument(**signals.providers, configure_sdk=False)
    assert _same(_originals(), before)
    monkeypatch.undo()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        assert all(n is not b for n, b in zip(_originals(), before, strict=True))
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()


# -- exporters chosen as opentelemetry-instrument does (issue 11, item 1) -------------------------
# tests/stack/test_otlp_http.py sends to a real OTLP/HTTP receiver; these pin the selection rules.

GRPC, HTTP = "otlp_proto_grpc", "otlp_proto_http"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"traces": [GRPC], "metrics": [GRPC], "logs": [GRPC]}),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
            {"traces": [HTTP], "metrics": [HTTP], "logs": [HTTP]},
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": " grpc "}, {"traces": [GRPC], "metrics": [GRPC], "logs": [GRPC]}),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf"},
            {"traces": [GRPC], "metrics": [HTTP], "logs": [GRPC]},
        ),
        (
            {"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf", "OTEL_TRACES_EXPORTER": "console"},
            {"traces": [], "metrics": [GRPC], "logs": [HTTP]},
        ),
        # A variable the SDK reads itself: it resolves "otlp" by the same protocol rules.
        (
            {"OTEL_TRACES_EXPORTER": "otlp,console", "OTEL_METRICS_EXPORTER": "none"},
            {"traces": [], "metrics": [], "logs": [GRPC]},
        ),
    ],
)
def test_exporters_follow_the_otlp_protocol_variables(
    environ: dict[str, str], expected: dict[str, list[str]]
) -> None:
    from agentwatch._config import sdk_exporter_names

    assert sdk_exporter_names(environ) == expected


@pytest.mark.parametrize(
    ("environ", "variable", "accepted"),
    [
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "'grpc', 'http/protobuf'",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "'http/protobuf'",
        ),
        (
            {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "HTTP/protobuf"},
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "'grpc', 'http/protobuf'",
        ),
        ({"OTEL_LOGS_EXPORTER": "otlp,consoel"}, "OTEL_LOGS_EXPORTER", "console"),
    ],
)
def test_an_exporter_the_sdk_cannot_load_is_a_config_error(
    environ: dict[str, str], variable: str, accepted: str
) -> None:
    from agentwatch._config import sdk_exporter_names

    with pytest.raises(agentwatch.ConfigError, match=variable) as raised:
        sdk_exporter_names(environ)
    assert accepted in str(raised.value)


def test_instrument_refuses_a_bad_otlp_protocol_before_configuring_anything(
    tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    result = _run(
        tmp_path,
        fake_llm,
        APP_INSTRUMENT="1",
        OTEL_TRACES_EXPORTER="",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/json",
    )
    assert result.returncode == 1
    assert "ConfigError: invalid value 'http/json' for OTEL_EXPORTER_OTLP_PROTOCOL" in result.stderr
    assert "'grpc', 'http/protobuf'" in result.stderr
    assert fake_llm.requests == []


@pytest.mark.parametrize("variable", ["AGENTWATCH_CONFIG", "AGENTWATCH_PRICES_FILE"])
def test_zero_code_start_up_stops_on_a_file_that_is_not_utf8(
    tmp_path: Path, fake_llm: FakeLLMServer, variable: str
) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes("# réglages\n".encode("latin-1"))
    bindir = Path(sys.executable).parent
    result = _run(tmp_path, fake_llm, str(bindir / "opentelemetry-instrument"), **{variable: str(path)})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("agentwatch: invalid configuration, not starting:")
    assert variable in line and str(path) in line and "UTF-8" in line
    assert fake_llm.requests == []
