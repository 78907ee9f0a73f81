"""Registries of tools: agentwatch's own :class:`ToolRegistry`, and plain dicts made observable."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from agentwatch import _semconv as sc
from agentwatch._errors import ConfigError
from agentwatch._internal import reset_in_forked_child
from agentwatch.resilience._errors import InvalidArgumentsError
from agentwatch.resilience._pipeline import InvalidArguments
from agentwatch.tools._execution import OTHER_TOOL, ToolSpec, default_tool_telemetry, run_async, run_sync
from agentwatch.tools._tool import Tool, get_tool, instrumented
from agentwatch.tools._tool_calls import read_tool_call

if TYPE_CHECKING:
    from agentwatch.resilience import Policy

__all__ = ["ToolRegistry", "UnknownToolError", "instrument_registry", "uninstrument_registry"]

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=MutableMapping[Any, Any])


class UnknownToolError(LookupError):
    """A tool was called by a name the registry does not know (typically a model's invention).

    Attributes: ``name`` (the name asked for) and ``known`` (the registered names, sorted).
    """

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listed = ", ".join(repr(k) for k in known) if known else "none are registered"
        super().__init__(f"unknown tool {name!r}; known tools: {listed}")


class ToolRegistry:
    """Tools by name, called with model-provided arguments.

    ::

        registry = agentwatch.ToolRegistry()

        @registry.register
        def get_weather(city: str) -> dict: ...

        registry.call("get_weather", {"city": "Paris"}, call_id="call_1")
        registry.call_tool_call(response.choices[0].message.tool_calls[0])  # links the call id

    Every call is an ``execute_tool`` span (and metric point, log record, session count), through
    the tool's policy if it has one. Registration is meant for start-up; calls are thread-safe.
    """

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()
        reset_in_forked_child(self, "_lock")

    # -- registration --------------------------------------------------------------------------

    @overload
    def register(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy | None = None,
        tool_type: str | None = None,
        validate: bool | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def register(
        self,
        fn: F,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy | None = None,
        tool_type: str | None = None,
        validate: bool | None = None,
    ) -> F: ...

    def register(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        policy: Policy | None = None,
        tool_type: str | None = None,
        validate: bool | None = None,
    ) -> Any:
        """Add a tool; usable as ``register(fn, ...)``, ``@register`` or ``@register(name=...)``.

        Returns the instrumented function (calling it directly is traced too). A function already
        decorated with ``@agentwatch.tool`` keeps each of its settings not given here.
        ``tool_type`` is ``function`` unless given; ``validate`` (default ``True``) validates the
        arguments against the type hints before each call. Registering a second, different tool
        under a taken name raises ``ValueError``.
        """
        if fn is None:
            return lambda f: self.register(
                f, name=name, description=description, policy=policy, tool_type=tool_type, validate=validate
            )
        existing = get_tool(fn)
        if existing is not None:
            # Settings given here replace the decorator's one by one, the others are kept.
            name = existing.name if name is None else name
            description = existing.description if description is None else description
            policy = existing.policy if policy is None else policy
            tool_type = existing.tool_type if tool_type is None else tool_type
            validate = existing.validates if validate is None else validate
        if (
            existing is not None
            and name == existing.name
            and description == existing.description
            and policy is existing.policy
            and tool_type == existing.tool_type
            and validate == existing.validates
        ):
            made, function = existing, fn
        else:
            made = Tool(
                fn,
                name=name,
                description=description,
                policy=policy,
                tool_type=sc.TOOL_TYPE_FUNCTION if tool_type is None else tool_type,
                validate=True if validate is None else validate,
            )
            function = instrumented(made)
        with self._lock:
            taken = self._tools.get(made.name)
            if taken is not None and taken is not made and taken.fn is not made.fn:
                raise ValueError(f"a different tool is already registered as {made.name!r}")
            self._tools[made.name] = made
        return function

    def unregister(self, name: str) -> None:
        with self._lock:
            if self._tools.pop(name, None) is None:
                raise UnknownToolError(name, sorted(self._tools))

    # -- lookup ----------------------------------------------------------------------------------

    def get(self, name: str) -> Tool:
        """The tool called ``name``; :class:`UnknownToolError` (listing the known names) if none."""
        found = self._tools.get(name)
        if found is None:
            raise UnknownToolError(name, sorted(self._tools))
        return found

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"<agentwatch.ToolRegistry {self.names}>"

    # -- calls -------------------------------------------------------------------------------------

    def call(self, name: str, arguments: object = None, *, call_id: str | None = None) -> Any:
        """Run tool ``name`` with ``arguments`` (a mapping or JSON object text); return its result.

        An unknown name raises :class:`UnknownToolError`, recorded as a failed ``execute_tool``
        span (``error.type`` ``agentwatch.UnknownToolError``) so that invented tool names show up.
        """
        found = self._tools.get(name)
        if found is None:
            return self._unknown_sync(name, arguments, call_id)
        return found.call(arguments, call_id=call_id)

    async def acall(self, name: str, arguments: object = None, *, call_id: str | None = None) -> Any:
        """Like :meth:`call`, awaited (sync tools run inline)."""
        found = self._tools.get(name)
        if found is None:
            return await self._unknown_async(name, arguments, call_id)
        return await found.acall(arguments, call_id=call_id)

    def call_tool_call(self, tool_call: object) -> Any:
        """Run a tool call of a model response; its id becomes ``gen_ai.tool.call.id``.

        Accepts an OpenAI chat ``tool_calls[i]``, an OpenAI Responses ``function_call`` item, an
        Anthropic ``tool_use`` block, a Bedrock Converse ``toolUse`` block or a LangChain
        ``ToolCall`` (objects or dicts). When the
        model's arguments are invalid the tool is not called and an
        :class:`~agentwatch.InvalidArguments` is returned: hand its ``to_dict()`` to the model as
        the tool result so that it corrects them (the call's span still records the failure).
        """
        parsed = read_tool_call(tool_call)
        found = self._tools.get(parsed.name)
        if found is None:
            return self._unknown_sync(parsed.name, parsed.arguments, parsed.id)
        try:
            return found.call(parsed.arguments, call_id=parsed.id)
        except InvalidArgumentsError as exc:
            if exc.name != found.name or not _raised_here(exc):
                raise
            return InvalidArguments.from_error(exc)

    async def acall_tool_call(self, tool_call: object) -> Any:
        """Like :meth:`call_tool_call`, awaited."""
        parsed = read_tool_call(tool_call)
        found = self._tools.get(parsed.name)
        if found is None:
            return await self._unknown_async(parsed.name, parsed.arguments, parsed.id)
        try:
            return await found.acall(parsed.arguments, call_id=parsed.id)
        except InvalidArgumentsError as exc:
            if exc.name != found.name or not _raised_here(exc):
                raise
            return InvalidArguments.from_error(exc)

    def _unknown_sync(self, name: str, arguments: object, call_id: str | None) -> Any:
        error = UnknownToolError(name, sorted(self._tools))

        def refuse() -> Any:
            raise error

        return run_sync(
            default_tool_telemetry(),
            ToolSpec(name),
            refuse,
            arguments=None,
            call_id=call_id,
            metric_name=OTHER_TOOL,
        )

    async def _unknown_async(self, name: str, arguments: object, call_id: str | None) -> Any:
        error = UnknownToolError(name, sorted(self._tools))

        async def refuse() -> Any:
            raise error

        return await run_async(
            default_tool_telemetry(),
            ToolSpec(name),
            refuse,
            arguments=None,
            call_id=call_id,
            metric_name=OTHER_TOOL,
        )


def _raised_here(error: InvalidArgumentsError) -> bool:
    """Whether ``error`` is the validation of this call's own arguments, as opposed to one raised
    by a tool calling another tool (which the model cannot correct)."""
    return getattr(error, "_agentwatch_own", False) is True


# -- plain dicts ---------------------------------------------------------------------------------

_REGISTRY_WRAPPER = "__agentwatch_registry_wrapper__"
_ORIGINAL_CLASS = "_agentwatch_original_class"


def _policy_for(name: str, policies: Mapping[str, Policy] | None) -> Policy | None:
    if not policies:
        return None
    from agentwatch.resilience import lookup_policy

    return lookup_policy(policies, name)


def _wrap(name: object, value: object, policies: Mapping[str, Policy] | None) -> object:
    if not isinstance(name, str) or not name or not callable(value) or get_tool(value) is not None:
        return value
    function = instrumented(Tool(value, name=name, policy=_policy_for(name, policies)))
    setattr(function, _REGISTRY_WRAPPER, True)
    return function


def _watching_class(cls: type[Any], policies: Mapping[str, Policy] | None) -> type[Any]:
    """A subclass of ``cls`` that instruments callables as they are added."""
    is_dict = issubclass(cls, dict)

    def __setitem__(self: Any, key: Any, value: Any) -> None:
        cls.__setitem__(self, key, _wrap(key, value, policies))

    namespace: dict[str, Any] = {"__setitem__": __setitem__, _ORIGINAL_CLASS: cls, "__slots__": ()}
    if is_dict:
        # dict's own update/setdefault/|= bypass __setitem__; MutableMapping's go through it.
        def update(self: Any, other: Any = (), /, **kwargs: Any) -> None:
            items = other.items() if isinstance(other, Mapping) else other
            for key, value in items:
                self[key] = value
            for key, value in kwargs.items():
                self[key] = value

        def setdefault(self: Any, key: Any, default: Any = None) -> Any:
            if key not in self:
                self[key] = default
            return cls.__getitem__(self, key)

        def __ior__(self: Any, other: Any) -> Any:
            update(self, other)
            return self

        namespace.update(update=update, setdefault=setdefault, __ior__=__ior__)
    return type(cls.__name__, (cls,), namespace)


def instrument_registry(mapping: M, *, policies: Mapping[str, Policy] | None = None) -> M:
    """Make every tool of a name → callable mapping observable, in place; return the mapping.

    Each callable is replaced by an instrumented function named after its key (sync stays sync,
    async stays async). ``policies`` maps tool names to resilience policies, ``"*"`` being the
    default for the others. Callables added later are instrumented too when the mapping's class
    allows it (a ``dict`` subclass or a ``MutableMapping`` implemented in Python); for a plain
    ``dict`` call this again after adding tools (it is idempotent). Non-callables and non-string
    keys are left alone. :func:`uninstrument_registry` restores the originals.
    """
    if not isinstance(mapping, MutableMapping):
        raise TypeError(
            f"instrument_registry takes a mutable mapping of names to callables, not {type(mapping).__name__}"
        )
    if policies is not None:
        from agentwatch.resilience import Policy

        for key, policy in policies.items():
            if not isinstance(policy, Policy):
                raise ConfigError(f"policies[{key!r}]", policy, "an agentwatch.Policy")
    for name, value in list(mapping.items()):
        wrapped = _wrap(name, value, policies)
        if wrapped is not value:
            mapping[name] = wrapped
    cls = type(mapping)
    if cls is not dict and getattr(cls, _ORIGINAL_CLASS, None) is None:
        try:
            mapping.__class__ = _watching_class(cls, policies)
        except TypeError:  # builtin or slotted layouts: later additions are not instrumented
            pass
    return mapping


def uninstrument_registry(mapping: MutableMapping[Any, Any]) -> None:
    """Undo :func:`instrument_registry`: the original callables (and class) come back."""
    original = getattr(type(mapping), _ORIGINAL_CLASS, None)
    if original is not None:
        mapping.__class__ = original
    for name, value in list(mapping.items()):
        if getattr(value, _REGISTRY_WRAPPER, False):
            made = get_tool(value)
            if made is not None:
                mapping[name] = made.fn
