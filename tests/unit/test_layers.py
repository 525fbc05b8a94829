"""The direction of imports (issues 15 and 23): the folders say which code runs where, and the imports agree.

One package, outsystems_redis/, whose folders are its roles:
- the pure core, at its top (settings, sizing, topology, judge, ...) and in render/ (pure text out);
- pulumi/: the Pulumi shell, the ComponentResources, the only modules that import pulumi;
- server_files/: what runs ON the servers (the shell scripts, their library, the two Python agents);
- tools/: what runs on an operator's machine (health, rehearsal, loopback, maintenance, backup, migration).

Rules:
- (a) Nothing but the tools imports the tools, the benchmarks or the tests.
- (b) Only pulumi/ imports pulumi or a pulumi_* provider; (f) the core never imports the shell, so it can be
  rendered, rehearsed, called by the health check and tested without mocks.
- (c) The agents in server_files/ run on every server (Python 3.8, no pip packages): they, and every module of
  ours they reach (judge.py, carried inside redis-observe.py), use the standard library only.
- (d) No circles among our modules, and (e) no test module imports another: shared test support lives in
  modules of its own (tests/*/support.py, loopbacks.py, rehearsals.py, moto_stand_in.py, ...).

Imports are read with `ast` (every `import`/`from` anywhere in a module, and importlib.import_module or
__import__ with a literal name), never executed.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "outsystems_redis"
SHELL = f"{PACKAGE}.pulumi"
TOOLS = f"{PACKAGE}.tools"
SERVER_FILES = f"{PACKAGE}.server_files"
# The former names, kept for one release as aliases (components/, operator_tools/): nothing of ours uses them.
FORMER = ("components", "operator_tools")
NOT_FOR_THE_CORE = (TOOLS, "benchmarks", "tests", *FORMER)


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """Every module `path` imports, absolute (relative imports resolved), with its line."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, node.module] if node.module else base)
            found.append((name, node.lineno))
            # `from outsystems_redis import topology`: the names may be modules of a package of ours.
            package_dir = root / Path(*name.split("."))
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names
                      if (package_dir / f"{alias.name}.py").exists() or (package_dir / alias.name).is_dir()]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and _is_dynamic_import(node.func):
            found.append((node.args[0].value, node.lineno))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")


def top(name: str) -> str:
    return name.split(".")[0]


def package_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted((root / PACKAGE).rglob("*.py"))}


def core_modules(root: Path = ROOT) -> list[Path]:
    """Every module of the package but the tools (the core, the shell and the agents)."""
    return [p for name, p in package_modules(root).items() if not within(name, TOOLS)]


def rel(path: Path, root: Path = ROOT) -> str:
    return path.relative_to(root).as_posix()


def core_imports_of_tools(root: Path = ROOT) -> list[str]:
    """Rule (a): lines where the core imports the tools, the benchmarks, the tests or a former name."""
    return [f"{rel(p, root)}:{line}: imports {name}" for p in core_modules(root)
            for name, line in imports(p, root) if any(within(name, n) for n in NOT_FOR_THE_CORE)]


def pulumi_outside_resources(root: Path = ROOT) -> list[str]:
    """Rule (b): lines where a module outside pulumi/ (the tools included) imports pulumi or a provider."""
    return [f"{rel(p, root)}:{line}: imports {name}" for mod, p in package_modules(root).items()
            if not within(mod, SHELL)
            for name, line in imports(p, root) if top(name) == "pulumi" or top(name).startswith("pulumi_")]


def core_imports_of_the_shell(root: Path = ROOT) -> list[str]:
    """Rule (f): lines where the pure core (not the shell, not the tools) imports the Pulumi shell."""
    return [f"{rel(p, root)}:{line}: imports {name}" for mod, p in package_modules(root).items()
            if not within(mod, SHELL) and not within(mod, TOOLS)
            for name, line in imports(p, root) if within(name, SHELL)]


def non_stdlib_on_servers(root: Path = ROOT) -> list[str]:
    """Rule (c): what the servers' agents, and every module of ours they reach (judge.py, ...), import beyond
    the standard library."""
    out: list[str] = []
    todo = [p for name, p in package_modules(root).items() if within(name, SERVER_FILES)]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name, line in imports(path, root):
            if top(name) == PACKAGE:
                target = root / Path(*name.split("."))
                todo += [c for c in (target.with_suffix(".py"), target / "__init__.py") if c.exists()]
            elif top(name) not in sys.stdlib_module_names:
                out.append(f"{rel(path, root)}:{line}: imports {name}")
    return out


def test_the_layout_is_there() -> None:
    """Guards the guards: an empty or renamed folder would make every rule below pass vacuously."""
    names = {rel(p) for p in core_modules()}
    assert {"outsystems_redis/judge.py", "outsystems_redis/topology.py", "outsystems_redis/render/metrics.py",
            "outsystems_redis/pulumi/network.py", "outsystems_redis/pulumi/session_store.py",
            "outsystems_redis/server_files/metrics_agent.py"} <= names
    assert (ROOT / "outsystems_redis" / "tools" / "health" / "__main__.py").exists()
    assert (ROOT / "outsystems_redis" / "server_files" / "cluster-join.sh").exists()
    # The roles are the folders: no module of the shell, the agents or the tools outside its own.
    assert not [n for n in names if n.count("/") == 1 and Path(n).stem in ("network", "server", "session_store")]


