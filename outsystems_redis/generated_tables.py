"""Tables the documentation shows and the code owns: written between two markers of a page, and a command
that prints or rewrites them (the configuration table from settings.py, the alarm table from alarms.py).
Standard library only."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def between_markers(page: str, begin: str, end: str, table: str) -> str:
    """`page` with the text between `begin` and `end` replaced by `table`; each marker must appear once."""
    if page.count(begin) != 1 or page.count(end) != 1:
        raise ValueError(f"the page must hold the markers {begin!r} and {end!r} once each")
    head, rest = page.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{table}{end}{tail}"


def main(description: str, table: Callable[[], str], update: Callable[[str], str]) -> None:
    """`--markdown-table` prints the table; `--update-readme PATH` rewrites it in that page."""
    parser = argparse.ArgumentParser(description=description)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown-table", action="store_true", help="print the table")
    group.add_argument("--update-readme", metavar="PATH", type=Path, help="rewrite the table between its markers")
    args = parser.parse_args()
    if args.markdown_table:
        print(table(), end="")
    else:
        args.update_readme.write_text(update(args.update_readme.read_text()))
