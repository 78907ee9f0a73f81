"""What every agentwatch instrumentor shares: building telemetry once, patching on import, and
pairing wraps with unwraps.

Never instantiated itself: ``BaseInstrumentor.__new__`` caches one instance per class, so each
concrete instrumentor subclasses this abstract base rather than another concrete instrumentor.

Patching on import. ``instrument()`` imports no client library. Until the application imports the
library (``package.py``'s ``_module``: ``openai``), nothing but a wrapt post-import hook exists;
when it does, ``_patches()`` builds the wrappers and names the module that defines each patched
class (a string), and each module is patched as soon as it is imported (another hook), or at once
if it already is. Importing ``openai`` costs an application up to seconds, and the SDKs load parts
such as the Responses types only when used: an instrumentation that imported what it supports
would make every process pay for all of it. The contract for every integration, checked over the
registry by ``tests/instrumentation/test_lazy_patching.py``: ``_patches()`` imports nothing of the
library, and names only modules of it; SDK types are resolved inside the wrappers
(:func:`sdk_type`).

wrapt hooks cannot be unregistered, so they only ever look at this instrumentor's state: after
``uninstrument()`` a hook that fires patches nothing, and a second ``instrument()`` re-uses the
hook still waiting for its module rather than registering another. A fault while patching inside
the application's ``import`` is logged once and swallowed: the import succeeds and the library
works uninstrumented.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, ClassVar

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from wrapt import register_post_import_hook, wrap_function_wrapper

from agentwatch._config import Settings, check_instrument_arguments, resolve_settings
from agentwatch._errors import ConfigError
from agentwatch._internal import at_fork_in_child, report_internal_error, sdk_type
from agentwatch._telemetry._core import Telemetry
from agentwatch.instrumentation._registry import describe_package

__all__ = ["AgentwatchInstrumentor", "Patch", "sdk_type"]


def _under_opentelemetry_instrument() -> bool:
    """Whether the auto-instrumentation's ``sitecustomize`` is loading us (zero-code mode)."""
    path = getattr(sys.modules.get("sitecustomize"), "__file__", None) or ""
    return "auto_instrumentation" in path.replace(os.sep, "/")


def _stop_start_up(exc: ConfigError) -> None:
    """An invalid setting must stop start-up; opentelemetry-instrument's loader would only log it
    and run the application without the policies and settings its operator asked for. Raising
    SystemExit from sitecustomize aborts with a "Fatal Python error" trace, so say it plainly."""
    sys.stderr.write(f"agentwatch: invalid configuration, not starting: {exc}\n")
    sys.stderr.flush()
    os._exit(2)


Wrapper = Callable[[Any, Any, Any, Any], Any]
Patch = tuple[str, str, Wrapper]
"""(module, "Class.method", wrapper): the module that defines the class (or function), by name.
A missing module, class or method is skipped: optional APIs (Responses, ``parse``) exist only in
some SDK versions."""

# Guards every instrumentor's patch state against the import hooks, which run in whichever thread
# imports the module. Re-entrant: a hook may fire inside another while a class is being patched.
# Nothing waits for an import while holding it (see _on_import), so it cannot deadlock with the
# import system's per-module locks.
_lock = threading.RLock()
# (instrumentor class, module) whose wrapt hook is registered and has not fired yet. wrapt drops a
# hook once it has fired: a module imported since needs no hook, it is patched at instrument().
_waiting: set[tuple[type, str]] = set()


@at_fork_in_child
def _renew_lock() -> None:
    global _lock
    _lock = threading.RLock()


def _library_module(cls: type) -> str | None:
    """The import name of the library ``cls`` instruments, from the ``package.py`` next to it
    (``_module``, else the first ``_instruments`` requirement's name): importing it is what
    triggers ``_patches()``. ``None`` (patch at once) for an instrumentor without one."""
    try:
        package = importlib.import_module(f"{cls.__module__}.package")
    except ImportError:
        return None
    return describe_package(package)[2]


# What every wrapt wrapper is an instance of: wrapt 2's ObjectProxy is a Python subclass of it,
# which its C FunctionWrapper does not inherit from; wrapt 1 has no BaseObjectProxy.
_WRAPT_PROXY: Any = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)


def _remove(owner: object, attribute: str, ours: Any) -> None:
    """Take agentwatch's wrapper ``ours`` off ``owner.attribute``, and nothing else.

    OTel's ``unwrap`` removes whichever wrapper is outermost: when another instrumentor (OTel
    openai-v2, the botocore one, an APM agent) wrapped the method after agentwatch, it would take
    theirs off and leave ours. Ours is spliced out of the chain instead; theirs stays, now over
    the original. A chain that no longer holds ours (someone replaced the attribute) is left alone.
    """
    original = ours.__wrapped__
    outer: Any = vars(owner).get(attribute)
    if outer is ours:
        setattr(owner, attribute, original)
        return
    while isinstance(outer, _WRAPT_PROXY):
        inner = outer.__wrapped__
        if inner is ours:
            outer.__wrapped__ = original
            return
        outer = inner


class AgentwatchInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    scope: ClassVar[str]

    @abstractmethod
    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        """The wrappers to install, built once from ``telemetry``, without importing the library
        (name its modules; resolve its types lazily: :func:`sdk_type`)."""

    def _instrument(self, **kwargs: Any) -> None:
        """Keywords: the providers, ``settings`` (given by ``agentwatch.instrument()``), or else
        ``tool_policies`` (tool name or ``"*"`` -> ``agentwatch.Policy``, merged over the
        ``[tools]`` section of ``AGENTWATCH_CONFIG``) for the tools of a framework instrumented
        on its own, e.g. ``LangChainInstrumentor().instrument(tool_policies=...)``."""
        # BaseInstrumentor marks itself instrumented only after this returns: refusing here
        # leaves it uninstrumented, as instrument() does.
        check_instrument_arguments(
            providers={
                name: kwargs.get(name) for name in ("tracer_provider", "meter_provider", "logger_provider")
            },
            flags={},
        )
        settings = kwargs.get("settings")
        if not isinstance(settings, Settings):
            # Nothing passes settings under opentelemetry-instrument (or a bare .instrument()):
            # read the environment.
            try:
                settings = resolve_settings(tool_policies=kwargs.get("tool_policies"))
            except ConfigError as exc:
                if _under_opentelemetry_instrument():
                    _stop_start_up(exc)
                raise
        self._telemetry = Telemetry(
            self.scope,
            tracer_provider=kwargs.get("tracer_provider"),
            meter_provider=kwargs.get("meter_provider"),
            logger_provider=kwargs.get("logger_provider"),
            settings=settings,
            pricer=kwargs.get("pricer"),
        )
        library = _library_module(type(self))
        with _lock:
            self._generation: int = getattr(self, "_generation", 0) + 1
            self._armed = True
            self._library = library
            # Whether _patches() has run for this instrument(): module -> what to patch in it,
            # (module, path) already tried, (owner, attribute) patched, to restore.
            self._built = False
            self._wanted: dict[str, list[tuple[str, Wrapper]]] = {}
            self._done: set[tuple[str, str]] = set()
            self._applied: list[tuple[object, str, Any]] = []
            generation = self._generation
        if library is None or library in sys.modules:
            try:
                self._build(generation)
            except BaseException:
                self._uninstrument()  # refused as a whole, as instrument() refuses a bad setting
                raise
        else:
            # Not even agentwatch's own patch code is loaded for a library the application does
            # not import: _patches() runs when it does.
            self._when_imported(library)

    def _build(self, generation: int) -> None:
        """Run ``_patches()`` (agentwatch's wrappers, no library import) and patch or hook each module."""
        from agentwatch._telemetry._pricing import preload

        preload()  # before any call can be made through the library (see preload)
        wanted: dict[str, list[tuple[str, Wrapper]]] = {}
        for module_name, path, wrapper in self._patches(self._telemetry):
            wanted.setdefault(module_name, []).append((path, wrapper))
        with _lock:
            if generation != self._generation or self._built:
                return  # uninstrumented meanwhile, or another thread built it
            self._built = True
            self._wanted = wanted
        for module_name in wanted:
            self._when_imported(module_name)

    def _when_imported(self, name: str) -> None:
        """Call :meth:`_on_import` for module ``name`` now if it is imported, else when it is."""
        key = (type(self), name)
        with _lock:
            if key in _waiting:
                return  # the hook registered by an earlier instrument() is still waiting
            module = sys.modules.get(name)
            if module is None:
                _waiting.add(key)
        if module is not None:
            self._on_import(module)
        else:
            # Calls the hook at once if another thread imported the module meanwhile.
            register_post_import_hook(self._on_import, name)

    def _on_import(self, module: ModuleType) -> None:
        """The post-import hook: runs inside the application's ``import``, which it must never
        break. Does what the current instrumentation wants of ``module``, if anything: builds
        the patches when it is the library itself, patches what is defined in it."""
        name = getattr(module, "__name__", "")
        try:
            with _lock:
                _waiting.discard((type(self), name))
                if not getattr(self, "_armed", False):
                    return  # uninstrumented: the hook is a no-op
                build = not self._built and name == getattr(self, "_library", None)
                generation = self._generation
                wanted = bool(self._wanted.get(name))
            if build:
                self._build(generation)  # patches every module imported so far, this one included
                return
            if not wanted:
                return
            if getattr(getattr(module, "__spec__", None), "_initializing", False):
                # Another thread may still be running the module's body (a hook registered while
                # it was importing fires at once): wait for it, outside our lock. In the importing
                # thread itself this returns at once.
                module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the application's import must succeed, uninstrumented
            report_internal_error(f"instrumenting {name}")
            return
        with _lock:
            for path, wrapper in self._wanted.get(name, ()):
                if (name, path) in self._done:
                    continue
                self._done.add((name, path))  # tried once per instrument(), even if it fails
                try:
                    self._apply(module, path, wrapper)
                except Exception:  # noqa: BLE001 - this method stays as it was; the others are patched
                    report_internal_error(f"instrumenting {name}")

    def _apply(self, module: ModuleType, path: str, wrapper: Wrapper) -> None:
        *owner_path, attribute = path.split(".")
        owner: object = module
        for name in owner_path:
            owner = getattr(owner, name, None)
            if owner is None:
                return
        if attribute not in vars(owner):
            # Only wrap methods the class defines itself; an inherited one would be wrapped on
            # the parent's behalf and unwrapped from the wrong class.
            return
        self._applied.append((owner, attribute, wrap_function_wrapper(owner, attribute, wrapper)))

    def _uninstrument(self, **kwargs: Any) -> None:
        with _lock:
            self._generation = getattr(self, "_generation", 0) + 1
            self._armed = False  # disarms the hooks still waiting
            self._wanted = {}
            self._done = set()
            for owner, attribute, ours in reversed(getattr(self, "_applied", [])):
                _remove(owner, attribute, ours)
            self._applied = []
