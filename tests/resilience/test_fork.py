"""A forked child inherits no thread state of its parent's (issue 11, item 2).

``os.fork()`` keeps only the forking thread: the idle workers of the attempt-timeout pool, the
bulkhead slots and the half-open probe held by other threads, and any lock another thread held
would otherwise be inherited as they were, and a child's first timed tool call would wait out its
whole deadline, then every call fail with ``BulkheadFullError``. Tested with a plain fork,
``multiprocessing``'s fork start method, and gunicorn, a real prefork server, over HTTP.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentwatch
from agentwatch import Bulkhead, CircuitBreaker, Policy
from agentwatch.resilience import circuit

# Python 3.12+ warns about fork() in a process with threads (pytest's own, agentwatch's workers):
# that hazard is what these tests show agentwatch handles, so the warning is expected here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    pytest.mark.timeout(120),
]

CHILD_DEADLINE = 20.0  # far beyond what the calls take: a child past it is stuck (a held lock)


def _in_child(work: Callable[[], object]) -> Any:
    """Fork; run ``work`` in the child and return its result (or its exception's class name)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        os.close(read)
        try:
            try:
                payload: object = {"result": work()}
            except BaseException as exc:
                payload = {"error": type(exc).__name__}
            os.write(write, json.dumps(payload).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        ready, _, _ = select.select([read], [], [], CHILD_DEADLINE)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(
                f"the forked child did not finish within {CHILD_DEADLINE} s (a lock it inherited held?)"
            )
        data = b""
        while chunk := os.read(read, 65536):
            data += chunk
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return json.loads(data)


def _calls(tool: Callable[[str], str], n: int = 3) -> Callable[[], list[str]]:
    def run() -> list[str]:
        results = []
        for _ in range(n):
            try:
                results.append(tool("x"))
            except Exception as exc:
                results.append(type(exc).__name__)
        return results

    return run


def test_a_timed_tool_after_fork_runs_at_once_in_the_child() -> None:
    @agentwatch.tool(name="timed", policy=Policy(timeout=5.0, bulkhead=Bulkhead(max_concurrent=1)))
    def timed(key: str) -> str:
        return key.upper()

    assert timed("warm") == "WARM"  # a pool worker ran it and now waits for the next attempt
    assert _in_child(_calls(timed)) == {"result": ["X", "X", "X"]}
    assert timed("parent") == "PARENT"  # the parent's pool is untouched


@pytest.fixture
def blocked() -> Iterator[threading.Event]:
    release = threading.Event()
    yield release
    release.set()


def _run_in_thread(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


def test_slots_and_probes_held_by_other_threads_are_free_in_the_child(blocked: threading.Event) -> None:
    entered = threading.Event()

    def work(key: str) -> str:
        if key == "hold":
            entered.set()
            blocked.wait(30)
        return key.upper()

    one_at_a_time = agentwatch.tool(
        name="one_at_a_time", policy=Policy(timeout=None, bulkhead=Bulkhead(max_concurrent=1))
    )(work)
    _run_in_thread(lambda: one_at_a_time("hold"))
    assert entered.wait(10)
    # In the parent the slot is taken; in the child its holder does not exist.
    with pytest.raises(agentwatch.BulkheadFullError):
        one_at_a_time("x")
    assert _in_child(_calls(one_at_a_time)) == {"result": ["X", "X", "X"]}


def test_a_half_open_circuit_whose_probe_runs_in_another_thread_admits_the_child(
    blocked: threading.Event,
) -> None:
    entered = threading.Event()
    failing = [True]

    def work(key: str) -> str:
        if failing[0]:
            raise ConnectionError("down")
        if key == "hold":
            entered.set()
            blocked.wait(30)
        return key.upper()

    breaker = CircuitBreaker(failure_threshold=1, break_duration=0.05)
    probed = agentwatch.tool(name="probed", policy=Policy(timeout=None, breaker=breaker))(work)
    with pytest.raises(ConnectionError):
        probed("x")
    failing[0] = False
    time.sleep(0.1)
    _run_in_thread(lambda: probed("hold"))  # the probe, held in its thread
    assert entered.wait(10)
    with pytest.raises(agentwatch.CircuitOpenError):
        probed("x")
    # The child's first call is its probe; it closes the circuit.
    assert _in_child(_calls(probed)) == {"result": ["X", "X", "X"]}


def test_a_lock_another_thread_holds_at_fork_is_free_in_the_child(blocked: threading.Event) -> None:
    guarded = agentwatch.tool(name="guarded", policy=Policy(timeout=None, breaker=CircuitBreaker()))(
        str.upper
    )
    assert guarded("warm") == "WARM"
    held = threading.Event()
    live = circuit("guarded")
    assert live is not None

    def hold() -> None:
        with live._lock:  # another thread inside the breaker at the moment of fork()
            held.set()
            blocked.wait(30)

    _run_in_thread(hold)
    assert held.wait(10)
    assert _in_child(_calls(guarded)) == {"result": ["X", "X", "X"]}


# -- multiprocessing with the fork start method ------------------------------------------------------


@agentwatch.tool(name="pooled", policy=Policy(timeout=5.0, bulkhead=Bulkhead(max_concurrent=1)))
def pooled(key: str) -> str:
    return key.upper()


def _pool_task(index: int) -> str:
    return f"{pooled(str(index))} {os.getpid()}"


def test_multiprocessing_fork_workers_run_timed_tools() -> None:
    assert pooled("warm") == "WARM"
    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.map_async(_pool_task, range(6), chunksize=1).get(timeout=60)
    assert [r.split()[0] for r in results] == [str(i) for i in range(6)]
    assert all(int(r.split()[1]) != os.getpid() for r in results)


# -- gunicorn, a prefork server ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read().decode()


@pytest.mark.slow
def test_gunicorn_prefork_workers_run_timed_tools(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--preload",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{port}",
                "--chdir",
                str(Path(__file__).parent),
                "--timeout",
                "60",
                "_fork_app:app",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent), "FORK_APP_TIMEOUT": "5"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        responses = [_get(f"http://127.0.0.1:{port}/") for _ in range(8)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert [(status, body.split()[0]) for status, body in responses] == [(200, "X")] * 8, log.read_text()
    # Served by forked workers, not by the master that ran the warm-up call.
    assert server.pid not in {int(body.split()[1]) for _, body in responses}
