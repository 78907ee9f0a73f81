"""The transport: a loopback HTTP/1.1 server, the script queue and :class:`FakeLLMServer`.

Nothing here knows a provider: each request is routed to a wire format (``_wire.route_request``)
and the reply is turned into a plan (``_wire.plan_reply``) that this module executes: a body, a
stream of byte frames (one HTTP chunk each, ``chunk_delay`` apart), a hang, a reset or a delay.
"""

from __future__ import annotations

import json
import select
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agentwatch._fakellm._formats import WIRE_FORMATS
from agentwatch._fakellm._render import Ids, status_phrase
from agentwatch._fakellm._replies import ErrorSpec, HangSpec, Reply
from agentwatch._fakellm._wire import (
    Context,
    Plan,
    RecordedRequest,
    SendBody,
    SendStream,
    Wait,
    WireFormat,
    error_plan,
    plan_reply,
    route_request,
)

__all__ = ["FakeLLMServer", "Responder", "default_responder"]

_HOST = "127.0.0.1"
# How often a hanging reply re-checks for a stopping server or a vanished client; bounds stop() latency.
_POLL_INTERVAL = 0.05

Responder = Callable[[RecordedRequest], Reply]


def default_responder(request: RecordedRequest) -> Reply:
    """What the server answers once its script is empty: a short text naming the model, or embeddings."""
    route = request.routed()[1]
    if route.endpoint is None:
        return Reply.error(404, message=f"Invalid URL ({request.method} {request.path})")
    if route.answers == "embeddings":
        return Reply.embeddings()
    return Reply.text(f"Hello from fake LLM ({request.model or 'unknown model'})")


# --------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------


def _is_disconnect(exc: BaseException | None) -> bool:
    # Clients abandon connections all the time (timeouts, early stream close); that is not a fault.
    return isinstance(exc, OSError)


class _HTTPServer(socketserver.TCPServer):
    """A threading TCP server that can account for, and forcibly end, every connection it owns.

    ``socketserver.ThreadingMixIn`` either joins handler threads without a timeout or forgets them,
    and cannot interrupt a handler blocked reading the next keep-alive request; ``stop()`` needs to
    do both to return promptly and leave no sockets open.
    """

    allow_reuse_address = False
    request_queue_size = 128

    def __init__(self, owner: FakeLLMServer) -> None:
        self.owner = owner
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._closing = False
        super().__init__((_HOST, 0), _Handler)
        # serve_forever() notices shutdown() only at its next poll; a socketpair wakes the accept
        # loop at once, so stop() costs no poll interval (which adds up over many servers).
        self._wake_reader, self._wake_writer = socket.socketpair()

    def serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._closing:
                for key, _ in selector.select():
                    if key.fileobj is self.socket and not self._closing:
                        self._accept_one()

    def _accept_one(self) -> None:
        try:
            request, client_address = self.get_request()
        except OSError:
            return  # the client gave up before we accepted
        try:
            self.process_request(request, client_address)
        except Exception:  # noqa: BLE001 - e.g. no thread could be started; drop this connection only
            self.handle_error(request, client_address)
            self.shutdown_request(request)

    def stop_serving(self) -> None:
        self._closing = True
        try:
            self._wake_writer.send(b"\0")
        except OSError:
            pass

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        assert isinstance(request, socket.socket)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="fakellm-connection",
            daemon=True,
        )
        with self._lock:
            self._connections.add(request)
            self._threads.add(thread)
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a handler fault must never reach stderr or kill the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.discard(request)
                self._threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not _is_disconnect(exc):
            self.owner._record_error("connection handler failed:\n" + traceback.format_exc())

    def close_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                # shutdown() rather than close(): it wakes the owning thread out of recv() and lets
                # that thread close its own socket, so no file descriptor is closed twice.
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def join_threads(self, deadline: float) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    server_version = "agentwatch-fakellm/1"
    sys_version = ""
    # Drop idle keep-alive connections eventually even if a client leaks them.
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        try:
            # Without this, Nagle's algorithm can hold back small SSE events and skew chunk timing.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, if any, end with an empty line.
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        split = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        request = RecordedRequest(
            method=self.command,
            path=split.path,
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers=headers,
            body=body,
            json=parsed,
            received_at=time.monotonic(),
        )
        wire_format, route = route_request(request, owner.wire_formats)
        request = replace(request, route=route, wire_format=wire_format)
        reply = owner._accept(request)
        self._execute(reply, request, owner._next_request_id())

    def _execute(self, reply: Reply, request: RecordedRequest, request_id: str) -> None:
        owner = self.server.owner
        while True:
            context = Context(owner._ids, request_id)
            plan: Plan
            try:
                plan = plan_reply(reply, request, context)
            except Exception:  # noqa: BLE001 - a bad script becomes a 500 that the test can see
                owner._record_error(
                    f"rendering {reply!r} for {request.method} {request.path} failed:\n{traceback.format_exc()}"
                )
                message = "fake LLM failed to render the reply; see FakeLLMServer.errors"
                plan = error_plan(request, context, 500, message)
            if not isinstance(plan, Wait):
                break
            if owner._sleep(plan.seconds):
                self.close_connection = True
                return
            reply = plan.then
        try:
            if isinstance(plan, SendBody):
                self._send_body(plan)
            elif isinstance(plan, SendStream):
                self._send_stream(plan)
            elif isinstance(plan, HangSpec):
                self._hang(plan.seconds)
            else:
                self._reset()
        except (OSError, ValueError):
            # The client went away mid-reply (or we reset it); nothing more can be sent on this socket.
            self.close_connection = True

    def _start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.send_response(status, status_phrase(status))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")

    def _send_body(self, plan: SendBody) -> None:
        self._start(plan.status, plan.headers)
        self.send_header("Content-Length", str(len(plan.body)))
        self.end_headers()
        self.wfile.write(plan.body)

    def _send_stream(self, plan: SendStream) -> None:
        # Chunked encoding keeps the connection reusable after a stream and, since wfile is unbuffered,
        # each frame leaves in its own write: time to first chunk and chunk spacing are real.
        self._start(plan.status, plan.headers)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        owner = self.server.owner
        for index, frame in enumerate(plan.frames):
            if index and plan.chunk_delay and owner._sleep(plan.chunk_delay):
                self.close_connection = True
                return
            if frame:  # an empty chunk would end the body
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        if plan.disconnect:
            # No terminating chunk: the client sees the connection close mid-body.
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _hang(self, seconds: float) -> None:
        owner = self.server.owner
        deadline = time.monotonic() + seconds
        connection = self.connection
        self.close_connection = True
        while not owner._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Watch the socket as well as the clock: once the client times out and hangs up there is
            # no point holding a thread until `seconds` have passed.
            readable, _, _ = select.select([connection], [], [], min(remaining, _POLL_INTERVAL))
            if readable:
                if not connection.recv(1, socket.MSG_PEEK):
                    return
                # Pipelined bytes arrived, so EOF can no longer be seen by peeking; just wait it out.
                owner._sleep(remaining)
                return

    def _reset(self) -> None:
        connection = self.connection
        try:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("HH", 1, 0))
        self.close_connection = True
        # The buffered reader holds a reference that would defer the real close (and so the RST)
        # until the handler unwinds; release it so close() takes effect now.
        self.rfile.close()
        connection.close()


