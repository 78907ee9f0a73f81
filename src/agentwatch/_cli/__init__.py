"""The ``agentwatch`` command line: ``demo``, ``traces``, ``fake-llm``, ``doctor`` and ``runbook``,
one module each.

Each command module registers its sub-parser and imports what it needs only when it runs, so
``agentwatch doctor`` never imports an LLM SDK it is about to report on. Bad arguments exit with
code 2 and argparse's message, like every argparse program, with the usage of the command they
were given to.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agentwatch._cli import _demo, _doctor, _fake_llm, _runbook, _traces

__all__ = ["build_parser", "main"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentwatch")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from agentwatch._version import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentwatch",
        description="Observability and resilience for tool-using LLM agents.",
        epilog="Run 'agentwatch COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"agentwatch {_version()}")
    commands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    _demo.add_parser(commands)
    _traces.add_parser(commands)
    _fake_llm.add_parser(commands)
    _doctor.add_parser(commands)
    _runbook.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse's own exits are returned too)."""
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        command_parser: argparse.ArgumentParser = args.command_parser
        if unknown:
            # parse_args() would report them with the top-level usage; the command's is the useful one.
            command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return int(args.run(args, command_parser))
    except SystemExit as exc:  # argparse: --help, --version, and bad arguments (2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BrokenPipeError:
        # The reader went away (`agentwatch demo | head`): no traceback, and no second error
        # when the interpreter flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
