"""What every agentwatch instrumentor shares: building telemetry once and pairing wraps with unwraps.

Never instantiated itself: ``BaseInstrumentor.__new__`` caches one instance per class, so each
concrete instrumentor subclasses this abstract base rather than another concrete instrumentor.
"""

from __future__ import annotations

import importlib
from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from wrapt import wrap_function_wrapper

from agentwatch._config import Settings, resolve_settings
from agentwatch._telemetry._core import Telemetry

__all__ = ["AgentwatchInstrumentor", "Patch"]

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
        settings = kwargs.get("settings")
        if not isinstance(settings, Settings):
            # Under opentelemetry-instrument nothing passes settings: read the environment. A
            # bad value raises ConfigError, which the loader logs with the setting's name.
            settings = resolve_settings()
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
