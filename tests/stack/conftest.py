"""Fixtures shared by the stack tests: the native binaries (a missing one FAILS, naming
scripts/setup-stack.sh) and log attachment for failed tests."""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path

import pytest

from . import _paths


def _require(getter: Callable[[], Path]) -> Path:
    try:
        return getter()
    except _paths.MissingBinaryError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside `except`: no chained traceback


@pytest.fixture(scope="session")
def jaeger_bin() -> Path:
    return _require(_paths.jaeger_binary)


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    return _require(_paths.prometheus_binary)


@pytest.fixture(scope="session")
def promtool_bin() -> Path:
    return _require(_paths.promtool_binary)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for tail in getattr(item, "stack_log_tails", lambda: [])():
            report.sections.append(("stack process log", tail))
    return report
