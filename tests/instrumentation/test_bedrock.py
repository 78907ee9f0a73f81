"""AWS Bedrock Runtime through botocore: spans, metrics, cost, content, errors, trace context, hooks.

Every call goes through a real boto3 client, signed with SigV4, over HTTP to the fake LLM server,
which verifies each request's signature (a request whose signed parts changed after signing gets
``InvalidSignatureException``, so a passing call is a correctly signed one).
"""

from __future__ import annotations

import gc
import io
import json
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from opentelemetry.trace import SpanKind, StatusCode

import agentwatch
from _bedrock import (
    CLAUDE,
    LLAMA,
    NOVA,
    apply_guardrail,
    bedrock_client,
    converse_user,
    has_member,
    has_operation,
)
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from agentwatch._telemetry._pricing import Pricer
from agentwatch._telemetry._usage import Usage
from agentwatch.resilience import ErrorCategory, default_classifier
from agentwatch.tools import ToolRegistry
from support import Signals, make_signals

PROMPT = "my secret diagnosis is ZEBRA-7781"
SYSTEM = "system rules QUOKKA-1234"
COMPLETION = "the answer is PLATYPUS-5566"


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def cost(model: str, usage: Usage) -> float:
    value = Pricer().cost("aws.bedrock", (None, model), usage)
    assert value is not None
    return value


@pytest.fixture
def capture(signals: Signals, aws_environment: None) -> Iterator[Signals]:
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_ONLY")
    try:
        yield signals
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        gc.collect()


# -- Converse ------------------------------------------------------------------------------------


def test_converse_span_metrics_and_cost(instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    fake_llm.enqueue(Reply.text("hi", input_tokens=120, output_tokens=9))
    guardrail: dict[str, Any] = {}
    if has_member("ConverseRequest", "guardrailConfig"):
        guardrail = {"guardrailConfig": {"guardrailIdentifier": "gr-123", "guardrailVersion": "1"}}
    response = bedrock.converse(
        modelId=CLAUDE,
        messages=converse_user(),
        inferenceConfig={"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        additionalModelRequestFields={"top_k": 40},
        **guardrail,
    )

    assert response["output"]["message"]["content"] == [{"text": "hi"}]
    span = instrumented.only_span()
    assert span.name == f"chat {CLAUDE}"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "agentwatch.instrumentation.bedrock"
    assert attrs(span) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": CLAUDE,
        "server.address": "127.0.0.1",
        "server.port": fake_llm.port,
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.top_k": 40.0,
        "gen_ai.request.stop_sequences": ("END",),
        **({"aws.bedrock.guardrail.id": "gr-123"} if guardrail else {}),
        "gen_ai.response.finish_reasons": ("end_turn",),
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 9,
        "gen_ai.usage.cost.amount": cost(CLAUDE, Usage(input_tokens=120, output_tokens=9)),
        "gen_ai.usage.cost.currency": "USD",
        "aws.request_id": "req_fake1",
    }
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": CLAUDE,
        "server.address": "127.0.0.1",
        "server.port": fake_llm.port,
    }
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == base
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum for p in instrumented.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 120, "output": 9}
    (spent,) = instrumented.points("gen_ai.client.operation.cost")
    assert spent.sum == pytest.approx(attrs(span)["gen_ai.usage.cost.amount"])


NEEDS_CACHE_COUNTS = pytest.mark.skipif(
    not has_member("TokenUsage", "cacheReadInputTokens"),
    reason="this botocore predates prompt caching: it drops the cache counts from responses",
)


