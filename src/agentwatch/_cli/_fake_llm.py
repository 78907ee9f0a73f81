"""``agentwatch fake-llm``: the fake OpenAI- and Anthropic-compatible server of the tests, on a port.

It lets the zero-code and in-code journeys run offline with the real SDKs: point
``OPENAI_BASE_URL`` (or ``ANTHROPIC_BASE_URL``) at it. It answers like a small tool-using model:
when a request offers tools and the conversation holds no tool result yet, it calls every offered
tool once (arguments made up from each tool's JSON schema); otherwise it answers with text. Token
usage is reported, so cost and token metrics fill in; ``--latency`` and ``--fault-rate`` make
calls slow or failing (HTTP 429 with ``retry-after-ms``, or 503) to see the policies at work.

The server itself (``agentwatch._fakellm``) binds an ephemeral port on 127.0.0.1; a small TCP
relay serves it on the port asked for, so the server's code is the very one the tests use.
"""

from __future__ import annotations

import argparse
import random
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from agentwatch._cli._common import fraction, integer

if TYPE_CHECKING:
    from agentwatch._fakellm import RecordedRequest, Reply

__all__ = ["AgentResponder", "Relay", "add_parser", "example_arguments", "run"]

DEFAULT_PORT = 8000
_POLL = 0.2
_CHUNK = 65536


def add_parser(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "fake-llm",
        help="serve a fake OpenAI/Anthropic-compatible LLM on a local port (offline tries)",
        description=(
            "Serve the fake LLM of agentwatch's tests on HOST:PORT, for trying agentwatch with the real "
            "openai and anthropic SDKs without a network or an account: set OPENAI_BASE_URL="
            "http://HOST:PORT/v1 (or ANTHROPIC_BASE_URL=http://HOST:PORT) and any API key. It serves "
            "chat completions, responses, embeddings and messages, streamed or not. A request that "
            "offers tools, in a conversation with no tool result yet, gets a call of every offered tool "
            "(arguments made up from the tools' JSON schemas); every other request gets a short text "
            "answer. Ctrl-C stops it."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=integer,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"0 picks a free port (default: {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each answer (default: 0)",
    )
    parser.add_argument(
        "--fault-rate",
        type=fraction,
        default=0.0,
        metavar="RATE",
        help="share of requests answered with HTTP 429 or 503, 0 to 1 (default: 0)",
    )
    parser.add_argument("--seed", type=integer, default=None, metavar="N", help="seed of the faults")
    parser.add_argument("--quiet", action="store_true", help="do not log each request on stderr")
    parser.set_defaults(run=run, command_parser=parser)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, got {text!r}") from None
    if not 0 <= value <= 600:
        raise argparse.ArgumentTypeError(f"must be a number of seconds between 0 and 600, got {text!r}")
    return value


# ------------------------------------------------------------------------------------------------
# Answers
# ------------------------------------------------------------------------------------------------


def example_arguments(schema: object) -> dict[str, Any]:
    """Arguments that satisfy a tool's JSON schema: its required properties, each with its default,
    first enum value, or a plain value of its type."""
    if not isinstance(schema, Mapping):
        return {}
    properties = schema.get("properties")
    required = schema.get("required")
    if not isinstance(properties, Mapping) or not isinstance(required, list):
        return {}
    return {name: _example(properties.get(name), name) for name in required if isinstance(name, str)}


def _example(schema: object, name: str) -> Any:
    if not isinstance(schema, Mapping):
        return f"example {name}"
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    minimum = schema.get("minimum")
    if kind == "integer":
        return int(minimum) if isinstance(minimum, (int, float)) else 1
    if kind == "number":
        return float(minimum) if isinstance(minimum, (int, float)) else 1.0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "array":
        items = schema.get("items")
        count = schema.get("minItems")
        return [_example(items, name) for _ in range(count if isinstance(count, int) and count > 0 else 1)]
    if kind == "object":
        return example_arguments(schema)
    return f"example {name}"


def _offered_tools(body: Mapping[str, Any]) -> list[tuple[str, object]]:
    """(name, JSON schema) of the function tools a request offers, in any of the three APIs."""
    if body.get("tool_choice") == "none":
        return []
    tools: list[tuple[str, object]] = []
    for tool in body.get("tools") or []:
        if not isinstance(tool, Mapping):
            continue
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):  # chat completions
            tools.append((function["name"], function.get("parameters")))
        elif isinstance(tool.get("name"), str) and tool.get("type", "function") in ("function", "custom"):
            # Responses (parameters) or Anthropic messages (input_schema, no type for client tools)
            tools.append((tool["name"], tool.get("parameters", tool.get("input_schema"))))
    return tools


def _has_tool_result(body: Mapping[str, Any]) -> bool:
    items = body.get("messages")
    if not isinstance(items, list):
        items = body.get("input")  # Responses
    if not isinstance(items, list):
        return False
    for item in items:
        if not isinstance(item, Mapping):
            continue
        if item.get("role") == "tool" or item.get("type") == "function_call_output":
            return True
        content = item.get("content")
        if isinstance(content, list) and any(
            isinstance(block, Mapping) and block.get("type") == "tool_result" for block in content
        ):
            return True
    return False


