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
