"""Reading SDK request arguments and response objects without trusting their shape.

SDK parameters default to sentinel objects (``NOT_GIVEN``, ``omit``) and responses are pydantic
models whose fields vary across SDK versions; these helpers accept only values of the expected
type, so a changed SDK yields a missing attribute, never a wrong one or an exception.
"""

from __future__ import annotations

import importlib
import json
import weakref
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue

__all__ = [
    "as_float",
    "as_int",
    "as_str",
    "as_str_list",
    "function_definition",
    "get",
    "parse_json",
    "put",
    "sdk_attribute",
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


def function_definition(name: object, description: object, parameters: object) -> dict[str, Any]:
    """A function tool in the shape of v1.41 ``gen_ai.tool.definitions``:
    ``{type: function, name, description, parameters}``, without the parts the request lacks."""
    definition: dict[str, Any] = {"type": "function", "name": name}
    if description is not None:
        definition["description"] = description
    if parameters is not None:
        definition["parameters"] = parameters
    return definition


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


# client -> (its base_url object, server.address, server.port): a client's URL is parsed once,
# and again only if the application gives it a new one (``client.base_url = ...``).
_servers: weakref.WeakKeyDictionary[object, tuple[object, str | None, int | None]] = (
    weakref.WeakKeyDictionary()
)


def server_of(client: object) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` from an SDK client's ``base_url`` (an httpx URL)."""
    url = getattr(client, "base_url", None)
    if url is None:
        return None, None
    try:
        cached = _servers.get(client)
    except TypeError:  # a client that cannot be weakly referenced: parsed every time
        cached = None
    if cached is not None and cached[0] is url:
        return cached[1], cached[2]
    host = getattr(url, "host", None) or None
    port = getattr(url, "port", None)
    if port is None:
        port = 443 if getattr(url, "scheme", "https") == "https" else 80
    try:
        _servers[client] = (url, host, port)
    except TypeError:
        pass
    return host, port


_url_servers: dict[str, tuple[str | None, int | None]] = {}


def server_of_url(url: object) -> tuple[str | None, int | None]:
    """``server.address``/``server.port`` of a base URL given as text
    (``https://api.groq.com/openai/v1``; a bare host is https). Parsed once per URL: clients and
    their endpoints are few, and the cache is bounded all the same."""
    if not isinstance(url, str) or not url:
        return None, None
    server = _url_servers.get(url)
    if server is None:
        try:
            parts = urlsplit(url if "://" in url else f"https://{url}")
            port = parts.port or (80 if parts.scheme == "http" else 443)
            server = (parts.hostname or None, port)
        except ValueError:
            server = (None, None)
        if len(_url_servers) < 256:
            _url_servers[url] = server
    return server


def sdk_attribute(module: str, name: str) -> Any:
    """``module.name`` of an instrumented SDK, or ``None`` in the versions that lack it."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None
