"""``error.type`` values, span status descriptions, and scrubbing of error text.

Exceptions come from the application, its tools and its SDKs, and are read without trusting
them: a property that raises, a ``__str__`` that fails or a ``__getattr__`` that answers anything
must never turn into agentwatch's own exception in the caller's frame. Every reader here returns
a fallback instead (and reports the fault once).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from agentwatch._internal import report_internal_error

__all__ = [
    "client_secrets",
    "describe_error",
    "error_body",
    "error_type",
    "http_status",
    "is_code",
    "provider_error_codes",
    "scrub",
]

_cache: dict[type, str] = {}


def error_type(exc: BaseException) -> str:
    """A low-cardinality ``error.type`` for ``exc``.

    An exception that declares ``otel_error_type`` (agentwatch's resilience errors: ``timeout``,
    ``circuit_open``, ...) gives that. Otherwise the class name, qualified by its top-level
    package for non-builtins (``openai.RateLimitError``, ``anthropic.APITimeoutError``,
    ``TimeoutError``): the SDKs define one class per failure kind, and the same value goes on the
    span and on the duration metric.
    """
    try:
        declared = getattr(exc, "otel_error_type", None)
    except Exception:  # noqa: BLE001 - a hostile __getattr__: the class name will do
        report_internal_error("reading an exception's error type")
        declared = None
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


def _attribute(obj: object, name: str) -> object:
    try:
        return getattr(obj, name, None)
    except Exception:  # noqa: BLE001 - the callers report the fault once, where it matters
        return None


def _field(mapping: object, key: str) -> object:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of an SDK or HTTP-client error: ``exc.status_code`` (openai, anthropic),
    ``exc.code`` (google-genai's ``APIError``, urllib's ``HTTPError``), botocore's parsed
    ``exc.response`` dict (``ResponseMetadata.HTTPStatusCode``), else the response's
    ``status_code`` (httpx) or ``status`` (aiohttp, which google-genai's async client may use)."""
    response = _attribute(exc, "response")
    for status in (
        _attribute(exc, "status_code"),
        _attribute(exc, "code"),
        _field(_field(response, "ResponseMetadata"), "HTTPStatusCode"),
        _attribute(response, "status_code"),
        _attribute(response, "status"),
    ):
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            return status
    return None


def error_body(exc: BaseException) -> Mapping[str, object] | None:
    """The error's JSON body: ``exc.body`` (openai, anthropic) or ``exc.details`` (google-genai).
    botocore's ``exc.response`` is not one (its error is read as ``Error.Code``)."""
    for name in ("body", "details"):
        body = _attribute(exc, name)
        if isinstance(body, Mapping):
            return body
    return None


def provider_error_codes(exc: BaseException) -> Iterator[str]:
    """The provider's error ``type``, ``code`` and ``status`` strings: botocore's ``Error.Code``
    (``ValidationException``; an exception event in a Bedrock stream names it in lower camel case,
    ``throttlingException``), on the exception (openai's ``type``, ``code``; google-genai's
    ``status``), in its JSON body, or in the body's ``error`` object (anthropic's envelope;
    Google's, whose canonical ``status`` is ``RESOURCE_EXHAUSTED``...)."""
    aws = _field(_field(_attribute(exc, "response"), "Error"), "Code")
    if isinstance(aws, str) and aws:
        yield aws
    body = error_body(exc)
    sources: list[object] = [exc]
    if body is not None:
        inner = body.get("error")
        if isinstance(inner, Mapping):
            sources.append(inner)
        sources.append(body)
    for source in sources:
        for field in ("type", "code", "status"):
            value = source.get(field) if isinstance(source, Mapping) else _attribute(source, field)
            # The envelope's own "type": "error" says nothing.
            if isinstance(value, str) and value and not (source is body and value == "error"):
                yield value


# What a provider's error type or code looks like: one identifier-like token. Anything else is
# free text chosen by the server, which may quote the request.
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def is_code(value: str) -> bool:
    """Whether a server-supplied ``value`` is an identifier-like token (``rate_limit_error``)."""
    return _CODE.fullmatch(value) is not None


