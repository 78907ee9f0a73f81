"""Error descriptions: safe parts only with content capture off; never a key (issue 11, items 3, 4).

OpenAI-compatible servers (FastAPI validation errors, vLLM, LiteLLM) answer a bad request with a
message that quotes the input, and some echo the API key in a 401. With capture off no text the
server chose may reach a signal: the span's status description is made of the error's class, the
HTTP status and the provider's error type/code. With capture on the message is kept, scrubbed of
the key the client holds (whatever its shape) and of key-like strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import anthropic
import openai
import pytest
from botocore.exceptions import ClientError, EventStreamError
from opentelemetry.trace import StatusCode

import agentwatch
from _bedrock import CLAUDE, bedrock_client, converse_user
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._fakellm._bedrock import EVENT_STREAM_CONTENT_TYPE, event_message, exception_message
from agentwatch._telemetry._core import set_default_telemetry
from support import (
    ANTHROPIC_MODEL,
    NO_NATIVE,
    OPENAI_MODEL,
    Signals,
    anthropic_stream_error,
    make_signals,
    needs_responses,
    openai_stream_error,
)

PROMPT = "my secret diagnosis is ZEBRA-7781"
ECHO = f"1 validation error: input {PROMPT!r} is too long"
# Keys of OpenAI-compatible providers that are not shaped sk-...: Groq, a 32-hex-digit gateway
# key (Azure OpenAI's shape), and one no pattern knows.
KEYS = {
    "groq": "gsk_Q9v2LmT7xR4kP1sN8wB3yZ6cF0hJ5dG2aE7uI9oK",
    "hex32": "7f3c9a1e5b2d4f6089ab12cd34ef5678",
    "unknown-shape": "acme.gateway.TOKEN.QmFzZTY0LWxvb2tpbmc",
}


@pytest.fixture
def instrument() -> Iterator[Callable[[str | None], Signals]]:
    def start(capture: str | None) -> Signals:
        signals = make_signals()
        agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content=capture)
        return signals

    yield start
    agentwatch.uninstrument()
    set_default_telemetry()


def _openai(server: FakeLLMServer, key: str = "sk-test-key-0123456789") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key=key, max_retries=0)


def _anthropic(server: FakeLLMServer, key: str = "sk-ant-test-key-0123456789") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=key, max_retries=0, **NO_NATIVE)


def _chat(server: FakeLLMServer) -> None:
    with _openai(server) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=[{"role": "user", "content": PROMPT}])


def _chat_stream(server: FakeLLMServer) -> None:
    with _openai(server) as client:
        for _ in client.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            pass


def _responses(server: FakeLLMServer) -> None:
    with _openai(server) as client:
        client.responses.create(model=OPENAI_MODEL, input=PROMPT)


def _embeddings(server: FakeLLMServer) -> None:
    with _openai(server) as client:
        client.embeddings.create(model="text-embedding-3-small", input=PROMPT)


def _messages(server: FakeLLMServer) -> None:
    with _anthropic(server) as client:
        client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
        )


def _messages_stream(server: FakeLLMServer) -> None:
    with _anthropic(server) as client:
        for _ in client.messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            pass


def _converse(server: FakeLLMServer) -> None:
    client = bedrock_client(server)
    try:
        client.converse(modelId=CLAUDE, messages=converse_user(PROMPT))
    finally:
        client.close()


def _converse_stream(server: FakeLLMServer) -> None:
    client = bedrock_client(server)
    try:
        stream = client.converse_stream(modelId=CLAUDE, messages=converse_user(PROMPT))["stream"]
        with closing(stream):  # an exception event leaves the response open
            for _ in stream:
                pass
    finally:
        client.close()


# (call, reply, exception raised to the app, description with capture off)
CASES = [
    pytest.param(
        _chat,
        Reply.error(400, message=ECHO),
        openai.BadRequestError,
        "openai.BadRequestError: 400 invalid_request_error",
        id="openai-chat",
    ),
    pytest.param(
        _chat_stream,
        openai_stream_error(ECHO, code="input_too_long"),
        openai.APIError,
        "openai.APIError: invalid_request_error input_too_long",
        id="openai-chat-mid-stream",
    ),
    pytest.param(
        _responses,
        Reply.error(422, message=ECHO, error_type="invalid_request_error", code="string_above_max_length"),
        openai.UnprocessableEntityError,
        "openai.UnprocessableEntityError: 422 invalid_request_error string_above_max_length",
        id="openai-responses",
        marks=needs_responses,
    ),
    pytest.param(
        _embeddings,
        Reply.error(400, message=ECHO),
        openai.BadRequestError,
        "openai.BadRequestError: 400 invalid_request_error",
        id="openai-embeddings",
    ),
    pytest.param(
        _messages,
        Reply.error(400, message=ECHO),
        anthropic.BadRequestError,
        "anthropic.BadRequestError: 400 invalid_request_error",
        id="anthropic-messages",
    ),
    pytest.param(
        _messages_stream,
        anthropic_stream_error("invalid_request_error", ECHO),
        anthropic.APIStatusError,
        "anthropic.APIStatusError: 200 invalid_request_error",
        id="anthropic-mid-stream",
    ),
    # botocore's ClientError: status and code from its parsed response; error.type names the code.
    pytest.param(
        _converse,
        Reply.error(400, message=ECHO),
        ClientError,
        "botocore.ValidationException: 400",
        id="bedrock-converse",
    ),
    pytest.param(
        _converse_stream,
        Reply.frames(
            [
                event_message("messageStart", {"role": "assistant"}),
                exception_message("validationException", ECHO),
            ],
            content_type=EVENT_STREAM_CONTENT_TYPE,
        ),
        EventStreamError,
        "botocore.ValidationException",
        id="bedrock-mid-stream",
    ),
]


@pytest.mark.usefixtures("aws_environment")
@pytest.mark.parametrize(("call", "reply", "error", "description"), CASES)
def test_capture_off_describes_the_error_without_the_servers_text(
    instrument: Callable[[str | None], Signals],
    fake_llm: FakeLLMServer,
    call: Callable[[FakeLLMServer], None],
    reply: Reply,
    error: type[Exception],
    description: str,
) -> None:
    signals = instrument(None)
    fake_llm.enqueue(reply)
    with pytest.raises(error):
        call(fake_llm)
    span = signals.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == description
    assert "ZEBRA" not in signals.dump()


@pytest.mark.usefixtures("aws_environment")
@pytest.mark.parametrize(("call", "reply", "error", "description"), CASES)
def test_capture_on_keeps_the_scrubbed_message(
    instrument: Callable[[str | None], Signals],
    fake_llm: FakeLLMServer,
    call: Callable[[FakeLLMServer], None],
    reply: Reply,
    error: type[Exception],
    description: str,
) -> None:
    signals = instrument("SPAN_ONLY")
    fake_llm.enqueue(reply)
    with pytest.raises(error):
        call(fake_llm)
    text = signals.only_span().status.description or ""
    assert text.startswith(f"{description}: ") and "ZEBRA-7781" in text


def test_a_policy_span_is_described_the_same_way(
    instrument: Callable[[str | None], Signals], fake_llm: FakeLLMServer
) -> None:
    signals = make_signals()
    agentwatch.instrument(
        **signals.providers, configure_sdk=False, llm_policies={"*": agentwatch.Policy(timeout=30)}
    )
    fake_llm.enqueue(Reply.error(400, message=ECHO))
    with pytest.raises(openai.BadRequestError):
        _chat(fake_llm)
    assert signals.only_span().status.description == "openai.BadRequestError: 400 invalid_request_error"
    assert "ZEBRA" not in signals.dump()


def _echo_401(key: str) -> list[Reply]:
    masked = f"{key[:6]}{'*' * 20}{key[-4:]}"
    return [
        Reply.error(401, message=f"Incorrect API key provided: {key}. Check your key."),
        Reply.error(401, message=f"Incorrect API key provided: {masked}."),
    ]


@pytest.mark.parametrize("capture", [None, "SPAN_ONLY", "SPAN_AND_EVENT"])
@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
def test_the_key_the_client_holds_never_appears(
    instrument: Callable[[str | None], Signals], fake_llm: FakeLLMServer, key: str, capture: str | None
) -> None:
    signals = instrument(capture)
    fake_llm.enqueue(*_echo_401(key), *_echo_401(key))
    with _openai(fake_llm, key) as client:
        for _ in range(2):
            with pytest.raises(openai.AuthenticationError):
                client.chat.completions.create(
                    model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}]
                )
    with _anthropic(fake_llm, key) as aclient:
        for _ in range(2):
            with pytest.raises(anthropic.AuthenticationError):
                aclient.messages.create(
                    model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
                )
    exported = signals.dump()
    assert key not in exported and key[-12:] not in exported and key[:12] not in exported
    descriptions = [s.status.description or "" for s in signals.finished()]
    assert len(descriptions) == 4
    if capture:
        assert all("Incorrect API key provided: [REDACTED]" in d for d in descriptions), descriptions
    else:
        assert all(
            d.endswith(": 401 authentication_error") or d.endswith(": 401 invalid_request_error")
            for d in descriptions
        ), descriptions


def test_describing_reads_nothing_it_cannot(fake_llm: FakeLLMServer) -> None:
    from agentwatch._telemetry._errors import describe_error

    class Hostile(Exception):
        @property
        def status_code(self) -> Any:
            raise RuntimeError("no")

        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_error(Hostile(), capture=True, etype="x.Hostile") == "x.Hostile"
    assert describe_error(Hostile(), capture=False).endswith("Hostile")
