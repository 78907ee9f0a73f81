"""The fake LLM's wire-format seam: a toy format, registered here and not in the package, driven over HTTP.

The toy provider puts the model in the URL (``/toy/v1/models/{model}:say``, ``:say-stream``,
``:embed``), frames its streams in binary (a 4-byte big-endian length, then JSON), has its own error
envelope and error header, and claims unknown paths by its ``x-toy-key`` header. Everything but the
rendering (routing, the script queue, the raw replies and every fault) is the server's own.
"""

from __future__ import annotations

import ast
import http.client
import json
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from agentwatch._fakellm import (
    WIRE_FORMATS,
    Body,
    CompletionSpec,
    Context,
    EmbeddingsSpec,
    ErrorSpec,
    Event,
    FakeLLMServer,
    RecordedRequest,
    Reply,
    Route,
    Stream,
    WireFormat,
)
from agentwatch._fakellm._render import error_message, fake_vector, prepare_calls, split_text

_PATH = re.compile(r"^/toy/v1/models/(?P<model>[^/:]+):(?P<op>say|say-stream|embed)$")
STREAM_TYPE = "application/x-toy-frames"


def encode_frames(events: list[Event]) -> list[bytes]:
    frames = []
    for event in events:
        payload = json.dumps({"type": event.name, **event.data}).encode()
        frames.append(struct.pack(">I", len(payload)) + payload)
    return frames


