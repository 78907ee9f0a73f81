"""A real Redis for the tests: Debian's ``redis-server`` on a free 127.0.0.1 port, in a temporary
directory, with no persistence; started by the fixture, stopped (and restartable on the same port,
for outage tests) by the test. A missing binary FAILS the test, naming ``scripts/setup-redis.sh``;
it never skips.

Reusable by any test module: ``redis_server`` (session-wide, flushed per test by ``redis_url``) and
``RedisServer`` itself for a private instance that a test may stop and start; ``silent_redis()``
for a hung Redis (a port that accepts connections and never answers).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack._harness import LOOPBACK, ManagedProcess, free_ports

__all__ = ["RedisServer", "private_redis", "redis_server", "redis_server_binary", "redis_url", "silent_redis"]

START_TIMEOUT = 10.0


def redis_server_binary() -> Path:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        pytest.fail(
            "redis-server is not installed: run scripts/setup-redis.sh (scripts/test.sh does) to "
            "install Debian's redis-server package",
            pytrace=False,
        )
    return Path(found)


class RedisServer:
    """One redis-server process; ``stop()`` then ``start()`` brings it back on the same port."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_ports(1)[0]
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            str(self.binary),
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._process = ManagedProcess("redis-server", argv, self.workdir / "redis.log").start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if not self._process.alive() or time.monotonic() > deadline:
                tail = self._process.log_tail()
                self.stop()
                raise AssertionError(f"redis-server did not start on {self.url}\n{tail}")
            time.sleep(0.02)
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def flush(self) -> None:
        with socket.create_connection((LOOPBACK, self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(16).startswith(b"+OK")


@contextlib.contextmanager
def private_redis() -> Iterator[RedisServer]:
    """A Redis of the caller's own (which it may stop and start), stopped at the end."""
    binary = redis_server_binary()
    with tempfile.TemporaryDirectory(prefix="agentwatch-redis-") as workdir:
        server = RedisServer(binary, Path(workdir)).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with private_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied for this test."""
    redis_server.flush()
    return redis_server.url


@contextlib.contextmanager
def silent_redis() -> Iterator[str]:
    """The URL of a port that accepts connections and never answers: a hung Redis, where only
    timeouts help. Its connections are held open until the block ends."""
    server = socket.create_server((LOOPBACK, 0), backlog=64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://{LOOPBACK}:{server.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()