def test_the_core_never_imports_the_tools_benchmarks_or_tests() -> None:
    assert core_imports_of_tools() == []


def test_only_the_component_resources_import_pulumi() -> None:
    assert pulumi_outside_resources() == []
    # The rule sees real imports: the resources do import pulumi.
    assert any(top(n) == "pulumi" for n, _ in imports(ROOT / PACKAGE / "pulumi" / "network.py"))


def test_the_core_never_imports_the_pulumi_shell() -> None:
    assert core_imports_of_the_shell() == []


def test_the_agents_the_servers_run_use_the_standard_library_only() -> None:
    assert non_stdlib_on_servers() == []


def test_the_rules_catch_a_planted_violation_of_each(tmp_path: Path) -> None:
    """A copy of the package with one bad import per rule, each written in a way the real code could be."""
    core = tmp_path / PACKAGE
    for folder in ("render", "pulumi", "server_files", "tools"):
        (core / folder).mkdir(parents=True)
        (core / folder / "__init__.py").write_text("")
    (core / "__init__.py").write_text("")
    (core / "pulumi" / "network.py").write_text("import pulumi\nimport pulumi_aws as aws\n")
    (core / "tools" / "health.py").write_text("from outsystems_redis.pulumi import network\n")
    (core / "topology.py").write_text("import ipaddress\nimport yaml\n")
    (core / "judge.py").write_text("import time\nfrom outsystems_redis import topology\n\n\ndef f():\n"
                                   "    import redis\n")
    (core / "settings.py").write_text("def f():\n    from outsystems_redis.tools import health\n")
    (core / "render" / "metrics.py").write_text("from ..pulumi.network import x\n"
                                                "from pulumi_random import RandomPassword\n"
                                                "import importlib\nimportlib.import_module('tests.tools')\n")
    (core / "sizing.py").write_text("from .pulumi import network\nimport benchmarks.topologies\nimport components\n")
    (core / "server_files" / "metrics_agent.py").write_text("import json\nfrom outsystems_redis.judge import f\n")
    assert core_imports_of_tools(tmp_path) == ["outsystems_redis/render/metrics.py:4: imports tests.tools",
                                               "outsystems_redis/settings.py:2: imports outsystems_redis.tools",
                                               "outsystems_redis/settings.py:2: imports outsystems_redis.tools.health",
                                               "outsystems_redis/sizing.py:2: imports benchmarks.topologies",
                                               "outsystems_redis/sizing.py:3: imports components"]
    assert pulumi_outside_resources(tmp_path) == ["outsystems_redis/render/metrics.py:2: imports pulumi_random"]
    assert core_imports_of_the_shell(tmp_path) == [
        "outsystems_redis/render/metrics.py:1: imports outsystems_redis.pulumi.network",
        "outsystems_redis/sizing.py:1: imports outsystems_redis.pulumi",
        "outsystems_redis/sizing.py:1: imports outsystems_redis.pulumi.network"]
    assert sorted(non_stdlib_on_servers(tmp_path)) == ["outsystems_redis/judge.py:6: imports redis",
                                                       "outsystems_redis/topology.py:2: imports yaml"]


PACKAGES = ("outsystems_redis", *FORMER, "benchmarks", "policy")


def import_cycles(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[list[str]]:
    """Rule (d): groups of our modules that import one another in a circle (imports inside functions count:
    a circle there is still two modules that cannot be read, or changed, one without the other)."""
    paths = {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}
    graph = {name: {n for n, _ in imports(path, root) if n in paths and n != name} for name, path in paths.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def imports_between_tests(root: Path = ROOT) -> list[str]:
    """Rule (e): a test module imports another test module (shared support lives in modules of its own)."""
    return [f"{rel(p, root)}:{line}: imports {name}" for p in sorted((root / "tests").rglob("*.py"))
            for name, line in imports(p, root)
            if top(name) == "tests" and name.split(".")[-1].startswith("test_")]


def test_no_import_circles() -> None:
    assert import_cycles() == []


def test_no_test_module_imports_another() -> None:
    assert imports_between_tests() == []


def test_the_circle_and_test_import_rules_catch_a_planted_violation(tmp_path: Path) -> None:
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "report.py").write_text("def render():\n    from benchmarks import template\n")
    (tmp_path / "benchmarks" / "template.py").write_text("from benchmarks.report import render\n")
    (tmp_path / "benchmarks" / "memory.py").write_text("from benchmarks import report\n")
    assert import_cycles(tmp_path, ("benchmarks",)) == [["benchmarks.report", "benchmarks.template"]]
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_a.py").write_text("from tests.unit.test_b import helper\n")
    (tmp_path / "tests" / "unit" / "support.py").write_text("from tests.unit import program\n")
    assert imports_between_tests(tmp_path) == ["tests/unit/test_a.py:1: imports tests.unit.test_b"]
