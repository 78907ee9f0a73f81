"""The fake LLM server's Gemini REST wire format, over raw HTTP (the SDK-level tests are in
tests/instrumentation/test_google_genai*.py)."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from agentwatch._fakellm import FakeLLMServer, Reply

GEN = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
VERTEX = "/v1beta1/projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
KEY = {"x-goog-api-key": "AIzaTEST", "content-type": "application/json"}


def post(server: FakeLLMServer, path: str, body: Any = None, method: str = "POST") -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        payload = json.dumps(body if body is not None else {"contents": [{"parts": [{"text": "hi"}]}]})
        connection.request(method, path, body=payload if method == "POST" else None, headers=KEY)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("content-type") or ""
    finally:
        connection.close()


def events(raw: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(frame[len("data: ") :])
        for frame in raw.decode().split("\n\n")
        if frame.startswith("data: ")
    ]


@pytest.mark.parametrize(
    ("path", "provider", "endpoint", "stream"),
    [
        (GEN, "gemini", "generateContent", False),
        (STREAM, "gemini", "streamGenerateContent", True),
        (VERTEX, "vertex_ai", "generateContent", False),
        (
            "/v1/publishers/google/models/gemini-2.5-flash:streamGenerateContent",
            "vertex_ai",
            "streamGenerateContent",
            True,
        ),
        ("/v1beta/models/gemini-embedding-001:batchEmbedContents", "gemini", "batchEmbedContents", False),
        ("/v1beta/models/gemini-2.5-flash:countTokens", "gemini", None, False),
    ],
)
def test_routes(path: str, provider: str, endpoint: str | None, stream: bool) -> None:
    with FakeLLMServer() as server:
        server.enqueue(Reply.embeddings() if "Embed" in path else Reply.text("ok"))
        status, _, _ = post(server, path, {"requests": []} if "Embed" in path else None)
        (request,) = server.requests
        assert (request.provider, request.endpoint, request.stream, request.model) == (
            provider,
            endpoint,
            stream,
            path.split("/models/")[1].split(":")[0],
        )
        assert status == (404 if endpoint is None else 200)
        assert server.pending == (
            1 if endpoint is None else 0
        )  # an unserved method never consumes the script


def test_a_get_is_not_served_and_unknown_paths_answer_in_googles_envelope() -> None:
    with FakeLLMServer() as server:
        server.enqueue(Reply.text("kept"))
        status, body, _ = post(server, GEN, method="GET")
        assert status == 404
        status, body, _ = post(server, "/v1beta/files/abc")
        assert status == 404
        assert json.loads(body) == {
            "error": {"code": 404, "message": "Invalid URL (POST /v1beta/files/abc)", "status": "NOT_FOUND"}
        }
        assert server.pending == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "INVALID_ARGUMENT"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ],
)
def test_error_envelope(status: int, code: str) -> None:
    with FakeLLMServer() as server:
        server.enqueue(Reply.error(status, message="nope"))
        got, body, _ = post(server, GEN)
        assert (got, json.loads(body)) == (
            status,
            {"error": {"code": status, "message": "nope", "status": code}},
        )
        server.enqueue(Reply.error(400, code="FAILED_PRECONDITION"))
        assert json.loads(post(server, GEN)[1])["error"]["status"] == "FAILED_PRECONDITION"


def test_generate_content_usage_counts_thoughts_apart() -> None:
    with FakeLLMServer() as server:
        server.enqueue(
            Reply.text("hi", input_tokens=100, cached_tokens=40, output_tokens=30, reasoning_tokens=10)
        )
        body = json.loads(post(server, GEN)[1])
        assert body["candidates"] == [
            {"content": {"parts": [{"text": "hi"}], "role": "model"}, "index": 0, "finishReason": "STOP"}
        ]
        usage = body["usageMetadata"]
        assert (usage["promptTokenCount"], usage["cachedContentTokenCount"]) == (100, 40)
        assert (usage["candidatesTokenCount"], usage["thoughtsTokenCount"], usage["totalTokenCount"]) == (
            20,
            10,
            130,
        )


def test_function_calls_and_finish_reasons() -> None:
    with FakeLLMServer() as server:
        server.enqueue(
            Reply.tool_calls([("a", {"x": 1})]),
            Reply.text("cut", finish_reason="length"),
            Reply.text("no", finish_reason="content_filter"),
        )
        (candidate,) = json.loads(post(server, GEN)[1])["candidates"]
        assert candidate["content"]["parts"] == [{"functionCall": {"name": "a", "args": {"x": 1}}}]
        assert candidate["finishReason"] == "STOP"
        assert json.loads(post(server, GEN)[1])["candidates"][0]["finishReason"] == "MAX_TOKENS"
        assert json.loads(post(server, GEN)[1])["candidates"][0]["finishReason"] == "SAFETY"


def test_stream_and_its_in_band_error() -> None:
    with FakeLLMServer() as server:
        server.enqueue(Reply.text("a b c"), Reply.text("a b c", error_after_chunks=1))
        status, raw, content_type = post(server, STREAM)
        assert (status, content_type) == (200, "text/event-stream; charset=utf-8")
        chunks = events(raw)
        assert [c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks] == ["a ", "b ", "c", ""]
        assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, None, "STOP"]
        assert "candidatesTokenCount" in chunks[-1]["usageMetadata"]
        assert "candidatesTokenCount" not in chunks[0]["usageMetadata"]
        broken = events(post(server, STREAM)[1])
        assert broken[-1] == {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        }
        assert len(broken) == 2


def test_embeddings_in_each_shape() -> None:
    with FakeLLMServer() as server:
        batch = {"requests": [{"content": {"parts": [{"text": "a b"}]}, "outputDimensionality": 4}] * 2}
        body = json.loads(post(server, "/v1beta/models/e:batchEmbedContents", batch)[1])
        assert [len(e["values"]) for e in body["embeddings"]] == [4, 4]
        single = json.loads(
            post(server, "/v1beta/models/e:embedContent", {"content": {"parts": [{"text": "a b"}]}})[1]
        )
        assert (len(single["embedding"]["values"]), single["usageMetadata"]["promptTokenCount"]) == (8, 2)
        predict = {"instances": [{"content": "one two three"}], "parameters": {"outputDimensionality": 3}}
        vertex = json.loads(
            post(server, "/v1/projects/p/locations/l/publishers/google/models/e:predict", predict)[1]
        )
        (prediction,) = vertex["predictions"]
        assert len(prediction["embeddings"]["values"]) == 3
        assert prediction["embeddings"]["statistics"]["token_count"] == 3
