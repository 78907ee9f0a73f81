"""Real Bedrock Runtime responses (tests/fixtures/replay/bedrock, see SOURCES.md there), replayed
through boto3 bare and instrumented: the same results, one span, the attributes the response holds."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer

import agentwatch
from _bedrock import bedrock_client, converse_user, has_member
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import make_signals

FIXTURES = Path(__file__).parent.parent / "fixtures" / "replay" / "bedrock"
MANIFEST: dict[str, Any] = json.loads((FIXTURES / "manifest.json").read_text())

# What each response says, as span attributes (finish reasons, then usage with the cache reads
# added to the input, as semconv counts it, then what else the body names).
EXPECTED: dict[str, dict[str, Any]] = {
    "converse_tool_call.json": {"finish": ("tool_use",), "tokens": (415, 190)},
    "converse_tool_result.json": {"finish": ("end_turn",), "tokens": (553, 59)},
    "converse_claude.json": {"finish": ("end_turn",), "tokens": (37, 8)},
    "converse_cache_read.json": {"finish": ("max_tokens",), "tokens": (2705, 10), "cache": (2701, 0)},
    "converse_invalid_model_400.json": {"error": "botocore.ValidationException"},
    "converse_stream_tool_call.eventstream": {"finish": ("tool_use",), "tokens": (415, 202)},
    "converse_stream_claude.eventstream": {"finish": ("end_turn",), "tokens": (37, 8)},
    "converse_stream_cache_read.eventstream": {
        "finish": ("max_tokens",),
        "tokens": (2705, 10),
        "cache": (2701, 0),
    },
    "invoke_anthropic_tool_call.json": {
        "finish": ("tool_use",),
        "tokens": (392, 135),
        "id": "msg_bdrk_01Vcemt76oWJo739rm2hmaxn",
        "model": "claude-3-5-sonnet-20240620",
    },
    "invoke_llama.json": {"finish": ("length",), "tokens": (5, 10)},
    "invoke_nova.json": {"finish": ("max_tokens",), "tokens": (5, 10)},
    "invoke_nova_tool_call.json": {"finish": ("tool_use",), "tokens": (427, 162), "cache": (0, 0)},
    "invoke_stream_anthropic_tool_call.eventstream": {
        "finish": ("tool_use",),
        "tokens": (392, 134),
        "id": "msg_bdrk_01NGhpayLE52LwTzcggKudcq",
        "model": "claude-3-5-sonnet-20240620",
    },
    "invoke_stream_nova.eventstream": {"finish": ("max_tokens",), "tokens": (5, 10)},
    "invoke_stream_nova_tool_call.eventstream": {
        "finish": ("tool_use",),
        "tokens": (427, 156),
        "cache": (0, 0),
    },
}
TOOL_CALLS = {
    "converse_tool_call.json": 2,
    "converse_stream_tool_call.eventstream": 2,
    "invoke_anthropic_tool_call.json": 2,
    "invoke_nova_tool_call.json": 2,
    "invoke_stream_anthropic_tool_call.eventstream": 2,
    "invoke_stream_nova_tool_call.eventstream": 2,
}


def reply(name: str) -> Reply:
    entry = MANIFEST[name]
    headers = {k: v for k, v in entry["headers"].items() if k != "content-type"}
    raw = (FIXTURES / name).read_bytes()
    if name.endswith(".eventstream"):
        buffer = EventStreamBuffer()
        buffer.add_data(raw)
        frames = []
        offset = 0
        for message in buffer:  # one recorded message per HTTP chunk, bytes as recorded
            frames.append(raw[offset : offset + message.prelude.total_length])
            offset += message.prelude.total_length
        assert offset == len(raw)
        return Reply.frames(frames, content_type=entry["headers"]["content-type"], headers=headers)
    return Reply.json(json.loads(raw), status=entry["status"], headers=headers)


def call(client: Any, name: str) -> Any:
    entry = MANIFEST[name]
    request = entry["request"] or {
        "system": [{"text": "You are a helpful assistant."}, {"cachePoint": {"type": "default"}}],
        "messages": converse_user("Say this is a test"),
        "inferenceConfig": {"maxTokens": 10},
    }
    model, operation = entry["model"], entry["operation"]
    try:
        if operation == "converse":
            return client.converse(modelId=model, **request)
        if operation == "converse-stream":
            response = client.converse_stream(modelId=model, **request)
            with closing(response["stream"]):
                return {**response, "stream": list(response["stream"])}
        if operation == "invoke":
            response = client.invoke_model(modelId=model, body=json.dumps(request))
            return {**response, "body": response["body"].read()}
        response = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(request))
        with closing(response["body"]):
            return {**response, "body": list(response["body"])}
    except Exception as exc:
        return (type(exc), str(exc))


def normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if k != "date"}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def replayed(name: str) -> Any:
    with FakeLLMServer() as server:
        server.enqueue(reply(name))
        with closing(bedrock_client(server)) as client:
            return normalise(call(client, name))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay(aws_environment: None, name: str) -> None:
    if "cache" in name and not has_member("SystemContentBlock", "cachePoint"):
        pytest.skip("this botocore predates prompt caching")
    bare = replayed(name)
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_ONLY")
    try:
        observed = replayed(name)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert observed == bare

    expected = EXPECTED[name]
    span = signals.only_span()
    attrs = dict(span.attributes or {})
    entry = MANIFEST[name]
    assert span.name == f"chat {entry['model']}"
    assert attrs["aws.request_id"] == entry["headers"]["x-amzn-requestid"]
    if "error" in expected:
        assert attrs["error.type"] == expected["error"]
        # Content capture is on here, so the exception's text (with the AWS message) follows
        # error.type and the status.
        description = span.status.description or ""
        assert description.startswith(f"{expected['error']}: {entry['status']}: An error occurred")
        assert description.endswith(": The provided model identifier is invalid.")
        return
    assert attrs["gen_ai.response.finish_reasons"] == expected["finish"]
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == expected["tokens"]
    if "cache" in expected:
        assert (
            attrs["gen_ai.usage.cache_read.input_tokens"],
            attrs["gen_ai.usage.cache_creation.input_tokens"],
        ) == expected["cache"]
    assert attrs.get("gen_ai.response.id") == expected.get("id")
    assert attrs.get("gen_ai.response.model") == expected.get("model")
    if entry["model"] == "anthropic.claude-v2":  # retired; no price list has it
        assert attrs["agentwatch.usage.cost.unpriced"] is True
    else:
        assert attrs["gen_ai.usage.cost.amount"] > 0
    (output,) = json.loads(attrs["gen_ai.output.messages"])
    calls = [p for p in output["parts"] if p["type"] == "tool_call"]
    assert len(calls) == TOOL_CALLS.get(name, 0)
    for part in calls:
        assert part["name"] == "get_current_weather"
        assert part["arguments"]["location"] in ("Seattle", "San Francisco")
        assert part["id"]


def test_every_fixture_is_replayed_and_has_its_source() -> None:
    bodies = {
        p.name
        for p in FIXTURES.iterdir()
        if p.suffix in (".json", ".eventstream") and p.name != "manifest.json"
    }
    assert set(MANIFEST) == bodies == set(EXPECTED)
    for entry in MANIFEST.values():
        assert entry["source"].startswith("open-telemetry/opentelemetry-python-contrib@")
        assert entry["licence"] == "Apache-2.0"
    sources = (FIXTURES / "SOURCES.md").read_text()
    assert all(f"`{name}`" in sources for name in MANIFEST)
