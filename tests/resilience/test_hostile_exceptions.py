"""Classifying an exception never replaces it (issue 11, item 10).

A tool (or an SDK) may raise an exception whose attributes or text fail when read: a ``status_code``
property that raises, a ``__str__`` that raises, an ``otel_error_type`` that is not a
string, a ``__getattr__`` that raises anything. The policies read such attributes to classify the
failure; a fault there is agentwatch's, reported once as an internal error, and the failure is
treated as ``unknown``: the caller gets the tool's own exception object, every time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch import _internal
from agentwatch._config import ContentCapture, Settings
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import (
    CircuitBreaker,
    ErrorCategory,
    Policy,
    Retry,
    ToolUnavailable,
    default_classifier,
)
from agentwatch.tools import tool
from support import Signals

NO_WAIT = Retry(attempts=3, backoff=0, max_delay=0, jitter=False, budget=None)


class StatusRaises(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError("status_code exploded")


class StrRaises(Exception):
    status_code = 400  # a 4xx: the classifier reads the message for context-length phrases

    def __str__(self) -> str:
        raise TypeError("__str__ exploded")


class GetattrRaises(Exception):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # Python's own protocols (and pytest's report) still work
            raise AttributeError(name)
        raise KeyError(name)


class ResponseRaises(Exception):
    @property
    def response(self) -> Any:
        raise ValueError("response exploded")


class BodyRaises(Exception):
    status_code = 429

    @property
    def body(self) -> Any:
        raise RuntimeError("body exploded")

    @property
    def response(self) -> Any:
        class Headers:
            def get(self, name: str) -> str:
                raise RuntimeError("headers exploded")

        class Response:
            headers = Headers()

        return Response()


HOSTILE = [StatusRaises, StrRaises, GetattrRaises, ResponseRaises, BodyRaises]


@pytest.fixture(autouse=True)
def _fresh_fault_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_internal, "_reported", set())


@pytest.fixture(params=[False, True], ids=["capture-off", "capture-on"])
def tele(signals: Signals, request: pytest.FixtureRequest) -> Iterator[Signals]:
    # With capture on, the exception's text is read for the status description too.
    capture = ContentCapture(span=request.param, event=request.param)
    set_default_telemetry(**signals.providers, settings=Settings(capture=capture))
    yield signals
    set_default_telemetry()


def _expected_error_type(cls: type[Exception]) -> str:
    return f"{cls.__module__.partition('.')[0]}.{cls.__qualname__}"


@pytest.mark.parametrize("cls", HOSTILE)
def test_the_default_classifier_never_raises(cls: type[Exception]) -> None:
    assert default_classifier(cls()).category in set(ErrorCategory)


@pytest.mark.parametrize("cls", HOSTILE)
def test_a_tool_under_a_policy_raises_its_own_exception(
    tele: Signals, caplog: pytest.LogCaptureFixture, cls: type[Exception]
) -> None:
    raised: list[Exception] = []

    def broken(city: str) -> str:
        error = cls()
        raised.append(error)
        raise error

    policy = Policy(retry=NO_WAIT, breaker=CircuitBreaker(failure_threshold=100))
    weather = tool(name=f"weather_{cls.__name__}", policy=policy)(broken)
    with caplog.at_level(logging.DEBUG, logger="agentwatch"):
        for _ in range(2):
            with pytest.raises(cls) as info:
                weather("Paris")
            assert info.value is raised[-1]
    # Treated as unknown: not retried, one attempt per call.
    assert len(raised) == 2
    spans = tele.finished(f"execute_tool weather_{cls.__name__}")
    assert [dict(s.attributes or {}).get("error.type") for s in spans] == [_expected_error_type(cls)] * 2
    # Reported as agentwatch's fault at most once per site (later ones at DEBUG).
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "agentwatch" and r.levelno == logging.WARNING
    ]
    assert len(set(warnings)) == len(warnings)


@pytest.mark.parametrize("cls", HOSTILE)
def test_an_optional_tool_degrades_instead_of_raising_agentwatchs_error(
    tele: Signals, cls: type[Exception]
) -> None:
    def broken() -> str:
        raise cls()

    lookup = tool(name=f"lookup_{cls.__name__}", policy=Policy(critical=False))(broken)
    result = lookup()
    assert isinstance(result, ToolUnavailable) and result.reason == "unknown"
    (span,) = tele.finished(f"execute_tool lookup_{cls.__name__}")
    assert dict(span.attributes or {})["error.type"] == _expected_error_type(cls)


@pytest.mark.anyio
@pytest.mark.parametrize("cls", HOSTILE)
async def test_async_tools_too(tele: Signals, cls: type[Exception]) -> None:
    raised: list[Exception] = []

    async def broken() -> str:
        await asyncio.sleep(0)
        raised.append(cls())
        raise raised[-1]

    fetch = tool(name=f"fetch_{cls.__name__}", policy=Policy(retry=NO_WAIT))(broken)
    with pytest.raises(cls) as info:
        await fetch()
    assert info.value is raised[0] and len(raised) == 1
