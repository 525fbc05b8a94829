"""The text of a shell script as the servers (and the loopback rehearsals) run it.

EC2 caps user data at 16,384 bytes, gzipped. The scripts' comments are most of
their bytes, so the shipped copy keeps the code and drops comment-only and blank
lines, and shortens each line's indentation to one space (bash ignores it; one
space, not none, so a line continuation never glues two words); the commented
source stays here in components/render/. Everything that
runs a script (cloud-init, the loopback harness, the tests) runs this copy.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

_DROPPED = re.compile(r"^\s*(#(?!!|\s*shellcheck\b).*)?$")
_INDENT = re.compile(r"^[ \t]+")
# What the shell programs fetched from the stack's bucket share (bounded AWS calls, the password rule): put
# into each one's shipped text, so the one signed object carries it and nothing is sourced at run time.
LIBRARY = Path(__file__).with_name("lib.sh")


def _code(path: Path) -> list[str]:
    """`path`'s lines without comment-only or blank ones (shellcheck directives kept), indentation shortened."""
    text = path.read_text()
    # A here-document could hold lines that only look like comments; the scripts use none.
    if re.search(r"<<-?\s*['\"]?\w", text):
        raise ValueError(f"{path.name}: here-documents are not supported by shipped_script")
    return [_INDENT.sub(" ", line) for line in text.splitlines() if not _DROPPED.match(line)]


def shipped_script(path: Path, library: bool = False) -> str:
    """`path`'s script without comment-only or blank lines, the shebang and shellcheck directives kept; with
    `library`, lib.sh's functions first (after the shebang)."""
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("#!"):
        raise ValueError(f"{path.name}: a shipped script starts with #!")
    shared = [line for line in _code(LIBRARY) if not line.startswith("# shellcheck shell=")] if library else []
    header = f"# {path.name} of outsystems-redis (components/render/); comments are in the source."
    return "\n".join([lines[0], header, *shared, *_code(path)[1:]]) + "\n"


def strip_docstrings(node: ast.AST) -> None:
    """Drop the docstrings of a parsed Python program (ast.unparse drops its comments)."""
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]
