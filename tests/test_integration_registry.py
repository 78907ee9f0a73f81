"""One list of integrations: agentwatch's entry points, described by each integration's package.py.

The end-to-end tests install a new integration the way a release would ship it: a package with an
instrumentor and a package.py, and agentwatch's metadata with one more entry point (a copy of the
installed dist-info, first on PYTHONPATH, as a reinstall would write it). Nothing in ``_setup.py`` or
``_cli/_doctor.py`` names it, yet ``agentwatch doctor`` lists it and ``agentwatch.instrument()``
instruments it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import textwrap
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from agentwatch.instrumentation._registry import GROUP, load_registry
from cli._support import AGENTWATCH, REPO, run

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the 3.10 environments
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_registry_is_pyprojects_entry_points() -> None:
    declared = PYPROJECT["project"]["entry-points"][GROUP]
    registry = load_registry()
    assert registry.problems == ()
    assert {i.name: i.entry_point.value for i in registry.integrations} == declared
    described = {i.name: (i.library, i.module) for i in registry.integrations}
    # A few by name (the import name differs from the distribution's for some) ...
    assert described["agentwatch_openai"] == ("openai", "openai")
    assert described["agentwatch_langchain"] == ("langchain-core", "langchain_core")
    assert described["agentwatch_google_genai"] == ("google-genai", "google.genai")
    # ... and every one as its package.py declares it: a new integration needs no edit here.
    for integration in registry.integrations:
        package = importlib.import_module(f"{integration.entry_point.module}.package")
        library = Requirement(package._instruments[0]).name
        module = getattr(package, "_module", library.replace("-", "_"))
        assert described[integration.name] == (library, module)
    for integration in registry.integrations:
        package = importlib.import_module(f"{integration.entry_point.module}.package")
        assert integration.instruments == package._instruments
        assert integration.instrumentor().instrumentation_dependencies() == package._instruments
    assert load_registry().integrations[0].duplicated_by["anthropic"].startswith("a second span")


def test_an_uninstalled_agentwatch_is_a_problem_not_a_crash() -> None:
    registry = load_registry("agentwatch-not-installed")
    assert registry.integrations == ()
    (problem,) = registry.problems
    assert "agentwatch-not-installed distribution is not installed" in problem and "pip install" in problem


def test_every_integrations_library_is_in_the_instruments_any_extra() -> None:
    # opentelemetry-instrument disables all of agentwatch unless one of these is installed, so a
    # library missing here would leave its integration off when it is the only one installed.
    extras = PYPROJECT["project"]["optional-dependencies"]
    instruments_any = {str(Requirement(r)) for r in extras["instruments-any"]}
    # dev may include other extras of agentwatch itself (agentwatch[test]).
    dev: set[str] = set()
    pending = list(extras["dev"])
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.name == "agentwatch":
            for extra in requirement.extras:
                pending.extend(extras[extra])
        else:
            dev.add(requirement.name)
    for integration in load_registry().integrations:
        for requirement in integration.instruments:
            assert str(Requirement(requirement)) in instruments_any, integration.name
            assert Requirement(requirement).name in dev, integration.name


def test_every_integrations_module_is_one_an_import_hook_fires_for() -> None:
    # instrument() patches when the application imports this module (a post-import hook), and
    # no hook fires for a namespace package (``langgraph``, ``google``): one would wait forever.
    for integration in load_registry().integrations:
        spec = importlib.util.find_spec(integration.module)
        assert spec is not None, integration.name
        assert spec.origin not in (None, "namespace"), (integration.name, integration.module)


def test_listing_the_integrations_imports_no_client_library(tmp_path: Path) -> None:
    declared = len(PYPROJECT["project"]["entry-points"][GROUP])
    code = (
        "import json, sys\n"
        "from agentwatch.instrumentation._registry import load_registry\n"
        "registry = load_registry()\n"
        f"assert len(registry.integrations) == {declared}\n"
        "assert all(i.installed() for i in registry.integrations)\n"
        "print(json.dumps({'loaded': sorted(sys.modules),"
        " 'clients': sorted({i.module for i in registry.integrations})}))\n"
    )
    result = run([sys.executable, "-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert {"openai", "anthropic", "google.genai", "botocore", "mcp", "langchain_core", "litellm"} <= set(
        seen["clients"]
    )
    # By module, not by top-level package: looking google.genai up imports its namespace package
    # "google" (shared with protobuf and others), never the SDK.
    clients = (*seen["clients"], "httpx", "boto3")
    assert [m for m in seen["loaded"] if any(m == c or m.startswith(f"{c}.") for c in clients)] == []


# --- A new integration, installed -----------------------------------------------------------------

TOY_INSTRUMENTOR = """
from typing import Any, ClassVar

from agentwatch.instrumentation._base import AgentwatchInstrumentor
from toy_integration.package import _instruments


