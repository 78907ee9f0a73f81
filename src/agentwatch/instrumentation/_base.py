"""What every agentwatch instrumentor shares: building telemetry once and pairing wraps with unwraps.

Never instantiated itself: ``BaseInstrumentor.__new__`` caches one instance per class, so each
concrete instrumentor subclasses this abstract base rather than another concrete instrumentor.
"""

from __future__ import annotations

import importlib
import os
import sys
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from agentwatch._config import Settings, check_instrument_arguments, resolve_settings
from agentwatch._errors import ConfigError
from agentwatch._telemetry._core import Telemetry

__all__ = ["AgentwatchInstrumentor", "Patch"]


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
"""(module, "Class.method", wrapper). A missing module, class or method is skipped: optional APIs
(Responses, ``parse``) exist only in some SDK versions."""


class AgentwatchInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    scope: ClassVar[str]

    @abstractmethod
    def _patches(self, telemetry: Telemetry) -> Iterable[Patch]:
        """The wrappers to install, built once from ``telemetry``."""

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
        self._applied: list[tuple[object, str]] = []
        try:
            for module_name, path, wrapper in self._patches(self._telemetry):
                self._apply(module_name, path, wrapper)
        except BaseException:
            self._uninstrument()
            raise

    def _apply(self, module_name: str, path: str, wrapper: Wrapper) -> None:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return
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
        wrap_function_wrapper(module, path, wrapper)
        self._applied.append((owner, attribute))

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, attribute in reversed(getattr(self, "_applied", [])):
            unwrap(owner, attribute)
        self._applied = []
