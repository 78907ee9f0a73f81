"""Helpers of the tool tests (import as ``tools._support``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

from support import Signals


def tool_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agentwatch.tool_calls"]


def tool_spans(signals: Signals, name: str | None = None) -> list[ReadableSpan]:
    prefix = "execute_tool" if name is None else f"execute_tool {name}"
    return [s for s in signals.finished(prefix) if name is None or s.name == prefix]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def duration_points(signals: Signals) -> list[dict[str, Any]]:
    """``gen_ai.execute_tool.duration`` points as their attributes plus ``count``."""
    return [{**dict(p.attributes), "count": p.count} for p in signals.points("gen_ai.execute_tool.duration")]
