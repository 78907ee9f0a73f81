"""Reading SDK request arguments and response objects without trusting their shape.

SDK parameters default to sentinel objects (``NOT_GIVEN``, ``omit``) and responses are pydantic
models whose fields vary across SDK versions; these helpers accept only values of the expected
type, so a changed SDK yields a missing attribute, never a wrong one or an exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue

__all__ = [
    "as_float",
    "as_int",
    "as_str",
    "as_str_list",
    "get",
    "parse_json",
    "put",
    "server_of",
    "server_of_url",
]


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def as_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def as_str_list(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


_ABSENT = object()


def get(obj: object, name: str) -> Any:
    """``obj[name]`` for mappings, ``obj.name`` otherwise; ``None`` if absent."""
    if obj is None:
        return None
    # Cheapest checks first: requests are plain dicts and responses pydantic models; an ABC
    # isinstance check on every field read would cost more than the rest of this function.
    if type(obj) is dict:
        return obj.get(name)
    value = getattr(obj, name, _ABSENT)
    if value is not _ABSENT:
        return value
    if isinstance(obj, Mapping):
        return obj.get(name)
    return None


def put(attrs: dict[str, AttributeValue], key: str, value: AttributeValue | None) -> None:
    if value is not None:
        attrs[key] = value


def parse_json(text: object) -> object:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def server_of(client: object) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` from an SDK client's ``base_url`` (an httpx URL)."""
    url = getattr(client, "base_url", None)
    if url is None:
        return None, None
    host = getattr(url, "host", None) or None
    port = getattr(url, "port", None)
    if port is None:
        port = 443 if getattr(url, "scheme", "https") == "https" else 80
    return host, port


def server_of_url(url: object) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` of a base URL given as text (``https://api.groq.com/openai/v1``)."""
    if not isinstance(url, str) or not url:
        return None, None
    try:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        port = parts.port or (80 if parts.scheme == "http" else 443)
    except ValueError:
        return None, None
    return (parts.hostname or None), port
