"""The shipped copy of a script: the source's code, line for line, without its comments."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from components.render.shipped import shipped_script

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "components" / "render").glob("*.sh"))


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
        "#!/bin/bash\n# x.sh of outsystems-redis (components/render/); comments are in the source.\n"
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
