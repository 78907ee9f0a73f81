"""Patching on import (docs/architecture.md, "Start-up"): ``instrument()`` imports no client library,
and patching when the application imports one keeps every behaviour.

Each case runs in a fresh interpreter (this test process has every client imported already). The
contract tests go over every integration in the registry, so a new integration is checked without
being named here: ``_patches()`` imports nothing of its library and names only the library's
modules, and its patch points are patched whether the library is imported before or after
``instrument()``, and restored (by identity: a wrapt wrapper compares equal to what it wraps).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from agentwatch._fakellm import FakeLLMServer
from agentwatch.instrumentation._registry import load_registry
from cli._support import REPO, run
from support import needs_responses

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 environments
    import tomli as tomllib

INTEGRATIONS = {integration.name: integration for integration in load_registry().integrations}

PRELUDE = """
import importlib, json, logging, os, sys, threading

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from wrapt import FunctionWrapper

import agentwatch

SPANS = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(SPANS))


def instrument():
    agentwatch.instrument(tracer_provider=PROVIDER, configure_sdk=False)


def of_library(module):
    return sorted(m for m in sys.modules if m == module or m.startswith(module + "."))


def span_names():
    return [s.name for s in SPANS.get_finished_spans()]


def openai_client():
    import openai

    return openai.OpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="sk-test", max_retries=0)


def chat(client):
    return client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])


def layers(value):
    # How many wrapt wrappers are stacked on a patch point.
    count = 0
    while isinstance(value, FunctionWrapper):
        count, value = count + 1, value.__wrapped__
    return count


def chat_create():
    from openai.resources.chat.completions import Completions

    return vars(Completions)["create"]


def report(**values):
    print(json.dumps(values))
"""


def _script(tmp_path: Path, body: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    result = run([sys.executable, str(script)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    values: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    values["stderr"] = result.stderr
    return values


# -- the contract, over every integration in the registry ------------------------------------------


def _dev_only_libraries() -> set[str]:
    """Libraries of the ``dev`` extra that ``test`` lacks: the compatibility runs of
    scripts/test.sh install ``.[test]`` next to SDK releases those libraries do not accept."""
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    names = {Requirement(r).name for r in extras["dev"]} - {Requirement(r).name for r in extras["test"]}
    return {canonicalize_name(n) for n in names}


def _needs_library(name: str) -> None:
    if not INTEGRATIONS[name].installed():
        pytest.skip(f"{name}: its library is not installed in this environment")


def test_every_integration_is_installed_here() -> None:
    # The contract tests below skip a library that is not installed: only those the compatibility
    # environments leave out on purpose may be missing.
    assert INTEGRATIONS
    dev_only = _dev_only_libraries()
    missing = [
        name
        for name, integration in INTEGRATIONS.items()
        if not integration.installed()
        and not {canonicalize_name(Requirement(r).name) for r in integration.instruments} <= dev_only
    ]
    assert missing == [], f"install the test extra: {missing}"


def test_instrument_imports_no_client_library_nor_patch_code(tmp_path: Path) -> None:
    values = _script(
        tmp_path,
        """
        from agentwatch.instrumentation._registry import load_registry

        modules = [i.module for i in load_registry().integrations]
        instrument()
        report(
            libraries={m: of_library(m) for m in modules},
            patch_code=sorted(m for m in sys.modules if m.startswith("agentwatch.") and m.endswith("._patch")),
            policies="agentwatch.resilience" in sys.modules,
        )
        """,
    )
    assert values["libraries"] == {integration.module: [] for integration in INTEGRATIONS.values()}
    # Not even agentwatch's own code for a library the application has not imported, nor the
    # resilience policies it has not used.
    assert values["patch_code"] == []
    assert values["policies"] is False


def test_zero_code_start_up_imports_no_client_library(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("import json, sys\nprint(json.dumps(sorted(sys.modules)))\n", encoding="utf-8")
    instrument = Path(sys.executable).parent / "opentelemetry-instrument"
    # Other projects' instrumentors may import their library at start-up (OTel's botocore one does,
    # under both its entry points): switched off, so what is left is agentwatch's doing.
    others = [
        e.name
        for e in entry_points(group="opentelemetry_instrumentor")
        if not e.name.startswith("agentwatch_")
    ]
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",".join(others),
    }
    result = run([instrument, sys.executable, str(script)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.splitlines()[-1])
    assert "agentwatch.instrumentation.openai" in modules  # agentwatch's entry points did load
    for integration in INTEGRATIONS.values():
        prefix = integration.module + "."
        assert [m for m in modules if m == integration.module or m.startswith(prefix)] == [], integration.name


@pytest.mark.parametrize("name", sorted(INTEGRATIONS))
def test_patches_name_only_modules_of_their_library(name: str) -> None:
    """What triggers ``_patches()`` is the import of the library's module (package.py ``_module``):
    a patch elsewhere would never be applied if that module is imported first."""
    _needs_library(name)
    from agentwatch._telemetry._core import Telemetry

    integration = INTEGRATIONS[name]
    instrumentor = integration.instrumentor()
    modules = {module for module, _, _ in instrumentor._patches(Telemetry(instrumentor.scope))}
    assert modules
    outside = sorted(
        m for m in modules if m != integration.module and not m.startswith(integration.module + ".")
    )
    assert outside == []


CONTRACT = """
from agentwatch.instrumentation._registry import load_registry