def decode_frames(raw: bytes) -> list[dict[str, Any]]:
    events, offset = [], 0
    while offset < len(raw):
        (size,) = struct.unpack_from(">I", raw, offset)
        events.append(json.loads(raw[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    return events


class ToyFormat(WireFormat):
    name = "toy"
    request_id_header = "x-toy-request"

    def route(self, request: RecordedRequest) -> Route | None:
        match = _PATH.match(request.path)
        if match is None:
            return None
        op = match.group("op")
        return Route(
            provider="toy",
            endpoint=op if request.method == "POST" else None,
            answers="embeddings" if op == "embed" else "completion",
            model=match.group("model"),
            stream=op == "say-stream",
        )

    def claims(self, request: RecordedRequest) -> bool:
        return "x-toy-key" in request.headers

    def error(self, spec: ErrorSpec, request: RecordedRequest, ctx: Context) -> Body:
        headers = (("x-toy-error", spec.error_type or "ToyError"),)
        return Body(
            spec.status, {"oops": {"status": spec.status, "why": error_message(spec)}}, headers=headers
        )

    def completion(self, spec: CompletionSpec, request: RecordedRequest, ctx: Context) -> Body | Stream:
        calls = prepare_calls(spec, ctx.ids, "toy_")
        model = spec.model or request.model
        if not request.stream:
            said = {
                "model": model,
                "said": spec.content,
                "calls": [[c.id, c.name, c.arguments] for c in calls],
            }
            return Body(200, said)
        events = [Event("start", {"model": model})]
        events += [
            Event("text", {"piece": p}, content=True) for p in split_text(spec.content or "", spec.chunks)
        ]
        for call in calls:
            events.append(Event("call", {"id": call.id, "name": call.name}))
            events += [Event("args", {"piece": p}, content=True) for p in call.pieces]
        events.append(Event("end", {"reason": spec.finish_reason}, terminal=True))
        return Stream(events, [Event("error", {"why": "toy overloaded"})], encode_frames, STREAM_TYPE)

    def embeddings(self, spec: EmbeddingsSpec, request: RecordedRequest, ctx: Context) -> Body:
        texts = request.json["texts"]
        return Body(200, {"vectors": [fake_vector(t, spec.dimensions) for t in texts]})


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(wire_formats=(*WIRE_FORMATS, ToyFormat())) as srv:
        yield srv


class Response:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    server: FakeLLMServer,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    timeout: float = 5,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=json.dumps(body if body is not None else {}), headers=headers or {})
        return Response(conn.getresponse())
    finally:
        conn.close()


def test_text_reply_in_the_toy_format_with_the_model_from_the_url(server: FakeLLMServer) -> None:
    server.enqueue(Reply.tool_calls([("get_weather", {"city": "Paris"})], content="Looking."))
    response = call(server, "/toy/v1/models/toy-large:say", {"q": "weather?"})
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-toy-request"] == "req_fake1"
    assert response.json() == {
        "model": "toy-large",
        "said": "Looking.",
        "calls": [["toy_1", "get_weather", '{"city":"Paris"}']],
    }
    (request,) = server.requests
    assert (request.provider, request.endpoint, request.model, request.stream) == (
        "toy",
        "say",
        "toy-large",
        False,
    )
    assert server.errors == []


def test_stream_in_binary_frames_decided_by_the_url(server: FakeLLMServer) -> None:
    server.enqueue(Reply.text("one two three", chunk_delay=0.05))
    started = time.monotonic()
    response = call(server, "/toy/v1/models/toy-small:say-stream")
    assert time.monotonic() - started >= 0.2  # five frames, four delays: the server's own chunk_delay
    assert response.headers["content-type"] == STREAM_TYPE
    assert response.headers["transfer-encoding"] == "chunked"
    assert decode_frames(response.body) == [
        {"type": "start", "model": "toy-small"},
        {"type": "text", "piece": "one "},
        {"type": "text", "piece": "two "},
        {"type": "text", "piece": "three"},
        {"type": "end", "reason": "stop"},
    ]
    assert server.requests[0].stream is True


def test_error_after_chunks_sends_the_formats_error_event(server: FakeLLMServer) -> None:
    server.enqueue(Reply.tool_calls([("f", {"a": "long enough to be sliced"})], error_after_chunks=2))
    events = decode_frames(call(server, "/toy/v1/models/m:say-stream").body)
    assert [e["type"] for e in events] == ["start", "call", "args", "args", "error"]
    assert events[-1] == {"type": "error", "why": "toy overloaded"}


def test_disconnect_after_chunks_cuts_the_stream(server: FakeLLMServer) -> None:
    server.enqueue(Reply.text("one two three", disconnect_after_chunks=1))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", "/toy/v1/models/m:say-stream", body="{}")
        response = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as cut:
            response.read()
    finally:
        conn.close()
    assert decode_frames(cut.value.partial) == [
        {"type": "start", "model": "m"},
        {"type": "text", "piece": "one "},
    ]


def test_error_reply_in_the_toy_envelope(server: FakeLLMServer) -> None:
    server.enqueue(
        Reply.error(429, error_type="Throttled", headers={"retry-after": "1"}),
        Reply.error(500, message="boom", headers={"x-toy-error": "Overridden"}),
    )
    throttled = call(server, "/toy/v1/models/m:say")
    assert throttled.status == 429
    assert throttled.json() == {"oops": {"status": 429, "why": "Too Many Requests (fake LLM, HTTP 429)"}}
    assert (throttled.headers["x-toy-error"], throttled.headers["retry-after"]) == ("Throttled", "1")
    failed = call(server, "/toy/v1/models/m:say-stream")
    assert failed.status == 500
    assert failed.json() == {"oops": {"status": 500, "why": "boom"}}
    assert failed.headers["x-toy-error"] == "Overridden"  # the script's header wins over the format's


def test_unknown_paths_and_methods_get_the_claiming_formats_404_and_keep_the_script(
    server: FakeLLMServer,
) -> None:
    server.enqueue(Reply.text("kept"))
    claimed = call(server, "/toy/v2/nothing", headers={"x-toy-key": "k"})
    assert claimed.status == 404 and claimed.json()["oops"]["status"] == 404
    wrong_method = call(server, "/toy/v1/models/m:say", method="PUT")
    assert wrong_method.status == 404 and "oops" in wrong_method.json()
    unclaimed = call(server, "/toy/v2/nothing")
    assert unclaimed.status == 404 and set(unclaimed.json()["error"]) == {"message", "type", "param", "code"}
    assert [(r.provider, r.endpoint) for r in server.requests] == [
        ("toy", None),
        ("toy", None),
        ("openai", None),
    ]
    assert server.pending == 1
    assert call(server, "/toy/v1/models/m:say").json()["said"] == "kept"


def test_embeddings_route_and_the_default_responder(server: FakeLLMServer) -> None:
    embedded = call(server, "/toy/v1/models/toy-embed:embed", {"texts": ["a", "b"]})
    assert embedded.json() == {"vectors": [fake_vector("a", 8), fake_vector("b", 8)]}
    said = call(server, "/toy/v1/models/toy-large:say")
    assert said.json()["said"] == "Hello from fake LLM (toy-large)"  # the model read from the URL
    server.enqueue(Reply.text("wrong kind"))
    refused = call(server, "/toy/v1/models/toy-embed:embed", {"texts": ["a"]})
    assert refused.status == 500 and "oops" in refused.json()
    assert len(server.errors) == 1 and "cannot answer a 'embed' request" in server.errors[0]


def test_generic_faults_and_raw_replies_work_for_the_toy_format(server: FakeLLMServer) -> None:
    frames = [struct.pack(">I", 2) + b"{}", b"\x00\x00\x00\x02{}"]
    server.enqueue(
        Reply.delay(0.2, Reply.text("late")),
        Reply.malformed(),
        Reply.frames(frames, content_type=STREAM_TYPE, headers={"x-extra": "1"}),
        Reply.hang(5),
        Reply.reset(),
    )
    started = time.monotonic()
    assert call(server, "/toy/v1/models/m:say").json()["said"] == "late"
    assert time.monotonic() - started >= 0.2
    malformed = call(server, "/toy/v1/models/m:say")
    with pytest.raises(ValueError):
        malformed.json()
    raw = call(server, "/toy/v1/models/m:say-stream")
    assert raw.body == b"".join(frames) and raw.headers["content-type"] == STREAM_TYPE
    assert raw.headers["x-extra"] == "1" and raw.headers["x-toy-request"] == "req_fake3"
    with pytest.raises(TimeoutError):
        call(server, "/toy/v1/models/m:say", timeout=0.3)
    with pytest.raises(ConnectionError):
        call(server, "/toy/v1/models/m:say")
    assert server.errors == []


def test_the_registry_is_untouched() -> None:
    assert not any(isinstance(f, ToyFormat) for f in WIRE_FORMATS)
    with FakeLLMServer() as plain:
        response = call(plain, "/toy/v1/models/m:say")
    assert response.status == 404 and "error" in response.json()


def test_a_request_built_by_hand_is_routed_against_the_registered_formats() -> None:
    request = RecordedRequest("POST", "/openai/deployments/dep-1/chat/completions", {}, {}, b"", None)
    assert (request.provider, request.endpoint, request.deployment, request.model) == (
        "openai",
        "chat",
        "dep-1",
        "dep-1",
    )
    with pytest.raises(ValueError, match="at least one"):
        FakeLLMServer(wire_formats=())


def test_the_package_imports_no_sdk() -> None:
    # The CLI imports it: it must stay stdlib-only (openai/anthropic/httpx are installed in this venv).
    code = "import sys, agentwatch._fakellm; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not {"openai", "anthropic", "httpx", "httpx2"} & set(ast.literal_eval(loaded))