@NEEDS_CACHE_COUNTS
def test_converse_cache_tokens_are_part_of_the_input(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    # Bedrock reports inputTokens without the cache reads and writes; semconv's input includes them.
    fake_llm.enqueue(Reply.text("hi", input_tokens=1000, cached_tokens=600, cache_creation_tokens=300))
    usage = bedrock.converse(modelId=NOVA, messages=converse_user())["usage"]
    assert (usage["inputTokens"], usage["cacheReadInputTokens"], usage["cacheWriteInputTokens"]) == (
        100,
        600,
        300,
    )

    span = attrs(instrumented.only_span())
    assert span["gen_ai.usage.input_tokens"] == 1000
    assert span["gen_ai.usage.cache_read.input_tokens"] == 600
    assert span["gen_ai.usage.cache_creation.input_tokens"] == 300
    expected = cost(
        NOVA, Usage(input_tokens=1000, output_tokens=7, cache_read_tokens=600, cache_creation_tokens=300)
    )
    assert span["gen_ai.usage.cost.amount"] == pytest.approx(expected)
    # Cached tokens are cheaper than fresh ones: the cache counts changed the price.
    assert expected < cost(NOVA, Usage(input_tokens=1000, output_tokens=7))


def test_bedrock_is_priced_by_its_model_id_not_the_bodys_model() -> None:
    # A global inference profile costs less than a regional one of the same model; an InvokeModel
    # body names only the model, so Bedrock calls are priced by the request's model id first.
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    pricer = Pricer()
    response_model = "claude-sonnet-4-5-20250929"
    global_profile = pricer.cost(
        "aws.bedrock", (response_model, "global.anthropic.claude-sonnet-4-5-20250929-v1:0"), usage
    )
    regional = pricer.cost(
        "aws.bedrock", (response_model, "us.anthropic.claude-sonnet-4-5-20250929-v1:0"), usage
    )
    assert global_profile is not None and regional is not None
    assert global_profile < regional
    assert pricer.cost("aws.bedrock", (response_model, None), usage) == regional


def test_no_content_anywhere_by_default(instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    fake_llm.enqueue(
        Reply.text(COMPLETION),
        Reply.text(COMPLETION),
        Reply.error(400, message=f"Malformed input request: {PROMPT}"),
    )
    kwargs: dict[str, Any] = {
        "modelId": CLAUDE,
        "messages": converse_user(PROMPT),
        "system": [{"text": SYSTEM}],
        "toolConfig": {"tools": [converse_tool("lookup", "Looks up WOMBAT-9012", SCHEMA)]},
    }
    bedrock.converse(**kwargs)
    for _ in bedrock.converse_stream(**kwargs)["stream"]:
        pass
    with pytest.raises(ClientError):
        bedrock.converse(**kwargs)

    dump = instrumented.dump()
    assert len(instrumented.finished()) == 3
    for secret in ("ZEBRA", "QUOKKA", "PLATYPUS", "WOMBAT"):
        assert secret not in dump
    assert instrumented.logs.get_finished_logs() == ()


def test_content_and_tool_use_in_the_v141_schema(
    capture: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Paris"})], content="Let me look."))
    messages = [
        {
            "role": "user",
            "content": [{"text": PROMPT}, {"image": {"format": "png", "source": {"bytes": b"\x89PNG"}}}],
        },
        {
            "role": "assistant",
            "content": [{"toolUse": {"toolUseId": "tu_0", "name": "get_weather", "input": {"city": "Oslo"}}}],
        },
        {
            "role": "user",
            "content": [
                {"toolResult": {"toolUseId": "tu_0", "content": [{"json": {"temp": 3}}], "status": "success"}}
            ],
        },
    ]
    system: list[dict[str, Any]] = [{"text": SYSTEM}]
    if has_member("SystemContentBlock", "cachePoint"):
        system.append({"cachePoint": {"type": "default"}})  # not a part: no content
    response = bedrock.converse(modelId=NOVA, messages=messages, system=system)

    span = attrs(capture.only_span())
    assert json.loads(span["gen_ai.system_instructions"]) == [{"type": "text", "content": SYSTEM}]
    assert json.loads(span["gen_ai.input.messages"]) == [
        {
            "role": "user",
            "parts": [
                {"type": "text", "content": PROMPT},
                {"type": "blob", "modality": "image", "mime_type": "image/png", "content": "iVBORw=="},
            ],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "tool_call", "id": "tu_0", "name": "get_weather", "arguments": {"city": "Oslo"}}
            ],
        },
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "tu_0", "response": {"temp": 3}}]},
    ]
    (tool_use,) = [b["toolUse"] for b in response["output"]["message"]["content"] if "toolUse" in b]
    assert json.loads(span["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": "Let me look."},
                {
                    "type": "tool_call",
                    "id": tool_use["toolUseId"],
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                },
            ],
            "finish_reason": "tool_call",
        }
    ]
    assert span["gen_ai.response.finish_reasons"] == ("tool_use",)


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def converse_tool(name: str, description: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "inputSchema": {"json": schema}}
    if description is not None:
        spec["description"] = description
    return {"toolSpec": spec}