def _greet(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> str:
    return "instrumented " + wrapped(*args, **kwargs)


class ToyInstrumentor(AgentwatchInstrumentor):
    scope: ClassVar[str] = "toy_integration"

    def instrumentation_dependencies(self):
        return _instruments

    def _patches(self, telemetry):
        return [("toylib", "Client.greet", _greet)]
"""
TOY_PACKAGE = """
_instruments = ("toylib >= 1.0",)
_duplicated_by = {"toylib": "a second span for every toy call"}
"""
INSTRUMENT = """
import sys

import agentwatch

agentwatch.instrument(configure_sdk=False)
print("imported" if "toylib" in sys.modules else "not imported")
import toylib

print(toylib.Client().greet())
agentwatch.uninstrument()
print(toylib.Client().greet())
"""


def _install(
    site: Path, *, toylib: bool = True, drop: str | None = None, add_toy: bool = True, resolved: bool = False
) -> None:
    """agentwatch's metadata with the toy entry point added (or ``drop`` removed), the toy
    integration, optionally the library it instruments, and another instrumentor of that library."""
    real = distribution("agentwatch")
    info = site / f"agentwatch-{real.version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(real.read_text("METADATA") or "", encoding="utf-8")
    entry_points = real.read_text("entry_points.txt") or ""
    if drop is not None:
        entry_points = "\n".join(line for line in entry_points.splitlines() if not line.startswith(drop))
    if add_toy:
        entry_points = entry_points.replace(
            f"[{GROUP}]\n", f"[{GROUP}]\nagentwatch_toy = toy_integration:ToyInstrumentor\n"
        )
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")

    (site / "toy_integration").mkdir()
    (site / "toy_integration" / "__init__.py").write_text(textwrap.dedent(TOY_INSTRUMENTOR), encoding="utf-8")
    package = textwrap.dedent(TOY_PACKAGE) + ('_resolved = ("toylib",)\n' if resolved else "")
    (site / "toy_integration" / "package.py").write_text(package, encoding="utf-8")
    if toylib:
        (site / "toylib").mkdir()
        (site / "toylib" / "__init__.py").write_text(
            "class Client:\n    def greet(self) -> str:\n        return 'hello'\n", encoding="utf-8"
        )
        (site / "toylib-1.2.dist-info").mkdir()
        (site / "toylib-1.2.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: toylib\nVersion: 1.2\n", encoding="utf-8"
        )
    peer = site / "otel_toy_standin-1.0.dist-info"
    peer.mkdir()
    (peer / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: otel-toy-standin\nVersion: 1.0\n"
        'Provides-Extra: instruments\nRequires-Dist: toylib>=1.0; extra == "instruments"\n',
        encoding="utf-8",
    )
    (peer / "entry_points.txt").write_text(f"[{GROUP}]\ntoy_peer = standin:Instrumentor\n", encoding="utf-8")


def _doctor(site: Path) -> dict[str, Any]:
    result = run([AGENTWATCH, "doctor", "--json"], cwd=site, env={"PYTHONPATH": str(site)})
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_a_new_integration_is_in_doctor_and_instrumented(tmp_path: Path) -> None:
    _install(tmp_path)
    report = _doctor(tmp_path)
    clients = {c["instrumentor"]: c for c in report["clients"]}
    assert clients["agentwatch_toy"] == {
        "library": "toylib",
        "installed": "1.2",
        "supported": "toylib >= 1.0",
        "instrumentor": "agentwatch_toy",
        "activates": True,
        "reason": "activates",
    }
    assert "agentwatch_openai" in clients  # the real ones are still there
    (peer,) = [o for o in report["other_instrumentors"] if o["name"] == "toy_peer"]
    assert (peer["overlaps"], peer["effect"]) == (["toylib"], "a second span for every toy call")
    assert any(
        p.startswith("instrumentor toy_peer (otel-toy-standin) also instruments toylib")
        for p in report["problems"]
    )

    result = run([sys.executable, "-c", INSTRUMENT], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    # instrument() did not import toylib; the application's import patched it.
    assert result.stdout.splitlines() == ["not imported", "instrumented hello", "hello"]


def test_an_overlap_the_integration_resolves_is_listed_but_no_problem(tmp_path: Path) -> None:
    # As the Bedrock integration does with the botocore instrumentor: it stands aside for
    # agentwatch's calls, so both stay on (disabling it would lose every other AWS span).
    _install(tmp_path, resolved=True)
    report = _doctor(tmp_path)
    (peer,) = [o for o in report["other_instrumentors"] if o["name"] == "toy_peer"]
    assert (peer["overlaps"], peer["effect"]) == (["toylib"], "a second span for every toy call")
    assert not any("toy_peer" in p for p in report["problems"])
    (bedrock,) = [i for i in load_registry().integrations if i.name == "agentwatch_bedrock"]
    assert bedrock.resolved == {"botocore"} and "boto3" not in bedrock.resolved


def test_a_new_integration_whose_library_is_missing_imports_nothing(tmp_path: Path) -> None:
    _install(tmp_path, toylib=False)
    report = _doctor(tmp_path)
    (toy,) = [c for c in report["clients"] if c["instrumentor"] == "agentwatch_toy"]
    assert (toy["installed"], toy["activates"], toy["reason"]) == (None, False, "toylib is not installed")
    assert not any("toy_peer" in p for p in report["problems"])

    code = INSTRUMENT.split("import toylib")[0]
    result = run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["not imported"]


def test_an_integration_folder_without_its_entry_point_is_reported(tmp_path: Path) -> None:
    # A stale editable install: the folder exists, the metadata predates its entry point.
    _install(tmp_path, drop="agentwatch_mcp", add_toy=False)
    report = _doctor(tmp_path)
    expected = (
        "agentwatch.instrumentation.mcp has a package.py but no opentelemetry_instrumentor entry point: "
        "add it to pyproject.toml and reinstall agentwatch (pip install -e .)"
    )
    assert expected in report["problems"]
    assert "agentwatch_mcp" not in {c["instrumentor"] for c in report["clients"]}
    code = "import agentwatch\nagentwatch.instrument(configure_sdk=False)\n"
    result = run([sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert expected in result.stderr
