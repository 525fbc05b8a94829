"""A stack file (Pulumi.<stack>.yaml) read as Pulumi hands its config to the program, without the Pulumi CLI.

The config check, the rehearsal, maintenance, the deploy workflow's guard and the tests' mock harnesses
read stack files through here, so a `secure:` value or a map reads the same everywhere. Every problem
with the file itself (missing, not YAML, not a mapping) is a StackFileError: one line naming the file,
never a traceback.
Encrypted values (`secure:`) cannot be read without the stack's secrets provider: they are reported, not
checked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from outsystems_redis.errors import SettingsError
from outsystems_redis.settings import NAMESPACE, Settings, check_stack_name, load_settings


class StackFileError(ValueError):
    """The stack file cannot be read as a Pulumi stack file."""


@dataclasses.dataclass(frozen=True)
class StackFile:
    path: Path
    raw: dict[str, str]  # the project's keys without prefix, as the strings Pulumi hands over
    encrypted: tuple[str, ...]  # the project's keys held as `secure:` values (not in raw)


def default_path(stack: str) -> Path:
    """Where `pulumi up` reads it: the project directory, the current one (also for the pip-installed tools)."""
    return Path.cwd() / f"Pulumi.{stack}.yaml"


def config_string(value: object) -> str:
    """One plain value as Pulumi hands it to the program: lists and maps as JSON text, booleans as true/false,
    the rest as text."""
    if isinstance(value, (list, Mapping)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def config_strings(document: Mapping | None,
                   namespace: str | None = NAMESPACE) -> tuple[dict[str, str], tuple[str, ...]]:
    """(the plain keys as Pulumi's strings, the encrypted keys) of `namespace` (this project's by default),
    without the prefix; with `namespace=None`, every key under its full name (aws:region too)."""
    config = (document or {}).get("config") or {}
    if not isinstance(config, Mapping):
        raise StackFileError("`config` must be a mapping of keys to values")
    raw: dict[str, str] = {}
    encrypted: list[str] = []
    for key, value in config.items():
        prefix, _, name = str(key).partition(":")
        if namespace is None:
            name = str(key)
        elif prefix != namespace or not name:
            continue
        if isinstance(value, Mapping) and "secure" in value:
            encrypted.append(name)
        else:
            raw[name] = config_string(value)
    return raw, tuple(encrypted)


def load(path: Path) -> Mapping:
    """The stack file at `path` as a YAML mapping (empty for an empty file); StackFileError names the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        there = sorted(p.name for p in path.parent.glob("Pulumi.*.yaml") if p.name != "Pulumi.yaml")
        raise StackFileError(f"{path}: no such file (stack files there: {', '.join(there) or 'none'})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StackFileError(f"{path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise StackFileError(f"{path}: not valid YAML{where}: {problem}") from None
    if document is not None and not isinstance(document, Mapping):
        raise StackFileError(f"{path}: a stack file is a mapping with a `config:` key")
    return document or {}


def stack_argument(text: str) -> str:
    """argparse's type for the tools' --stack: a name Pulumi would accept, or an error that names --stack."""
    try:
        check_stack_name(text)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(f"got {text!r}; allowed: {exc.allowed}") from None
    return text


def read(stack: str, path: Path | None = None) -> StackFile:
    """The stack file of `stack` (default Pulumi.<stack>.yaml in the current directory, where `pulumi up` reads it);
    StackFileError names it."""
    path = path or default_path(stack)
    check_stack_name(stack)
    document = load(path)
    try:
        raw, encrypted = config_strings(document)
    except StackFileError as exc:
        raise StackFileError(f"{path}: {exc}") from None
    return StackFile(path, raw, encrypted)


def aws_region(stack: str, path: Path | None = None) -> str | None:
    """The stack file's `aws:region` (where `pulumi up` deploys), if it names one."""
    config = load(path or default_path(stack)).get("config") or {}
    region = config.get("aws:region") if isinstance(config, dict) else None
    return region if isinstance(region, str) and region else None


def read_settings(stack: str, path: Path | None = None) -> Settings:
    """The stack's settings, checked as `pulumi up` checks them before it asks AWS anything.

    A plain-text redisPassword is checked by the same rules, then dropped: the rehearsal generates its own
    password (never a real one on a laptop), and maintenance reads it from REDIS_PASSWORD.
    """
    stack_file = read(stack, path)
    return dataclasses.replace(load_settings(stack_file.raw, stack), redis_password=None)