def test_tool_definitions_with_content_capture(
    capture: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    tools = [converse_tool("get_weather", "Current weather.", SCHEMA), converse_tool("now", None, {})]
    expected: list[dict[str, Any]] = [
        {"type": "function", "name": "get_weather", "description": "Current weather.", "parameters": SCHEMA},
        {"type": "function", "name": "now", "parameters": {}},
    ]
    if has_member("Tool", "cachePoint"):
        tools.append({"cachePoint": {"type": "default"}})  # a cache boundary, not a tool
    if has_member("Tool", "systemTool"):
        tools.append({"systemTool": {"name": "nova_grounding"}})
        expected.append({"type": "systemTool", "name": "nova_grounding"})
    nova_body = {
        "schemaVersion": "messages-v1",
        "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
        "toolConfig": {"tools": tools[:2]},
    }
    anthropic_body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": PROMPT}],
        "tools": [
            {"name": "get_weather", "description": "Current weather.", "input_schema": SCHEMA},
            {"type": "bash_20250124", "name": "bash"},
        ],
    }
    fake_llm.enqueue(*(Reply.text(COMPLETION) for _ in range(4)))
    bedrock.converse(modelId=NOVA, messages=converse_user(), toolConfig={"tools": tools})
    for _ in bedrock.converse_stream(modelId=NOVA, messages=converse_user(), toolConfig={"tools": tools})[
        "stream"
    ]:
        pass
    bedrock.invoke_model(modelId=NOVA, body=json.dumps(nova_body))["body"].read()
    bedrock.invoke_model(modelId=CLAUDE, body=json.dumps(anthropic_body))["body"].read()

    converse, stream, nova, claude = (
        json.loads(attrs(span)["gen_ai.tool.definitions"]) for span in capture.finished()
    )
    assert converse == stream == expected
    assert nova == expected[:2]
    assert claude == [expected[0], {"type": "bash_20250124", "name": "bash"}]


def test_a_tool_loop_with_toolresult_blocks(capture: Signals, fake_llm: FakeLLMServer, bedrock: Any) -> None:
    registry = ToolRegistry()

    @registry.register
    def get_weather(city: str) -> dict[str, Any]:
        """Current weather."""
        return {"city": city, "temp": 21}

    fake_llm.enqueue(Reply.tool_calls([("get_weather", {"city": "Lima"})]), Reply.text("21 degrees in Lima."))
    messages = converse_user("Weather in Lima?")
    first = bedrock.converse(modelId=NOVA, messages=messages)
    assistant = first["output"]["message"]
    results = [
        {
            "toolResult": {
                "toolUseId": b["toolUse"]["toolUseId"],
                "content": [{"json": registry.call_tool_call(b)}],
            }
        }
        for b in assistant["content"]
        if "toolUse" in b
    ]
    final = bedrock.converse(
        modelId=NOVA, messages=[*messages, assistant, {"role": "user", "content": results}]
    )
    assert final["output"]["message"]["content"] == [{"text": "21 degrees in Lima."}]

    chat1, tool_span, chat2 = capture.finished()
    (tool_use,) = [b["toolUse"] for b in assistant["content"] if "toolUse" in b]
    assert (tool_span.name, attrs(tool_span)["gen_ai.tool.call.id"]) == (
        "execute_tool get_weather",
        tool_use["toolUseId"],
    )
    assert attrs(chat1)["gen_ai.response.finish_reasons"] == ("tool_use",)
    *_, answer = json.loads(attrs(chat2)["gen_ai.input.messages"])
    assert answer == {
        "role": "user",
        "parts": [
            {
                "type": "tool_call_response",
                "id": tool_use["toolUseId"],
                "response": {"city": "Lima", "temp": 21},
            }
        ],
    }
    # The tool call went to the server as Converse's toolResult shape, the id echoed.
    sent = fake_llm.requests[1].json["messages"][-1]["content"][0]["toolResult"]
    assert sent["toolUseId"] == tool_use["toolUseId"]


