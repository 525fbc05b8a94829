"""The installed commands (pyproject.toml [project.scripts]): each runs its tool's main, as `python -m` does.

A module of its own, which nothing imports: the tools import outsystems_redis.tools.cli, so the commands there
would close a circle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from outsystems_redis.tools.cli import exit_with


def _command(module: str) -> Callable[[], None]:
    """The console script of `module`'s main (imported when run: one command loads one tool)."""

    def run() -> None:
        exit_with(importlib.import_module(module).main)

    return run


health = _command("outsystems_redis.tools.health.__main__")
check = _command("outsystems_redis.tools.check")
backup = _command("outsystems_redis.tools.backup")
maintenance = _command("outsystems_redis.tools.maintenance")
rehearsal = _command("outsystems_redis.tools.rehearsal")
migration = _command("outsystems_redis.tools.migration")
