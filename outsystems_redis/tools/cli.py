"""What every operator tool's command line shares: verbs explained in --help, and how the tool ends: its exit
code, and nothing more when its reader has gone.

`python -m outsystems_redis.tools.X ... | head` closes the pipe early; Python would then print a BrokenPipeError
traceback (or "Exception ignored" when the last flush fails at exit). A tool that loses its reader stops
quietly, as other command-line tools do, with exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping


def exit_with(main: Callable[[], int | None]) -> None:
    """sys.exit(main()), without a traceback when stdout's reader closes the pipe."""
    try:
        try:
            code = main()
        except SystemExit as stop:  # argparse's --help and usage errors end here too
            code = stop.code
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)


def command_parser(prog: str, description: str, verbs: Mapping[str, tuple[str, str]],
                   footer: str) -> argparse.ArgumentParser:
    """A parser whose first argument is one of `verbs` (verb -> (what it does, an example's arguments)), each
    explained in --help with its example."""
    width = max(map(len, verbs))
    lines = "\n".join(f"  {verb:<{width}}  {what}\n  {'':<{width}}  e.g. {prog} {example}"
                      for verb, (what, example) in verbs.items())
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=f"commands:\n{lines}\n\n{footer}",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=tuple(verbs), help="one of the commands below")
    return parser

