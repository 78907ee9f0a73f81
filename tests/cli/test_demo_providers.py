"""``agentwatch demo --provider``: the same agent, sessions, tools, faults and policies through the
real SDK of each provider, over HTTP to the fake LLM server; and the errors of a provider that is
unknown or not installed."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from agentwatch._demo._provider import demo_providers
from cli._support import AGENTWATCH, attributes, cache_dir, read_jsonl, run, spans, summary_shape

TOOLS = ("search_knowledge_base", "get_user_preferences", "fetch_related_content")
# provider -> (gen_ai.provider.name, operation of its model calls, main model, fallback model)
PROVIDERS = {
    "openai": ("openai", "chat", "gpt-4o-mini", "gpt-4.1-mini"),
    "anthropic": ("anthropic", "chat", "claude-haiku-4-5", "claude-sonnet-4-5"),
    "gemini": ("gcp.gemini", "generate_content", "gemini-2.5-flash-lite", "gemini-2.5-flash"),
    "bedrock": (
        "aws.bedrock",
        "chat",
        "us.amazon.nova-micro-v1:0",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    ),
    # Through LiteLLM's OpenAI-compatible route: the policy and its circuit name the model as
    # LiteLLM is asked for it; the span, as the server is (the adapter's wire_model).
    "litellm": ("openai", "chat", "openai/gpt-4o-mini", "openai/gpt-4.1-mini"),
}
# Six sessions of seed 7 at a 0.3 fault rate have LLM retries, fallbacks, and an open circuit.
ARGS = ("--sessions", "6", "--seed", "7", "--fault-rate", "0.3", "--no-progress")
# Each provider's own settings, pointing elsewhere: the demo must read none of them (the fake
# server would refuse another key, signature or region, or never see the request).
HOSTILE_ENVIRONMENT = {
    "AWS_PROFILE": "no-such-profile",
    "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG0",
    "AWS_SECRET_ACCESS_KEY": "wrong",
    "AWS_SESSION_TOKEN": "wrong",
    "AWS_BEARER_TOKEN_BEDROCK": "wrong",
    "AWS_REGION": "eu-west-3",
    "AWS_DEFAULT_REGION": "eu-west-3",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "http://127.0.0.1:9",
    "AWS_MAX_ATTEMPTS": "9",
    "GOOGLE_GENAI_USE_VERTEXAI": "true",
    "GOOGLE_CLOUD_PROJECT": "no-such-project",
    "GOOGLE_API_KEY": "wrong",
    "GEMINI_API_KEY": "wrong",
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    "OPENAI_BASE_URL": "http://127.0.0.1:9",
    "OPENAI_API_BASE": "http://127.0.0.1:9",
    "OPENAI_API_KEY": "wrong",
    "USE_LITELLM_PROXY": "true",
    "LITELLM_PROXY_API_BASE": "http://127.0.0.1:9",
    "LITELLM_PROXY_API_KEY": "wrong",
    "LITELLM_MODE": "DEV",
    "LITELLM_LOCAL_MODEL_COST_MAP": "False",
    "LITELLM_MODEL_COST_MAP_URL": "http://127.0.0.1:9/model_prices_and_context_window.json",
    "LITELLM_ROUTE_ALL_CHAT_OPENAI_TO_RESPONSES": "true",
    "EXPERIMENTAL_OPENAI_BASE_LLM_HTTP_HANDLER": "true",
    # A proxy that cannot reach this machine's loopback (nothing listens on port 9).
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "all_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "example.com",
}


# LiteLLM is in `.[dev]`, not `.[test]` (see scripts/test.sh): without it, its runs skip.
_HAS_LITELLM = importlib.util.find_spec("litellm") is not None
_NEEDS_LITELLM = pytest.mark.skipif(
    not _HAS_LITELLM, reason="LiteLLM is not installed (pip install -e '.[dev]')"
)
INSTALLED = [provider for provider in PROVIDERS if provider != "litellm" or _HAS_LITELLM]


def _int(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in:\n{text}"
    return int(match.group(1).replace(",", ""))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Path]]:
    """Every provider's run: (the summary printed, the telemetry file)."""
    done = {}
    for provider in INSTALLED:
        cwd = tmp_path_factory.mktemp(provider)
        config = cwd.with_name(f"{cwd.name}-aws-config")
        config.write_text("[default]\nregion = ap-south-1\nendpoint_url = http://127.0.0.1:9\n")
        output = cwd.with_name(f"{cwd.name}.jsonl")
        env = {
            **HOSTILE_ENVIRONMENT,
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(config),
        }
        result = run(
            [AGENTWATCH, "demo", "--provider", provider, *ARGS, "--output", output], cwd=cwd, env=env
        )
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        done[provider] = (result.stdout, output)
    return done


