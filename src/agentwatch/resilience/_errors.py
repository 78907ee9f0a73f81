"""Structured errors the resilience layer raises instead of calling the tool or model.

Each carries the tool or model name, the kind of call and an error category so that the caller
(and the model reading a tool result) can tell *why* a call did not happen. They are the only
exceptions the policies raise of their own; every other exception is the call's own, re-raised
unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from agentwatch.resilience._classify import ErrorCategory

__all__ = [
    "BulkheadFullError",
    "CallKind",
    "CircuitOpenError",
    "FieldProblem",
    "InvalidArgumentsError",
    "RateLimitedError",
    "ResilienceError",
    "TimeoutScope",
    "ToolDisabledError",
    "ToolTimeoutError",
]

CallKind = Literal["tool", "llm"]
TimeoutScope = Literal["attempt", "total", "first_chunk", "idle"]
_LIMITS: dict[str, str] = {
    "attempt": "attempt timeout",
    "total": "total deadline",
    "first_chunk": "time-to-first-chunk timeout",
    "idle": "idle timeout between chunks",
}


def _subject(kind: CallKind, name: str) -> str:
    return f"tool {name!r}" if kind == "tool" else f"model {name!r}"


class ResilienceError(Exception):
    """Base class of the errors raised by a policy rather than by the call itself.

    Attributes:
        name: the tool name, or the model name for an LLM call.
        kind: ``"tool"`` or ``"llm"``.
        category: the :class:`ErrorCategory` the error belongs to.
        error_type: the low-cardinality value used for the OpenTelemetry ``error.type`` attribute.
    """

    error_type: ClassVar[str] = "resilience_error"
    # The message is agentwatch's own (a tool or model name, a limit): no content, so it is the
    # status description even with content capture off (see _telemetry._errors.describe_error).
    _agentwatch_own_message: ClassVar[bool] = True

    @property
    def otel_error_type(self) -> str:
        """What agentwatch's ``error.type`` function reports for this error (see ``_telemetry._errors``)."""
        return self.error_type

    def __init__(self, message: str, *, name: str, kind: CallKind, category: ErrorCategory) -> None:
        super().__init__(message)
        self.name = name
        self.kind: CallKind = kind
        self.category = category

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only constructors defeat the default pickling of exceptions (it replays
        # ``args``); errors cross process boundaries in worker pools, so restore them by state.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[ResilienceError], args: tuple[object, ...], state: dict[str, object]
) -> ResilienceError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class CircuitOpenError(ResilienceError):
    """The circuit breaker rejected the call: the dependency failed repeatedly.

    ``retry_in`` is the number of seconds until the breaker admits its next probe call, or
    ``None`` while a probe is already running or the circuit was opened by hand.
    """

    error_type: ClassVar[str] = "circuit_open"

    def __init__(self, *, name: str, kind: CallKind, circuit: str, retry_in: float | None) -> None:
        if retry_in is None:
            detail = "a probe call is in flight or it was opened manually"
        else:
            detail = f"the next probe call is allowed in {retry_in:.1f} s"
        super().__init__(
            f"circuit {circuit!r} for {_subject(kind, name)} is open ({detail}); the call was not made",
            name=name,
            kind=kind,
            category=ErrorCategory.DEPENDENCY,
        )
        self.circuit = circuit
        self.retry_in = retry_in


class ToolTimeoutError(ResilienceError, TimeoutError):
    """The call exceeded one of its time limits.

    Also a :class:`TimeoutError`, so existing ``except TimeoutError`` handlers keep working.
    Raised for LLM calls too (``kind == "llm"``). ``scope`` names the limit: ``"attempt"``,
    ``"total"`` (the deadline), or for LLM streams ``"first_chunk"`` / ``"idle"`` (raised by the
    stream wrapper); ``timeout`` is that limit in seconds.
    """

    error_type: ClassVar[str] = "timeout"

    def __init__(self, *, name: str, kind: CallKind, timeout: float, scope: TimeoutScope) -> None:
        super().__init__(
            f"{_subject(kind, name)} timed out: it exceeded its {_LIMITS[scope]} of {timeout:g} s",
            name=name,
            kind=kind,
            category=ErrorCategory.TIMEOUT,
        )
        self.timeout = timeout
        self.scope: TimeoutScope = scope