(integration,) = [i for i in load_registry().integrations if i.name == os.environ["INTEGRATION"]]
library = integration.module
if os.environ["ORDER"] == "library first":
    importlib.import_module(library)
before = set(sys.modules)
instrument()
added_by_instrument = sorted(m for m in set(sys.modules) - before if m == library or m.startswith(library + "."))

instrumentor = integration.instrumentor()
points = [(module, path) for module, path, _ in instrumentor._patches(instrumentor._telemetry)]
added_by_patches = sorted(m for m in set(sys.modules) - before if m == library or m.startswith(library + "."))
for module, _ in points:
    try:
        importlib.import_module(module)  # the application's imports, after instrument()
    except ImportError:
        pass  # a module this version does not have


def resolve(module, path):
    owner = sys.modules.get(module)
    *parents, attribute = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent, None)
    return (owner, attribute) if owner is not None and attribute in vars(owner) else None


present = {f"{m}:{p}": resolve(m, p) for m, p in points}
present = {key: found for key, found in present.items() if found is not None}
wrapped = {key: layers(vars(owner)[attribute]) for key, (owner, attribute) in present.items()}
originals = {key: vars(owner)[attribute].__wrapped__ for key, (owner, attribute) in present.items() if wrapped[key]}
agentwatch.uninstrument()
restored = {key: vars(owner)[attribute] is originals.get(key) for key, (owner, attribute) in present.items()}
report(
    added_by_instrument=added_by_instrument,
    added_by_patches=added_by_patches,
    wrapped=wrapped,
    restored=restored,
)
"""


@pytest.mark.parametrize("order", ["library first", "instrument first"])
@pytest.mark.parametrize("name", sorted(INTEGRATIONS))
def test_every_patch_point_is_patched_and_restored(tmp_path: Path, name: str, order: str) -> None:
    _needs_library(name)
    values = _script(tmp_path, CONTRACT, env={"INTEGRATION": name, "ORDER": order})
    # instrument() imported nothing more of the library than the application had (no lazily
    # loaded part such as openai's Responses resources), and _patches() imports nothing either.
    assert values["added_by_instrument"] == []
    assert values["added_by_patches"] == []
    wrapped = values["wrapped"]
    assert wrapped, "no patch point exists in the installed version"
    assert set(wrapped.values()) == {1}, wrapped  # each exactly once
    assert all(values["restored"].values()), values["restored"]


# -- behaviour, with real calls --------------------------------------------------------------------


@pytest.fixture
def llm_env(fake_llm: FakeLLMServer) -> dict[str, str]:
    return {"FAKE_OPENAI_URL": fake_llm.openai_base_url}


@needs_responses
def test_a_client_imported_after_instrument_is_patched_and_traced(
    tmp_path: Path, llm_env: dict[str, str]
) -> None:
    values = _script(
        tmp_path,
        """
        instrument()
        client = openai_client()
        reply = chat(client)
        # Responses is loaded by the SDK only when first used: patched then.
        lazily_loaded = "openai.resources.responses" in sys.modules
        client.responses.create(model="gpt-4o-mini", input="hi")
        patched = layers(chat_create())
        original = chat_create().__wrapped__
        agentwatch.uninstrument()
        chat(client)
        report(
            lazily_loaded=lazily_loaded,
            spans=span_names(),
            patched=patched,
            restored=chat_create() is original,
            reply=reply.choices[0].message.content is not None,
        )
        """,
        env=llm_env,
    )
    assert values["lazily_loaded"] is False
    assert values["spans"] == ["chat gpt-4o-mini", "chat gpt-4o-mini"]  # chat, responses; none after
    assert (values["patched"], values["restored"], values["reply"]) == (1, True, True)


@needs_responses
def test_uninstrument_before_the_import_means_nothing_is_patched(
    tmp_path: Path, llm_env: dict[str, str]
) -> None:
    values = _script(
        tmp_path,
        """
        instrument()
        agentwatch.uninstrument()
        client = openai_client()
        chat(client)
        client.responses.create(model="gpt-4o-mini", input="hi")
        from openai.resources.responses import Responses

        report(spans=span_names(), layers=[layers(chat_create()), layers(vars(Responses)["create"])])
        """,
        env=llm_env,
    )
    assert values["spans"] == []
    assert values["layers"] == [0, 0]


def test_instrumenting_twice_or_again_before_the_import_patches_once(
    tmp_path: Path, llm_env: dict[str, str]
) -> None:
    values = _script(
        tmp_path,
        """
        instrument()
        instrument()  # harmless
        agentwatch.uninstrument()
        instrument()  # re-arms the hooks still waiting, registers none
        instrument()
        from wrapt.importer import _post_import_hooks

        waiting = {name: len(hooks) for name, hooks in _post_import_hooks.items() if name.startswith("openai")}
        client = openai_client()
        chat(client)
        report(waiting=waiting, spans=span_names(), layers=layers(chat_create()))
        """,
        env=llm_env,
    )
    assert values["waiting"] == {"openai": 1}  # one hook, for the library itself
    assert values["spans"] == ["chat gpt-4o-mini"]
    assert values["layers"] == 1


def test_a_module_imported_before_instrument_is_patched_at_once(
    tmp_path: Path, llm_env: dict[str, str]
) -> None:
    values = _script(
        tmp_path,
        """
        client = openai_client()
        chat(client)  # loads the chat resources
        instrument()
        patched_at_once = layers(chat_create())
        chat(client)
        report(patched_at_once=patched_at_once, spans=span_names())
        """,
        env=llm_env,
    )
    assert values["patched_at_once"] == 1
    assert values["spans"] == ["chat gpt-4o-mini"]


FAULT = """
import agentwatch.instrumentation._base as base