# --------------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------------


class FakeLLMServer:
    """A loopback HTTP server that answers LLM SDK calls (OpenAI, Anthropic...) from a script.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Requests are served on daemon
    threads; :meth:`stop` wakes hanging and delayed replies and closes every connection.
    ``wire_formats`` replaces the registered formats (``_formats.WIRE_FORMATS``), in routing order.
    """

    def __init__(
        self, responder: Responder | None = None, *, wire_formats: Sequence[WireFormat] | None = None
    ) -> None:
        self.responder: Responder = responder or default_responder
        # Routing order: the first format that routes a request answers it (see _formats.py).
        self.wire_formats: tuple[WireFormat, ...] = tuple(
            WIRE_FORMATS if wire_formats is None else wire_formats
        )
        if not self.wire_formats:
            raise ValueError("wire_formats must name at least one format")
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._ids = Ids()
        self._request_counter = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- lifecycle --

    def start(self) -> FakeLLMServer:
        with self._lock:
            if self._stopped:
                raise RuntimeError("a FakeLLMServer cannot be restarted; create a new one")
            if self._httpd is not None:
                return self
            self._httpd = _HTTPServer(self)
            self._thread = threading.Thread(
                target=self._httpd.serve,
                name=f"fakellm-{self._httpd.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 1.5) -> None:
        """Stop serving, end in-flight replies and close all sockets; returns within about ``timeout``."""
        with self._lock:
            httpd, thread = self._httpd, self._thread
            if httpd is None or self._stopped:
                self._stopped = True
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        httpd.stop_serving()
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        httpd.close_connections()
        httpd.join_threads(deadline)
        httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- script and records --

    def enqueue(self, *replies: Reply) -> None:
        """Append replies to the FIFO script; each request pops one."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(
                    f"enqueue() takes Reply objects (unpack lists with *), got {type(reply).__name__}"
                )
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet used."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        """Server-side faults (responder or rendering exceptions), with tracebacks; empty when all is well."""
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """Forget the script, the recorded requests and errors, and restart the id counters."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._errors.clear()
            self._request_counter = 0
        self._ids.reset()

    # -- used by the handler threads --

    def _accept(self, request: RecordedRequest) -> Reply:
        try:
            rejection = request.routed()[0].authenticate(request)
        except Exception:  # noqa: BLE001 - a faulty check becomes a visible 500, not a dead thread
            self._record_error(
                f"authenticating {request.method} {request.path} failed:\n{traceback.format_exc()}"
            )
            rejection = ErrorSpec(500, "fake LLM failed to check the credentials", None, None, ())
        with self._lock:
            self._requests.append(request)
            if rejection is not None:
                return Reply(rejection)
            if request.endpoint is None:
                # Unknown paths never consume the script: a stray probe must not shift every later reply.
                return Reply.error(404, message=f"Invalid URL ({request.method} {request.path})")
            if self._queue:
                return self._queue.popleft()
            responder = self.responder
        try:
            reply = responder(request)
            if not isinstance(reply, Reply):
                raise TypeError(f"responder returned {type(reply).__name__}, not Reply")
            return reply
        except Exception:  # noqa: BLE001 - a faulty responder becomes a visible 500, not a dead thread
            self._record_error(
                f"responder failed for {request.method} {request.path}:\n{traceback.format_exc()}"
            )
            return Reply.error(500, message="fake LLM responder failed; see FakeLLMServer.errors")

    def _next_request_id(self) -> str:
        with self._lock:
            self._request_counter += 1
            return f"req_fake{self._request_counter}"

    def _record_error(self, message: str) -> None:
        with self._lock:
            self._errors.append(message)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True means it is stopping."""
        return self._stopping.wait(seconds)
