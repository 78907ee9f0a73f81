"""Start-up with LiteLLM installed: a LiteLLM imported after ``instrument()`` is traced on each of
its transports, and nothing leaves the machine (LiteLLM fetches its cost map from GitHub at import
unless told not to).

What every integration shares (``instrument()`` and zero-code start-up import no LiteLLM, every
patch point patched and restored whichever is imported first) is checked over the registry by
``test_lazy_patching.py``. Each case runs in a fresh interpreter: this test process has imported
LiteLLM long ago. The tests' environment (tests/conftest.py) tells LiteLLM to stay offline, as an
application's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cli._support import clean_env

pytest.importorskip("litellm")

GUARD = """
import json, socket, sys

CONNECTED = []
_connect = socket.socket.connect
_getaddrinfo = socket.getaddrinfo


def connect(self, address):
    CONNECTED.append(address[0] if isinstance(address, tuple) else "unix")
    return _connect(self, address)


def getaddrinfo(host, *args, **kwargs):
    CONNECTED.append(host.decode() if isinstance(host, bytes) else str(host))
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect = connect
socket.getaddrinfo = getaddrinfo
"""

LATER_IMPORT = """
import asyncio

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentwatch
from agentwatch._fakellm import FakeLLMServer, Reply

spans = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(spans))
agentwatch.instrument(tracer_provider=provider, configure_sdk=False)
imported_by_instrument = "litellm" in sys.modules

import litellm  # the application's own import, after instrument()

litellm.suppress_debug_info = True
with FakeLLMServer() as server:
    server.enqueue(Reply.text("one two"), Reply.text("three four"), Reply.text("five"))
    litellm.completion(model="groq/llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}],
                       api_base=server.openai_base_url, api_key="k")
    # A stream without usage: LiteLLM counts tokens itself at its end (tiktoken, offline).
    list(litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                            api_base=server.openai_base_url, api_key="k", stream=True))

    async def call():
        await litellm.acompletion(model="anthropic/claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}],
                                  api_base=server.url, api_key="k")
        await litellm.close_litellm_async_clients()

    asyncio.run(call())
    traced = ["traceparent" in r.headers for r in server.requests]
print(json.dumps({
    "imported_by_instrument": imported_by_instrument,
    "spans": sorted(s.name for s in spans.get_finished_spans()),
    "traced": traced,
    "hosts": sorted(set(CONNECTED)),
}))
"""


def _run(tmp_path: Path, body: str) -> dict[str, Any]:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(GUARD) + textwrap.dedent(body), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_litellm_imported_after_instrument_is_patched_traced_and_offline(tmp_path: Path) -> None:
    found = _run(tmp_path, LATER_IMPORT)
    assert found["imported_by_instrument"] is False
    assert found["spans"] == ["chat claude-haiku-4-5", "chat gpt-4o-mini", "chat llama-3.1-8b-instant"]
    assert found["traced"] == [True, True, True]
    assert found["hosts"] == ["127.0.0.1"]
