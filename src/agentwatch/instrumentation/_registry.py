"""agentwatch's integrations, listed once.

The list is agentwatch's own ``opentelemetry_instrumentor`` entry points (``pyproject.toml``), read
from the installed distribution's metadata: the very list ``opentelemetry-instrument`` loads, so
``agentwatch.instrument()``, ``agentwatch doctor`` and zero-code start-up cannot disagree. What an
integration needs is declared in the ``package.py`` next to its instrumentor:

- ``_instruments``: the requirement(s) of the library it instruments, contrib's convention; the
  first one names the distribution whose version is checked and reported;
- ``_module`` (optional): the import name ``instrument()`` looks for, when it is not the
  distribution's name with ``-`` as ``_`` (``google-genai`` is ``google.genai``); its import is
  what makes the instrumentor build and apply its patches (``_base.py``), so every module the
  integration patches must be inside it;
- ``_duplicated_by`` (optional): library -> what another instrumentor of that library would do
  next to this one (``agentwatch doctor`` warns about it);
- ``_resolved`` (optional): those of ``_duplicated_by`` that agentwatch settles itself (the other
  instrumentor stands aside for the calls agentwatch traces): the doctor lists them, as no problem.

Listing the integrations imports agentwatch's integration packages but never a client library: an
integration's library is looked up with ``importlib.util.find_spec`` (:meth:`Integration.installed`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import Distribution, EntryPoint, PackageNotFoundError, distribution
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["DISTRIBUTION", "GROUP", "Integration", "Registry", "describe_package", "load_registry"]

DISTRIBUTION = "agentwatch"
GROUP = "opentelemetry_instrumentor"


@dataclass(frozen=True)
class Integration:
    """One registered integration, described by its ``package.py``."""

    name: str  # the entry point's name, as OTEL_PYTHON_DISABLED_INSTRUMENTATIONS spells it
    entry_point: EntryPoint = field(repr=False)
    library: str  # the distribution it instruments: openai, langchain-core...
    module: str  # the import name instrument() looks for: openai, langchain_core...
    instruments: tuple[str, ...]
    duplicated_by: Mapping[str, str] = field(default_factory=dict)
    resolved: frozenset[str] = frozenset()

    def installed(self) -> bool:
        """Whether the library can be imported, without importing it (a dotted name imports its parent)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            return False

    def instrumentor(self) -> Any:
        """The instrumentor (a per-class singleton); imports agentwatch's integration, not the library."""
        return self.entry_point.load()()


@dataclass(frozen=True)
class Registry:
    integrations: tuple[Integration, ...]
    # Why something is missing: agentwatch not installed, an entry point without a readable
    # package.py, an integration folder with no entry point (a stale editable install).
    problems: tuple[str, ...] = ()


def describe_package(package: ModuleType) -> tuple[tuple[str, ...], str, str]:
    """(``_instruments``, the library's distribution, its import name) from a ``package.py``."""
    from packaging.requirements import Requirement

    instruments = tuple(getattr(package, "_instruments", ()))
    if not instruments:
        raise ValueError(f"{package.__name__} declares no _instruments")
    library = Requirement(instruments[0]).name
    return instruments, library, getattr(package, "_module", library.replace("-", "_"))


def _describe(entry_point: EntryPoint) -> Integration:
    package = importlib.import_module(f"{entry_point.module}.package")
    instruments, library, module = describe_package(package)
    return Integration(
        name=entry_point.name,
        entry_point=entry_point,
        library=library,
        module=module,
        instruments=instruments,
        duplicated_by=dict(getattr(package, "_duplicated_by", {})),
        resolved=frozenset(getattr(package, "_resolved", ())),
    )


def _unregistered(registered: set[str]) -> list[str]:
    """Integration packages of this source tree that have a package.py but no entry point."""
    here = Path(__file__).parent
    return sorted(
        f"{__package__}.{folder.name}"
        for folder in here.iterdir()
        if (folder / "package.py").is_file() and f"{__package__}.{folder.name}" not in registered
    )


def load_registry(dist_name: str = DISTRIBUTION) -> Registry:
    """Every integration registered by the installed ``dist_name``, in its metadata's order."""
    try:
        dist: Distribution = distribution(dist_name)
    except PackageNotFoundError:
        return Registry(
            (),
            (
                f"the {dist_name} distribution is not installed (only on sys.path?), so none of its "
                f"{GROUP} entry points is registered: pip install it",
            ),
        )
    integrations: list[Integration] = []
    problems: list[str] = []
    for entry_point in dist.entry_points.select(group=GROUP):
        try:
            integrations.append(_describe(entry_point))
        except Exception as exc:  # noqa: BLE001 - one broken integration must not hide the others
            problems.append(f"{entry_point.name}: cannot read {entry_point.module}.package: {exc}")
    problems.extend(
        f"{module} has a package.py but no {GROUP} entry point: add it to pyproject.toml and "
        "reinstall agentwatch (pip install -e .)"
        for module in _unregistered({ep.module for ep in dist.entry_points.select(group=GROUP)})
    )
    return Registry(tuple(integrations), tuple(problems))
