"""Argument validation before a tool runs, with well-kept validators rather than a home-grown one.

* ``@tool`` functions: a pydantic ``TypeAdapter`` over a ``TypedDict`` built from the signature's
  type hints (unannotated parameters accept anything; ``**kwargs`` allows extra names, otherwise
  an unknown name is an error). A hint pydantic cannot build a validator for is accepted as
  ``Any``, and that is logged once. pydantic comes with every SDK agentwatch instruments; without
  it (``pip install 'agentwatch[validation]'``) tools are not validated, which is logged once.
* MCP tools: the ``inputSchema`` the server listed, with ``jsonschema`` (an MCP dependency).
* LangChain tools: their own ``args_schema`` (pydantic), checked before ``run``.

Problems name the field and the kind of error, never the value: pydantic's messages are templates
filled with the schema's constraints, except those of custom validators (``value_error``,
``assertion_error`` and custom error types), which may quote the input and are replaced by the
kind; jsonschema's messages quote the instance, so they are rebuilt from the failed keyword.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from agentwatch.resilience._errors import FieldProblem, InvalidArgumentsError

__all__ = [
    "ArgumentsValidator",
    "jsonschema_validator",
    "pydantic_problems",
    "signature_validator",
]

_log = logging.getLogger("agentwatch")
_said: set[str] = set()
_said_lock = threading.Lock()
# Parameters that are the receiver of a method, not arguments the model chose.
_RECEIVERS = frozenset({"self", "cls"})
# pydantic error types whose message may quote the input (user-written validators).
_OPAQUE_TYPES = frozenset({"value_error", "assertion_error"})


def _once(what: str, message: str, *args: object) -> None:
    with _said_lock:
        first = what not in _said
        _said.add(what)
    if first:
        _log.warning(message, *args)


def _path(location: Iterable[object]) -> str:
    return ".".join(str(part) for part in location)


# -- pydantic --------------------------------------------------------------------------------------


def _known_pydantic_types() -> frozenset[str]:
    try:
        from pydantic_core.core_schema import ErrorType
    except ImportError:  # pragma: no cover - pydantic_core always ships it
        return frozenset()
    return frozenset(typing.get_args(ErrorType))


_KNOWN_TYPES: frozenset[str] | None = None


def pydantic_problems(error: Any) -> list[FieldProblem]:
    """The problems of a ``pydantic.ValidationError``, without input values."""
    global _KNOWN_TYPES
    if _KNOWN_TYPES is None:
        _KNOWN_TYPES = _known_pydantic_types()
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        kind = str(item.get("type", "invalid"))
        if kind in _OPAQUE_TYPES or kind not in _KNOWN_TYPES:
            message = "Invalid value (rejected by a custom validator)"
        elif kind == "extra_forbidden":
            kind, message = "unexpected", "Not an argument of this tool"
        else:
            message = str(item.get("msg", "Invalid value"))
        problems.append(FieldProblem(_path(item.get("loc", ())), kind, message))
    return problems


class ArgumentsValidator:
    """Validates keyword arguments; ``convert`` returns the validated values, ``check`` only checks."""

    __slots__ = ("_adapter", "_errors", "_ignored", "_tool", "skipped")

    def __init__(
        self,
        tool: str,
        adapter: Any,
        errors: type[BaseException],
        skipped: tuple[str, ...],
        ignored: frozenset[str],
    ) -> None:
        self._tool = tool
        self._adapter = adapter
        self._errors = errors
        self._ignored = ignored
        self.skipped = skipped

    def convert(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as the tool declared them (``"3"`` → ``3`` for an ``int``, a JSON object →
        the declared model); ``InvalidArgumentsError`` if they do not match."""
        try:
            validated = self._adapter.validate_python(dict(arguments))
        except self._errors as exc:
            raise InvalidArgumentsError(name=self._tool, problems=pydantic_problems(exc)) from None
        return dict(validated)

    def check(self, arguments: Mapping[str, Any]) -> None:
        """Raise ``InvalidArgumentsError`` if the arguments do not match; never changes them.

        For direct calls: parameters that are not passed by name (positional-only, ``*args``,
        the receiver of a method) are left to Python."""
        ignored = self._ignored
        self.convert({k: v for k, v in arguments.items() if k not in ignored} if ignored else arguments)


def _typed_dict(name: str, module: str, fields: dict[str, Any], extra: bool) -> Any:
    from pydantic import ConfigDict
    from typing_extensions import TypedDict

    factory: Any = TypedDict  # the functional form, with names known only at run time
    typed = factory(name, fields)
    typed.__module__ = module  # forward references resolve in the tool's module
    typed.__pydantic_config__ = ConfigDict(extra="allow" if extra else "forbid", arbitrary_types_allowed=True)
    return typed