def describe_error(
    exc: BaseException,
    *,
    capture: bool,
    etype: str | None = None,
    secrets: Iterable[str] = (),
) -> str:
    """The span status description of a call that failed with ``exc``.

    Servers quote the request in their error messages (FastAPI validation errors, vLLM and LiteLLM
    echo the prompt), so with content capture off no free text reaches the description: only
    ``error.type``, the HTTP status and the provider's error type and code, e.g.
    ``openai.BadRequestError: 400 invalid_request_error``. agentwatch's own resilience errors keep
    their message (tool or model name and limit: no content). With capture on the message follows,
    scrubbed of ``secrets`` (the API key the client holds) and of key-like strings.
    """
    try:
        text = etype or error_type(exc)
        parts: list[str] = []
        status = http_status(exc)
        if status is not None:
            parts.append(str(status))
        # A code error.type already names is not said twice: google-genai's error.type is the code
        # itself (RESOURCE_EXHAUSTED), botocore's is named after it (botocore.ValidationException).
        seen = {text.lower(), text.rpartition(".")[2].lower(), *parts}
        for code in provider_error_codes(exc):
            if is_code(code) and code.lower() not in seen:
                seen.add(code.lower())
                parts.append(code)
        if parts:
            text = f"{text}: {' '.join(parts)}"
        if capture or getattr(type(exc), "_agentwatch_own_message", False) is True:
            message = str(exc)
            if message:
                text = f"{text}: {message}"
    except Exception:  # noqa: BLE001 - an exception whose text cannot be read still failed
        report_internal_error("describing an exception")
        text = etype or error_type(exc)
    return scrub(text, secrets)


# Credentials of the common providers by shape, and bearer tokens. Providers echo a masked key in
# 401 messages ("Incorrect API key provided: sk-abc***xyz"); even a fragment must not be exported.
_SECRET = re.compile(
    r"sk-(?:ant-|proj-)?[A-Za-z0-9_\-*]{4,}"  # OpenAI, Anthropic
    r"|\b(?:gsk|xai|hf|r8|pplx|csk|fw|nvapi|ghp|gho|github_pat|glpat|sk_live|sk_test|rk_live)[_-][A-Za-z0-9_\-*]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"  # Google API keys
    r"|\bya29\.[0-9A-Za-z_\-]{16,}"  # Google OAuth access tokens (Vertex AI)
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key ids
    r"|\b[0-9a-f]{32,}\b"  # hex keys (Azure OpenAI, many self-hosted gateways)
    r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]*)?"  # JWTs (Azure AD, Vertex)
    r"|Bearer\s+[A-Za-z0-9._\-*~+/=]+"
    r"|(?:api[_-]?key|x-api-key|access[_-]?token|secret)[\"']?\s*[=:]\s*[\"']?[^\s\"',;]+"
    r"|\S*\*{3,}\S*",  # a masked token is a secret's fragment
    re.I,
)
# Below this length a client's "key" is a placeholder ("EMPTY", "none", "x"), and replacing it
# everywhere would mangle the text.
_MIN_SECRET = 8


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without ``secrets`` and without anything shaped like a credential."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SECRET:
            text = text.replace(secret, "[REDACTED]")
    return _SECRET.sub("[REDACTED]", text)


_SECRET_ATTRIBUTES = ("api_key", "auth_token", "admin_api_key", "_azure_ad_token", "azure_ad_token")


def client_secrets(client: object) -> list[str]:
    """The credentials an SDK client holds, whatever their shape: its key attributes and the
    values of its authentication headers (``Authorization: Bearer …``, ``x-api-key``, ``api-key``).

    Read when a call fails, not per call; never raises.
    """
    found: list[str] = []
    for name in _SECRET_ATTRIBUTES:
        value = _attribute(client, name)
        if isinstance(value, str) and len(value) >= _MIN_SECRET:
            found.append(value)
    headers = _attribute(client, "auth_headers")
    if isinstance(headers, Mapping):
        for value in headers.values():
            if isinstance(value, str):
                token = value[7:] if value[:7].lower() == "bearer " else value
                if len(token) >= _MIN_SECRET:
                    found.append(token)
    return found
