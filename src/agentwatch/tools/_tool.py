"""``@agentwatch.tool`` and :class:`Tool`: a function made observable (and optionally resilient)."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, overload

from agentwatch import _semconv as sc
from agentwatch._errors import ConfigError
from agentwatch._internal import is_async_callable
from agentwatch._telemetry._core import current_settings
from agentwatch.resilience import FieldProblem, InvalidArgumentsError, Pipeline, Policy, lookup_policy
from agentwatch.resilience._cache import storable
from agentwatch.tools._execution import ToolSpec, default_tool_telemetry, run_async, run_sync
from agentwatch.tools._validation import ArgumentsValidator, signature_validator

__all__ = ["Tool", "get_tool", "parse_arguments", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__agentwatch_tool__"
# Parameters that are the receiver of a method, not arguments the model chose.
_RECEIVERS = frozenset({"self", "cls"})


def _summary(fn: Callable[..., Any]) -> str | None:
    """The first paragraph of the docstring, on one line."""
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(first.split()) or None


def parse_arguments(tool_name: str, arguments: object) -> dict[str, Any]:
    """Keyword arguments from what a model or caller sent: a mapping, a JSON object text, or None.

    Anything else raises ``InvalidArgumentsError`` (a ``ValueError`` and a ``TypeError``).
    """
    if arguments is None:
        return {}
    if isinstance(arguments, (str, bytes, bytearray)):
        if not arguments.strip():
            return {}
        try:
            arguments = json.loads(arguments)
        except ValueError as exc:
            # The decoder's message gives a position, never the text.
            problem = FieldProblem("", "json_invalid", f"Not valid JSON: {exc.args[0] if exc.args else exc}")
            raise InvalidArgumentsError(name=tool_name, problems=[problem]) from None
    if not isinstance(arguments, Mapping):
        problem = FieldProblem(
            "",
            "not_an_object",
            f"Should be a JSON object of argument names to values, not {type(arguments).__name__}",
        )
        raise InvalidArgumentsError(name=tool_name, problems=[problem])
    return {str(key): value for key, value in arguments.items()}


class Tool:
    """A callable run as a tool: each call is one ``execute_tool`` span, metric point and log record.

    Attributes:
        name: ``gen_ai.tool.name``.
        description: ``gen_ai.tool.description`` (default: the docstring's first paragraph).
        tool_type: ``gen_ai.tool.type`` (``function`` unless given).
        policy: the resilience policy every call runs through, or ``None``.
        validates: whether arguments are validated against the type hints before a call.
        fn: the original callable.
        is_async: whether calls must be awaited (:meth:`acall`).
    """

    __slots__ = (
        "_config_pipeline",
        "_key_defaults",
        "_own_pipeline",
        "_positional",
        "_spec",
        "_validator",
        "_var_positional",
        "description",
        "fn",
        "is_async",
        "name",
        "policy",
        "tool_type",
    )
    fn: Callable[..., Any]
    name: str
    description: str | None
    tool_type: str
    policy: Policy | None
    is_async: bool

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy | None = None,
        tool_type: str = sc.TOOL_TYPE_FUNCTION,
        validate: bool = True,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"a tool must be callable, not {type(fn).__name__}")
        existing = get_tool(fn)
        if existing is not None:  # re-decorating: build on the original, never span twice
            fn = existing.fn
        if name is None:
            name = getattr(fn, "__name__", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{fn!r} has no __name__: give the tool a name (tool(name=...))")
        if not isinstance(tool_type, str) or not tool_type:
            raise ValueError(f"tool_type must be a non-empty string such as 'function', not {tool_type!r}")
        if not isinstance(validate, bool):
            raise ConfigError("tool(validate=...)", validate, ["True", "False"])
        self.fn = fn
        self.name = name
        self.description = description if description is not None else _summary(fn)
        self.tool_type = tool_type
        self.policy = policy
        self.is_async = is_async_callable(fn)
        self._own_pipeline: Pipeline | None = None
        self._config_pipeline: tuple[Policy, Pipeline] | None = None
        # Surfaces a bad AGENTWATCH_CONFIG when the tool is defined (start-up), not at every call:
        # every call reads the settings, whether the tool has its own policy or not.
        current_settings()
        if policy is not None:
            # Built once per tool: its circuit, bulkhead and retry budget are shared by all calls.
            self._own_pipeline = Pipeline(policy, name=name, kind="tool")
        self._spec = ToolSpec(name, self.description, tool_type)
        self._var_positional: str | None = None
        try:
            parameters = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # builtins without a signature
            parameters = ()  # type: ignore[assignment]
        positional = []
        # Defaults that are JSON data complete the cache key, so f(x) and f(x, y=default) share it.
        self._key_defaults: dict[str, Any] = {}
        for parameter in parameters:
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
                positional.append(parameter.name)
            elif parameter.kind is parameter.VAR_POSITIONAL:
                self._var_positional = parameter.name
            if parameter.default is not parameter.empty and storable(parameter.default):
                self._key_defaults[parameter.name] = parameter.default
        self._positional = tuple(positional)
        # Built once, at definition (start-up): the schema comes from the type hints.
        self._validator: ArgumentsValidator | None = signature_validator(name, fn) if validate else None

    @property
    def validates(self) -> bool:
        return self._validator is not None

    @property
    def _pipeline(self) -> Pipeline | None:
        """The tool's own policy, else the one ``AGENTWATCH_CONFIG``/``instrument()`` gives its name.

        The configured policy is looked up per call (``instrument()`` may run after the tool is
        defined) but its pipeline is built once per policy object.
        """
        if self._own_pipeline is not None:
            return self._own_pipeline
        policy = lookup_policy(current_settings().tool_policies, self.name)
        if policy is None:
            return None
        cached = self._config_pipeline
        if cached is None or cached[0] is not policy:
            cached = self._config_pipeline = (policy, Pipeline(policy, name=self.name, kind="tool"))
        return cached[1]

    def __repr__(self) -> str:
        kind = "async " if self.is_async else ""
        return f"<agentwatch {kind}tool {self.name!r}>"

    # -- calls with model-provided arguments ---------------------------------------------------

    def _prepare(self, arguments: object) -> tuple[dict[str, Any], dict[str, Any]]:
        """(what the model sent, by name; what the tool receives): parsed, validated, converted."""
        try:
            kwargs = parse_arguments(self.name, arguments)
            validator = self._validator
            return kwargs, kwargs if validator is None else validator.convert(kwargs)
        except InvalidArgumentsError as exc:
            # Marks the error as this call's own for ToolRegistry.call_tool_call.
            exc._agentwatch_own = True  # type: ignore[attr-defined]
            raise

    def _cache_arguments(self, pipeline: Pipeline | None, named: dict[str, Any]) -> dict[str, Any] | None:
        if pipeline is None or not pipeline.cached:
            return None
        return {**self._key_defaults, **named} if self._key_defaults else named

    def call(self, arguments: object = None, *, call_id: str | None = None) -> Any:
        """Run the tool with keyword ``arguments`` (a mapping or a JSON object text).

        ``call_id`` is the id of the model's tool call (``gen_ai.tool.call.id``). The arguments
        are validated against the tool's type hints and converted to them (``"3"`` → ``3`` for an
        ``int``; a JSON object → the declared pydantic model or dataclass). Returns what the tool
        returns (or, for an optional tool its policy stopped, a ``ToolUnavailable``) and raises
        what it raises; invalid arguments (not a JSON object, or not matching the hints) raise
        :class:`~agentwatch.InvalidArgumentsError` and the tool is not called.
        """
        if self.is_async:
            raise TypeError(f"tool {self.name!r} is async: use `await ....acall(...)`")
        telemetry = default_tool_telemetry()
        try:
            sent, kwargs = self._prepare(arguments)
        except InvalidArgumentsError as exc:
            problem = exc

            def refuse() -> Any:
                raise problem

            return run_sync(telemetry, self._spec, refuse, arguments=arguments, call_id=call_id)
        fn = self.fn
        pipeline = self._pipeline
        return run_sync(
            telemetry,
            self._spec,
            lambda: fn(**kwargs),
            arguments=sent,
            call_id=call_id,
            pipeline=pipeline,
            cache_arguments=self._cache_arguments(pipeline, sent),
        )

    async def acall(self, arguments: object = None, *, call_id: str | None = None) -> Any:
        """Like :meth:`call`, awaited; a sync tool runs inline (wrap blocking tools in a thread)."""
        telemetry = default_tool_telemetry()
        try:
            sent, kwargs = self._prepare(arguments)
        except InvalidArgumentsError as exc:
            problem = exc

            async def refuse() -> Any:
                raise problem

            return await run_async(telemetry, self._spec, refuse, arguments=arguments, call_id=call_id)
        fn = self.fn

        def invoke_async() -> Awaitable[Any]:
            return fn(**kwargs)  # type: ignore[no-any-return]

        async def invoke_sync() -> Any:
            return fn(**kwargs)

        invoke = invoke_async if self.is_async else invoke_sync
        pipeline = self._pipeline
        return await run_async(
            telemetry,
            self._spec,
            invoke,
            arguments=sent,
            call_id=call_id,
            pipeline=pipeline,
            cache_arguments=self._cache_arguments(pipeline, sent),
        )

    # -- calls through the decorated function -----------------------------------------------------

    def _named(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if not args:
            return kwargs
        named: dict[str, Any] = {}
        names = self._positional
        extra: list[Any] = []
        for index, value in enumerate(args):
            if index < len(names):
                named[names[index]] = value
            else:
                extra.append(value)
        if extra:
            named[self._var_positional or "args"] = extra
        named.update(kwargs)
        for receiver in _RECEIVERS.intersection(names[:1]):
            named.pop(receiver, None)
        return named

    def _checked(self, named: dict[str, Any]) -> InvalidArgumentsError | None:
        """Direct calls are checked, never converted: the tool receives what the caller passed."""
        validator = self._validator
        if validator is None:
            return None
        try:
            validator.check(named)
        except InvalidArgumentsError as exc:
            return exc
        return None

    def _run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn = self.fn
        named = self._named(args, kwargs)
        invalid = self._checked(named)
        telemetry = default_tool_telemetry()
        if invalid is not None:
            problem = invalid

            def refuse() -> Any:
                raise problem

            return run_sync(telemetry, self._spec, refuse, arguments=named)
        pipeline = self._pipeline
        return run_sync(
            telemetry,
            self._spec,
            lambda: fn(*args, **kwargs),
            arguments=named,
            pipeline=pipeline,
            cache_arguments=self._cache_arguments(pipeline, named),
        )

    async def _arun(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        fn = self.fn
        named = self._named(args, kwargs)
        invalid = self._checked(named)
        telemetry = default_tool_telemetry()
        if invalid is not None:
            problem = invalid

            async def refuse() -> Any:
                raise problem

            return await run_async(telemetry, self._spec, refuse, arguments=named)

        def invoke() -> Awaitable[Any]:
            return fn(*args, **kwargs)  # type: ignore[no-any-return]

        pipeline = self._pipeline
        return await run_async(
            telemetry,
            self._spec,
            invoke,
            arguments=named,
            pipeline=pipeline,
            cache_arguments=self._cache_arguments(pipeline, named),
        )


def get_tool(fn: object) -> Tool | None:
    """The :class:`Tool` behind a function decorated with ``@agentwatch.tool``, else ``None``."""
    found = getattr(fn, _MARK, None)
    return found if isinstance(found, Tool) else None


def instrumented(t: Tool) -> Callable[..., Any]:
    """A function that calls ``t`` with the original's metadata; sync or async like the original."""
    fn = t.fn
    wrapper: Callable[..., Any]
    if t.is_async:

        async def async_tool(*args: Any, **kwargs: Any) -> Any:
            return await t._arun(args, kwargs)

        wrapper = async_tool
    else:

        def sync_tool(*args: Any, **kwargs: Any) -> Any:
            return t._run(args, kwargs)

        wrapper = sync_tool
    try:
        functools.update_wrapper(wrapper, fn)
    except (AttributeError, TypeError):  # objects whose __dict__ cannot be copied
        setattr(wrapper, "__wrapped__", fn)  # noqa: B010
    setattr(wrapper, _MARK, t)
    return wrapper


