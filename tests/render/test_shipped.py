"""The shipped copy of a script: the source's code, line for line, without its comments."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from outsystems_redis.render.backup import backup_script
from outsystems_redis.render.bootstrap import bootstrap_script
from outsystems_redis.render.fetched import fetched_tools
from outsystems_redis.render.join import join_script
from outsystems_redis.render.password import fetch_password_script, password_sync_script
from outsystems_redis.render.roles import role_restore_script
from outsystems_redis.render.shipped import LIBRARY, library_for, shipped_script
from outsystems_redis.render.step_down import step_down_script
from outsystems_redis.render.tls import fetch_tls_script

SCRIPTS = sorted(p for p in (Path(__file__).resolve().parents[2] / "outsystems_redis" / "server_files").glob("*.sh")
                 if p != LIBRARY)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_shipped_copy_keeps_every_code_line_in_order(path: Path) -> None:
    source = path.read_text().splitlines()
    shipped = shipped_script(path).splitlines()
    assert shipped[0] == source[0] and shipped[0].startswith("#!")
    code = [line for line in source[1:] if line.strip() and not re.match(r"\s*#(?!\s*shellcheck)", line)]
    # Line for line, with any indentation shortened to one space.
    assert shipped[2:] == [re.sub(r"^[ \t]+", " ", line) for line in code]
    # Every shellcheck directive survives (they silence findings on the lines after them).
    assert [x.strip() for x in shipped if "shellcheck" in x] == \
        [x.strip() for x in source[1:] if re.match(r"\s*#\s*shellcheck", x)]


def test_comment_only_lines_are_what_goes(tmp_path: Path) -> None:
    script = tmp_path / "x.sh"
    script.write_text('#!/bin/bash\n# why\n\n  # indented why\n'
                      '# shellcheck disable=SC2086\necho "#not a comment" # tail\n')
    assert shipped_script(script) == (
        "#!/bin/bash\n# x.sh of outsystems-redis (outsystems_redis/server_files/); comments are in the source.\n"
        '# shellcheck disable=SC2086\necho "#not a comment" # tail\n'
    )


def test_indentation_shrinks_to_one_space_and_a_continuation_keeps_its_words_apart(tmp_path: Path) -> None:
    script = tmp_path / "c.sh"
    script.write_text('#!/bin/bash\nif true; then\n\t\techo a\\\n        b\nfi\n')
    shipped = shipped_script(script)
    assert shipped.splitlines()[2:] == ["if true; then", " echo a\\", " b", "fi"]
    run = subprocess.run(["bash", "-c", shipped], capture_output=True, text=True, timeout=30)
    assert run.stdout == "a b\n"


def test_a_here_document_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "h.sh"
    script.write_text("#!/bin/bash\ncat <<EOF\n# data, not a comment\nEOF\n")
    with pytest.raises(ValueError, match="here-documents"):
        shipped_script(script)


def library_functions() -> list[str]:
    return re.findall(r"^(\w+)\(\) \{$", LIBRARY.read_text(), flags=re.M)


def test_each_shell_program_carries_the_library_parts_it_uses_once_and_no_other_copy() -> None:
    """lib.sh (bounded AWS calls, the password rule, the auth include, the login) goes into the shipped text of
    each program that uses it, right after its shebang: one source, no file sourced at run time, and only the
    parts it runs (user data is counted in bytes). Planted: a program's own ssm_get, or a part left out that
    another needs (redis_login without read_auth), each fails."""
    programs = {"backup": backup_script(), "password-sync": password_sync_script(),
                "fetch-password": fetch_password_script(), "fetch-tls": fetch_tls_script(),
                "cluster-join": join_script(), "cluster-bootstrap": bootstrap_script(),
                "role-restore": role_restore_script(), "step-down": step_down_script()}
    assert {text for name, text in fetched_tools().items() if name.endswith(".sh")} <= set(programs.values())
    functions = library_functions()
    assert {"ssm_get", "password_usable", "read_auth", "auth_lines", "redis_login"} <= set(functions)
    for name, text in programs.items():
        lines = text.splitlines()
        own = shipped_script(LIBRARY.parent / f"{name}.sh").splitlines()[2:]  # the program's code alone
        carried = library_for("\n".join(own))
        assert lines == lines[:2] + carried + own, name
        defined = re.findall(r"^(\w+)\(\) \{$", text, flags=re.M)
        assert len(defined) == len(set(defined)), name  # no function twice: the program has no copy of its own
        # Every library function it calls, directly or through another, is there.
        called = {f for f in functions if re.search(rf"\b{f}\b", "\n".join(own + carried).replace(f"{f}() {{", ""))}
        assert called == set(defined) & set(functions), name
    # What each carries, by what it does: the fetches read SSM; the Redis scripts log in and nothing else.
    assert "ssm_get() {" in programs["fetch-password"] and "replace_file() {" in programs["password-sync"]
    for name in ("cluster-join", "cluster-bootstrap", "role-restore", "step-down"):
        assert "redis_login() {" in programs[name] and "read_auth() {" in programs[name], name
        assert "ssm_get() {" not in programs[name] and "replace_file() {" not in programs[name], name