real = base.wrap_function_wrapper


def failing(owner, attribute, wrapper):
    if getattr(owner, "__name__", "") in ("Completions", "AsyncCompletions"):
        raise RuntimeError("cannot patch")
    return real(owner, attribute, wrapper)


base.wrap_function_wrapper = failing
instrument()
client = openai_client()  # imports openai; the chat resources are imported (and patched) on use
reply = chat(client)
client.embeddings.create(model="text-embedding-3-small", input="hi")
report(reply=reply.choices[0].message.content, spans=span_names(), layers=layers(chat_create()))
"""


def test_a_fault_while_patching_inside_the_import_is_logged_once(
    tmp_path: Path, llm_env: dict[str, str]
) -> None:
    values = _script(tmp_path, FAULT, env=llm_env)
    # The import succeeded and the call works, uninstrumented; the other modules were patched.
    assert values["reply"]
    assert values["layers"] == 0
    assert values["spans"] == ["embeddings text-embedding-3-small"]
    stderr = values["stderr"]
    warned = re.findall(r"agentwatch: internal error in instrumenting (\S+?);", stderr)
    # One warning per module whose patching failed: the chat resources, and in the openai
    # releases that still have them (< 1.92) the beta chat resources, whose classes share the name.
    assert "openai.resources.chat.completions" in warned
    assert set(warned) <= {"openai.resources.chat.completions", "openai.resources.beta.chat.completions"}
    assert len(warned) == len(set(warned))
    # Each warning's one traceback; the other faults of the same module went to DEBUG.
    assert stderr.count("Traceback") == len(warned)


def test_a_fault_building_the_patches_inside_the_import_is_logged_once(
    tmp_path: Path, llm_env: dict[str, str]
) -> None:
    values = _script(
        tmp_path,
        """
        from agentwatch.instrumentation.openai import OpenAIInstrumentor

        def broken(self, telemetry):
            raise RuntimeError("cannot build")

        OpenAIInstrumentor._patches = broken
        instrument()
        client = openai_client()
        reply = chat(client)
        report(reply=reply.choices[0].message.content, spans=span_names(), layers=layers(chat_create()))
        """,
        env=llm_env,
    )
    assert values["reply"]
    assert (values["spans"], values["layers"]) == ([], 0)
    assert values["stderr"].count("agentwatch: internal error in instrumenting openai") == 1


def test_threads_importing_concurrently_patch_once(tmp_path: Path, llm_env: dict[str, str]) -> None:
    values = _script(
        tmp_path,
        """
        instrument()
        barrier = threading.Barrier(8)
        errors = []

        def app_thread():
            try:
                barrier.wait()
                import openai.resources.chat.completions  # noqa: F401
                import openai.resources.embeddings  # noqa: F401
                chat(openai_client())
            except BaseException as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=app_thread) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        from openai.resources.embeddings import Embeddings

        report(
            errors=errors,
            spans=span_names(),
            layers=[layers(chat_create()), layers(vars(Embeddings)["create"])],
        )
        """,
        env=llm_env,
    )
    assert values["errors"] == []
    assert values["spans"] == ["chat gpt-4o-mini"] * 8
    assert values["layers"] == [1, 1]


def test_resilience_metrics_go_to_instruments_meter_provider_when_loaded_later(tmp_path: Path) -> None:
    values = _script(
        tmp_path,
        """
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        agentwatch.instrument(meter_provider=MeterProvider(metric_readers=[reader]), configure_sdk=False)
        loaded_by_instrument = "agentwatch.resilience" in sys.modules
        calls = []

        @agentwatch.tool(policy=agentwatch.Policy(retry=agentwatch.Retry(attempts=2, backoff=0)))
        def flaky() -> str:
            calls.append(1)
            if len(calls) == 1:
                raise TimeoutError("first attempt")
            return "ok"

        flaky()
        names = sorted(
            metric.name
            for rm in reader.get_metrics_data().resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        )
        report(loaded_by_instrument=loaded_by_instrument, names=names)
        """,
    )
    assert values["loaded_by_instrument"] is False
    assert "agentwatch.resilience.events" in values["names"], values["names"]


def test_every_public_name_loads_on_use_and_import_agentwatch_loads_none(tmp_path: Path) -> None:
    """``__all__`` and the lazy table cannot drift apart: a name added to the public API but not
    to ``_EXPORTS`` would be listed and fail at its first use."""
    values = _script(
        tmp_path,
        """
        loaded_by_import = sorted(
            m for m in ("agentwatch._setup", "agentwatch.resilience", "agentwatch.tools", "agentwatch._session")
            if m in sys.modules
        )
        resolved = {name: getattr(agentwatch, name) is not None for name in agentwatch.__all__}
        report(
            loaded_by_import=loaded_by_import,
            exports=sorted(agentwatch._EXPORTS),
            all=sorted(agentwatch.__all__),
            resolved=resolved,
            listed=sorted(set(agentwatch.__all__) - set(dir(agentwatch))),
        )
        """,
    )
    assert values["loaded_by_import"] == []
    assert values["exports"] == [name for name in values["all"] if name != "__version__"]
    assert all(values["resolved"].values()), values["resolved"]
    assert values["listed"] == []


def test_shared_state_loads_the_policies_only_when_asked_for(tmp_path: Path) -> None:
    # AGENTWATCH_STATE_REDIS_URL asks for them: it starts its backend at instrument(). A bad
    # value is refused naming the variable, from a process where nothing had loaded them.
    values = _script(
        tmp_path,
        """
        try:
            instrument()
        except agentwatch.ConfigError as exc:
            refused = exc.setting
        report(refused=refused, policies="agentwatch.resilience" in sys.modules)
        """,
        env={"AGENTWATCH_STATE_REDIS_URL": "http://127.0.0.1:1"},
    )
    assert values["refused"] == "AGENTWATCH_STATE_REDIS_URL"
    assert values["policies"] is True


# -- sdk_type ----------------------------------------------------------------------------------------


def test_sdk_type_matches_only_once_its_module_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from agentwatch.instrumentation._base import sdk_type

    stand_in = sdk_type("agentwatch_test_sdk._streaming", "Stream")
    missing = sdk_type("agentwatch_test_sdk._streaming", "NotInThisVersion")
    assert not isinstance(object(), stand_in)  # not imported: no import attempted, no match
    assert "agentwatch_test_sdk._streaming" not in sys.modules

    module = types.ModuleType("agentwatch_test_sdk._streaming")

    class Stream:
        pass

    class SubStream(Stream):
        pass

    module.Stream = Stream  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert isinstance(SubStream(), stand_in)
    assert isinstance(Stream(), (int, stand_in))
    assert not isinstance(object(), stand_in)
    assert not isinstance(Stream(), missing)
