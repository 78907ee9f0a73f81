"""Replay fixtures: real OpenAI and Anthropic responses, served by the fake LLM server.

``tests/fixtures/replay/<provider>/`` holds response bodies recorded from the real APIs by other
projects (JSON bodies and SSE streams as sent; see SOURCES.md there) and ``manifest.json``, which
gives each body's HTTP status and the response headers worth keeping (content type, request id).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from agentwatch._fakellm import Reply

__all__ = ["FIXTURES", "body", "parse_sse", "replay"]

FIXTURES = Path(__file__).parent / "fixtures" / "replay"


@cache
def _manifest(provider: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((FIXTURES / provider / "manifest.json").read_text())
    return manifest


def parse_sse(text: str) -> list[tuple[str | None, str]]:
    """``text/event-stream`` text -> ``(event name, data)`` per event, as ``Reply.sse`` takes them."""
    events: list[tuple[str | None, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            events.append((name, "\n".join(data)))
    return events


def body(provider: str, name: str) -> Any:
    """A fixture's body: the parsed JSON, or the SSE text."""
    text = (FIXTURES / provider / name).read_text(encoding="utf-8")
    return json.loads(text) if name.endswith(".json") else text


def replay(provider: str, name: str) -> Reply:
    """The recorded response ``name`` of ``provider``, with its status and headers."""
    entry = _manifest(provider)[name]
    headers = dict(entry["headers"])
    if name.endswith(".sse"):
        # The fake server sends the event-stream content type itself.
        headers.pop("content-type", None)
        return Reply.sse(parse_sse(body(provider, name)), status=entry["status"], headers=headers)
    return Reply.json(body(provider, name), status=entry["status"], headers=headers)
