"""Helpers of the LangChain/LangGraph tests (import as ``graphs._support``)."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.tools import tool
from opentelemetry.sdk.trace import ReadableSpan

from support import Signals

Tree = list[tuple[str, "Tree"]]


def tree(signals: Signals) -> Tree:
    """Every finished span as ``(name, children)``, children in start order; roots first."""
    spans = signals.spans.get_finished_spans()
    ids = {s.context.span_id for s in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def build(parent: int | None) -> Tree:
        return [(s.name, build(s.context.span_id)) for s in sorted(children.get(parent, []), key=_start)]

    return build(None)


def _start(span: ReadableSpan) -> int:
    return span.start_time or 0


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def one(signals: Signals, name: str) -> ReadableSpan:
    found = [s for s in signals.spans.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in signals.spans.get_finished_spans()]
    return found[0]


class Preferences:
    """A flaky tool dependency: each call fails while ``down`` (counting the attempts it saw)."""

    def __init__(self) -> None:
        self.down = True
        self.attempts = 0
        self.threads: list[str] = []
        self._lock = threading.Lock()

    def tool(self) -> Any:
        @tool
        def get_user_preferences(user_id: str) -> str:
            """The user's saved preferences (optional: the answer can do without them)."""
            with self._lock:
                self.attempts += 1
                self.threads.append(threading.current_thread().name)
            if self.down:
                raise ConnectionError("preferences service unreachable")
            return "units: celsius"

        return get_user_preferences


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny in {city}"


@tool
async def get_forecast(city: str) -> str:
    """Tomorrow's forecast for a city."""
    return f"rain in {city}"
