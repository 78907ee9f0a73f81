"""Helpers shared by the commands: argument types, endpoint probes, where the demo writes."""

from __future__ import annotations

import argparse
import math
import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "DEMO_FILES_KEPT",
    "DEMO_FILE_GLOB",
    "Endpoint",
    "demo_files",
    "demo_output_dir",
    "fallback_demo_output_dir",
    "format_seconds",
    "fraction",
    "latest_demo_output",
    "parse_endpoint",
    "plural",
    "positive_float",
    "positive_int",
    "probe",
]


# How many of its own OTLP JSON Lines files the demo keeps in its directory (the newest).
DEMO_FILES_KEPT = 5
DEMO_FILE_GLOB = "agentwatch-demo-*.jsonl"


def demo_output_dir() -> Path:
    """Where ``agentwatch demo`` writes its telemetry file by default: the user's cache directory
    (``$XDG_CACHE_HOME/agentwatch/demo``, else ``~/.cache/agentwatch/demo``), never the working
    directory, so that runs do not pile up in a repository checkout."""
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "agentwatch" / "demo"


def fallback_demo_output_dir() -> Path:
    """Used when the cache directory cannot be created (a read-only home)."""
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"agentwatch-demo-{uid}"


def demo_files(directory: Path) -> list[Path]:
    """The demo's files in ``directory``, newest first."""
    try:
        found = [p for p in directory.glob(DEMO_FILE_GLOB) if p.is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name), reverse=True)


def latest_demo_output() -> Path | None:
    for directory in (demo_output_dir(), fallback_demo_output_dir()):
        files = demo_files(directory)
        if files:
            return files[0]
    return None


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}")
    return value


class Endpoint:
    """Host and port of an OTLP endpoint URL (``http://host:port/...`` or a bare ``host:port``)."""

    def __init__(self, url: str, host: str, port: int) -> None:
        self.url = url
        self.host = host
        self.port = port


def parse_endpoint(url: str, default_port: int) -> Endpoint | None:
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    try:
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    if port is None:
        port = 443 if parts.scheme == "https" else default_port
    return Endpoint(url, parts.hostname, port)


def probe(host: str, port: int, timeout: float = 1.0) -> str | None:
    """``None`` if a TCP connection to ``host:port`` succeeds within ``timeout`` s, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def plural(count: int, word: str) -> str:
    """``"1 export"``, ``"2 exports"``, ``"1,024 spans"``."""
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def format_seconds(value: object) -> str:
    from agentwatch.resilience._config import seconds

    return f"{seconds(value):g} s"  # type: ignore[arg-type]


def describe_policy(policy: object, *, kind: str = "tools") -> dict[str, str]:
    """The layers of a ``Policy`` in words, by layer name (``kind``: ``tools`` or ``llm``)."""
    from agentwatch.resilience import Policy

    if not isinstance(policy, Policy):
        return {}
    parts: dict[str, str] = {}
    if kind == "tools":
        parts["criticality"] = (
            "critical" if policy.critical else "optional (degrades to a ToolUnavailable result)"
        )
    parts["timeout"] = "none" if policy.timeout is None else f"{format_seconds(policy.timeout)} in total"
    if policy.attempt_timeout is not None:
        parts["timeout"] += f", {format_seconds(policy.attempt_timeout)} per attempt"
    retry = policy.retry
    parts["retry"] = (
        "none"
        if retry is None
        else f"{retry.attempts} attempts, exponential backoff from {format_seconds(retry.backoff)} "
        f"(x{retry.multiplier:g}, at most {format_seconds(retry.max_delay)}, "
        f"{'full jitter' if retry.jitter else 'no jitter'})"
    )
    breaker = policy.breaker
    if breaker is None:
        parts["breaker"] = "none"
    else:
        trip = (
            f"opens after {breaker.failure_threshold} consecutive failures"
            if breaker.mode == "consecutive"
            else f"opens at a {breaker.failure_ratio:g} failure ratio over {format_seconds(breaker.window)} "
            f"(at least {breaker.minimum_calls} calls)"
        )
        parts["breaker"] = (
            f"{trip}, break {format_seconds(breaker.break_duration)} "
            f"(x{breaker.break_growth:g} while failing, at most {format_seconds(breaker.max_break_duration)})"
        )
    bulkhead = policy.bulkhead
    parts["bulkhead"] = (
        "none"
        if bulkhead is None
        else f"{bulkhead.max_concurrent} concurrent"
        + (
            f", queue {bulkhead.max_queue} for {format_seconds(bulkhead.queue_timeout)}"
            if bulkhead.max_queue
            else ""
        )
    )
    if policy.fallback_models:
        parts["fallback_models"] = ", ".join(policy.fallback_models)
    return parts
