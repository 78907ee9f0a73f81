"""A fake LLM HTTP server that speaks enough of the providers' HTTP APIs for their real SDKs.

The point is to exercise the *real* clients (``openai``, ``anthropic``...) end to end (HTTP,
connection pooling, stream decoding, retries, error mapping) without a network or an account, so
that the test suite can run the same call with and without instrumentation and compare the results,
faults included, and so that ``agentwatch demo`` can run scripted agent sessions offline.

Usage::

    with FakeLLMServer() as server:
        server.enqueue(Reply.tool_calls([("get_weather", {"city": "Paris"})]), Reply.text("Sunny."))
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="test")
        ...

Each request pops the next scripted :class:`Reply`; once the script is exhausted the ``responder``
(``default_responder`` unless given) answers. High-level replies (:meth:`Reply.text`,
:meth:`Reply.tool_calls`, :meth:`Reply.embeddings`, :meth:`Reply.error`) are rendered only when a
request arrives, into the wire format of that request's endpoint and stream mode, so one script
serves every provider. Raw replies (:meth:`Reply.json`, :meth:`Reply.sse`, :meth:`Reply.frames`) and
faults (:meth:`Reply.hang`, :meth:`Reply.reset`, :meth:`Reply.malformed`, :meth:`Reply.delay`, and
``chunk_delay``/``error_after_chunks``/``disconnect_after_chunks`` on streams) work for every format.

Stdlib only: this package is imported by the package's own command line and must not pull in the SDKs.

Layout: ``_replies`` (the :class:`Reply` API and its specs), ``_wire`` (requests, routes, the
:class:`WireFormat` seam, and reply + request -> plan, faults included), ``_render`` (helpers the
formats share), one module per wire format (``_openai``: chat completions, Responses, embeddings;
``_anthropic``: messages; ``_bedrock``: Bedrock Runtime, SigV4-verified), ``_formats`` (the
registry), ``_server`` (the HTTP transport, the script queue, :class:`FakeLLMServer`).

Adding a wire format (say Gemini)
---------------------------------
1. Write ``_gemini.py`` with a ``WireFormat`` subclass:

   - ``name`` (the provider of requests it claims but does not route) and ``request_id_header``;
   - ``route(request)``: read ``request.method``/``path``/``query`` (and, if needed, ``headers`` or
     ``json``, never the derived properties) and return a :class:`Route` (provider, endpoint,
     ``answers="completion"`` or ``"embeddings"``, ``model``/``stream`` when the URL says them,
     other captures in ``params``), a ``Route`` with ``endpoint=None`` for a method it does not
     serve on its paths, or None when the path is not its own;
   - ``claims(request)``: True when an unknown path carries this provider's auth header, so its
     404 comes in this provider's error envelope;
   - ``error(spec, request, ctx)`` -> :class:`Body` in the provider's error envelope (status,
     JSON content, extra headers such as an error-type header);
   - ``completion(spec, request, ctx)`` -> a :class:`Body`, or when ``request.stream`` a
     :class:`Stream`: every :class:`Event` of the successful stream, deltas marked ``content=True``,
     events that finish the turn (and end markers) ``terminal=True``; the provider's in-band error
     event(s) in ``error``; ``encode`` for the framing (SSE by default; a JSON array or binary
     event-stream frames are just another ``encode``) and its ``content_type``;
   - ``embeddings(spec, request, ctx)`` -> :class:`Body`;
   - optionally ``authenticate(request)`` -> an :class:`ErrorSpec` to answer instead of the script
     when the request's credentials are wrong (``_bedrock`` checks SigV4 signatures).

   ``_render`` has the shared pieces (``split_text``, ``prepare_calls`` with ids from ``ctx.ids``,
   ``openai_finish_reason``, ``fake_vector``, ``error_message``, ``request_field``). Token counts in
   a :class:`CompletionSpec` follow :meth:`Reply.text` (input includes cached and cache-creation
   tokens, output includes reasoning tokens); convert to the provider's convention.
2. Add ``GeminiFormat()`` to ``WIRE_FORMATS`` in ``_formats.py`` (one line; order only matters
   when two formats' paths overlap).
3. Point the SDK at ``server.url`` (plus whatever base path it expects). The transport, the script
   queue, the faults and the recording need no change; ``tests/test_fakellm_seam.py`` shows a toy
   format driven over HTTP.
"""

from __future__ import annotations

from agentwatch._fakellm._formats import WIRE_FORMATS
from agentwatch._fakellm._replies import CompletionSpec, EmbeddingsSpec, ErrorSpec, Reply, ToolCall
from agentwatch._fakellm._server import FakeLLMServer, Responder, default_responder
from agentwatch._fakellm._wire import (
    Body,
    Context,
    Endpoint,
    Event,
    Provider,
    RecordedRequest,
    Route,
    Stream,
    WireFormat,
    encode_sse,
)

__all__ = [
    "WIRE_FORMATS",
    "Body",
    "CompletionSpec",
    "Context",
    "EmbeddingsSpec",
    "Endpoint",
    "ErrorSpec",
    "Event",
    "FakeLLMServer",
    "Provider",
    "RecordedRequest",
    "Reply",
    "Responder",
    "Route",
    "Stream",
    "ToolCall",
    "WireFormat",
    "default_responder",
    "encode_sse",
]