class BulkheadFullError(ResilienceError):
    """The tool or model already runs its maximum number of concurrent calls (and its queue is full)."""

    error_type: ClassVar[str] = "bulkhead_full"

    def __init__(self, *, name: str, kind: CallKind, max_concurrent: int, max_queue: int) -> None:
        queue = "no queue" if max_queue == 0 else f"a full queue of {max_queue}"
        super().__init__(
            f"{_subject(kind, name)} is at its limit of {max_concurrent} concurrent calls with {queue}; "
            "the call was rejected",
            name=name,
            kind=kind,
            category=ErrorCategory.RATE_LIMIT,
        )
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue


class RateLimitedError(ResilienceError):
    """The call did not get a rate-limit permit in time (``RateLimit``); it was not made.

    ``limit`` names the exhausted budget (``"requests"`` or ``"tokens"``), ``key`` the budget
    (the tool name, ``provider:model``, or ``RateLimit.key``), ``retry_in`` the seconds until a
    permit would be available, ``scope`` where the budget was decided (``"fleet"``: the shared
    budget in Redis; ``"replica"``: this process's, or its share while Redis is unavailable). A
    call is rejected as soon as the wait it would need passes ``max_wait`` or its deadline: it
    never waits just to fail.
    """

    error_type: ClassVar[str] = "rate_limited"

    def __init__(
        self,
        *,
        name: str,
        kind: CallKind,
        key: str,
        limit: str,
        retry_in: float,
        scope: str = "replica",
    ) -> None:
        super().__init__(
            f"{_subject(kind, name)} is over its client-side {limit} rate limit ({key!r}); a permit "
            f"would be available in {retry_in:.1f} s; the call was not made",
            name=name,
            kind=kind,
            category=ErrorCategory.RATE_LIMIT,
        )
        self.key = key
        self.limit = limit
        self.retry_in = retry_in
        self.scope = scope
        self.scope = scope


class ToolDisabledError(ResilienceError):
    """An operator disabled this critical tool (``agentwatch.disable_tool``); it was not called."""

    error_type: ClassVar[str] = "tool_disabled"

    def __init__(self, *, name: str) -> None:
        super().__init__(
            f"tool {name!r} is disabled by an operator; the call was not made",
            name=name,
            kind="tool",
            category=ErrorCategory.DEPENDENCY,
        )


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One bad argument: its path (``city``, ``items.0.name``; ``""`` for the whole object), the
    kind of problem (``missing``, ``unexpected``, ``int_parsing``, ...) and a message that never
    quotes the value."""

    field: str
    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "kind": self.kind, "message": self.message}


class InvalidArgumentsError(ResilienceError, TypeError, ValueError):
    """A tool's arguments do not match its schema; the tool was not called.

    Also a :class:`TypeError` and a :class:`ValueError`, so handlers written for what Python or
    the tool would have raised keep working. ``problems`` names each bad field; no message
    contains an argument value. Never retried, never counted by a circuit breaker, never turned
    into an optional tool's degradation result: the caller (or the model, through
    ``ToolRegistry.call_tool_call``) must correct the arguments.
    """

    error_type: ClassVar[str] = "invalid_arguments"

    def __init__(self, *, name: str, problems: Sequence[FieldProblem]) -> None:
        listed = "; ".join(f"{p.field or '(arguments)'}: {p.message}" for p in problems)
        super().__init__(
            f"invalid arguments for tool {name!r}: {listed}",
            name=name,
            kind="tool",
            category=ErrorCategory.VALIDATION,
        )
        self.problems = tuple(problems)

    @property
    def fields(self) -> tuple[str, ...]:
        """The bad fields' paths, each once, in order."""
        return tuple(dict.fromkeys(p.field for p in self.problems))
