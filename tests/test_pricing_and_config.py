"""Cost agrees with genai-prices; settings resolve keyword > environment > default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from agentwatch._config import ContentCapture, HostPolicy, ModelPrices, resolve_settings
from agentwatch._errors import ConfigError
from agentwatch._telemetry._pricing import Pricer, _Tiered, put_cost
from agentwatch._telemetry._usage import Usage

USAGES = [
    Usage(input_tokens=1200, output_tokens=300),
    Usage(input_tokens=5000, output_tokens=800, cache_read_tokens=3000),
    Usage(input_tokens=5000, output_tokens=800, cache_read_tokens=1000, cache_creation_tokens=2000),
    Usage(input_tokens=900, output_tokens=2000, reasoning_tokens=1500),
    Usage(input_tokens=300_000, output_tokens=1000, cache_read_tokens=100_000),  # above tier thresholds
]
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o-2024-08-06"),
    ("openai", "o4-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-5"),  # tiered prices
    ("anthropic", "claude-opus-4-6"),
    ("azure.ai.openai", "gpt-4o"),
]


def _reference(provider: str, model: str, usage: Usage) -> float:
    provider_id = {"azure.ai.openai": "azure"}.get(provider, provider)
    counts = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_creation_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
    }
    return float(
        calc_price(
            GPUsage(**{k: v for k, v in counts.items() if v}), model, provider_id=provider_id
        ).total_price
    )


@pytest.mark.parametrize(("provider", "model"), MODELS)
@pytest.mark.parametrize("usage", USAGES, ids=range(len(USAGES)))
def test_cached_prices_match_genai_prices(provider: str, model: str, usage: Usage) -> None:
    assert Pricer().cost(provider, (model,), usage) == pytest.approx(
        _reference(provider, model, usage), rel=1e-9
    )


def test_tiered_models_take_the_exact_path() -> None:
    assert isinstance(Pricer().price_of("anthropic", "claude-sonnet-4-5"), _Tiered)


def test_response_model_first_then_request_model() -> None:
    pricer = Pricer()
    usage = Usage(input_tokens=1000, output_tokens=100)
    assert pricer.cost("openai", ("gpt-4o-mini-2024-07-18", "gpt-4o"), usage) == pytest.approx(
        _reference("openai", "gpt-4o-mini", usage)
    )
    assert pricer.cost("openai", ("my-deployment", "gpt-4o-mini"), usage) == pytest.approx(
        _reference("openai", "gpt-4o-mini", usage)
    )
    assert pricer.cost("openai", ("nobody-knows",), usage) is None


def test_unpriced_models_are_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    pricer = Pricer()
    for _ in range(3):
        pricer.cost("openai", ("mystery-model",), Usage(input_tokens=1))
    assert [r.getMessage().count("mystery-model") for r in caplog.records if r.name == "agentwatch"] == [1]


def test_overrides_win_over_genai_prices() -> None:
    settings = resolve_settings(prices={"gpt-4o-mini": {"input_mtok": 100, "output_mtok": 0}}, environ={})
    assert Pricer(settings.prices).cost(
        "openai", ("gpt-4o-mini",), Usage(input_tokens=10_000, output_tokens=5)
    ) == pytest.approx(1.0)


def test_costs_carry_no_binary_noise() -> None:
    """240 input and 78 output tokens of gpt-4o-mini are $0.0000828, not 8.280000000000001e-05."""
    prices = resolve_settings(prices={"m": {"input_mtok": 0.15, "output_mtok": 0.6}}, environ={}).prices
    pricer = Pricer(prices)
    assert pricer.cost("openai", ("m",), Usage(input_tokens=240, output_tokens=78)) == 8.28e-05
    assert pricer.cost("openai", ("m",), Usage(input_tokens=11)) == 1.65e-06
    attributes: dict[str, object] = {}
    put_cost(attributes, 0.1 + 0.2, unpriced=False)  # a session's running sum
    assert attributes["gen_ai.usage.cost.amount"] == 0.3


def test_prices_file_json_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[models."a"]\ninput_mtok = 1\noutput_mtok = 2\n')
    jsonf = tmp_path / "p.json"
    jsonf.write_text(
        json.dumps({"models": {"b": {"input_mtok": 3, "output_mtok": 4, "cache_read_mtok": 0.3}}})
    )
    assert set(resolve_settings(environ={"AGENTWATCH_PRICES_FILE": str(toml)}).prices) == {"a"}
    prices = resolve_settings(environ={"AGENTWATCH_PRICES_FILE": str(jsonf)}).prices["b"]
    assert (prices.input_mtok, prices.cache_read_mtok) == (3.0, 0.3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[models."a"]\ninput_mtok = 1\n', r"AGENTWATCH_PRICES_FILE:models\.a\.output_mtok"),
        ('[models."a"]\ninput_mtok = -1\noutput_mtok = 1\n', r"models\.a\.input_mtok.*a finite number >= 0"),
        (
            '[models."a"]\ninput_mtok = 1\noutput_mtok = 1\ncached = 2\n',
            r"models\.a\.cached.*'input_mtok', 'output_mtok'",
        ),
        ("[prices]\n", r'single top-level table "models"'),
        ("not = [toml", r"valid TOML or JSON"),
    ],
)
def test_bad_prices_file_names_the_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        resolve_settings(environ={"AGENTWATCH_PRICES_FILE": str(path)})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NO_CONTENT", ContentCapture(False, False)),
        ("span_only", ContentCapture(True, False)),
        ("Event_Only", ContentCapture(False, True)),
        ("SPAN_AND_EVENT", ContentCapture(True, True)),
        ("true", ContentCapture(True, True)),
        ("false", ContentCapture(False, False)),
    ],
)
def test_capture_modes(value: str, expected: ContentCapture) -> None:
    assert (
        resolve_settings(environ={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}).capture
        == expected
    )


def test_keyword_wins_over_environment() -> None:
    env = {
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
        "AGENTWATCH_PROPAGATE_HOSTS": "none",
    }
    settings = resolve_settings(capture_message_content=False, propagate_hosts="*", environ=env)
    assert settings.capture == ContentCapture(False, False)
    assert settings.propagate == HostPolicy()


def test_host_policy() -> None:
    policy = resolve_settings(propagate_hosts="api.openai.com, *.corp.example", environ={}).propagate
    assert policy.allows("api.openai.com") and policy.allows("API.OPENAI.COM")
    assert policy.allows("llm.corp.example") and not policy.allows("corp.example.evil")
    assert not policy.allows("api.anthropic.com")
    assert not resolve_settings(propagate_hosts=[], environ={}).propagate.allows("x")


# -- values that can never work are refused (issue 11, items 5, 7, 8) ----------------------------


@pytest.mark.parametrize(
    "price", [float("nan"), float("inf"), -float("inf"), pytest.param(10**400, id="10**400")]
)
def test_non_finite_prices_in_code_are_refused(price: float) -> None:
    with pytest.raises(ConfigError, match=r"prices\.m\.input_mtok.*a finite number"):
        resolve_settings(prices={"m": {"input_mtok": price, "output_mtok": 1}}, environ={})
    with pytest.raises(ConfigError, match=r"prices\.m\.output_mtok"):
        resolve_settings(prices={"m": ModelPrices(input_mtok=1.0, output_mtok=price)}, environ={})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.toml", '[models."m"]\ninput_mtok = nan\noutput_mtok = 1\n'),
        ("p.toml", '[models."m"]\ninput_mtok = inf\noutput_mtok = 1\n'),
        ("p.toml", '[models."m"]\ninput_mtok = 1e999\noutput_mtok = 1\n'),
        ("p.json", '{"models": {"m": {"input_mtok": NaN, "output_mtok": 1}}}'),
        ("p.json", '{"models": {"m": {"input_mtok": Infinity, "output_mtok": 1}}}'),
        ("p.json", '{"models": {"m": {"input_mtok": 1e999, "output_mtok": 1}}}'),
    ],
)
def test_non_finite_prices_in_the_file_are_refused(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=r"AGENTWATCH_PRICES_FILE:models\.m\.input_mtok.*a finite number"):
        resolve_settings(environ={"AGENTWATCH_PRICES_FILE": str(path)})


@pytest.mark.parametrize("value", [pytest.param(10**400, id="10**400"), float("nan")])
def test_policy_numbers_too_large_for_a_float_are_config_errors(value: float) -> None:
    from agentwatch import Policy, Retry

    with pytest.raises(ConfigError, match="timeout"):
        Policy(timeout=value)
    with pytest.raises(ConfigError, match="multiplier"):
        Retry(multiplier=value)


@pytest.mark.parametrize(
    ("variable", "setting"),
    [("AGENTWATCH_CONFIG", "AGENTWATCH_CONFIG"), ("AGENTWATCH_PRICES_FILE", "AGENTWATCH_PRICES_FILE")],
)
def test_a_file_that_is_not_utf8_is_a_config_error_naming_the_variable_and_file(
    tmp_path: Path, variable: str, setting: str
) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('# réglages\n[tools."*"]\ntimeout = 5\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=setting) as raised:
        resolve_settings(environ={variable: str(path)})
    assert str(path) in str(raised.value) and "UTF-8" in str(raised.value)


@pytest.mark.parametrize(
    "value",
    [
        "api.openai.com api.anthropic.com",  # spaces instead of commas: one name that matches nothing
        "*.",
        "api.openai.com, *.",
        "api.*.com",
        "*.*.example",
        ".example.com",
        "example.com.",
        "*, api openai com",  # a typo next to "*" is still a typo
        "api.openai.com:443",
        "https://api.openai.com",
    ],
)
def test_host_lists_that_could_never_match_are_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="AGENTWATCH_PROPAGATE_HOSTS") as raised:
        resolve_settings(environ={"AGENTWATCH_PROPAGATE_HOSTS": value})
    assert "'api.openai.com' or '*.internal'" in str(raised.value)
    with pytest.raises(ConfigError, match="propagate_hosts"):
        resolve_settings(propagate_hosts=value.split(","), environ={})


@pytest.mark.parametrize(
    ("value", "host", "allowed"),
    [
        ("localhost,127.0.0.1", "127.0.0.1", True),
        ("llm_gateway.internal", "llm_gateway.internal", True),
        ("*.Corp.Example", "a.b.corp.example", True),
        ("*, api.openai.com", "anything.example", True),
        (" none ", "api.openai.com", False),
    ],
)
def test_host_lists_that_can_match_are_kept(value: str, host: str, allowed: bool) -> None:
    assert resolve_settings(environ={"AGENTWATCH_PROPAGATE_HOSTS": value}).propagate.allows(host) is allowed
