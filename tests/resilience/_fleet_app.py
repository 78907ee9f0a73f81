"""One replica of a fleet, for tests/resilience/test_fleet.py: run as ``python _fleet_app.py PORTFILE``.

Configured the way a deployment is, from the environment: ``AGENTWATCH_STATE_REDIS_URL`` (the
shared state, picked up by ``agentwatch.instrument()``), ``AGENTWATCH_ADMIN_TOKEN``, and
``FLEET_LLM_URL`` (the fake LLM server's OpenAI base URL). Serves, with uvicorn on 127.0.0.1 port
0 (the port is written to PORTFILE once it listens):

- ``/admin/...``: ``agentwatch.admin.app``;
- ``GET /call``: one call of the optional tool ``lookup`` (``{"status": "ok"}`` or its
  degradation result);
- ``GET /state``: ``agentwatch``'s shared-state status of this replica;
- ``GET /burst?seconds=S&threads=N``: N threads make chat calls through the OpenAI SDK for S
  seconds; the answer counts them by outcome (``ok``, or the exception's class name).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import openai
import uvicorn
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import agentwatch
from agentwatch import Policy, RateLimit
from agentwatch.admin import app as admin_app
from agentwatch.resilience import default_registry

MODEL = "gpt-4o-mini"
# 600 requests a minute, scaled to a 5 s window: 50 per 5 s is the same rate (10 a second).
LIMIT = RateLimit(requests=50, period=5.0, max_wait=5.0)

agentwatch.instrument(
    tracer_provider=TracerProvider(),
    meter_provider=MeterProvider(),
    configure_sdk=False,
    llm_policies={MODEL: Policy(timeout=30.0, rate_limit=LIMIT)},
)


@agentwatch.tool(policy=Policy(critical=False, timeout=5.0))
def lookup(key: str) -> str:
    return key.upper()


# Start-up is over: what is loaded stays (every installed framework, langgraph's hundreds of modules
# among them, once agentwatch.instrument() has patched it). Frozen, the collector no longer walks it
# on each full collection, whose pauses in the middle of a burst would delay sends already granted
# a permit into the next window (the gc.freeze() a prefork server does after loading the app).
gc.freeze()


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def burst(seconds: float, threads: int) -> dict[str, int]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    client = openai.OpenAI(base_url=os.environ["FLEET_LLM_URL"], api_key="sk-fleet", max_retries=0)

    def work() -> None:
        while time.monotonic() < deadline:
            try:
                client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
                outcome = "ok"
            except Exception as exc:  # reported to the test, which decides what is acceptable
                outcome = type(exc).__name__
            with lock:
                outcomes[outcome] += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.close()
    return dict(outcomes)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"].startswith("/admin"):
        await admin_app(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    body: object
    if scope["path"] == "/call":
        result = lookup("x")
        body = {"status": "ok"} if result == "X" else result.to_dict()  # type: ignore[attr-defined]
    elif scope["path"] == "/state":
        body = default_registry().state.status()
    elif scope["path"] == "/burst":
        body = await asyncio.to_thread(burst, float(query["seconds"]), int(query["threads"]))
    else:
        body = {"error": "not found"}
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    with open(sys.argv[1] + ".tmp", "w") as file:
        file.write(str(port))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    thread.join()


if __name__ == "__main__":
    main()
