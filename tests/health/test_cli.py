"""Every operator tool stops quietly when its reader goes away (`... | head`): no traceback, no noise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.tools import ROOT

TOOLS = ["health", "rehearsal", "maintenance", "migration", "backup", "check"]


@pytest.mark.parametrize("tool", TOOLS)
def test_a_closed_pipe_ends_the_tool_without_a_traceback(tool):
    """`true` reads nothing and exits long before Python has started, so the help text meets a closed pipe.
    Planted (a tool's __main__ back to sys.exit(main())): "Exception ignored ... BrokenPipeError"."""
    done = subprocess.run(f"{sys.executable} -m operator_tools.{tool} --help | true", shell=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.stderr == "", done.stderr
    # And with a reader, the help is all there.
    helped = subprocess.run([sys.executable, "-m", f"operator_tools.{tool}", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr


def test_the_rehearsals_help_gives_every_command_a_line_and_an_example_that_parses():
    """Every verb the rehearsal accepts is explained in --help, and its example is a valid command line."""
    import shlex

    from operator_tools import rehearsal

    parser = rehearsal.build_parser()
    text = parser.format_help()
    (choices,) = [a.choices for a in parser._actions if a.dest == "command"]
    for verb in choices:
        what, example = rehearsal.VERBS[verb]
        assert f"  {verb} " in text and what in text and f"e.g. python -m operator_tools.rehearsal {example}" in text
        args = parser.parse_args(shlex.split(example))  # exits 2 (SystemExit) on a stale example
        assert args.command == verb