# -- InvokeModel ---------------------------------------------------------------------------------

FAMILIES = [
    pytest.param(
        CLAUDE,
        {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 64,
            "temperature": 0.5,
            "top_p": 0.9,
            "top_k": 20,
            "stop_sequences": ["END"],
            "system": SYSTEM,
            "messages": [{"role": "user", "content": PROMPT}],
        },
        {
            "gen_ai.request.max_tokens": 64,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.top_k": 20.0,
            "gen_ai.request.stop_sequences": ("END",),
            "gen_ai.response.id": "msg_bdrk_fake1",
            "gen_ai.response.model": "claude-3-5-sonnet-20240620",
            "gen_ai.response.finish_reasons": ("end_turn",),
            "gen_ai.usage.cache_read.input_tokens": 0,
            "gen_ai.usage.cache_creation.input_tokens": 0,
        },
        id="anthropic",
    ),
    pytest.param(
        NOVA,
        {
            "schemaVersion": "messages-v1",
            "system": [{"text": SYSTEM}],
            "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
            "inferenceConfig": {
                "max_new_tokens": 64,
                "temperature": 0.5,
                "topP": 0.9,
                "topK": 20,
                "stopSequences": ["END"],
            },
        },
        {
            "gen_ai.request.max_tokens": 64,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.request.top_k": 20.0,
            "gen_ai.request.stop_sequences": ("END",),
            "gen_ai.response.finish_reasons": ("end_turn",),
        },
        id="nova",
    ),
    pytest.param(
        LLAMA,
        {"prompt": PROMPT, "max_gen_len": 64, "temperature": 0.5, "top_p": 0.9},
        {
            "gen_ai.request.max_tokens": 64,
            "gen_ai.request.temperature": 0.5,
            "gen_ai.request.top_p": 0.9,
            "gen_ai.response.finish_reasons": ("stop",),
        },
        id="llama",
    ),
]


@pytest.mark.parametrize(("model", "body", "expected"), FAMILIES)
def test_invoke_model_reads_each_family(
    instrumented: Signals,
    fake_llm: FakeLLMServer,
    bedrock: Any,
    model: str,
    body: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    fake_llm.enqueue(Reply.text(COMPLETION, input_tokens=30, output_tokens=5))
    response = bedrock.invoke_model(modelId=model, body=json.dumps(body))
    # The caller still reads every byte of the body agentwatch read first.
    raw = response["body"].read()
    assert COMPLETION in raw.decode()
    assert response["body"].read() == b""

    span = attrs(instrumented.only_span())
    usage = Usage(input_tokens=30, output_tokens=5)
    assert span == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "aws.bedrock",
        "gen_ai.request.model": model,
        "server.address": "127.0.0.1",
        "server.port": fake_llm.port,
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.usage.cost.amount": cost(model, usage),
        "gen_ai.usage.cost.currency": "USD",
        "aws.request_id": "req_fake1",
        **expected,
    }


