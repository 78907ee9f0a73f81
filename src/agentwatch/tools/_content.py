"""Tool arguments and results as JSON text and byte sizes, for any value a tool may take or return.

Nothing here raises: a value that cannot be rendered (a circular structure, an object whose
``__str__`` fails) yields ``None``, and the call is recorded without its size or content.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["argument_keys", "render", "to_json"]


def _default(value: Any) -> Any:
    """``json.dumps`` hook: the JSON-able form of what tools commonly return."""
    model_dump = getattr(value, "model_dump", None)  # pydantic v2 (MCP results, LangChain messages)
    if callable(model_dump):
        return model_dump(mode="json", by_alias=True, exclude_none=True)
    to_dict = getattr(value, "to_dict", None)  # agentwatch's ToolUnavailable, many SDK objects
    if callable(to_dict):
        return to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)  # datetime, Decimal, UUID, any other object


# Built once: json.dumps with options builds a new encoder on every call.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode


def to_json(value: object) -> str | None:
    """Compact JSON of ``value``; objects JSON cannot represent are converted (or stringified)."""
    try:
        return _encode(value)
    except Exception:  # noqa: BLE001 - circular or hostile values: fall back to text
        try:
            return json.dumps(str(value), ensure_ascii=False)
        except Exception:  # noqa: BLE001 - even str() failed: nothing to record
            return None


def render(value: object, *, text: bool = True) -> tuple[str | None, int | None]:
    """``(text, size in bytes)`` of a tool result as it would reach the model.

    A string is taken as is (it is what a tool message would carry), bytes are counted as they
    are; anything else is measured as its JSON text. With ``text=False`` (content capture off)
    the text is ``None`` and a string or bytes result is measured without being copied.
    """
    if isinstance(value, str):
        # ASCII is one byte a character: no need to encode a large result to count it.
        size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
        return (value if text else None), size
    if isinstance(value, (bytes, bytearray)):
        return (value.decode("utf-8", "replace") if text else None), len(value)
    if isinstance(value, memoryview):
        return (value.tobytes().decode("utf-8", "replace") if text else None), value.nbytes
    encoded = to_json(value)
    if encoded is None:
        return None, None
    size = len(encoded) if encoded.isascii() else len(encoded.encode("utf-8", "surrogatepass"))
    return (encoded if text else None), size


def argument_keys(arguments: object) -> list[str] | None:
    """The argument names of a call (never their values), or ``None`` when they are not named."""
    if isinstance(arguments, Mapping):
        return [str(key) for key in arguments]
    return None
