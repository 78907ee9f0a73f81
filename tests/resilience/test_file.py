"""The AGENTWATCH_CONFIG file: the issue's example loads; every bad file fails naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch._errors import ConfigError
from agentwatch.resilience import (
    CircuitBreaker,
    Policy,
    ResilienceConfig,
    Retry,
    config_from_env,
    load_config,
    lookup_policy,
)

EXAMPLE = """
[tools."*"]
timeout = 10.0
[tools.search_knowledge_base]
timeout = 5.0
retry = { attempts = 3 }
breaker = { failure_threshold = 5, break_duration = 30.0 }
[tools.get_user_preferences]
critical = false
[llm."gpt-4o"]
retry = { attempts = 3 }
fallback_models = ["gpt-4o-mini"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_issue_example_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE))
    assert config.tools["*"] == Policy(timeout=10.0)
    assert config.tools["search_knowledge_base"] == Policy(
        timeout=5.0, retry=Retry(attempts=3), breaker=CircuitBreaker(failure_threshold=5, break_duration=30.0)
    )
    # A named table inherits what it does not set from "*".
    assert config.tools["get_user_preferences"] == Policy(timeout=10.0, critical=False)
    assert config.llm["gpt-4o"] == Policy(retry=Retry(attempts=3), fallback_models=("gpt-4o-mini",))
    assert config.policy_for("search_knowledge_base").timeout == 5.0  # type: ignore[union-attr]
    assert config.policy_for("some_other_tool") == Policy(timeout=10.0)
    assert config.policy_for("gpt-4o", kind="llm") is config.llm["gpt-4o"]
    assert config.policy_for("claude", kind="llm") is None


def test_false_means_none_and_true_means_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "[tools.x]\ntimeout = false\nbreaker = true\nretry = { attempts = 2, budget = false }\n"
            "bulkhead = { max_concurrent = 4, max_queue = 2 }\n",
        )
    )
    policy = config.tools["x"]
    assert policy.timeout is None
    assert policy.breaker == CircuitBreaker()
    assert policy.retry == Retry(attempts=2, budget=None)
    assert policy.bulkhead is not None
    assert (policy.bulkhead.max_concurrent, policy.bulkhead.max_queue) == (
        4,
        2,
    )


def test_config_from_env(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    assert config_from_env({}) is None
    assert config_from_env({"AGENTWATCH_CONFIG": " "}) is None
    loaded = config_from_env({"AGENTWATCH_CONFIG": str(path)})
    assert isinstance(loaded, ResilienceConfig)
    assert "search_knowledge_base" in loaded.tools


def test_lookup_policy_with_wildcard() -> None:
    default, special = Policy(), Policy(timeout=1.0)
    assert lookup_policy({"a": special, "*": default}, "a") is special
    assert lookup_policy({"a": special, "*": default}, "b") is default
    assert lookup_policy({"a": special}, "b") is None


@pytest.mark.parametrize(
    ("text", "setting", "accepted"),
    [
        ("[tools.search]\nretry = { attempts = 0 }\n", "tools.search.retry.attempts", "an integer ≥ 1"),
        ("[tools.search]\nretry = { atempts = 3 }\n", "tools.search.retry.atempts", "'attempts'"),
        ("[tools.search]\ntimout = 3\n", "tools.search.timout", "'timeout'"),
        (
            "[tools.search]\ntimeout = '5'\n",
            "tools.search.timeout",
            "a positive number of seconds (int or float), or false",
        ),
        (
            "[tools.search]\ntimeout = 5\nattempt_timeout = 6\n",
            "tools.search.attempt_timeout",
            "≤ tools.search.timeout (5 s)",
        ),
        ("[tools.search]\ncritical = 'no'\n", "tools.search.critical", "true, false"),
        (
            "[tools.search]\nbreaker = { failure_ratio = 2.0 }\n",
            "tools.search.breaker.failure_ratio",
            "0 < ratio ≤ 1",
        ),
        ("[tools.search]\nbreaker = 5\n", "tools.search.breaker", "a table of CircuitBreaker settings"),
        (
            "[tools.search]\nbulkhead = { max_concurrent = 0 }\n",
            "tools.search.bulkhead.max_concurrent",
            "integer ≥ 1",
        ),
        (
            "[tools.search]\nretry = { budget = { ratio = -1 } }\n",
            "tools.search.retry.budget.ratio",
            "number ≥ 0",
        ),
        ('[llm."gpt-4.1"]\nfallback_models = "gpt-4o"\n', 'llm."gpt-4.1".fallback_models', "list or tuple"),
        ('[tools."*"]\ntimeout = 0\n', 'tools."*".timeout', "positive"),
        ("[tools]\nsearch = 3\n", "tools.search", "a table of policy settings"),
        (
            '[tools.search]\nfallback_models = ["gpt-4o"]\n',
            "tools.search.fallback_models",
            "nothing for a tool policy",
        ),
        ('[tools."*"]\nidle_timeout = 2\n', 'tools."*".idle_timeout', "nothing for a tool policy"),
        ('[llm."gpt-4.1"]\ncritical = false\n', 'llm."gpt-4.1".critical', "True for an LLM policy"),
        ("tools = 3\n", "tools", "a table of tool names"),
        ("[agents.x]\ntimeout = 1\n", "agents", "'tools', 'llm'"),
    ],
)
def test_bad_values_name_the_dotted_key_and_accepted_values(
    tmp_path: Path, text: str, setting: str, accepted: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.setting == setting
    assert accepted in str(caught.value)
    assert setting in str(caught.value)


def test_a_missing_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing)
    message = str(caught.value)
    assert "AGENTWATCH_CONFIG" in message
    assert str(missing) in message
    assert "readable TOML file" in message


def test_an_unparsable_file_names_the_variable_the_path_and_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, "[tools.search\ntimeout = 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "AGENTWATCH_CONFIG" in message
    assert str(path) in message
    assert "valid TOML" in message
    assert "line 1" in message
