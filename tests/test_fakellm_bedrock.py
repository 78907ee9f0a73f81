"""The fake LLM server's Bedrock Runtime wire format: framing, errors and SigV4 verification.

The framing is checked with botocore's own event-stream decoder (it verifies both CRCs of every
message) on the raw HTTP body, and the signatures with botocore's own signer: a request signed
correctly passes, any signed part changed afterwards fails, an unsigned header added afterwards
does not matter (which is what lets agentwatch add ``traceparent`` after signing).
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError

from _bedrock import CLAUDE, NOVA, REGION, converse_user, has_operation
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._fakellm._bedrock import (
    TEST_ACCESS_KEY_ID,
    TEST_BEARER_TOKEN,
    TEST_SECRET_ACCESS_KEY,
    exception_message,
)


def _signed(
    server: FakeLLMServer, path: str, body: bytes, secret: str = TEST_SECRET_ACCESS_KEY
) -> AWSRequest:
    request = AWSRequest(
        method="POST", url=server.url + path, data=body, headers={"Content-Type": "application/json"}
    )
    SigV4Auth(Credentials(TEST_ACCESS_KEY_ID, secret), "bedrock", REGION).add_auth(request)
    return request


def _send(server: FakeLLMServer, request: AWSRequest) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        path = request.url.split(str(server.port), 1)[1]
        connection.request(request.method, path, body=request.body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _path(model: str, operation: str) -> str:
    return f"/model/{quote(model, safe='')}/{operation}"


BODY = json.dumps({"messages": converse_user()}).encode()


def test_a_correctly_signed_request_passes(fake_llm: FakeLLMServer) -> None:
    status, headers, body = _send(fake_llm, _signed(fake_llm, _path(CLAUDE, "converse"), BODY))
    assert status == 200, body
    assert headers["x-amzn-requestid"] == "req_fake1"
    assert json.loads(body)["stopReason"] == "end_turn"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("body", "InvalidSignatureException"),
        ("signed header", "InvalidSignatureException"),
        ("path", "InvalidSignatureException"),
        ("secret", "InvalidSignatureException"),
        ("access key", "UnrecognizedClientException"),
        ("no signature", "MissingAuthenticationTokenException"),
    ],
)
def test_anything_signed_that_changes_is_rejected_before_the_script(
    fake_llm: FakeLLMServer, change: str, code: str
) -> None:
    fake_llm.enqueue(Reply.text("must not be used"))
    request = _signed(
        fake_llm, _path(CLAUDE, "converse"), BODY, "wrong" if change == "secret" else TEST_SECRET_ACCESS_KEY
    )
    if change == "body":
        request.data = BODY.replace(b"hello", b"HELLO")
    elif change == "signed header":
        request.headers.replace_header("Content-Type", "application/x-json")
    elif change == "path":
        request.url = fake_llm.url + _path(NOVA, "converse")
    elif change == "access key":
        request.headers.replace_header(
            "Authorization",
            request.headers["Authorization"].replace(TEST_ACCESS_KEY_ID, "AKIAI44QH8DHBEXAMPLE"),
        )
    elif change == "no signature":
        del request.headers["Authorization"]
    status, headers, _body = _send(fake_llm, request)
    assert status == 403
    assert headers["x-amzn-errortype"].split(":")[0] == code
    assert fake_llm.pending == 1  # the scripted reply is still there
    assert len(fake_llm.requests) == 1


def test_an_unsigned_header_added_after_signing_is_fine(fake_llm: FakeLLMServer) -> None:
    request = _signed(fake_llm, _path(CLAUDE, "converse"), BODY)
    request.headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    status, _, body = _send(fake_llm, request)
    assert status == 200, body


def test_a_bearer_token(fake_llm: FakeLLMServer) -> None:
    request = AWSRequest(
        method="POST",
        url=fake_llm.url + _path(CLAUDE, "converse"),
        data=BODY,
        headers={"Authorization": f"Bearer {TEST_BEARER_TOKEN}"},
    )
    assert _send(fake_llm, request)[0] == 200
    request.headers.replace_header("Authorization", "Bearer ABSK-not-the-token")
    assert _send(fake_llm, request)[0] == 403


def _messages(raw: bytes) -> list[Any]:
    buffer = EventStreamBuffer()
    buffer.add_data(raw)  # raises on a wrong prelude or message CRC
    return list(buffer)


def test_event_stream_frames_pass_botocores_decoder(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.tool_calls([("search", {"q": "otel"})], content="Looking", error_after_chunks=2))
    status, headers, raw = _send(fake_llm, _signed(fake_llm, _path(NOVA, "converse-stream"), BODY))
    assert status == 200
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    messages = _messages(raw)
    kinds = [m.headers.get(":event-type") or m.headers[":exception-type"] for m in messages]
    # Cut after the second delta (the tool's arguments), without the events that end the turn.
    assert kinds == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockStop",
        "contentBlockStart",
        "contentBlockDelta",
        "modelStreamErrorException",
    ]
    assert messages[-1].headers[":message-type"] == "exception"
    assert json.loads(messages[1].payload) == {"contentBlockIndex": 0, "delta": {"text": "Looking"}}


def test_invoke_stream_chunks_carry_the_model_body_in_base64(fake_llm: FakeLLMServer) -> None:
    fake_llm.enqueue(Reply.text("one two"))
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": []}).encode()
    _, headers, raw = _send(fake_llm, _signed(fake_llm, _path(CLAUDE, "invoke-with-response-stream"), body))
    assert headers["x-amzn-bedrock-content-type"] == "application/json"
    chunks = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"])) for m in _messages(raw)]
    assert [c["type"] for c in chunks] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == 7


def test_exception_messages_are_what_botocore_raises(fake_llm: FakeLLMServer, bedrock: Any) -> None:
    fake_llm.enqueue(
        Reply.frames(
            [exception_message("validationException", "Input is too long for requested model.")],
            content_type="application/vnd.amazon.eventstream",
        )
    )
    stream = bedrock.converse_stream(modelId=CLAUDE, messages=converse_user())["stream"]
    with pytest.raises(ClientError) as caught:
        list(stream)
    stream.close()
    assert caught.value.response["Error"] == {
        "Code": "validationException",
        "Message": "Input is too long for requested model.",
    }


def test_error_envelopes_and_unknown_operations(fake_llm: FakeLLMServer, bedrock: Any) -> None:
    fake_llm.enqueue(Reply.error(429))
    with pytest.raises(ClientError) as throttled:
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    assert type(throttled.value).__name__ == "ThrottlingException"
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

    assert fake_llm.pending == 0
    if has_operation("CountTokens"):  # an operation the fake server does not serve
        with pytest.raises(ClientError) as unknown:
            bedrock.count_tokens(modelId=CLAUDE, input={"converse": {"messages": converse_user()}})
        assert unknown.value.response["Error"]["Code"] == "UnknownOperationException"
