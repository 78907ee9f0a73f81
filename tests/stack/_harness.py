"""Start, wait for and stop the stack's native processes on 127.0.0.1, always bounded in time.

Every process gets its own log file (shown when a wait fails), its own process group (so a
teardown kill reaches children too) and is stopped with SIGTERM, then SIGKILL after a grace
period. Ports are fresh free loopback ports, never the stack's defaults, so a developer's running
``docker compose`` stack does not clash.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

LOOPBACK = "127.0.0.1"
T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(
    url: str, params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def http_json(
    url: str, params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, timeout: float = 5.0
) -> Any:
    status, body = http_get(url, params, timeout)
    if status != 200:
        raise AssertionError(f"GET {url} {params or ''} -> HTTP {status}: {body[:500]!r}")
    return json.loads(body)


def wait_until(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after ``timeout`` s.

    Exceptions raised by the predicate count as "not yet"; the last one is reported.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_error!r}" if last_error else ""
            extra = f"\n{on_timeout()}" if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies without tearing down."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class ManagedProcess:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **self.env}
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=self.cwd,
                start_new_session=True,  # own process group: stop() reaches any children
                preexec_fn=_die_with_parent,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"[{self.name}: cannot read {self.log_path}: {exc}]"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"----- last {lines} lines of {self.name} log ({self.log_path}) -----\n{tail}"

    def wait_http_ok(self, url: str, timeout: float) -> None:
        def ready() -> bool:
            if not self.alive():
                assert self.popen is not None
                raise ProcessExitedError(
                    f"{self.name} exited with {self.popen.returncode}\n{self.log_tail()}"
                )
            status, _ = http_get(url, timeout=2.0)
            return status == 200

        try:
            wait_until(ready, timeout=timeout, what=f"{self.name} at {url}", on_timeout=self.log_tail)
        except TimeoutError as exc:
            if isinstance(exc.__context__, ProcessExitedError):
                raise exc.__context__ from None
            raise

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` s; always reaps the child."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=grace)
        else:
            # The leader is gone; make sure nothing it started survives it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)


class ProcessExitedError(RuntimeError):
    pass


def run_bounded(
    argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a short command (validators) with a hard timeout; output is captured as text."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


# ----------------------------------------------------------------------------- socket inspection


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode_addr(hex_addr: str) -> tuple[str, int]:
    host_hex, port_hex = hex_addr.split(":")
    port = int(port_hex, 16)
    if len(host_hex) == 8:
        host = socket.inet_ntop(socket.AF_INET, bytes.fromhex(host_hex)[::-1])
    else:
        raw = bytes.fromhex(host_hex)
        # /proc/net/tcp6 stores four little-endian 32-bit words.
        host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return host, port


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(host, port) of every TCP socket in LISTEN state that process ``pid`` holds."""
    inodes = _socket_inodes(pid)
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # 0A = TCP_LISTEN
                    found.add(_decode_addr(parts[1]))
    return found
