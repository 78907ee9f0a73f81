"""``agentwatch demo``: the command-line glue around :func:`agentwatch._demo.run_demo`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from agentwatch._cli._common import (
    fraction,
    integer,
    parse_endpoint,
    plural,
    positive_float,
    positive_int,
    probe,
)

if TYPE_CHECKING:
    from agentwatch._demo import DemoProgress, DemoResult
    from agentwatch._demo._otel import ExportCounts

__all__ = ["add_parser", "run"]

JAEGER_URL = "http://localhost:16686"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_EXPORT_FAILED = 1  # the sessions ran, but some telemetry could not be exported
_SIGNAL_NAMES = {
    "traces": ("span", "spans"),
    "metrics": ("metric", "metric points"),
    "logs": ("log", "log records"),
}

_DESCRIPTION = """\
Run scripted agent sessions against an embedded fake LLM server on 127.0.0.1, through the real
SDK of the --provider (openai by default) instrumented by agentwatch, and print what the
OpenTelemetry SDK's own metrics say.

The model asks for tools (a flaky critical search_knowledge_base, an optional slow
get_user_preferences, an optional fetch_related_content whose dependency goes down mid-run),
the tools run through agentwatch's registry and resilience policies, the model answers.

Telemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, to that collector (OTLP, protocol from
OTEL_EXPORTER_OTLP_PROTOCOL: grpc or http/protobuf); otherwise to a JSON Lines file of OTLP JSON
(--output, or a new file in {directory}, where the newest {kept} are kept).
Look at that file with 'agentwatch traces'. The summary says whether every export succeeded;
the exit status is 1 when some telemetry could not be exported, 2 for a bad option or setting.

The same --seed gives the same sessions (questions, tool calls, arguments, scripted faults);
what depends on timing (which calls fall inside the outage windows, what the breakers decide)
may differ slightly between runs.
"""


_PROVIDERS = "{providers}"


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Lists the ``--provider`` values only when the help is shown: they come from the integration
    registry, which every other command line would otherwise pay for."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is not None and _PROVIDERS in text:
            from agentwatch._demo._provider import provider_names

            text = text.replace(_PROVIDERS, ", ".join(provider_names()))
        return text


def add_parser(commands: Any) -> None:
    from agentwatch._cli._common import DEMO_FILES_KEPT, demo_output_dir

    parser: argparse.ArgumentParser = commands.add_parser(
        "demo",
        help="run scripted agent sessions against a fake LLM and summarize the telemetry",
        description=_DESCRIPTION.format(directory=demo_output_dir(), kept=DEMO_FILES_KEPT),
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--provider",
        default="openai",
        metavar="NAME",
        help=f"the LLM SDK the agent calls, through the fake server's wire format of that provider: "
        f"{_PROVIDERS} (default: openai)",
    )
    parser.add_argument(
        "--sessions", type=positive_int, default=30, metavar="N", help="agent sessions to run (default: 30)"
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=4,
        metavar="N",
        help="sessions running at once (default: 4)",
    )
    parser.add_argument(
        "--fault-rate",
        type=fraction,
        default=0.1,
        metavar="RATE",
        help="share of LLM turns and tool calls that hit a fault, 0 to 1; 0 is a clean run (default: 0.1)",
    )
    parser.add_argument(
        "--seed", type=integer, default=7, metavar="N", help="seed of the scripted sessions (default: 7)"
    )
    parser.add_argument(
        "--duration",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="time budget: start no session after it (default: run every session)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the OTLP JSON Lines file here (default without an OTLP endpoint: a new "
        "agentwatch-demo-<timestamp>-<run>.jsonl in the directory named above)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of tables")
    parser.set_defaults(run=run, command_parser=parser)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (flush, summary) but reported with its own exit code."""


