"""A tiny WSGI app for the prefork test (tests/resilience/test_fork.py), served by gunicorn.

Loaded with ``--preload``: the master imports it and calls the tool once (its attempt runs in a
worker thread of agentwatch's pool, which then waits idle, and its bulkhead counts the call),
then forks the workers that serve requests, exactly as a preforking deployment does.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import agentwatch
from agentwatch import Bulkhead, Policy

POLICY = Policy(timeout=float(os.environ.get("FORK_APP_TIMEOUT", "5")), bulkhead=Bulkhead(max_concurrent=1))


@agentwatch.tool(name="lookup", policy=POLICY)
def lookup(key: str) -> str:
    return key.upper()


lookup("warm-up in the master")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    try:
        body, status = f"{lookup('x')} {os.getpid()}", "200 OK"
    except Exception as exc:  # reported to the test as the response
        body, status = f"{type(exc).__name__} {os.getpid()}", "500 Internal Server Error"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body.encode()]