class AgentResponder:
    """The ``responder`` of a ``FakeLLMServer``: tool calls first, then a text answer."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        seed: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.latency = latency
        self.fault_rate = fault_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._log = log

    def __call__(self, request: RecordedRequest) -> Reply:
        from agentwatch._fakellm import Reply, default_responder

        body = request.json if isinstance(request.json, Mapping) else {}
        with self._lock:
            fault = self._random.random() < self.fault_rate
            status = self._random.choice((429, 503))
        if request.endpoint in (None, "embeddings"):
            reply, what = default_responder(request), "embeddings" if request.endpoint else "404"
        elif fault and status == 429:
            reply = Reply.error(429, message="Rate limit reached (fake).", headers={"retry-after-ms": "200"})
            what = "429 rate limit (injected fault)"
        elif fault:
            reply, what = Reply.error(503, message="The server is overloaded (fake)."), "503 (injected fault)"
        else:
            input_tokens = 20 + len(request.body) // 4  # about four bytes per token
            answered = _has_tool_result(body)
            tools = [] if answered else _offered_tools(body)
            if tools:
                calls = [(name, example_arguments(schema)) for name, schema in tools]
                reply = Reply.tool_calls(calls, input_tokens=input_tokens, output_tokens=12 * len(calls))
                what = "tool calls: " + ", ".join(name for name, _ in calls)
            else:
                text = (
                    "Here is the answer, based on the tool results."
                    if answered
                    else f"Hello from agentwatch's fake LLM ({request.model or 'no model given'})."
                )
                reply = Reply.text(text, input_tokens=input_tokens, output_tokens=len(text.split()))
                what = "text"
        if self._log is not None:
            stream = " (stream)" if request.stream else ""
            self._log(f"{request.method} {request.path} {request.model or '-'}{stream} -> {what}")
        return Reply.delay(self.latency, reply) if self.latency else reply


# ------------------------------------------------------------------------------------------------
# The relay
# ------------------------------------------------------------------------------------------------


class _Pair:
    """One relayed connection: both sockets close when both directions are done."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self._open = 2
        self._lock = threading.Lock()

    def done(self) -> bool:
        with self._lock:
            self._open -= 1
            return self._open == 0


class Relay:
    """Accepts on ``(host, port)`` and pipes every connection to ``target``, byte for byte."""

    def __init__(self, host: str, port: int, target: tuple[str, int]) -> None:
        self._listener = socket.create_server((host, port))
        self.address: tuple[str, int] = self._listener.getsockname()[:2]
        self._target = target
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="fake-llm-relay", daemon=True)

    def start(self) -> Relay:
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([self._listener], [], [], _POLL)
            if not readable:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = _Pair(client, upstream)
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    upstream.close()
                    return
                self._pairs.add(pair)
                self._threads = [t for t in self._threads if t.is_alive()]
                for source, sink in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(target=self._pump, args=(pair, source, sink), daemon=True)
                    self._threads.append(thread)
                    thread.start()

    def _pump(self, pair: _Pair, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if pair.done():
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair.sockets:
                sock.close()

    def stop(self, timeout: float = 2.0) -> None:
        self._stopping.set()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        self._listener.close()
        with self._lock:
            pairs, threads = list(self._pairs), list(self._threads)
        for pair in pairs:
            for sock in pair.sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv()
                except OSError:
                    pass
        for thread in threads:
            thread.join(timeout)


# ------------------------------------------------------------------------------------------------
# Command
# ------------------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from agentwatch._fakellm import FakeLLMServer

    if not 0 <= args.port <= 65535:
        parser.error(f"argument --port: must be between 0 and 65535, got {args.port}")

    def log(line: str) -> None:
        print(f"fake-llm: {line}", file=sys.stderr, flush=True)

    responder = AgentResponder(
        latency=args.latency, fault_rate=args.fault_rate, seed=args.seed, log=None if args.quiet else log
    )
    server = FakeLLMServer(responder=responder).start()
    try:
        relay = Relay(args.host, args.port, ("127.0.0.1", server.port)).start()
    except OSError as exc:
        server.stop()
        print(
            f"agentwatch fake-llm: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
            + (" (choose another --port)" if getattr(exc, "errno", None) == 98 else ""),
            file=sys.stderr,
        )
        return 1
    host, port = relay.address
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    print(
        "\n".join(
            [
                f"agentwatch fake-llm: serving the OpenAI and Anthropic APIs on {url} (Ctrl-C stops)",
                f"  export OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY=sk-fake",
                f"  export ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=sk-ant-fake",
            ]
        ),
        flush=True,
    )
    if host not in ("127.0.0.1", "::1", "localhost"):
        log(f"listening on {host}: anyone who can reach this address can use it")
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        relay.stop()
        server.stop()
    print(f"agentwatch fake-llm: stopped after {len(server.requests)} requests", flush=True)
    return 0
