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
