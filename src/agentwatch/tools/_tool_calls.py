"""Reading the tool calls of model responses: OpenAI chat, OpenAI Responses, Anthropic, Bedrock, Gemini,
LangChain.

The shapes are read by duck typing (SDK objects or the equivalent dicts), so no SDK is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ModelToolCall", "read_tool_call"]


@dataclass(frozen=True, slots=True)
class ModelToolCall:
    """What a model asked for: the tool, its arguments (JSON text or object) and the call's id."""

    name: str
    arguments: object
    id: str | None


def _get(obj: object, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _bedrock_tool_use(tool_call: object) -> tuple[Any, Any, Any] | None:
    """A Bedrock Converse ``toolUse`` content block (``{"toolUse": {...}}``, as in
    ``output.message.content``) or its inner ``{"toolUseId", "name", "input"}``; None otherwise."""
    if not isinstance(tool_call, Mapping):
        return None
    use = tool_call.get("toolUse", tool_call)
    if not isinstance(use, Mapping) or "toolUseId" not in use:
        return None
    return use.get("name"), use.get("input"), use.get("toolUseId")


def _gemini_call(tool_call: object) -> object:
    """A Gemini ``FunctionCall`` (``.name``, ``.args``, ``.id``), or the ``Part`` holding it
    (``.function_call``; ``functionCall`` in the REST JSON); None for any other shape."""
    part = _get(tool_call, "function_call") or _get(tool_call, "functionCall")
    if part is not None:
        return part
    # FunctionCall objects (pydantic); a dict with "args" is LangChain's shape, read alike below.
    if (
        not isinstance(tool_call, Mapping)
        and hasattr(tool_call, "args")
        and isinstance(_get(tool_call, "args"), (Mapping, type(None)))
        and _get(tool_call, "name") is not None
    ):
        return tool_call
    return None


def read_tool_call(tool_call: object) -> ModelToolCall:
    """Read one tool call of a model response.

    * OpenAI Chat Completions ``message.tool_calls[i]``: ``.id``, ``.function.name``,
      ``.function.arguments`` (JSON text);
    * OpenAI Responses ``output`` item of type ``function_call``: ``.call_id`` (the id its
      ``function_call_output`` must echo), ``.name``, ``.arguments`` (JSON text);
    * Anthropic ``content`` block of type ``tool_use``: ``.id``, ``.name``, ``.input`` (object);
    * Bedrock Converse ``toolUse`` content block: ``{"toolUse": {"toolUseId", "name", "input"}}``
      (or the inner object), ``input`` an object;
    * Gemini (google-genai) ``response.function_calls[i]`` or ``candidates[0].content.parts[i]``:
      ``FunctionCall`` ``.name``, ``.args`` (object), ``.id`` (when the API sent one), or the
      ``Part`` carrying it; in dict form ``{"name", "args", "id"?}`` or ``{"functionCall": {...}}``;
    * LangChain ``AIMessage.tool_calls[i]``: ``{"name", "args", "id"}``.

    Raises ``TypeError`` for anything else.
    """
    kind = _get(tool_call, "type")
    function = _get(tool_call, "function")
    gemini = _gemini_call(tool_call) if kind is None and function is None else None
    if gemini is not None:
        # The API leaves "args" out of a call without arguments.
        name, arguments, call_id = _get(gemini, "name"), _get(gemini, "args") or {}, _get(gemini, "id")
    elif function is not None and kind in (None, "function"):
        name, arguments, call_id = _get(function, "name"), _get(function, "arguments"), _get(tool_call, "id")
    elif kind == "function_call":
        name, arguments, call_id = (
            _get(tool_call, "name"),
            _get(tool_call, "arguments"),
            _get(tool_call, "call_id"),
        )
    elif kind == "tool_use":
        name, arguments, call_id = _get(tool_call, "name"), _get(tool_call, "input"), _get(tool_call, "id")
    elif (bedrock := _bedrock_tool_use(tool_call)) is not None:
        name, arguments, call_id = bedrock
    elif kind in (None, "tool_call") and isinstance(tool_call, Mapping) and "args" in tool_call:
        name, arguments, call_id = tool_call.get("name"), tool_call.get("args"), tool_call.get("id")
    else:
        raise TypeError(
            "not a tool call of a model response (expected an OpenAI chat tool call, a Responses "
            "function_call item, an Anthropic tool_use block, a Bedrock toolUse block, a Gemini "
            f"FunctionCall or a LangChain ToolCall): {type(tool_call).__name__}"
        )
    if not isinstance(name, str) or not name:
        raise TypeError(f"the tool call has no tool name: {type(tool_call).__name__}")
    return ModelToolCall(
        name=name, arguments=arguments, id=call_id if isinstance(call_id, str) and call_id else None
    )
