"""Traces in a terminal: a list of the traces (sessions) of a set of spans, and one trace drawn as a
waterfall (the span tree, each span's duration as a bar on a common time axis, errors and
resilience decisions marked where they happened).

Plain text that reads in a CI log too; colour only on a terminal, and never with ``NO_COLOR``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agentwatch import _semconv as sc
from agentwatch._cli._spans import CIRCUIT_EVENTS, SpanView, marks_of

__all__ = [
    "Charset",
    "TraceLookupError",
    "TraceSummary",
    "find_trace",
    "group_traces",
    "render_trace_list",
    "render_waterfall",
    "trace_heading",
]

_LLM_OPERATIONS = frozenset({sc.OP_CHAT, "embeddings", "text_completion", "generate_content"})
_MARK_ORDER = ("error", "retry", "timeout", "circuit", "fallback")
# Letters drawn on the bars where an event happened, and their legend.
_EVENT_LETTERS = {
    "retry": "R",
    "retry_abandoned": "A",
    "timeout": "T",
    "fallback": "F",
    "bulkhead_rejected": "B",
    "tool_disabled": "D",
    "exception": "E",
    **dict.fromkeys(CIRCUIT_EVENTS, "C"),
}
_LEGEND = {
    "R": "retry",
    "A": "retry abandoned",
    "T": "timeout",
    "F": "fallback",
    "C": "circuit breaker",
    "B": "bulkhead rejected",
    "D": "tool disabled",
    "E": "exception",
    "*": "other event",
}
_LABEL_MAX = 44
_BAR_MIN = 24
_NOTES_MIN = 24


@dataclass(frozen=True)
class Charset:
    """The glyphs of a drawing: Unicode box drawing where the output can encode it, else ASCII."""

    bar: str
    error_bar: str
    branch: str
    last: str
    pipe: str
    arrow: str
    cross: str
    times: str
    ellipsis: str

    @classmethod
    def for_encoding(cls, encoding: str | None) -> Charset:
        try:
            "█▒├└│→✗×…".encode(encoding or "ascii")
        except (UnicodeEncodeError, LookupError):
            return ASCII
        return UNICODE


UNICODE = Charset("█", "▒", "├─ ", "└─ ", "│  ", "→", "✗", "×", "…")
ASCII = Charset("#", "x", "|- ", "`- ", "|  ", "->", "x", "x", "...")


def seconds(nanos: float) -> str:
    value = nanos / 1e9
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.001 else f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


# ------------------------------------------------------------------------------------------------
# Traces
# ------------------------------------------------------------------------------------------------


@dataclass
class TraceSummary:
    trace_id: str
    spans: list[SpanView] = field(default_factory=list)

    @property
    def root(self) -> SpanView:
        """The earliest span whose parent is not in the trace (the session span for agentwatch)."""
        ids = {span.span_id for span in self.spans}
        roots = [span for span in self.spans if span.parent_id is None or span.parent_id not in ids]
        return min(roots or self.spans, key=lambda s: (s.parent_id is not None, s.start_ns))

    @property
    def start_ns(self) -> int:
        return min(span.start_ns for span in self.spans)

    @property
    def end_ns(self) -> int:
        return max(span.end_ns for span in self.spans)

    @property
    def session_id(self) -> str | None:
        value = self.root.attributes.get(sc.CONVERSATION_ID)
        if isinstance(value, str) and value:
            return value
        found = {s.attributes.get(sc.CONVERSATION_ID) for s in self.spans} - {None, ""}
        return str(found.pop()) if len(found) == 1 else None

    @property
    def outcome(self) -> str | None:
        value = self.root.attributes.get(sc.SESSION_OUTCOME)
        return str(value) if value else None

    def count(self, operations: Iterable[str]) -> int:
        wanted = set(operations)
        return sum(1 for span in self.spans if span.attributes.get(sc.OPERATION_NAME) in wanted)

    @property
    def errors(self) -> int:
        return sum(1 for span in self.spans if span.error)

    @property
    def marks(self) -> list[str]:
        found: set[str] = set()
        for span in self.spans:
            found |= marks_of(span.error, (event.name for event in span.events))
        return [mark for mark in _MARK_ORDER if mark in found]


def group_traces(spans: Iterable[SpanView]) -> list[TraceSummary]:
    """The traces of ``spans``, earliest first."""
    traces: dict[str, TraceSummary] = {}
    for span in spans:
        traces.setdefault(span.trace_id, TraceSummary(span.trace_id)).spans.append(span)
    return sorted(traces.values(), key=lambda t: (t.start_ns, t.trace_id))


class TraceLookupError(LookupError):
    pass


def find_trace(traces: Sequence[TraceSummary], ident: str) -> TraceSummary:
    """The trace named by a full trace id, its first characters (at least 4), or a session id."""
    text = ident.strip().lower()
    exact = [t for t in traces if t.trace_id == text]
    if exact:
        return exact[0]
    by_session = [t for t in traces if (t.session_id or "").lower() == text]
    if len(by_session) == 1:
        return by_session[0]
    if len(by_session) > 1:
        raise TraceLookupError(
            f"session {ident!r} has {len(by_session)} traces: "
            + ", ".join(t.trace_id for t in by_session[:5])
            + "; give a trace id"
        )
    if len(text) >= 4:
        prefixed = [t for t in traces if t.trace_id.startswith(text)]
        if len(prefixed) == 1:
            return prefixed[0]
        if prefixed:
            raise TraceLookupError(
                f"{ident!r} starts {len(prefixed)} trace ids ("
                + ", ".join(t.trace_id for t in prefixed[:5])
                + "); give more characters"
            )
    raise TraceLookupError(f"no trace id or session id {ident!r} (a trace id has 32 hex digits)")


# ------------------------------------------------------------------------------------------------
# The list
# ------------------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]

    def line(cells: Sequence[str]) -> str:
        return (
            "  "
            + "  ".join(
                cell.rjust(width) if index in right else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(cells, widths, strict=False))
            )
        ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def render_trace_list(traces: Sequence[TraceSummary], *, limit: int | None = None) -> list[str]:
    """One row per trace: id, session, outcome, start, duration, LLM and tool calls, errors, marks."""
    shown = list(traces) if not limit or len(traces) <= limit else list(traces[-limit:])
    days = {time.strftime("%Y-%m-%d", time.localtime(t.start_ns / 1e9)) for t in shown}
    clock = "%H:%M:%S" if len(days) <= 1 else "%Y-%m-%d %H:%M:%S"
    rows = [
        [
            trace.trace_id,
            trace.session_id or "–",
            trace.outcome or ("error" if trace.root.error else "–"),
            time.strftime(clock, time.localtime(trace.start_ns / 1e9)),
            seconds(trace.end_ns - trace.start_ns),
            str(len(trace.spans)),
            str(trace.count(_LLM_OPERATIONS)),
            str(trace.count((sc.OP_EXECUTE_TOOL,))),
            str(trace.errors),
            ", ".join(trace.marks) or "–",
        ]
        for trace in shown
    ]
    headers = ["trace", "session", "outcome", "start", "duration", "spans", "llm", "tools", "errors", "marks"]
    lines = _table(headers, rows, right={4, 5, 6, 7, 8})
    if len(shown) < len(traces):
        lines.append(f"  … and {len(traces) - len(shown)} earlier traces (--limit 0 lists them all)")
    return lines


# ------------------------------------------------------------------------------------------------
# The waterfall
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    span: SpanView
    prefix: str  # the tree in front of the name: "├─ ", "│  └─ "...
    under: str  # the tree in front of lines under the name (its notes on a narrow terminal)


def _ordered(spans: Sequence[SpanView], charset: Charset) -> list[_Row]:
    """Depth-first, children by start time, each with its tree prefixes."""
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[SpanView]] = defaultdict(list)
    for span in spans:
        children[span.parent_id if span.parent_id in ids else None].append(span)
    for group in children.values():
        group.sort(key=lambda s: (s.start_ns, s.end_ns))
    blank = " " * len(charset.pipe)
    out: list[_Row] = []

    def walk(span: SpanView, lasts: tuple[bool, ...]) -> None:
        # ``lasts``: for each level below the root, whether that ancestor is its parent's last child.
        lead = "".join(blank if last else charset.pipe for last in lasts[:-1])
        branch = (charset.last if lasts[-1] else charset.branch) if lasts else ""
        kids = children.get(span.span_id, [])
        own = (blank if lasts[-1] else charset.pipe) if lasts else ""
        out.append(_Row(span, lead + branch, lead + own + (charset.pipe if kids else blank)))
        for index, child in enumerate(kids):
            walk(child, (*lasts, index == len(kids) - 1))

    for root in children[None]:
        walk(root, ())
    return out


def _notes(span: SpanView, charset: Charset) -> str:
    attributes = span.attributes
    notes: list[str] = []
    if span.error:
        error_type = attributes.get(sc.ERROR_TYPE)
        notes.append(f"{charset.cross} {error_type or span.status_message or 'error'}")
    operation = attributes.get(sc.OPERATION_NAME)
    if operation in _LLM_OPERATIONS:
        tokens_in, tokens_out = attributes.get(sc.USAGE_INPUT_TOKENS), attributes.get(sc.USAGE_OUTPUT_TOKENS)
        if tokens_in is not None or tokens_out is not None:
            notes.append(
                f"{tokens_in if tokens_in is not None else '?'}{charset.arrow}{tokens_out if tokens_out is not None else '?'} tokens"
            )
        requested, answered = attributes.get(sc.REQUEST_MODEL), attributes.get(sc.RESPONSE_MODEL)
        if answered and requested and answered != requested and not str(answered).startswith(str(requested)):
            notes.append(f"answered by {answered}")
    elif operation == sc.OP_INVOKE_AGENT and attributes.get(sc.SESSION_OUTCOME):
        notes.append(str(attributes[sc.SESSION_OUTCOME]))
    counts: dict[str, int] = {}
    for event in span.events:
        if event.name == "fallback" and event.attributes.get(sc.REQUEST_MODEL):
            key = f"fallback {charset.arrow} {event.attributes[sc.REQUEST_MODEL]}"
        else:
            key = event.name.replace("_", " ")
        counts[key] = counts.get(key, 0) + 1
    notes.extend(f"{name} {charset.times}{n}" if n > 1 else name for name, n in counts.items())
    return ", ".join(notes)


def _wrap(notes: str, width: int) -> list[str]:
    """``notes`` ("a, b, c") in lines of at most ``width``, broken after the commas."""
    lines: list[str] = []
    for part in notes.split(", ") if notes else []:
        if lines and len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += ", " + part
        else:
            if lines:
                lines[-1] += ","
            lines.append(part)
    return lines


def _fit(text: str, width: int, charset: Charset) -> str:
    if len(text) <= width:
        return text
    return text[: max(width - len(charset.ellipsis), 0)] + charset.ellipsis


def render_waterfall(
    spans: Sequence[SpanView],
    *,
    width: int = 100,
    charset: Charset = UNICODE,
    color: bool = False,
    indent: str = "  ",
) -> list[str]:
    """The trace of ``spans`` (one trace) as lines of at most about ``width`` columns."""
    if not spans:
        return [f"{indent}(no spans)"]
    ordered = _ordered(spans, charset)
    start = min(span.start_ns for span in spans)
    total = max(max(span.end_ns for span in spans) - start, 1)
    labels = [row.prefix + row.span.name for row in ordered]
    label_width = min(max(len(label) for label in labels), _LABEL_MAX)
    durations = [seconds(row.span.duration_ns) for row in ordered]
    notes = [_notes(row.span, charset) for row in ordered]
    duration_width = max(max(len(text) for text in durations), len("duration"))
    fixed = len(indent) + label_width + 2 + duration_width + 2
    # The bar gets what the labels and (up to a point) the notes leave; notes that do not fit
    # continue on the next lines, under themselves. On a narrow terminal they go below the span.
    notes_room = min(max((len(text) for text in notes), default=0), 32)
    inline = width - fixed - _BAR_MIN - 2 >= _NOTES_MIN
    if inline:
        bar_width = max(min(width - fixed - 2 - notes_room, 60), _BAR_MIN)
        notes_width = max(width - fixed - bar_width - 2, _NOTES_MIN)
        notes_column = fixed + bar_width + 2
    else:
        bar_width = max(min(width - fixed, 60), _BAR_MIN)
        notes_column = 0  # unused: the notes go under the name, after the tree
        notes_width = max(width - len(indent) - max(len(row.under) for row in ordered), _NOTES_MIN)
    red, yellow, reset = ("\x1b[31m", "\x1b[33;1m", "\x1b[0m") if color else ("", "", "")
    scale = bar_width / total

    axis_left, axis_right = "0", seconds(total)
    axis = axis_left + axis_right.rjust(bar_width - len(axis_left))
    lines = [f"{indent}{'span'.ljust(label_width)}  {'duration'.rjust(duration_width)}  {axis}"]
    used_letters: set[str] = set()
    for row_of, label, duration, note in zip(ordered, labels, durations, notes, strict=True):
        span = row_of.span
        first = min(int((span.start_ns - start) * scale), bar_width - 1)
        last = max(first + 1, min(math.ceil((span.end_ns - start) * scale), bar_width))
        cells = [" "] * bar_width
        glyph = charset.error_bar if span.error else charset.bar
        for column in range(first, last):
            cells[column] = glyph
        marked: set[int] = set()
        for event in span.events:
            letter = _EVENT_LETTERS.get(event.name, "*")
            wanted = min(max(int((event.time_ns - start) * scale), first), last - 1)
            # Events closer together than a column share it only when the bar has no room left:
            # each takes the nearest free column inside its span's bar.
            free = [c for c in range(first, last) if c not in marked]
            if not free:
                continue
            column = min(free, key=lambda c: (abs(c - wanted), c))
            cells[column] = letter
            marked.add(column)
            used_letters.add(letter)
        if color:
            painted = []
            for column, cell in enumerate(cells):
                if column in marked:
                    painted.append(f"{yellow}{cell}{reset}")
                elif cell != " " and span.error:
                    painted.append(f"{red}{cell}{reset}")
                else:
                    painted.append(cell)
            bar = "".join(painted)
        else:
            bar = "".join(cells)
        row = f"{indent}{_fit(label, label_width, charset).ljust(label_width)}  {duration.rjust(duration_width)}  {bar}"
        wrapped = _wrap(note, notes_width)
        if inline:
            lines.append((row + ("  " + wrapped[0] if wrapped else "")).rstrip())
            lines.extend(" " * notes_column + more for more in wrapped[1:])
        else:
            lines.append(row.rstrip())
            lines.extend(f"{indent}{row_of.under}{more}" for more in wrapped)
    if used_letters:
        legend = ", ".join(f"{letter} {_LEGEND[letter]}" for letter in _LEGEND if letter in used_letters)
        lines.append(f"{indent}marks: {legend}; {charset.error_bar * 2} a span that failed")
    return lines


def trace_heading(trace: TraceSummary) -> str:
    parts = [f"trace {trace.trace_id}"]
    if trace.session_id:
        parts.append(f"session {trace.session_id}" + (f" ({trace.outcome})" if trace.outcome else ""))
    parts.append(f"{seconds(trace.end_ns - trace.start_ns)}, {len(trace.spans)} spans")
    return ": ".join(parts[:1]) + (", " + ", ".join(parts[1:]) if len(parts) > 1 else "")