@overload
def tool(name: F, /) -> F: ...


@overload
def tool(
    name: str | None = None,
    *,
    description: str | None = None,
    policy: Policy | None = None,
    tool_type: str = sc.TOOL_TYPE_FUNCTION,
    validate: bool = True,
) -> Callable[[F], F]: ...


def tool(
    name: str | Callable[..., Any] | None = None,
    *,
    description: str | None = None,
    policy: Policy | None = None,
    tool_type: str = sc.TOOL_TYPE_FUNCTION,
    validate: bool = True,
) -> Any:
    """Make a function an observable tool: ``@tool``, ``@tool("name")`` or ``@tool(policy=...)``.

    The decorated function keeps its signature and metadata and stays sync or async; each call is
    one ``execute_tool {name}`` span, one ``gen_ai.execute_tool.duration`` point and one
    ``agentwatch.tool_calls`` log record, and counts in the current session. With ``policy`` every
    call runs through that resilience policy, inside the span. Arguments are validated against
    the type hints before the tool runs (``validate=False``: not at all); see :meth:`Tool.call`.
    """
    if callable(name):
        return instrumented(
            Tool(name, description=description, policy=policy, tool_type=tool_type, validate=validate)
        )

    def decorate(fn: F) -> F:
        made = Tool(
            fn, name=name, description=description, policy=policy, tool_type=tool_type, validate=validate
        )
        return instrumented(made)  # type: ignore[return-value]

    return decorate
