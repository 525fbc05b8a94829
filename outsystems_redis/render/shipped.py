"""The text of a shell script as the servers (and the loopback rehearsals) run it.

EC2 caps user data at 16,384 bytes, gzipped. The scripts' comments are most of
their bytes, so the shipped copy keeps the code and drops comment-only and blank
lines, and shortens each line's indentation to one space (bash ignores it; one
space, not none, so a line continuation never glues two words); the commented
source stays in outsystems_redis/server_files/. Everything that
runs a script (cloud-init, the loopback harness, the tests) runs this copy.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

from outsystems_redis.server_files import source

_DROPPED = re.compile(r"^\s*(#(?!!|\s*shellcheck\b).*)?$")
_INDENT = re.compile(r"^[ \t]+")
# What the shell programs fetched from the stack's bucket share (bounded AWS calls, the password rule): put
# into each one's shipped text, so the one signed object carries it and nothing is sourced at run time.
LIBRARY = source("lib.sh")


def _code(path: Path) -> list[str]:
    """`path`'s lines without comment-only or blank ones (shellcheck directives kept), indentation shortened."""
    text = path.read_text()
    # A here-document could hold lines that only look like comments; the scripts use none.
    if re.search(r"<<-?\s*['\"]?\w", text):
        raise ValueError(f"{path.name}: here-documents are not supported by shipped_script")
    return [_INDENT.sub(" ", line) for line in text.splitlines() if not _DROPPED.match(line)]


_FUNCTION = re.compile(r"^(\w+)\(\) \{$")
_VARIABLE = re.compile(r"^([A-Z_][A-Z0-9_]*)=")


def _library_parts() -> list[tuple[str, list[str]]]:
    """lib.sh's code as (name, lines): each function, or variable set at the top level, with the shellcheck
    directives above it. A function's body is indented and ends at a `}` of its own at the line's start."""
    parts: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    body: list[str] | None = None
    for line in _code(LIBRARY):
        if body is not None:
            body.append(line)
            if line == "}":
                body = None
        elif line.startswith("# shellcheck shell="):
            continue
        elif line.startswith("# shellcheck"):
            pending.append(line)
        elif (match := _FUNCTION.match(line) or _VARIABLE.match(line)):
            parts.append((match.group(1), [*pending, line]))
            pending = []
            if line.endswith("{"):
                body = parts[-1][1]
        else:
            raise ValueError(f"lib.sh: top-level code that is no function or variable: {line!r}")
    return parts


def library_for(code: str) -> list[str]:
    """The parts of lib.sh that `code` uses, and those they use in turn, in lib.sh's order: a program carries
    the shared code it runs, not every part of it (user data is counted in bytes)."""
    parts = _library_parts()
    used: set[str] = set()
    text = code
    while True:
        found = {name for name, _ in parts if name not in used and re.search(rf"\b{name}\b", text)}
        if not found:
            return [line for name, lines in parts if name in used for line in lines]
        used |= found
        text = "\n".join(line for name, lines in parts if name in found for line in lines)


def shipped_script(path: Path, library: bool = False) -> str:
    """`path`'s script without comment-only or blank lines, the shebang and shellcheck directives kept; with
    `library`, the parts of lib.sh it uses first (after the shebang)."""
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("#!"):
        raise ValueError(f"{path.name}: a shipped script starts with #!")
    code = _code(path)[1:]
    shared = library_for("\n".join(code)) if library else []
    header = f"# {path.name} of outsystems-redis (outsystems_redis/server_files/); comments are in the source."
    return "\n".join([lines[0], header, *shared, *code]) + "\n"


def strip_docstrings(node: ast.AST) -> None:
    """Drop the docstrings of a parsed Python program (ast.unparse drops its comments)."""
    for n in ast.walk(node):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            n.body = body[1:] or [ast.Pass()]


# The few lines a carried program starts with: the modules it imports from this project are looked up
# in _CARRIED (name -> source) by an ordinary import hook, so its imports read as they do here.
_CARRIER = '''import importlib.abc
import importlib.util
import sys


class _Carried(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in _CARRIED:
            return importlib.util.spec_from_loader(name, self, is_package=name in _PACKAGES)
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        exec(compile(_CARRIED[name], "<carried " + name + ">", "exec"), module.__dict__)


sys.meta_path.insert(0, _Carried())
'''


def carried_modules(program: Path, package: str) -> dict[str, str]:
    """The modules of `package` that `program` imports, directly or through each other: name -> source."""
    found: dict[str, str] = {}
    todo = [(program.name, ast.parse(program.read_text()))]
    while todo:
        where, tree = todo.pop()
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            if isinstance(node, ast.ImportFrom) and node.level:
                raise ValueError(f"{where}: relative import on line {node.lineno} (carried code imports absolutely)")
            if names and isinstance(node, ast.ImportFrom):  # `from package import module` names modules too
                names += [f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")]
            for name in names:
                if (name == package or name.startswith(package + ".")) and name not in found:
                    spec = importlib.util.find_spec(name)
                    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                        raise ValueError(f"{where}: cannot carry {name}")
                    found[name] = Path(spec.origin).read_text()
                    todo.append((name, ast.parse(found[name])))
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError, ValueError):  # a name in a module, not a module
        return False


def python_program(program: Path, package: str, header: str) -> str:
    """`program` as one file a bare python3 runs: the modules of `package` it imports travel inside it, whole
    (docstrings and comments dropped), and it imports them as it does here. Deterministic: by name."""
    modules = {name: ast.unparse(_without_docstrings(source)) + "\n"
               for name, source in sorted(carried_modules(program, package).items())}
    packages = sorted({".".join(name.split(".")[:i]) for name in modules for i in range(1, name.count(".") + 1)})
    for name in packages:
        modules.setdefault(name, "")
    main = _without_docstrings(program.read_text())
    future = [n for n in main.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
    main.body = [n for n in main.body if n not in future]
    lines = [header.rstrip("\n"), *(ast.unparse(n) for n in future), _CARRIER,
             f"_PACKAGES = {packages!r}",
             "_CARRIED = {", *(f"    {name!r}: {source!r}," for name, source in sorted(modules.items())), "}",
             "", ast.unparse(main)]
    return "\n".join(lines) + "\n"


def _without_docstrings(source: str) -> ast.Module:
    tree = ast.parse(source)
    strip_docstrings(tree)
    return tree
