"""Spans as the trace viewer sees them, read from an OTLP JSON Lines file or from the SDK.

``agentwatch traces`` reads what ``agentwatch demo`` writes (and what the Collector's ``file``
exporter writes: the same OTLP/JSON, one export request per line); the demo hands over the SDK's
own spans of its interesting trace. Both become :class:`SpanView`, so one renderer draws both.

Only the standard library: ``agentwatch traces`` must start fast and never import an SDK.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CIRCUIT_EVENTS",
    "FileSpans",
    "SpanEvent",
    "SpanView",
    "from_readable",
    "marks_of",
    "read_otlp_jsonl",
]

# The resilience decisions agentwatch records as span events, grouped into the marks the demo's
# summary and the trace list show.
CIRCUIT_EVENTS = frozenset({"circuit_opened", "circuit_half_opened", "circuit_closed", "circuit_rejected"})
_MARKED_EVENTS = {"retry": "retry", "fallback": "fallback", "timeout": "timeout"}
_STATUS_ERROR = 2


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SpanView:
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_id: str | None
    name: str
    start_ns: int
    end_ns: int
    error: bool  # status ERROR
    status_message: str
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    @property
    def duration_ns(self) -> int:
        return max(self.end_ns - self.start_ns, 0)


def marks_of(error: bool, event_names: Iterable[str]) -> set[str]:
    """What happened in a span, in the words of the summaries: error, retry, fallback, timeout, circuit."""
    marks = {"error"} if error else set()
    for name in event_names:
        if name in _MARKED_EVENTS:
            marks.add(_MARKED_EVENTS[name])
        elif name in CIRCUIT_EVENTS:
            marks.add("circuit")
    return marks


# ------------------------------------------------------------------------------------------------
# From the SDK
# ------------------------------------------------------------------------------------------------


def from_readable(span: Any) -> SpanView:
    """A :class:`SpanView` of an SDK ``ReadableSpan`` (typed loosely: this module imports no SDK)."""
    context = span.context
    parent = span.parent
    status = span.status
    return SpanView(
        trace_id=format(context.trace_id, "032x"),
        span_id=format(context.span_id, "016x"),
        parent_id=None if parent is None else format(parent.span_id, "016x"),
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or span.start_time or 0,
        error=status.status_code.value == _STATUS_ERROR,
        status_message=status.description or "",
        attributes=dict(span.attributes or {}),
        events=tuple(
            SpanEvent(event.name, event.timestamp or 0, dict(event.attributes or {})) for event in span.events
        ),
    )


# ------------------------------------------------------------------------------------------------
# From OTLP JSON Lines
# ------------------------------------------------------------------------------------------------


def _hex_id(value: object, size: int) -> str | None:
    """OTLP/JSON ids are hex; the protobuf JSON mapping (some writers) gives base64: accept both."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().lower()
    if len(text) == size * 2:
        try:
            bytes.fromhex(text)
            return text
        except ValueError:
            pass
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == size else None


def _value(any_value: object) -> Any:
    """The Python value of an OTLP/JSON ``AnyValue``."""
    if not isinstance(any_value, Mapping) or not any_value:
        return None
    kind, raw = next(iter(any_value.items()))
    if kind == "intValue":
        try:
            return int(raw)
        except (TypeError, ValueError):
            return raw
    if kind == "doubleValue":
        try:
            return float(raw)
        except (TypeError, ValueError):
            return raw
    if kind == "arrayValue":
        return [_value(item) for item in (raw or {}).get("values", [])]
    if kind == "kvlistValue":
        return {item.get("key"): _value(item.get("value")) for item in (raw or {}).get("values", [])}
    return raw


def _attributes(items: object) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        item["key"]: _value(item.get("value"))
        for item in items
        if isinstance(item, Mapping) and "key" in item
    }


def _nanos(value: object) -> int:
    """OTLP/JSON writes 64-bit integers as strings; some writers use numbers."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return 0
    return 0


def _is_error(status: object) -> bool:
    if not isinstance(status, Mapping):
        return False
    code = status.get("code")
    return code == _STATUS_ERROR or code == "STATUS_CODE_ERROR"


def _span(raw: Mapping[str, Any]) -> SpanView | None:
    trace_id = _hex_id(raw.get("traceId"), 16)
    span_id = _hex_id(raw.get("spanId"), 8)
    if trace_id is None or span_id is None:
        return None
    start = _nanos(raw.get("startTimeUnixNano"))
    status = raw.get("status")
    return SpanView(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=_hex_id(raw.get("parentSpanId"), 8),
        name=str(raw.get("name", "")),
        start_ns=start,
        end_ns=_nanos(raw.get("endTimeUnixNano")) or start,
        error=_is_error(status),
        status_message=str(status.get("message", "")) if isinstance(status, Mapping) else "",
        attributes=_attributes(raw.get("attributes")),
        events=tuple(
            SpanEvent(
                str(event.get("name", "")),
                _nanos(event.get("timeUnixNano")),
                _attributes(event.get("attributes")),
            )
            for event in raw.get("events", []) or []
            if isinstance(event, Mapping)
        ),
    )


def _spans_of(document: Mapping[str, Any]) -> Iterator[SpanView]:
    for resource_spans in document.get("resourceSpans", []) or []:
        for scope_spans in resource_spans.get("scopeSpans", []) or []:
            for raw in scope_spans.get("spans", []) or []:
                if isinstance(raw, Mapping):
                    span = _span(raw)
                    if span is not None:
                        yield span


@dataclass
class FileSpans:
    """The spans of one file, with how many lines could not be read."""

    path: Path
    spans: list[SpanView] = field(default_factory=list)
    lines: int = 0
    bad_lines: int = 0


def read_otlp_jsonl(path: Path) -> FileSpans:
    """Every span of an OTLP JSON Lines file; unreadable lines are counted, not fatal (a killed
    writer may leave a partial last line). Raises ``OSError`` when the file cannot be read."""
    found = FileSpans(path)
    with path.open(encoding="utf-8", errors="replace") as file:
        for line in file:
            if not line.strip():
                continue
            found.lines += 1
            try:
                document = json.loads(line)
            except ValueError:
                found.bad_lines += 1
                continue
            if isinstance(document, Mapping):
                found.spans.extend(_spans_of(document))
            else:
                found.bad_lines += 1
    return found
