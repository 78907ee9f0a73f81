"""Helpers every wire format's renderer may share: splitting text into deltas, tool-call ids and
argument slices, finish-reason vocabularies, deterministic embedding vectors, status phrases."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentwatch._fakellm._replies import CompletionSpec, ErrorSpec
    from agentwatch._fakellm._wire import RecordedRequest

__all__ = [
    "ARGUMENT_SLICE",
    "Ids",
    "PreparedCall",
    "error_message",
    "fake_vector",
    "openai_finish_reason",
    "prepare_calls",
    "request_field",
    "split_text",
    "status_phrase",
]

# Argument JSON is streamed in slices of this many characters: small enough that even short tool
# arguments arrive as several deltas, which is what reassembly code has to cope with in production.
ARGUMENT_SLICE = 12


class Ids:
    """Per-server counters so that ids are deterministic within one test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tool = 0
        self._object = 0

    def reset(self) -> None:
        with self._lock:
            self._tool = 0
            self._object = 0

    def tool(self) -> int:
        """The next tool-call number (``call_N``, ``toolu_N``...)."""
        with self._lock:
            self._tool += 1
            return self._tool

    def object(self) -> int:
        """The next response number (``chatcmpl-fakeN``, ``msg_fakeN``...)."""
        with self._lock:
            self._object += 1
            return self._object


_WORD = re.compile(r"\s*\S+\s*|\s+")


def split_text(text: str, chunks: int | None) -> list[str]:
    """The content deltas of ``text``: one per word, or ``chunks`` pieces of near-equal length."""
    if not text:
        return []
    if chunks is None:
        return _WORD.findall(text)
    n = min(chunks, len(text))
    size, extra = divmod(len(text), n)
    pieces: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _split_fixed(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


_TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def openai_finish_reason(reason: str) -> str:
    """A script's finish reason in OpenAI's vocabulary (``stop``/``length``/``tool_calls``/
    ``content_filter``), the neutral one a format maps to its own; unknown values pass through."""
    return _TO_OPENAI.get(reason, reason)


@dataclass(frozen=True)
class PreparedCall:
    """A scripted tool call with its id assigned and its argument JSON sliced into stream deltas."""

    id: str
    name: str
    arguments: str  # JSON text (or the script's verbatim string)
    pieces: list[str]


def prepare_calls(spec: CompletionSpec, ids: Ids, prefix: str) -> list[PreparedCall]:
    """The spec's tool calls; ids not given by the script are ``{prefix}{n}`` from the server's counter."""
    prepared = []
    for call in spec.calls:
        arguments = (
            call.arguments
            if isinstance(call.arguments, str)
            else json.dumps(dict(call.arguments), separators=(",", ":"))
        )
        call_id = call.id if call.id is not None else f"{prefix}{ids.tool()}"
        prepared.append(PreparedCall(call_id, call.name, arguments, _split_fixed(arguments, ARGUMENT_SLICE)))
    return prepared


def request_field(request: RecordedRequest, name: str, default: Any) -> Any:
    """A top-level field of the request's JSON body, or ``default`` when absent or null."""
    if isinstance(request.json, dict) and request.json.get(name) is not None:
        return request.json[name]
    return default


def fake_vector(key: str, dimensions: int) -> list[float]:
    """A deterministic unit vector derived from ``key``, so similarity arithmetic in demos behaves sensibly."""
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.sha256(f"{block}:{key}".encode()).digest()
        raw.extend(b / 127.5 - 1.0 for b in digest)
        block += 1
    vector = raw[:dimensions]
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in vector]


def status_phrase(status: int) -> str:
    if status == 529:
        return "Overloaded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def error_message(spec: ErrorSpec) -> str:
    """The script's error message, or a default naming the status."""
    if spec.message is not None:
        return spec.message
    return f"{status_phrase(spec.status) or 'Error'} (fake LLM, HTTP {spec.status})"
