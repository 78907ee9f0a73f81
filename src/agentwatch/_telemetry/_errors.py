"""``error.type`` values and scrubbing of error text."""

from __future__ import annotations

import re

__all__ = ["describe_error", "error_type", "scrub"]

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


# What a provider's error code or status looks like: one identifier-like token. Anything else is
# free text chosen by the server, which may quote the request.
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def describe_error(exc: BaseException, *, capture: bool, etype: str) -> str:
    """The span status description of a call that failed with ``exc``.

    Servers quote the request in their error messages, so with content capture off no free text
    reaches the description: ``error.type``, the HTTP status and the provider's error codes only
    (``RESOURCE_EXHAUSTED: 429``). With capture on the message follows, scrubbed of key-like text.
    """
    from agentwatch.resilience._classify import _error_codes, _status_code

    try:
        parts: list[str] = []
        status = _status_code(exc)
        if status is not None:
            parts.append(str(status))
        seen = {etype.lower(), *parts}
        for code in sorted(_error_codes(exc)):
            if _CODE.fullmatch(code) and code not in seen:
                parts.append(code)
        text = f"{etype}: {' '.join(parts)}" if parts else etype
        if capture and (message := str(exc)):
            text = f"{text}: {message}"
    except Exception:  # noqa: BLE001 - an exception whose text cannot be read still failed
        text = etype
    return scrub(text)


# API keys of the common providers, and bearer tokens. Providers echo a masked key in 401
# messages ("Incorrect API key provided: sk-abc***xyz"); even a fragment must not be exported.
_SECRET = re.compile(
    r"(sk-(?:ant-|proj-)?[A-Za-z0-9_\-*]{4,}|Bearer\s+[A-Za-z0-9._\-*]+|api[_-]?key[=:]\s*\S+)", re.I
)


def scrub(text: str) -> str:
    return _SECRET.sub("[REDACTED]", text)
