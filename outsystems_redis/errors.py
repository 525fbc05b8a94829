"""The one error type for bad input: it always names the config key, or the component's argument."""

from __future__ import annotations

from collections.abc import Callable

# How an error names a key: the config key itself, or (a component's caller) its argument.
Namer = Callable[[str], str]


def _as_written(key: str) -> str:
    return key


class SettingsError(ValueError):
    """A stack setting is wrong. The message names the key, the value and what is allowed.

    `allowed` is the text, or, when it names other keys, a function of how keys are named, so the
    same check names config keys for a stack and arguments for a component (`named`)."""

    def __init__(self, key: str, value: object, allowed: str | Callable[[Namer], str], label: str = "config key",
                 name: Namer = _as_written) -> None:
        self._key, self._allowed, self._label, self._name = key, allowed, label, name
        # A key may carry a detail after its name: `tags.Owner`, `frontEndCidrs (default: ...)`.
        self.key = name(self.whole_key) + key[len(self.whole_key):]
        self.value = value
        self.allowed = allowed(name) if callable(allowed) else allowed
        super().__init__(f"{label} '{self.key}': got {value!r}; allowed: {self.allowed}")

    @property
    def whole_key(self) -> str:
        """The key as checked, without a detail (`tags` of `tags.Owner`)."""
        cut = next((i for i, c in enumerate(self._key) if not c.isalnum()), len(self._key))
        return self._key[:cut]

    def showing(self, value: object) -> SettingsError:
        """The same error with `value` shown: the text a stack file holds rather than the value read from it."""
        return SettingsError(self._key, value, self._allowed, label=self._label, name=self._name)

    def named(self, name: Namer, label: str) -> SettingsError:
        """The same error, naming every key (its own and those its text mentions) by `name`."""
        return SettingsError(self._key, self.value, self._allowed, label=label, name=name)
