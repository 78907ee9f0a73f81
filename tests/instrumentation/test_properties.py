"""Property tests of every response and stream-event reader (issue 11, "beyond the sample").

Hypothesis mutates real responses of each provider (the fake server's, which follow the SDKs'
models): any field may be deleted, replaced by any JSON value, or joined by unknown fields; stream
events may be dropped, repeated or reordered. Each mutated response is served twice by the fake
server, to a call made with instrumentation suppressed (exactly the SDK's own path) and to an
instrumented call. Properties:

* the instrumented call returns exactly what the SDK returns (class and full content; every chunk
  of a stream and how the stream ended), or raises the same exception class with the same message;
* agentwatch reports at most one internal error per call, and still ends the call's span.

Examples are derandomized (the same ones every run, see tests/conftest.py) and kept few: the
suite's budget is a few hundred examples, about ten seconds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.instrumentation.utils import suppress_instrumentation

import agentwatch
from agentwatch import _internal
from agentwatch._fakellm import FakeLLMServer, Reply
from agentwatch._telemetry._core import set_default_telemetry
from support import (
    ANTHROPIC_KEY,
    ANTHROPIC_MODEL,
    HAS_RESPONSES,
    NO_NATIVE,
    OPENAI_KEY,
    OPENAI_MODEL,
    Signals,
    make_signals,
    user,
)

EXAMPLES = 40  # per shape; six shapes

# -- real responses to mutate ----------------------------------------------------------------------

SSE = list[tuple[str | None, str]]


def _sse(text: str) -> SSE:
    events: SSE = []
    for block in text.strip().split("\n\n"):
        name: str | None = None
        data = ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
        events.append((name, data))
    return events


@dataclass(frozen=True)
class Templates:
    chat: dict[str, Any]
    chat_chunks: SSE
    responses: dict[str, Any]
    responses_events: SSE
    embeddings: dict[str, Any]
    message: dict[str, Any]
    message_events: SSE


def _templates() -> Templates:
    """Record what the fake server answers (tool calls and usage included) as raw JSON and SSE."""
    with FakeLLMServer() as server, httpx.Client(timeout=10) as http:

        def post(url: str, body: dict[str, Any], reply: Reply) -> httpx.Response:
            server.enqueue(reply)
            return http.post(url, json=body)

        tools = Reply.tool_calls([("search", {"q": "otel"})], content="Looking it up")
        chat = {"model": OPENAI_MODEL, "messages": user()}
        stream = {"stream": True, "stream_options": {"include_usage": True}}
        oai, ant = server.openai_base_url, server.anthropic_base_url
        message = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": user()}
        return Templates(
            chat=post(f"{oai}/chat/completions", chat, tools).json(),
            chat_chunks=_sse(post(f"{oai}/chat/completions", {**chat, **stream}, tools).text),
            responses=post(f"{oai}/responses", {"model": OPENAI_MODEL, "input": "x"}, tools).json(),
            responses_events=_sse(
                post(f"{oai}/responses", {"model": OPENAI_MODEL, "input": "x", "stream": True}, tools).text
            ),
            embeddings=post(
                f"{oai}/embeddings",
                {"model": "text-embedding-3-small", "input": ["a", "b"]},
                Reply.embeddings(),
            ).json(),
            message=post(f"{ant}/v1/messages", message, tools).json(),
            message_events=_sse(post(f"{ant}/v1/messages", {**message, "stream": True}, tools).text),
        )


TEMPLATES = _templates()

# -- mutations -----------------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
ANY_JSON = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with some fields deleted, replaced by any JSON, or joined by unknown ones."""
    choice = draw(st.integers(0, 9))
    if choice == 0 and depth > 0:
        return draw(ANY_JSON)
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            fate = draw(st.integers(0, 9))
            if fate == 0:
                continue  # deleted
            out[key] = draw(mutated(item, depth + 1)) if fate <= 4 else item
        if draw(st.integers(0, 9)) == 0:
            out[draw(st.text(max_size=8))] = draw(ANY_JSON)
        return out
    if isinstance(value, list):
        items = [draw(mutated(item, depth + 1)) for item in value]
        if items and draw(st.integers(0, 9)) == 0:
            items.append(items[draw(st.integers(0, len(items) - 1))])
        return items
    return value


@st.composite
def mutated_events(draw: st.DrawFn, events: SSE) -> SSE:
    """Stream events with mutated payloads; some dropped, repeated or swapped."""
    out: SSE = []
    for name, data in events:
        fate = draw(st.integers(0, 19))
        if fate == 0:
            continue
        payload = data if data == "[DONE]" else json.dumps(draw(mutated(json.loads(data))))
        out.append((name, payload))
        if fate == 1:
            out.append((name, payload))
    if len(out) > 2 and draw(st.integers(0, 9)) == 0:
        i = draw(st.integers(0, len(out) - 2))
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


