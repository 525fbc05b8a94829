"""The installed commands (pyproject.toml [project.scripts]): each runs its tool's main, as `python -m` does.

A module of its own, which nothing imports: the tools import operator_tools.cli, so the commands there
would close a circle.
"""

from __future__ import annotations

from operator_tools.cli import exit_with


def health() -> None:
    from operator_tools.health.__main__ import main

    exit_with(main)


def check() -> None:
    from operator_tools.check import main

    exit_with(main)


def backup() -> None:
    from operator_tools.backup import main

    exit_with(main)


def maintenance() -> None:
    from operator_tools.maintenance import main

    exit_with(main)


def rehearsal() -> None:
    from operator_tools.rehearsal import main

    exit_with(main)


def migration() -> None:
    from operator_tools.migration import main

    exit_with(main)