def _session_tool_calls(path: Path) -> dict[str, set[tuple[str, str]]]:
    """Per session number (the run id differs between runs): every tool call, by tool and call id."""
    calls: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for _, span in spans(read_jsonl(path)):
        attrs = attributes(span)
        if attrs["gen_ai.operation.name"] == "execute_tool":
            session = attrs["gen_ai.conversation.id"].rsplit("-", 1)[1]
            calls[session].add((attrs["gen_ai.tool.name"], attrs["gen_ai.tool.call.id"]))
    return dict(calls)


@pytest.mark.parametrize(
    "provider", [pytest.param(p, marks=_NEEDS_LITELLM if p == "litellm" else ()) for p in PROVIDERS]
)
def test_the_demo_runs_on_each_provider(runs: dict[str, tuple[str, Path]], provider: str) -> None:
    provider_name, operation, main, fallback = PROVIDERS[provider]
    wire_model = demo_providers()[provider].load().wire_model
    out, path = runs[provider]
    # The report alone (no SDK's own printing before it), the same summary and waterfall as the
    # default (OpenAI) run, and the provider named.
    assert out.lstrip().startswith("agentwatch demo: "), out
    for section in ("LLM calls by model", "Tool calls", "Sessions", "Interesting trace", "Telemetry"):
        assert f"\n{section}" in out
    default = runs["openai"][0].replace(str(runs["openai"][1]), str(path))
    if provider != "openai":
        assert f"agentwatch demo: provider {provider}, seed 7, fault rate 0.3, plan " in out
        default = default.replace("agentwatch demo: seed", f"agentwatch demo: provider {provider}, seed")
    assert summary_shape(out) == summary_shape(default)
    assert re.search(rf" fallbacks \(from {re.escape(main)} ×\d+\)\n", out), out
    calls = _int(r"[\d,]+ requests sent for ([\d,]+) calls", out)
    assert _int(r"received (\d+) requests", out) == _int(r"([\d,]+) requests sent for", out) > calls > 0
    assert _int(r"\n  ([\d,]+) sessions: ", out) == 6

    found = [span for _, span in spans(read_jsonl(path))]
    by_id = {span["spanId"]: span for span in found}
    llm = [attributes(span) for span in found if span["name"].startswith(f"{operation} ")]
    # One span per model call, the provider's own, with its tokens and cost.
    assert {
        span["name"] for span in found if not span["name"].startswith(("invoke_agent", "execute_tool"))
    } == {f"{operation} {wire_model(main)}"}
    assert len(llm) == calls
    assert {attrs["gen_ai.provider.name"] for attrs in llm} == {provider_name}
    answered = [attrs for attrs in llm if "error.type" not in attrs]
    assert answered
    for attrs in answered:
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["gen_ai.usage.cost.amount"] > 0
    assert 0 < sum(1 for attrs in llm if "gen_ai.response.time_to_first_chunk" in attrs) < calls
    # The model's policy: retries, the fallback model answering, the circuit opening.
    events = Counter(
        event["name"]
        for span in found
        if span["name"].startswith(operation)
        for event in span.get("events", [])
    )
    assert events["retry"] > 0 and events["fallback"] > 0 and events["circuit_opened"] > 0, events
    assert any(attrs.get("gen_ai.response.model") == wire_model(fallback) for attrs in answered)
    assert f"circuit {provider_name}:{main}: " in out
    # The tools, through the registry, linked to the model's tool-call ids.
    tool_spans = [span for span in found if span["name"].startswith("execute_tool ")]
    assert {span["name"] for span in tool_spans} == {f"execute_tool {tool}" for tool in TOOLS}
    for span in tool_spans:
        assert by_id[span["parentSpanId"]]["name"] == "invoke_agent support-agent"
        assert attributes(span)["gen_ai.tool.call.id"].startswith("call_")
    assert sum(1 for span in found if span["name"] == "invoke_agent support-agent") == 6


