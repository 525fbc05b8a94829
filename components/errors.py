"""The one error type for bad input: it always names the config key."""

from __future__ import annotations


class SettingsError(ValueError):
    """A stack setting is wrong. The message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"config key '{key}': got {value!r}; allowed: {allowed}")