class _SigtermHandler:
    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        from agentwatch._demo._run import request_stop

        self.received = True
        request_stop()
        # Raised once: a second SIGTERM during the flush must not cut it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Python's own Ctrl-C (a KeyboardInterrupt in the main thread), and a stop request the run
    checks as well, in case that exception is swallowed where it lands."""
    from agentwatch._demo._run import request_stop

    request_stop()
    raise KeyboardInterrupt


def _check_output(path: Path, parser: argparse.ArgumentParser) -> Path:
    path = path.expanduser()
    if path.is_dir():
        parser.error(f"--output {str(path)!r} is a directory; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        parser.error(f"--output {str(path)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        parser.error(f"--output {str(path)!r}: directory {str(parent)!r} is not writable")
    return path.resolve()


def _on_provider(name: str) -> str:
    """``provider NAME, `` for another provider than the default (whose output names none)."""
    from agentwatch._demo._provider import DEFAULT_PROVIDER

    return "" if name == DEFAULT_PROVIDER else f"provider {name}, "


def _warn(message: str) -> None:
    print(f"agentwatch demo: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from agentwatch._cli._progress import ProgressBar
    from agentwatch._errors import ConfigError

    try:
        from agentwatch._demo import TOOL_NAMES, DemoOptions, run_demo
        from agentwatch._demo._otel import check_settings, otlp_endpoint, otlp_protocol
        from agentwatch._demo._provider import ProviderUnavailable, find_provider

        # An unknown provider, or one whose SDK is an extra that is not installed (a plain
        # `pip install agentwatch` has the command but no SDK), before anything is created.
        try:
            find_provider(args.provider)
        except ProviderUnavailable as exc:
            parser.error(f"argument --provider: {exc}")
        # Every OTEL_* setting the demo uses, whether or not an endpoint is set: the SDK would
        # only warn about a bad value and carry on with its default.
        check_settings()
    except ConfigError as exc:  # the demo's tools check the agentwatch settings when they are defined
        parser.error(str(exc))
    output = _check_output(args.output, parser) if args.output is not None else None
    endpoint = otlp_endpoint()
    if endpoint is not None:
        protocol = otlp_protocol("traces")
        parsed = parse_endpoint(endpoint, 4317 if protocol == "grpc" else 4318)
        if parsed is None:
            parser.error(
                f"invalid OTEL_EXPORTER_OTLP_ENDPOINT {endpoint!r}: expected a URL such as http://localhost:4317"
            )
        problem = probe(parsed.host, parsed.port)
        if problem is not None:
            _warn(
                f"the OTLP endpoint {endpoint} does not answer ({problem}); is the collector running "
                "(docker compose up in collector/)? The run goes on; the exporters retry, then drop."
            )

    progress = None if args.no_progress else ProgressBar(args.sessions)

    def on_progress(update: DemoProgress) -> None:
        if progress is not None:
            detail = ", ".join(f"{n} {outcome}" for outcome, n in sorted(update.outcomes.items()))
            progress.update(update.done, f"{detail}  {update.elapsed:.1f} s")

    try:
        options = DemoOptions(
            provider=args.provider,
            sessions=args.sessions,
            concurrency=args.concurrency,
            seed=args.seed,
            fault_rate=args.fault_rate,
            duration=args.duration,
            output=output,
            on_progress=on_progress,
        )
    except ValueError as exc:
        parser.error(str(exc))

    _warn(
        f"{_on_provider(args.provider)}{args.sessions} sessions, concurrency {args.concurrency}, seed {args.seed}, "
        f"fault rate {args.fault_rate:g}; Ctrl-C stops and still prints the summary"
    )
    sigterm = _SigtermHandler()
    previous = signal.signal(signal.SIGTERM, sigterm)
    previous_sigint = signal.signal(signal.SIGINT, _on_sigint)
    try:
        if progress is not None:
            progress.start()
        result = run_demo(options)
    except KeyboardInterrupt:
        if progress is not None:
            progress.finish()
        _warn("interrupted before any session ran")
        return EXIT_TERMINATED if sigterm.received else EXIT_INTERRUPTED
    except ValueError as exc:  # a bad setting in the environment (ConfigError), named by the message
        parser.error(str(exc))
    except RuntimeError as exc:
        _warn(str(exc))
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_sigint)
    if progress is not None:
        progress.finish(result.finished)
    for error in result.llm_server_errors:
        _warn(f"the fake LLM server failed to answer a request (a demo bug):\n{error}")
    print(_render_json(result, TOOL_NAMES) if args.json else _render_text(result, TOOL_NAMES), flush=True)
    if result.interrupted:
        return EXIT_TERMINATED if sigterm.received else EXIT_INTERRUPTED
    return EXIT_EXPORT_FAILED if result.failed_exports else 0


def _export_status(signals: dict[str, ExportCounts]) -> tuple[bool, str]:
    """(all delivered, what happened), e.g. "12 span, 6 metric and 2 log exports, all accepted"."""
    failed = {signal: counts for signal, counts in signals.items() if counts.failed}
    if not failed:
        done = [
            f"{counts.exports:,} {_SIGNAL_NAMES[signal][0]}"
            for signal, counts in signals.items()
            if counts.exports
        ]
        if not done:
            return True, "nothing to export"
        listed = ", ".join(done[:-1]) + (" and " if len(done) > 1 else "") + done[-1]
        return True, f"{listed} exports, all accepted"
    parts = [
        f"{counts.failed:,} of {plural(counts.exports, _SIGNAL_NAMES[signal][0] + ' export')} "
        f"({counts.items_failed:,} {_SIGNAL_NAMES[signal][1]})"
        for signal, counts in failed.items()
    ]
    return False, "; ".join(parts) + " failed"


def _telemetry_lines(result: DemoResult) -> list[str]:
    lines = []
    exports = result.exports
    if result.otlp_endpoint is not None:
        ok, status = _export_status(exports.get("otlp", {}))
        where = f"over OTLP to {result.otlp_endpoint} as service {result.service_name!r} (instance {result.service_instance_id})"
        if ok:
            lines.append(f"  sent {where}: {status}")
        else:
            lines.append(f"  NOT all delivered {where}: {status}")
            lines.append("  (the exporters' errors are above; is the collector running?)")
    if result.output_path is not None:
        ok, status = _export_status(exports.get("file", {}))
        lines.append(f"  written as OTLP JSON lines to {result.output_path}" + ("" if ok else f": {status}"))
        lines.append(f"  list its sessions: agentwatch traces {result.output_path}")
    return lines


def _sessions_line(result: DemoResult) -> str:
    state = "interrupted: " if result.interrupted else "budget reached: " if result.budget_exhausted else ""
    return (
        f"  {state}{result.finished} of {result.planned} sessions ran in {result.sessions_seconds:.1f} s "
        f"({result.elapsed:.1f} s in all, with start-up and the final export); "
        f"the fake LLM at {result.llm_server} received {result.llm_requests} requests"
    )


def _interesting_lines(result: DemoResult) -> list[str]:
    from agentwatch._cli._traces import terminal_width, use_color
    from agentwatch._cli._waterfall import Charset, render_waterfall

    interesting = result.interesting
    if interesting is None:
        return ["  none: no session had a retry, a fallback or an error"]
    lines = [
        f"  trace {interesting.trace_id}: session {interesting.session_id} ({interesting.outcome}) "
        f"had {', '.join(interesting.marks)}"
    ]
    if result.interesting_spans:
        lines.extend(
            render_waterfall(
                result.interesting_spans,
                width=terminal_width(),
                charset=Charset.for_encoding(getattr(sys.stdout, "encoding", None)),
                color=use_color(sys.stdout),
            )
        )
    if result.otlp_endpoint is not None:
        lines.append(f"  open {JAEGER_URL}/trace/{interesting.trace_id}")
    if result.output_path is not None:
        lines.append(f"  again: agentwatch traces {result.output_path} --trace {interesting.trace_id[:8]}")
    return lines


def _render_text(result: DemoResult, tool_order: tuple[str, ...]) -> str:
    from agentwatch._cli._summary import render_models, render_sessions, render_tools, summarize

    summary = summarize(result.metrics, tool_order=tool_order)
    options = result.options
    fault = options.fault_model
    lines = [
        "",
        f"agentwatch demo: {_on_provider(options.provider)}seed {options.seed}, fault rate {fault.rate:g}, "
        f"plan {result.plan_digest}",
        _sessions_line(result),
        "",
        "LLM calls by model (gen_ai.client.operation.duration, gen_ai.client.token.usage, gen_ai.client.operation.cost)",
        *render_models(summary),
        "",
        "Tool calls (gen_ai.execute_tool.duration, agentwatch.resilience.events)",
        *render_tools(summary),
        "",
        "Sessions (agentwatch.sessions, agentwatch.session.duration/.cost/.iterations)",
        *render_sessions(summary),
        "",
        "Interesting trace",
        *_interesting_lines(result),
        "",
        "Telemetry",
        *_telemetry_lines(result),
    ]
    return "\n".join(lines)


def _render_json(result: DemoResult, tool_order: tuple[str, ...]) -> str:
    from agentwatch._cli._summary import summarize

    summary = summarize(result.metrics, tool_order=tool_order)
    interesting = result.interesting
    document = {
        "provider": result.options.provider,
        "gen_ai.provider.name": result.provider_name,
        "seed": result.options.seed,
        "faults": result.options.fault_model.describe(),
        "plan_digest": result.plan_digest,
        "sessions_planned": result.planned,
        "sessions_started": result.started,
        "sessions_finished": result.finished,
        "interrupted": result.interrupted,
        "budget_exhausted": result.budget_exhausted,
        "elapsed_seconds": round(result.elapsed, 3),
        "sessions_seconds": round(result.sessions_seconds, 3),
        "llm_server": result.llm_server,
        "llm_server_requests": result.llm_requests,
        "summary": summary.to_dict(),
        "interesting_trace": None
        if interesting is None
        else {
            "trace_id": interesting.trace_id,
            "session_id": interesting.session_id,
            "outcome": interesting.outcome,
            "marks": list(interesting.marks),
        },
        "otlp_endpoint": result.otlp_endpoint,
        "output": None if result.output_path is None else str(result.output_path),
        "service_name": result.service_name,
        "service_instance_id": result.service_instance_id,
        "exports": {
            destination: {signal: counts.to_dict() for signal, counts in signals.items()}
            for destination, signals in result.exports.items()
        },
    }
    return json.dumps(clean_floats(document), indent=2)


def clean_floats(value: Any) -> Any:
    """Floats to 12 significant digits, so that binary noise (1.7279999999999995) does not reach a
    reader: far below any measured difference, and every figure keeps its precision."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: clean_floats(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_floats(item) for item in value]
    return value