def _adapter(typed: Any) -> Any:
    """A complete ``TypeAdapter`` for ``typed``, or an exception (a forward reference pydantic
    cannot resolve is only reported at the first validation otherwise)."""
    from pydantic import TypeAdapter

    adapter = TypeAdapter(typed)
    if not getattr(adapter, "pydantic_complete", True):
        adapter.rebuild(raise_errors=True)
        if not getattr(adapter, "pydantic_complete", True):
            raise TypeError("incomplete validator")
    return adapter


def signature_validator(tool: str, fn: Callable[..., Any]) -> ArgumentsValidator | None:
    """A validator built from ``fn``'s signature and type hints, or ``None`` when there is nothing
    to validate with (no signature, or pydantic missing)."""
    try:
        from pydantic import ValidationError
        from typing_extensions import NotRequired, Required
    except ImportError:
        _once(
            "pydantic",
            "agentwatch: pydantic is not installed, so tool arguments are not validated "
            "(pip install 'agentwatch[validation]')",
        )
        return None
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature
        return None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable forward references: use the raw annotations
        hints = {}
    module = getattr(fn, "__module__", None) or __name__
    extra = False
    hinted: dict[str, tuple[Any, Any]] = {}
    ignored: set[str] = set()
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind is parameter.VAR_KEYWORD:
            extra = True
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            ignored.update((parameter.name, "args"))
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY or (index == 0 and parameter.name in _RECEIVERS):
            ignored.add(parameter.name)
            continue
        annotation = hints.get(parameter.name, parameter.annotation)
        if annotation is parameter.empty:
            annotation = Any
        marker = Required if parameter.default is parameter.empty else NotRequired
        hinted[parameter.name] = (marker, annotation)

    skipped: list[str] = []
    adapter = None
    for _ in range(2):
        fields = {name: marker[annotation] for name, (marker, annotation) in hinted.items()}
        try:
            adapter = _adapter(_typed_dict(f"{tool}_arguments", module, fields, extra))
            break
        except Exception:  # noqa: BLE001 - pydantic raises many kinds for a hint it cannot use
            # Find the hints pydantic cannot handle and accept anything there instead.
            for name, (marker, annotation) in list(hinted.items()):
                try:
                    _adapter(_typed_dict(f"{tool}_{name}", module, {name: marker[annotation]}, False))
                except Exception:  # noqa: BLE001 - any failure: that hint is not validated
                    hinted[name] = (marker, Any)
                    skipped.append(name)
    if adapter is None:
        return None
    if skipped:
        _once(
            f"hints:{tool}",
            "agentwatch: tool %r: the type hints of %s cannot be validated; any value is accepted there",
            tool,
            ", ".join(repr(n) for n in skipped),
        )
    return ArgumentsValidator(tool, adapter, ValidationError, tuple(skipped), frozenset(ignored))


# -- JSON Schema (MCP inputSchema) -------------------------------------------------------------------


def _describe(error: Any) -> list[FieldProblem]:
    path = _path(error.absolute_path)
    keyword = str(error.validator)
    expected = error.validator_value
    prefix = f"{path}." if path else ""
    if keyword == "required" and isinstance(error.instance, Mapping) and isinstance(expected, list):
        return [
            FieldProblem(f"{prefix}{name}", "missing", "Field required")
            for name in expected
            if name not in error.instance
        ]
    if keyword == "additionalProperties" and isinstance(error.instance, Mapping):
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        declared = schema.get("properties", {})
        return [
            FieldProblem(f"{prefix}{name}", "unexpected", "Not an argument of this tool")
            for name in error.instance
            if name not in declared
        ] or [FieldProblem(path, keyword, "Has properties the schema does not allow")]
    if keyword == "type":
        message = f"Should be of type {' or '.join(expected) if isinstance(expected, list) else expected}"
    elif keyword == "enum" and isinstance(expected, list):
        message = "Should be one of " + ", ".join(repr(v) for v in expected[:20])
    elif keyword in (
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "pattern",
        "format",
        "const",
        "multipleOf",
    ):
        message = f"Does not satisfy {keyword} {expected!r}"
    else:
        message = f"Does not satisfy the schema's {keyword!r} constraint"
    return [FieldProblem(path, keyword, message)]


def jsonschema_validator(schema: object) -> Callable[[object], list[FieldProblem]] | None:
    """A function returning the problems of an arguments object against ``schema`` (an MCP
    ``inputSchema``), or ``None`` when jsonschema is missing or the schema is unusable."""
    if not isinstance(schema, Mapping):
        return None
    try:
        exceptions: Any = importlib.import_module("jsonschema.exceptions")
        validators: Any = importlib.import_module("jsonschema.validators")
    except ImportError:
        return None
    try:
        cls = validators.validator_for(schema)
        cls.check_schema(schema)
        validator = cls(schema)
    except exceptions.SchemaError:
        return None

    def problems(arguments: object) -> list[FieldProblem]:
        found: list[FieldProblem] = []
        for error in validator.iter_errors({} if arguments is None else arguments):
            found.extend(_describe(error))
        return found

    return problems