# -- running both ways -----------------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        try:
            return (value.__class__, _normalise(value.model_dump(warnings=False)))
        except Exception as exc:  # a mutated model the SDK built without validating
            return (value.__class__, "unserialisable", type(exc))
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def _outcome(call: Callable[[], Any]) -> Any:
    try:
        result = call()
    except Exception as exc:
        return ("raised", type(exc), str(exc))
    if isinstance(result, (openai.Stream, anthropic.Stream)):
        chunks: list[Any] = []
        try:
            for chunk in result:
                chunks.append(_normalise(chunk))
        except Exception as exc:
            return ("stream", result.__class__, chunks, type(exc), str(exc))
        return ("stream", result.__class__, chunks)
    return ("returned", _normalise(result))


class _Faults(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "internal error" in record.getMessage():
            self.records.append(record)


@dataclass
class Rig:
    server: FakeLLMServer
    signals: Signals
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic
    faults: _Faults

    def check(self, reply: Reply, call: Callable[[Rig], Any]) -> None:
        self.server.enqueue(reply, reply)
        with suppress_instrumentation():
            bare = _outcome(lambda: call(self))
        self.signals.spans.clear()
        self.faults.records.clear()
        instrumented = _outcome(lambda: call(self))
        assert instrumented == bare
        assert len(self.faults.records) <= 1, [r.getMessage() for r in self.faults.records]
        # The call's span ended (a stream ends it when read to the end or when it fails).
        assert len(self.signals.spans.get_finished_spans()) == 1


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    signals = make_signals()
    faults = _Faults()
    logger = logging.getLogger("agentwatch")
    logger.addHandler(faults)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    agentwatch.instrument(**signals.providers, configure_sdk=False, capture_message_content="SPAN_AND_EVENT")
    try:
        with (
            FakeLLMServer() as server,
            openai.OpenAI(base_url=server.openai_base_url, api_key=OPENAI_KEY, max_retries=0) as oai,
            anthropic.Anthropic(
                base_url=server.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, **NO_NATIVE
            ) as ant,
        ):
            yield Rig(server, signals, oai, ant, faults)
    finally:
        agentwatch.uninstrument()
        set_default_telemetry()
        logger.removeHandler(faults)
        logger.setLevel(old_level)
        _internal._reported.clear()


def _chat(r: Rig, stream: bool = False) -> Any:
    return r.openai.chat.completions.create(model=OPENAI_MODEL, messages=user(), stream=stream)


def _responses(r: Rig, stream: bool = False) -> Any:
    return r.openai.responses.create(model=OPENAI_MODEL, input="x", stream=stream)


def _messages(r: Rig, stream: bool = False) -> Any:
    return r.anthropic.messages.create(model=ANTHROPIC_MODEL, max_tokens=64, messages=user(), stream=stream)


PROPERTY = settings(max_examples=EXAMPLES, deadline=None)


@PROPERTY
@given(body=mutated(TEMPLATES.chat))
def test_chat_completions(rig: Rig, body: dict[str, Any]) -> None:
    rig.check(Reply.json(body), _chat)


@PROPERTY
@given(events=mutated_events(TEMPLATES.chat_chunks))
def test_chat_completion_chunks(rig: Rig, events: SSE) -> None:
    rig.check(Reply.sse(events), lambda r: _chat(r, stream=True))


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai version has no Responses API")
@PROPERTY
@given(body=mutated(TEMPLATES.responses))
def test_responses(rig: Rig, body: dict[str, Any]) -> None:
    rig.check(Reply.json(body), _responses)


@pytest.mark.skipif(not HAS_RESPONSES, reason="this openai version has no Responses API")
@PROPERTY
@given(events=mutated_events(TEMPLATES.responses_events))
def test_responses_events(rig: Rig, events: SSE) -> None:
    rig.check(Reply.sse(events), lambda r: _responses(r, stream=True))


@PROPERTY
@given(body=mutated(TEMPLATES.embeddings))
def test_embeddings(rig: Rig, body: dict[str, Any]) -> None:
    rig.check(
        Reply.json(body), lambda r: r.openai.embeddings.create(model="text-embedding-3-small", input=["a"])
    )


@PROPERTY
@given(body=mutated(TEMPLATES.message))
def test_anthropic_messages(rig: Rig, body: dict[str, Any]) -> None:
    rig.check(Reply.json(body), _messages)


@PROPERTY
@given(events=mutated_events(TEMPLATES.message_events))
def test_anthropic_stream_events(rig: Rig, events: SSE) -> None:
    rig.check(Reply.sse(events), lambda r: _messages(r, stream=True))
