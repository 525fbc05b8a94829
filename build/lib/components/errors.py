"""The one error type for bad input: it always names the config key, or the component's argument."""

from __future__ import annotations


class SettingsError(ValueError):
    """A stack setting is wrong. The message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: object, allowed: str, label: str = "config key") -> None:
        self.key = key
        self.value = value
        self.allowed = allowed
        super().__init__(f"{label} '{key}': got {value!r}; allowed: {allowed}")
