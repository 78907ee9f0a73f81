"""Errors that agentwatch raises into the application on purpose (configuration only)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A setting has a value agentwatch cannot use.

    The message names the setting (keyword argument, environment variable or file key), the value
    given and the values accepted, so that start-up fails with an actionable error.
    """

    def __init__(self, setting: str, value: object, accepted: str | Iterable[str]) -> None:
        if not isinstance(accepted, str):
            accepted = ", ".join(repr(a) for a in accepted)
        self.setting = setting
        self.value = value
        self.accepted = accepted
        super().__init__(f"invalid value {value!r} for {setting}: accepted values are {accepted}")
