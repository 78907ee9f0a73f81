"""With content capture off nothing of the conversation and no key leaves the process (issue 11).

One run goes through every error path agentwatch knows: provider errors that quote the prompt
(400, 422, mid-stream errors of both providers), 401s that echo the key in full and masked,
429/500 under an LLM policy that retries and falls back, a malformed body, a reset connection, a
hung server cut by the attempt timeout, a stream cut by its first-chunk timeout, an open circuit,
responses whose shape trips agentwatch's readers, anthropic's own tracing, tools that raise with
their arguments in the message, that time out, that degrade, that raise hostile exceptions, an
unknown tool name, inside a session. Then every exported signal is scanned: spans (with their
events, status and resource), metric points, OTel log records (the details event), and every
stdlib log record of agentwatch's loggers and the OpenTelemetry SDK's (agentwatch's fault reports,
``agentwatch.tool_calls``; the LLM SDKs' own DEBUG logs of request options are not agentwatch's).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

import agentwatch
from agentwatch import Bulkhead, CircuitBreaker, Policy, Retry
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch.resilience import reset_registry
from support import (
    ANTHROPIC_MODEL,
    ANTHROPIC_NATIVE_TRACING,
    NO_NATIVE,
    OPENAI_MODEL,
    Signals,
    anthropic_stream_error,
    make_signals,
    openai_chunk,
    openai_stream_error,
)

PROMPT = "diagnosis-ZEBRA-7781"
SYSTEM = "rules-QUOKKA-1234"
COMPLETION = "answer-PLATYPUS-5566"
TOOL_ARG = "city-WOMBAT-9911"
TOOL_RESULT = "result-NUMBAT-3141"
# Shapes no pattern knows: only "the key the client holds" finds them.
OPENAI_KEY = "acme-gw.Vx7Q2mR9tL4pK8sN3wB6yZ1c"
ANTHROPIC_KEY = "corp:llm:Hq5Jt0Uv3Wx8Yz2Ab7Cd4Ef9"
SECRETS = (PROMPT, SYSTEM, COMPLETION, TOOL_ARG, TOOL_RESULT, OPENAI_KEY, ANTHROPIC_KEY)

MESSAGES: list[Any] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
NO_WAIT = Retry(attempts=2, backoff=0, max_delay=0, jitter=False, budget=None)


# Bodies that trip agentwatch's readers, with content where a fault's message could quote it.
TRIPPING_COMPLETION = {
    "id": "x",
    "object": "chat.completion",
    "model": OPENAI_MODEL,
    "created": 1,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": COMPLETION}, "finish_reason": 7}],
    "usage": {"prompt_tokens": COMPLETION, "completion_tokens": [COMPLETION]},
}


def _tripping_stream() -> Reply:
    bad = json.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": OPENAI_MODEL,
            "created": 1,
            "choices": [COMPLETION],
        }
    )
    return Reply.sse([(None, openai_chunk(COMPLETION)), (None, bad), (None, bad), (None, "[DONE]")])


def _llm_workload(server: FakeLLMServer) -> None:
    oai = openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0)
    ant = anthropic.Anthropic(
        base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
    )
    with oai, ant:
        server.enqueue(
            Reply.text(COMPLETION),
            Reply.text(COMPLETION),
            Reply.tool_calls([("lookup", {"city": TOOL_ARG})], content=COMPLETION),
            Reply.text(COMPLETION),
            Reply.text(COMPLETION),
        )
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        list(oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True))
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        oai.responses.create(model=OPENAI_MODEL, instructions=SYSTEM, input=PROMPT)
        list(oai.responses.create(model=OPENAI_MODEL, instructions=SYSTEM, input=PROMPT, stream=True))
        oai.embeddings.create(model="text-embedding-3-small", input=PROMPT)
        ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, system=SYSTEM, messages=MESSAGES[1:])

        # Provider errors that quote the request or echo the key.
        failures: list[tuple[Reply, type[Exception], Any]] = [
            (Reply.error(400, message=f"input {PROMPT!r} is too long"), openai.BadRequestError, None),
            (
                Reply.error(422, message=f"validation: body.messages[1].content={PROMPT}"),
                openai.UnprocessableEntityError,
                None,
            ),
            (
                Reply.error(401, message=f"Incorrect API key provided: {OPENAI_KEY}"),
                openai.AuthenticationError,
                None,
            ),
            (
                Reply.error(
                    401, message=f"Incorrect API key provided: {OPENAI_KEY[:6]}*****{OPENAI_KEY[-4:]}"
                ),
                openai.AuthenticationError,
                None,
            ),
            (
                openai_stream_error(f"input {PROMPT!r} rejected", content=COMPLETION),
                openai.APIError,
                "stream",
            ),
            (
                Reply.malformed(body=f'{{"choices": ["{COMPLETION}"'.encode()),
                ValueError,
                None,
            ),  # JSONDecodeError
            (Reply.reset(), openai.APIConnectionError, None),
        ]
        for reply, error, mode in failures:
            server.enqueue(reply)
            with pytest.raises(error):
                if mode == "stream":
                    list(oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True))
                else:
                    oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        for reply, aerror in (
            (Reply.error(400, message=f"prompt {PROMPT} too long"), anthropic.BadRequestError),
            (Reply.error(401, message=f"invalid x-api-key {ANTHROPIC_KEY}"), anthropic.AuthenticationError),
        ):
            server.enqueue(reply)
            with pytest.raises(aerror):
                ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES[1:])
        server.enqueue(anthropic_stream_error("invalid_request_error", f"prompt {PROMPT} too long"))
        with pytest.raises(anthropic.APIStatusError):
            list(
                ant.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES[1:], stream=True)
            )

        # Shapes that trip agentwatch's readers: reported faults, never the content they hold.
        server.enqueue(Reply.json(TRIPPING_COMPLETION), _tripping_stream())
        oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        list(oai.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True))

        if ANTHROPIC_NATIVE_TRACING:
            with anthropic.Anthropic(
                base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0
            ) as native:
                server.enqueue(
                    Reply.text(COMPLETION),
                    Reply.error(400, message=f"prompt {PROMPT}"),
                    anthropic_stream_error("invalid_request_error", f"prompt {PROMPT} too long"),
                )
                native.messages.create(
                    model=ANTHROPIC_MODEL, max_tokens=64, system=SYSTEM, messages=MESSAGES[1:]
                )
                with pytest.raises(anthropic.BadRequestError):
                    native.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES[1:])
                with pytest.raises(anthropic.APIStatusError):
                    list(
                        native.messages.create(
                            model=ANTHROPIC_MODEL, max_tokens=64, messages=MESSAGES[1:], stream=True
                        )
                    )


def _policy_workload(server: FakeLLMServer) -> None:
    """LLM calls under policies (models "guarded", "flaky", "slow", "streamy" of instrument())."""
    with openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as oai:
        # 429 then 500 on the primary, then the fallback answers.
        server.enqueue(
            Reply.error(429, message=f"slow down {PROMPT}", headers={"retry-after": "0"}),
            Reply.error(500, message=f"crashed on {PROMPT}"),
            Reply.text(COMPLETION),
        )
        oai.chat.completions.create(model="flaky", messages=MESSAGES)
        # The circuit opens after a failure and rejects the next call.
        server.enqueue(Reply.error(503, message=f"down while reading {PROMPT}"))
        for _ in range(2):
            with pytest.raises((openai.InternalServerError, agentwatch.CircuitOpenError)):
                oai.chat.completions.create(model="guarded", messages=MESSAGES)
        # A hung server, cut by the attempt timeout.
        server.enqueue(Reply.hang(5))
        with pytest.raises((agentwatch.ToolTimeoutError, openai.APITimeoutError)):
            oai.chat.completions.create(model="slow", messages=MESSAGES)
        # A stream whose first chunk never comes.
        server.enqueue(Reply.delay(3, Reply.text(COMPLETION)))
        with pytest.raises((agentwatch.ToolTimeoutError, openai.APITimeoutError)):
            list(oai.chat.completions.create(model="streamy", messages=MESSAGES, stream=True))


class Hostile(Exception):
    @property
    def status_code(self) -> int:
        raise RuntimeError(TOOL_ARG)

    def __str__(self) -> str:
        raise TypeError(TOOL_ARG)


def _tool_workload() -> None:
    @agentwatch.tool
    def lookup(city: str) -> str:
        return f"{TOOL_RESULT} for {city}"

    @agentwatch.tool
    def failing(city: str) -> str:
        raise LookupError(f"no weather for {city}")

    @agentwatch.tool(policy=Policy(timeout=0.2))
    def sleepy(city: str) -> str:
        import time

        time.sleep(0.5)
        return city

    @agentwatch.tool(
        policy=Policy(critical=False, retry=NO_WAIT, breaker=CircuitBreaker(failure_threshold=1))
    )
    def optional(city: str) -> str:
        raise ConnectionError(f"backend down for {city}")

    @agentwatch.tool(policy=Policy(retry=NO_WAIT, bulkhead=Bulkhead(max_concurrent=1)))
    def hostile(city: str) -> str:
        raise Hostile()

    registry = agentwatch.ToolRegistry()
    registry.register(lookup)
    lookup(TOOL_ARG)
    registry.call("lookup", {"city": TOOL_ARG}, call_id="call_1")
    registry.call("lookup", json.dumps({"city": TOOL_ARG}))
    with pytest.raises(LookupError):
        failing(TOOL_ARG)
    with pytest.raises(agentwatch.ToolTimeoutError):
        sleepy(TOOL_ARG)
    for _ in range(2):
        assert isinstance(optional(TOOL_ARG), agentwatch.ToolUnavailable)
    with pytest.raises(Hostile):
        hostile(TOOL_ARG)
    with pytest.raises(agentwatch.UnknownToolError):
        registry.call("lookup_v2", {"city": TOOL_ARG})


class _AllLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # agentwatch's loggers, and the SDK's (agentwatch hands it the data); the LLM SDKs' own
        # DEBUG logs of request options are theirs, not agentwatch's.
        if not record.name.startswith(("agentwatch", "opentelemetry")):
            return
        text = self.format(record)  # message, and the traceback if one was attached
        self.texts.append(text + " " + json.dumps({k: str(v) for k, v in vars(record).items()}))


@pytest.fixture
def all_logs() -> Iterator[_AllLogs]:
    handler = _AllLogs()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


def test_nothing_of_the_conversation_and_no_key_leaves_the_process(
    fake_llm: FakeLLMServer, all_logs: _AllLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentwatch import _internal

    monkeypatch.setattr(_internal, "_reported", set())
    reset_registry()
    signals: Signals = make_signals()
    agentwatch.instrument(
        **signals.providers,
        configure_sdk=False,
        llm_policies={
            "flaky": Policy(timeout=30, retry=NO_WAIT, fallback_models=[OPENAI_MODEL]),
            "guarded": Policy(timeout=30, breaker=CircuitBreaker(failure_threshold=1)),
            "slow": Policy(timeout=30, attempt_timeout=0.3),
            "streamy": Policy(timeout=30, first_chunk_timeout=0.3),
        },
    )
    try:
        with agentwatch.session(user_id="user-42", agent_name="leak-test"):
            _llm_workload(fake_llm)
            _policy_workload(fake_llm)
            _tool_workload()
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        reset_registry()
        signals.tracer_provider.force_flush()

    exported = signals.dump()
    logged = "\n".join(all_logs.texts)
    # The run went where it should: errors, faults and events were recorded.
    assert '"status_code": "ERROR"' in exported and "openai.BadRequestError: 400" in exported
    assert "internal error" in logged and "agentwatch.tool_calls" in logged
    assert "circuit_rejected" in exported and "fallback" in exported and "timeout" in exported
    for secret in SECRETS:
        assert secret not in exported, f"{secret} exported"
        assert secret not in logged, f"{secret} logged"
    for key in (OPENAI_KEY, ANTHROPIC_KEY):
        for fragment in (key[:10], key[-10:]):
            assert fragment not in exported and fragment not in logged, fragment
