"""``error.type`` values and scrubbing of error text."""

from __future__ import annotations

import re

__all__ = ["error_type", "scrub"]

_cache: dict[type, str] = {}


def error_type(exc: BaseException) -> str:
    """A low-cardinality ``error.type`` for ``exc``.

    An exception that declares ``otel_error_type`` (agentwatch's resilience errors: ``timeout``,
    ``circuit_open``, ...) gives that. Otherwise the class name, qualified by its top-level
    package for non-builtins (``openai.RateLimitError``, ``anthropic.APITimeoutError``,
    ``TimeoutError``): the SDKs define one class per failure kind, and the same value goes on the
    span and on the duration metric.
    """
    declared = getattr(exc, "otel_error_type", None)
    if isinstance(declared, str) and declared:
        return declared
    cls = type(exc)
    cached = _cache.get(cls)
    if cached is None:
        module = cls.__module__
        cached = (
            cls.__qualname__ if module == "builtins" else f"{module.partition('.')[0]}.{cls.__qualname__}"
        )
        _cache[cls] = cached
    return cached


# API keys of the common providers, and bearer tokens. Providers echo a masked key in 401
# messages ("Incorrect API key provided: sk-abc***xyz"); even a fragment must not be exported.
_SECRET = re.compile(
    r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-*]{4,}|Bearer\s+[A-Za-z0-9._\-*]+|api[_-]?key[=:]\s*\S+)", re.I
)


def scrub(text: str) -> str:
    return _SECRET.sub("[REDACTED]", text)