@pytest.mark.parametrize(("model", "body", "expected"), FAMILIES)
def test_invoke_model_content(
    capture: Signals, fake_llm: FakeLLMServer, bedrock: Any, model: str, body: dict[str, Any], expected: Any
) -> None:
    fake_llm.enqueue(Reply.text(COMPLETION))
    bedrock.invoke_model(modelId=model, body=json.dumps(body).encode())["body"].read()
    span = attrs(capture.only_span())
    (message,) = json.loads(span["gen_ai.input.messages"])
    assert message["parts"] == [{"type": "text", "content": PROMPT}]
    assert json.loads(span["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": COMPLETION}], "finish_reason": "stop"}
    ]
    if "system" in body:
        assert json.loads(span["gen_ai.system_instructions"]) == [{"type": "text", "content": SYSTEM}]


def test_invoke_model_of_another_family_is_measured_from_bedrocks_headers(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    model = "mistral.mistral-large-2407-v1:0"
    headers = {
        "X-Amzn-Bedrock-Input-Token-Count": "11",
        "X-Amzn-Bedrock-Output-Token-Count": "4",
        "X-Amzn-Bedrock-Cache-Read-Input-Token-Count": "6",
    }
    fake_llm.enqueue(Reply.json({"choices": [{"message": {"content": "ok"}}]}, headers=headers))
    body = bedrock.invoke_model(modelId=model, body=json.dumps({"messages": []}))["body"]
    assert json.loads(body.read()) == {"choices": [{"message": {"content": "ok"}}]}

    span = attrs(instrumented.only_span())
    assert (span["gen_ai.usage.input_tokens"], span["gen_ai.usage.output_tokens"]) == (17, 4)
    assert span["gen_ai.usage.cache_read.input_tokens"] == 6
    assert "gen_ai.response.finish_reasons" not in span


def test_invoke_model_of_an_embeddings_model(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    model = "amazon.titan-embed-text-v2:0"
    response = bedrock.invoke_model(
        modelId=model, body=json.dumps({"inputText": "one two three", "dimensions": 4})
    )
    assert len(json.loads(response["body"].read())["embedding"]) == 4
    span = instrumented.only_span()
    assert span.name == f"embeddings {model}"
    assert attrs(span)["gen_ai.operation.name"] == "embeddings"
    assert attrs(span)["gen_ai.usage.input_tokens"] == 3


def test_a_file_like_invoke_body_is_never_read_by_agentwatch(
    capture: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    payload = json.dumps({"prompt": PROMPT, "max_gen_len": 64}).encode()
    bedrock.invoke_model(modelId=LLAMA, body=io.BytesIO(payload))["body"].read()
    # botocore sent the whole body; agentwatch, which must not consume it, saw no request content.
    assert fake_llm.requests[0].body == payload
    assert "gen_ai.input.messages" not in attrs(capture.only_span())


def test_a_body_that_fails_midway_fails_the_same_way_for_the_caller(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    # A body announced as 1000 bytes that ends after 20: botocore raises IncompleteReadError when
    # its reader finds the end; agentwatch read the body first, so the caller must still get it.
    cut = b'{"generation": "par'
    fake_llm.enqueue(Reply.frames([cut], content_type="application/json", headers={"Content-Length": "1000"}))
    response = bedrock.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "x", "max_gen_len": 5}))
    with pytest.raises(Exception) as caught:
        response["body"].read()
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == f"botocore.{type(caught.value).__name__}"


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "category", "retryable"),
    [
        (429, "ThrottlingException", ErrorCategory.RATE_LIMIT, True),
        (429, "ModelNotReadyException", ErrorCategory.DEPENDENCY, True),
        (503, "ServiceUnavailableException", ErrorCategory.DEPENDENCY, True),
        (500, "InternalServerException", ErrorCategory.DEPENDENCY, True),
        (408, "ModelTimeoutException", ErrorCategory.TIMEOUT, True),
        (424, "ModelErrorException", ErrorCategory.DEPENDENCY, False),
        (400, "ValidationException", ErrorCategory.VALIDATION, False),
        (403, "AccessDeniedException", ErrorCategory.VALIDATION, False),
        (400, "ServiceQuotaExceededException", ErrorCategory.RATE_LIMIT, False),
    ],
)
def test_aws_errors(
    instrumented: Signals,
    fake_llm: FakeLLMServer,
    bedrock: Any,
    status: int,
    code: str,
    category: ErrorCategory,
    retryable: bool,
) -> None:
    message = f"Sorry, the request for {PROMPT} failed"
    fake_llm.enqueue(Reply.error(status, error_type=code, message=message))
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId=CLAUDE, messages=converse_user())

    assert caught.value.response["Error"]["Code"] == code
    modeled = hasattr(bedrock.exceptions, code)  # else this botocore raises a plain ClientError
    if modeled:
        assert type(caught.value) is getattr(bedrock.exceptions, code)
    span = instrumented.only_span()
    assert span.status.status_code is StatusCode.ERROR
    # The AWS message can quote the request: with content capture off only error.type (which names
    # the code) and the status.
    assert span.status.description == f"botocore.{code}: {status}"
    assert attrs(span)["error.type"] == f"botocore.{code}"
    assert attrs(span)["aws.request_id"] == "req_fake1"
    (duration,) = instrumented.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == f"botocore.{code}"
    classification = default_classifier(caught.value)
    assert (classification.category, classification.retryable) == (category, retryable)
    assert "ZEBRA" not in instrumented.dump()