def test_every_provider_runs_the_same_sessions(runs: dict[str, tuple[str, Path]]) -> None:
    """Same plan, same tool calls (names and ids) in every session, whichever SDK the agent uses."""
    plans = {re.search(r"plan ([0-9a-f]{12})", out).group(1) for out, _ in runs.values()}  # type: ignore[union-attr]
    assert len(plans) == 1
    calls = {provider: _session_tool_calls(path) for provider, (_, path) in runs.items()}
    assert len(calls["openai"]) == 6
    for provider in INSTALLED:
        assert calls[provider] == calls["openai"], provider


def test_an_unknown_provider_is_named_with_the_accepted_values(tmp_path: Path) -> None:
    result = run([AGENTWATCH, "demo", "--provider", "watsonx"], cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: agentwatch demo" in result.stderr
    assert (
        "agentwatch demo: error: argument --provider: unknown provider 'watsonx'; accepted values are "
        "openai, anthropic, bedrock, gemini, litellm\n"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not cache_dir(tmp_path).exists()


@pytest.mark.parametrize(
    ("provider", "module", "sdk", "extra"),
    [
        ("openai", "openai", "openai", "agentwatch[openai]"),
        ("anthropic", "anthropic", "anthropic", "agentwatch[anthropic]"),
        ("gemini", "google.genai", "google-genai", "agentwatch[google-genai]"),
        ("bedrock", "boto3", "boto3", "agentwatch[bedrock]"),
        ("litellm", "litellm", "litellm", "agentwatch[litellm]"),
    ],
)
def test_a_provider_whose_sdk_is_missing_says_what_to_install(
    tmp_path: Path, provider: str, module: str, sdk: str, extra: str
) -> None:
    # The SDK made unimportable, as when the extra is not installed.
    script = (
        f"import sys; sys.modules[{module!r}] = None; from agentwatch._cli import main; "
        f"sys.exit(main(['demo', '--provider', {provider!r}]))"
    )
    result = run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 2
    assert (
        f"agentwatch demo: error: argument --provider: provider {provider!r} runs on the {sdk} SDK, which "
        f'is not installed (no module {module}): pip install "{extra}" (accepted values are openai, '
        "anthropic, bedrock, gemini, litellm)\n"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    assert not cache_dir(tmp_path).exists()


def test_help_lists_the_providers(tmp_path: Path) -> None:
    result = run([AGENTWATCH, "demo", "--help"], cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--provider NAME the LLM SDK the agent calls" in text
    assert ": openai, anthropic, bedrock, gemini, litellm (default: openai)" in text


def test_the_providers_are_the_registrys() -> None:
    """A provider is an integration whose package.py names a demo adapter: none is listed by hand."""
    assert list(demo_providers()) == ["openai", "anthropic", "bedrock", "gemini", "litellm"]
    for name, entry in demo_providers().items():
        adapter = entry.load()
        assert entry.adapter_module == f"{entry.integration.entry_point.module}._demo"
        assert adapter.provider_name == PROVIDERS[name][0]
        assert (adapter.main_model, adapter.fallback_model) == PROVIDERS[name][2:]


_SDKS = ("openai", "anthropic", "google.genai", "boto3", "botocore", "litellm")
_LAZY = """
import json, sys
from agentwatch._cli import main
status = main(sys.argv[1:])
print(json.dumps([status, sorted(m for m in {sdks!r} if m in sys.modules)]))
"""


@pytest.mark.parametrize(
    ("argv", "imported"),
    [
        (["demo", "--help"], []),
        (["demo", "--provider", "nosuch"], []),
        (["demo", "--provider", "anthropic", "--sessions", "1", "--no-progress"], ["anthropic"]),
        (["demo", "--provider", "bedrock", "--sessions", "1", "--no-progress"], ["boto3", "botocore"]),
        # LiteLLM calls OpenAI-compatible servers through the openai SDK.
        pytest.param(
            ["demo", "--provider", "litellm", "--sessions", "1", "--no-progress"],
            ["litellm", "openai"],
            marks=_NEEDS_LITELLM,
        ),
    ],
)
def test_the_command_line_imports_only_the_sdk_it_uses(
    tmp_path: Path, argv: list[str], imported: list[str]
) -> None:
    output = tmp_path.with_name(f"{tmp_path.name}.jsonl")
    extra = ["--output", str(output)] if "--sessions" in argv else []
    result = run([sys.executable, "-c", _LAZY.format(sdks=_SDKS), *argv, *extra], cwd=tmp_path)
    status, modules = json.loads(result.stdout.splitlines()[-1])
    assert status in (0, 2), result.stderr
    assert modules == imported
