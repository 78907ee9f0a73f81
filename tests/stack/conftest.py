"""Fixtures shared by the stack tests: the native binaries (a missing one FAILS, naming
scripts/setup-stack.sh), the example stack (one per session: the e2e modules share it, each
filtering by its own service name) and log attachment for failed tests."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from . import _paths
from ._stack import Stack, running_stack


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


@pytest.fixture(scope="session")
def otelcol_bin() -> Path:
    return _require(_paths.otelcol_binary)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, jaeger_bin: Path, otelcol_bin: Path, prometheus_bin: Path
) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("otelstack"), jaeger_bin, otelcol_bin, prometheus_bin
    ) as running:
        yield running


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        for tail in getattr(item, "stack_log_tails", lambda: [])():
            report.sections.append(("stack process log", tail))
    return report
