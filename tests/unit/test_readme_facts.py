"""Facts the README states that the code can contradict, checked against the code."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from tests.tools import ROOT, documentation, tool


def test_the_python_version_the_readme_asks_for_is_the_packages() -> None:
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = re.fullmatch(r">=(\d+\.\d+)", required).group(1)
    asked = re.search(r"Python (\d+\.\d+) or later", (ROOT / "README.md").read_text()).group(1)
    assert asked == minimum, f"README asks for Python {asked}; pyproject.toml requires {required}"


def test_a_bare_make_prints_the_targets_instead_of_running_the_suite() -> None:
    done = subprocess.run([tool("make"), "-C", str(ROOT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    targets = re.findall(r"^make ([a-z-]+) ", done.stdout, re.M)
    assert {"test", "setup", "rehearsal", "bench-quick"} <= set(targets), done.stdout
    declared = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M)) - {"help"}
    assert declared <= set(targets), f"targets without a line in make help: {declared - set(targets)}"


def test_the_readmes_server_addresses_are_the_shipped_stacks() -> None:
    """Example addresses a reader copies (172.31.x.y) are the servers the shipped stack files create (they once said
    10.0.12x.10, from no stack at all)."""
    from outsystems_redis.tools.stack_file import read_settings
    from outsystems_redis.topology import build_topology

    shipped = set()
    for stack in ("dev", "prod"):
        s = read_settings(stack, ROOT / f"Pulumi.{stack}.yaml")
        shipped |= {server.private_ip for server in build_topology(s.servers, s.subnet_cidrs, s.port).servers}
    quoted = set(re.findall(r"\b(172\.31\.\d+\.\d+)\b(?!/)", documentation()))
    assert quoted, "the README quotes no server address any more: update this test"
    assert quoted <= shipped, f"README addresses of no shipped server: {sorted(quoted - shipped)}"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in page.read_text().splitlines():
        heading = re.match(r"^#{1,6} (.*)$", line)
        if heading:
            found.add(re.sub(r"[^a-z0-9 _-]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return found


def test_every_relative_link_of_the_documentation_reaches_its_page_and_heading() -> None:
    """The README's rest lives in docs/: a moved section must not leave a dead link behind. Planted (a link to
    #growing-the-cluster left in the README): fails."""
    pages = [ROOT / "README.md", ROOT / "SECURITY.md", ROOT / "CHANGELOG.md", ROOT / "BENCHMARKS.md",
             *sorted((ROOT / "docs").glob("*.md"))]
    dead = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                dead.append(f"{page.name}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                dead.append(f"{page.name}: {target} (no such heading)")
    assert not dead, "\n".join(dead)
    assert len(pages) >= 9, [p.name for p in pages]
