"""``agentwatch traces``: look at an OTLP JSON Lines file without a tracing backend.

Without ``--trace``, one line per trace (for agentwatch: per session) with its outcome, duration,
LLM and tool calls, errors and the resilience decisions in it; with ``--trace``, that trace drawn
as a waterfall. The file is what ``agentwatch demo`` writes (by default its newest file) or what
the OpenTelemetry Collector's ``file`` exporter writes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from agentwatch._cli._common import demo_output_dir, integer, latest_demo_output

__all__ = ["add_parser", "run"]

_LIST_LIMIT = 50


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "traces",
        help="list the traces (sessions) of an OTLP JSON Lines file, or draw one as a waterfall",
        description=(
            "List the traces of an OTLP JSON Lines file (one per agent session: outcome, duration, "
            "LLM and tool calls, errors, retries, fallbacks, circuit changes), or draw one with "
            "--trace as a waterfall: the span tree, each span's duration as a bar on one time axis, "
            "failed spans and resilience events marked where they happened. The file is what "
            "'agentwatch demo' writes, or what the OpenTelemetry Collector's file exporter writes."
        ),
    )
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help=f"an OTLP JSON Lines file (default: the newest file 'agentwatch demo' wrote in {demo_output_dir()})",
    )
    parser.add_argument(
        "--trace",
        metavar="ID",
        help="draw this trace: a trace id, its first characters (at least 4), or a session id",
    )
    parser.add_argument(
        "--limit",
        type=integer,
        default=_LIST_LIMIT,
        metavar="N",
        help=f"list at most the N latest traces; 0 lists all (default: {_LIST_LIMIT})",
    )
    parser.add_argument("--ascii", action="store_true", help="draw with ASCII characters only")
    parser.add_argument(
        "--width",
        type=integer,
        default=None,
        metavar="COLUMNS",
        help="width of the drawing (default: the terminal's)",
    )
    parser.set_defaults(run=run, command_parser=parser)


def use_color(stream: Any) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return (
        bool(callable(isatty) and isatty())
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )


def terminal_width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from agentwatch._cli._spans import read_otlp_jsonl
    from agentwatch._cli._waterfall import (
        ASCII,
        Charset,
        TraceLookupError,
        find_trace,
        group_traces,
        render_trace_list,
        render_waterfall,
        trace_heading,
    )

    path: Path | None = args.file
    if path is None:
        path = latest_demo_output()
        if path is None:
            parser.error(
                f"no FILE given and no file of 'agentwatch demo' in {demo_output_dir()}: run the demo first"
            )
    if args.limit < 0:
        parser.error(f"argument --limit: must be an integer >= 0, got {args.limit}")
    if args.width is not None and args.width < 40:
        parser.error(f"argument --width: must be an integer >= 40, got {args.width}")
    try:
        found = read_otlp_jsonl(path.expanduser())
    except IsADirectoryError:
        parser.error(f"{str(path)!r} is a directory; give an OTLP JSON Lines file")
    except OSError as exc:
        parser.error(f"cannot read {str(path)!r}: {exc.strerror or exc}")
    if not found.spans:
        what = "is empty" if found.lines == 0 else "holds no spans"
        parser.error(
            f"{str(path)!r} {what}: expected OTLP JSON lines, one export request per line "
            '({"resourceSpans": [...]}), as agentwatch demo or the Collector\'s file exporter write them'
        )
    traces = group_traces(found.spans)
    charset = ASCII if args.ascii else Charset.for_encoding(getattr(sys.stdout, "encoding", None))
    out: list[str] = []
    if found.bad_lines:
        print(
            f"agentwatch traces: skipped {found.bad_lines} line(s) of {path} that are not JSON objects "
            "(a partial last line is left by a writer that was killed)",
            file=sys.stderr,
        )
    if args.trace is None:
        out.append(f"{path}: {len(traces)} traces, {len(found.spans)} spans")
        out.extend(render_trace_list(traces, limit=args.limit or None))
        out.append("")
        out.append(
            f"Draw one: agentwatch traces {path} --trace <trace id, its first characters, or session id>"
        )
    else:
        try:
            trace = find_trace(traces, args.trace)
        except TraceLookupError as exc:
            parser.error(f"{path}: {exc}")
        out.append(trace_heading(trace))
        out.extend(
            render_waterfall(
                trace.spans,
                width=args.width or terminal_width(),
                charset=charset,
                color=use_color(sys.stdout),
            )
        )
    print("\n".join(out), flush=True)
    return 0
