"""Environment variables that agentwatch reads.

Registered under the ``opentelemetry_environment_variables`` entry point so that tools listing
OpenTelemetry settings find them. A keyword argument of :func:`agentwatch.instrument` always
wins over the variable, which wins over the default.
"""

OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
"""
.. envvar:: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT

Where prompts, completions, system instructions and tool argument values/results are recorded:
``NO_CONTENT`` (default: nowhere), ``SPAN_ONLY``, ``EVENT_ONLY``, ``SPAN_AND_EVENT``
(case-insensitive). The legacy values ``true`` (= ``SPAN_AND_EVENT``) and ``false``
(= ``NO_CONTENT``) are accepted. Any other value is a configuration error.
"""

AGENTWATCH_PROPAGATE_HOSTS = "AGENTWATCH_PROPAGATE_HOSTS"
"""
.. envvar:: AGENTWATCH_PROPAGATE_HOSTS

Which LLM hosts receive trace-context headers (``traceparent`` and whatever else the global
propagator injects): ``*`` (default: all), ``none``, or a comma-separated list of host names
(``api.openai.com,llm.internal``); a leading ``*.`` matches any subdomain.
"""

AGENTWATCH_OPENAI_INCLUDE_USAGE = "AGENTWATCH_OPENAI_INCLUDE_USAGE"
"""
.. envvar:: AGENTWATCH_OPENAI_INCLUDE_USAGE

``true`` adds ``stream_options={"include_usage": true}`` to OpenAI chat-completion streams that
did not set ``stream_options``, so that streamed calls report tokens and cost. Off by default
because it changes the request (the server then sends one extra, choice-less chunk, which is
passed through to the application like every other chunk).
"""

AGENTWATCH_TIME_PER_OUTPUT_CHUNK = "AGENTWATCH_TIME_PER_OUTPUT_CHUNK"
"""
.. envvar:: AGENTWATCH_TIME_PER_OUTPUT_CHUNK

``true`` (default) records ``gen_ai.client.operation.time_per_output_chunk``, one value per
streamed chunk after the first, as the conventions define it; ``false`` leaves that metric out
(streams still record their duration, tokens, cost and ``time_to_first_chunk``). The values are
recorded when the stream ends, not while it is read, but each costs one SDK record (about 8 µs):
about 8 ms at the end of a 1,000-chunk stream. Any other value is a configuration error.
"""

AGENTWATCH_PRICES_FILE = "AGENTWATCH_PRICES_FILE"
"""
.. envvar:: AGENTWATCH_PRICES_FILE

Path of a TOML or JSON file of model prices (USD per million tokens) that add to or override
the genai-prices data, for private and fine-tuned models. See the README, "Cost".
"""

AGENTWATCH_CONFIG = "AGENTWATCH_CONFIG"
"""
.. envvar:: AGENTWATCH_CONFIG

Path of a TOML file of resilience policies for tools and LLM calls. See the README, "Resilience".
"""

AGENTWATCH_CACHE_REDIS_URL = "AGENTWATCH_CACHE_REDIS_URL"
"""
.. envvar:: AGENTWATCH_CACHE_REDIS_URL

URL of the Redis that tool-result caches with ``backend="redis"`` and no ``redis_url`` of their
own use (``Policy(cache=Cache(backend="redis"))``, ``cache = { backend = "redis" }`` in
``AGENTWATCH_CONFIG``): ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS) or
``unix://``. Read when the cache is defined; unset or invalid is a configuration error. Its
password never appears in errors or logs.
"""

AGENTWATCH_STATE_REDIS_URL = "AGENTWATCH_STATE_REDIS_URL"
"""
.. envvar:: AGENTWATCH_STATE_REDIS_URL

URL of the Redis through which the replicas of a service share operator state (tools disabled,
circuits forced open or closed) and rate-limit budgets: ``redis://[[user]:password@]host[:port][/db]``,
``rediss://`` (TLS) or ``unix://``. Unset (default): every process keeps its own. The
``shared_state=agentwatch.SharedState(...)`` argument of :func:`agentwatch.instrument` wins over
it. Separate from ``AGENTWATCH_CACHE_REDIS_URL`` on purpose: a cache Redis may evict keys
(``allkeys-lru``), and evicted operator state would silently re-enable a tool; point both at one
Redis only if it never evicts (``noeviction``). Invalid: a configuration error. Its password
never appears in errors or logs.
"""

AGENTWATCH_ADMIN_TOKEN = "AGENTWATCH_ADMIN_TOKEN"
"""
.. envvar:: AGENTWATCH_ADMIN_TOKEN

The bearer token every request to ``agentwatch.admin.app`` must carry
(``Authorization: Bearer <token>``), reads included; read at each request. Unset or empty: every
route answers 403. Use a long random value (``python -c "import secrets;
print(secrets.token_urlsafe(32))"``); it is compared in constant time and never logged.
"""