def test_with_capture_the_aws_message_follows(
    capture: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    fake_llm.enqueue(
        Reply.error(400, message="Malformed input request: #/messages: expected type: JSONArray")
    )
    with pytest.raises(ClientError):
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    # As for every SDK, the exception's text (botocore's quotes the AWS message) after the safe parts.
    description = capture.only_span().status.description or ""
    assert description.startswith(
        "botocore.ValidationException: 400: An error occurred (ValidationException)"
    )
    assert description.endswith(": Malformed input request: #/messages: expected type: JSONArray")


def test_an_unmodeled_code_is_still_the_code(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    fake_llm.enqueue(
        Reply.error(403, error_type="ExpiredTokenException", message="The security token expired")
    )
    with pytest.raises(ClientError) as caught:
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    assert type(caught.value) is ClientError
    span = instrumented.only_span()
    assert attrs(span)["error.type"] == "botocore.ExpiredTokenException"
    assert span.status.description == "botocore.ExpiredTokenException: 403"
    assert default_classifier(caught.value).category is ErrorCategory.VALIDATION


def test_transport_errors(instrumented: Signals, fake_llm: FakeLLMServer, bedrock_clients: Any) -> None:
    fake_llm.enqueue(Reply.hang(5))
    client = bedrock_clients(fake_llm, read_timeout=0.3)
    with pytest.raises(ReadTimeoutError) as caught:
        client.converse(modelId=CLAUDE, messages=converse_user())
    assert attrs(instrumented.only_span())["error.type"] == "botocore.ReadTimeoutError"
    assert default_classifier(caught.value).category is ErrorCategory.TIMEOUT

    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    with FakeLLMServer() as gone:
        port = gone.port
    unreachable = bedrock_clients(gone)  # a port nothing listens on any more
    with pytest.raises(EndpointConnectionError) as refused:
        unreachable.converse(modelId=CLAUDE, messages=converse_user())
    assert f":{port}" in str(refused.value)
    assert attrs(instrumented.finished()[-1])["error.type"] == "botocore.EndpointConnectionError"
    assert default_classifier(refused.value).category is ErrorCategory.DEPENDENCY
    assert default_classifier(ConnectTimeoutError(endpoint_url=gone.url)).category is ErrorCategory.TIMEOUT


# -- trace context and the signature -------------------------------------------------------------


def _signed_headers(request: Any) -> list[str]:
    authorization = request.headers["authorization"]
    return authorization.split("SignedHeaders=")[1].split(",")[0].split(";")


def test_traceparent_on_every_attempt_outside_the_signature(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock_clients: Any
) -> None:
    fake_llm.enqueue(Reply.error(503), Reply.error(503), Reply.text("ok"))
    client = bedrock_clients(fake_llm, retries={"mode": "standard", "max_attempts": 3})
    at_signing: list[bool] = []

    def signing(request: Any, **kwargs: Any) -> None:
        at_signing.append("traceparent" in request.headers)

    # Last of the handlers that run just before botocore computes the signature.
    client.meta.events.register_last("before-sign.bedrock-runtime", signing)
    client.converse(modelId=CLAUDE, messages=converse_user())
    # agentwatch adds the header after signing, so no botocore version can sign it (1.44 leaves
    # traceparent out of SigV4 anyway; 1.34.116, the oldest supported, signs every header it sees).
    assert at_signing == [False, False, False]

    span = instrumented.only_span()
    trace_id, span_id = format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")
    assert len(fake_llm.requests) == 3
    for request in fake_llm.requests:
        # Every attempt is re-signed by botocore and verified by the server (else: 403, no "ok").
        version, trace, parent, _flags = request.headers["traceparent"].split("-")
        assert (version, trace, parent) == ("00", trace_id, span_id)
        assert "traceparent" not in _signed_headers(request)
        assert "host" in _signed_headers(request) and "x-amz-date" in _signed_headers(request)


def test_a_proxy_rewriting_traceparent_does_not_break_the_request(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    # What a service mesh sidecar or an egress proxy continuing the trace does to the header.
    def rewrite(request: Any, **kwargs: Any) -> None:
        del request.headers["traceparent"]
        request.headers["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    bedrock.meta.events.register_last("before-send.bedrock-runtime", rewrite)
    assert bedrock.converse(modelId=CLAUDE, messages=converse_user())["stopReason"] == "end_turn"
    assert fake_llm.requests[0].headers["traceparent"].startswith("00-0af7651916cd43dd")


def test_the_server_rejects_a_request_changed_after_signing(fake_llm: FakeLLMServer, bedrock: Any) -> None:
    # The proof that the check can fail: a handler at the same point as agentwatch's (after
    # signing) that changes a *signed* header breaks the signature.
    client = bedrock

    def tamper(request: Any, **kwargs: Any) -> None:
        del request.headers["X-Amz-Date"]
        request.headers["X-Amz-Date"] = "20200101T000000Z"

    client.meta.events.register("before-send.bedrock-runtime", tamper)
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=CLAUDE, messages=converse_user())
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert fake_llm.pending == 0 and len(fake_llm.requests) == 1


@pytest.mark.parametrize(("hosts", "sent"), [("*", True), ("none", False), ("127.0.0.1", True)])
def test_propagation_follows_the_host_policy(
    signals: Signals,
    fake_llm: FakeLLMServer,
    bedrock: Any,
    monkeypatch: pytest.MonkeyPatch,
    hosts: str,
    sent: bool,
) -> None:
    monkeypatch.setenv("AGENTWATCH_PROPAGATE_HOSTS", hosts)
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        bedrock.converse(modelId=CLAUDE, messages=converse_user())
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert ("traceparent" in fake_llm.requests[0].headers) is sent


@pytest.mark.skipif(not has_operation("ApplyGuardrail"), reason="this botocore has no apply_guardrail")
def test_calls_agentwatch_does_not_trace_get_no_traceparent(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    with pytest.raises(ClientError):
        apply_guardrail(bedrock)
    assert "traceparent" not in fake_llm.requests[0].headers
    assert instrumented.finished() == []


# -- hooks: existing clients, uninstrument, instrument twice --------------------------------------


def test_a_client_created_before_instrument_is_traced(
    signals: Signals, fake_llm: FakeLLMServer, bedrock: Any
) -> None:
    client = bedrock
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        client.converse(modelId=CLAUDE, messages=converse_user())
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert signals.only_span().name == f"chat {CLAUDE}"
    assert "traceparent" in fake_llm.requests[0].headers


def test_uninstrument_restores_every_original(fake_llm: FakeLLMServer, bedrock_clients: Any) -> None:
    from botocore.client import BaseClient, ClientCreator
    from botocore.endpoint import Endpoint

    originals = (ClientCreator.__dict__["_create_client_class"], Endpoint.__dict__["_needs_retry"])
    before = bedrock_clients(fake_llm)
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    agentwatch.instrument(**signals.providers, configure_sdk=False)  # twice: harmless
    during = bedrock_clients(fake_llm)
    before.converse(modelId=CLAUDE, messages=converse_user())
    during.converse(modelId=CLAUDE, messages=converse_user())
    assert len(signals.finished()) == 2
    agentwatch.uninstrument()
    set_default_telemetry()

    assert (ClientCreator.__dict__["_create_client_class"], Endpoint.__dict__["_needs_retry"]) == originals
    for client in (before, during):
        assert "_make_api_call" not in type(client).__dict__
        assert type(client)._make_api_call is BaseClient._make_api_call
        client.converse(modelId=CLAUDE, messages=converse_user())
    assert len(signals.finished()) == 2
    assert [("traceparent" in r.headers) for r in fake_llm.requests] == [True, True, False, False]


def test_an_internal_fault_never_reaches_the_caller(
    instrumented: Signals, fake_llm: FakeLLMServer, bedrock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentwatch.instrumentation.bedrock import _extract

    def broken(*args: Any) -> None:
        raise RuntimeError("agentwatch bug")

    monkeypatch.setattr(_extract, "converse_stream_handler", lambda capture: broken)
    monkeypatch.setattr(_extract, "_converse_shape", broken)
    fake_llm.enqueue(Reply.text("a b"), Reply.text("c d"))
    assert bedrock.converse(modelId=CLAUDE, messages=converse_user())["output"]["message"]["content"] == [
        {"text": "a b"}
    ]
    events = list(bedrock.converse_stream(modelId=CLAUDE, messages=converse_user())["stream"])
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 7
    assert len(instrumented.finished()) == 2


# -- the same results as without agentwatch ------------------------------------------------------


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items() if k not in ("date", "HTTPHeaders")}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _run(client: Any, operation: str, model: str) -> Any:
    if operation == "converse":
        return _normalise(client.converse(modelId=model, messages=converse_user()))
    if operation == "converse_stream":
        response = client.converse_stream(modelId=model, messages=converse_user())
        with closing(response["stream"]):
            return _normalise({**response, "stream": list(response["stream"])})
    body = json.dumps({"prompt": "x", "max_gen_len": 5, "messages": [{"role": "user", "content": "x"}]})
    if operation == "invoke_model":
        response = client.invoke_model(modelId=model, body=body)
        return _normalise({**response, "body": response["body"].read()})
    response = client.invoke_model_with_response_stream(modelId=model, body=body)
    with closing(response["body"]):
        return _normalise({**response, "body": list(response["body"])})


@pytest.mark.parametrize(
    "operation", ["converse", "converse_stream", "invoke_model", "invoke_model_with_response_stream"]
)
@pytest.mark.parametrize("model", [CLAUDE, NOVA, LLAMA])
@pytest.mark.parametrize("reply", ["text", "tool_calls", "error_mid_stream"])
def test_results_are_identical_with_and_without_agentwatch(
    aws_environment: None, operation: str, model: str, reply: str
) -> None:
    if reply == "tool_calls" and model == LLAMA and operation.startswith("invoke"):
        pytest.skip("Llama's InvokeModel body has no tool calls")
    script = {
        "text": Reply.text("one two three", cached_tokens=2),
        "tool_calls": Reply.tool_calls([("search", {"q": "otel"})], content="Looking"),
        "error_mid_stream": Reply.text("one two three", error_after_chunks=2),
    }[reply]

    def run() -> Any:
        with FakeLLMServer() as server:
            server.enqueue(script)
            client = bedrock_client(server)
            try:
                return ("ok", _run(client, operation, model))
            except Exception as exc:
                return ("raised", type(exc), str(exc), getattr(exc, "response", None))
            finally:
                client.close()

    bare = run()
    signals = make_signals()
    agentwatch.instrument(**signals.providers, configure_sdk=False)
    try:
        observed = run()
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
    assert observed == bare
    assert len(signals.finished()) == 1
