"""How every operator tool ends: its exit code, and nothing more when its reader has gone.

`python -m operator_tools.X ... | head` closes the pipe early; Python would then print a BrokenPipeError
traceback (or "Exception ignored" when the last flush fails at exit). A tool that loses its reader stops
quietly, as other command-line tools do, with exit code 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


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
