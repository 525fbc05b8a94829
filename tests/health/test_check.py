"""The config check as an operator runs it: a process, its exit code and its lines; never a traceback.

(That it refuses exactly what the program refuses is checked case by case beside the program's own
refusals: tests/unit/test_program.py, test_bad_input_names_the_key_and_registers_nothing.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.tools import ROOT

DEV = "config:\n  outsystems-redis:subnetCidrs: [172.31.128.0/24]\n"


def check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "outsystems_redis.tools.check", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_shipped_stacks_pass_and_say_what_is_left_for_pulumi_up(stack):
    run = check("--stack", stack)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"Pulumi.{stack}.yaml: every check that needs no AWS passed")
    assert "  - instanceType " in run.stdout and "  - subnetCidrs " in run.stdout
    assert "WARNING" not in run.stdout and run.stderr == ""


BROKEN = [
    ("config:\n  outsystems-redis:servers: 3\n  outsystems-redis:subnetCidrs: [10.0.1.0/24\n",
     "not valid YAML at line 4, column 1"),
    ("- a list\n- not a stack file\n", "a stack file is a mapping with a `config:` key"),
    ("config: [servers]\n", "`config` must be a mapping"),
    (DEV + "  outsystems-redis:tags: {CostCenter: 1234}\n", "config key 'tags.CostCenter': got 1234"),
    (DEV + "  outsystems-redis:sever: 3\n", "did you mean 'outsystems-redis:servers'?"),
    (DEV + "  outsystems-redis:redisPassword: abcde\n", "config key 'redisPassword': got '[secret of 5 characters]'"),
    (b"config:\n  outsystems-redis:servers: \xff\n", "cannot read it"),
]


@pytest.mark.parametrize(("text", "said"), BROKEN, ids=[s.split(":")[0][:30] for _, s in BROKEN])
def test_a_broken_stack_file_is_one_line_naming_the_file_and_exit_2(tmp_path, text, said):
    path = tmp_path / "Pulumi.mine.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    run = check("--stack", "mine", "--config", str(path))
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stdout == "" and said in run.stderr and "Pulumi.mine.yaml" in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
    if "abcde" in str(text):
        assert "abcde" not in run.stderr  # never echo a password


def test_a_missing_stack_file_names_the_ones_there():
    run = check("--stack", "staging")
    assert run.returncode == 2
    assert "Pulumi.staging.yaml: no such file (stack files there: Pulumi.dev.yaml, Pulumi.prod.yaml)" in run.stderr


def test_a_plain_text_password_passes_with_a_warning_and_an_encrypted_one_is_left_for_pulumi_up(tmp_path):
    plain = tmp_path / "Pulumi.plain.yaml"
    plain.write_text(DEV + "  outsystems-redis:redisPassword: abcdefghijklmnopqrstuvwxyz0123456789\n")
    run = check("--stack", "plain", "--config", str(plain))
    assert run.returncode == 0, run.stderr
    assert "WARNING: redisPassword is in plain text in Pulumi.plain.yaml" in run.stdout
    assert "pulumi config set --secret redisPassword" in run.stdout
    assert "abcdefghijklmnopqrstuvwxyz0123456789" not in run.stdout
    secure = tmp_path / "Pulumi.secure.yaml"
    secure.write_text(DEV + "  outsystems-redis:redisPassword:\n    secure: v1:AAAABBBB\n")
    run = check("--stack", "secure", "--config", str(secure))
    assert run.returncode == 0, run.stderr
    assert "  - redisPassword: encrypted (secure:)" in run.stdout and "WARNING" not in run.stdout


def test_a_bad_stack_name_or_usage_is_exit_2():
    run = check("--stack", "a/b")
    assert run.returncode == 2 and "argument --stack: got 'a/b'" in run.stderr and "Traceback" not in run.stderr
    # Every tool with --stack names the argument, not a config key (the stack's name is not one).
    for tool in ("maintenance", "rehearsal", "health"):
        run = subprocess.run([sys.executable, "-m", f"outsystems_redis.tools.{tool}", "--stack", "../x", "up"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert run.returncode == 2 and "argument --stack: got '../x'" in run.stderr, (tool, run.stderr)
    run = check()
    assert run.returncode == 2 and "--stack" in run.stderr


def test_the_tools_read_the_stack_file_where_pulumi_does_the_current_directory(tmp_path):
    """The pip-installed tools have no repository around them: outside a project they say so in one line, and
    leave nothing behind; inside one, they read its stack file."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    outside = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.rehearsal", "up", "--stack", "prod"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert outside.returncode == 2 and f"{tmp_path}/Pulumi.prod.yaml: no such file" in outside.stderr
    assert "Traceback" not in outside.stderr and list(tmp_path.iterdir()) == []
    (tmp_path / "Pulumi.mine.yaml").write_text(DEV)
    inside = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.check", "--stack", "mine"], cwd=tmp_path,
                            env=env,
                            capture_output=True, text=True, timeout=60)
    assert inside.returncode == 0 and inside.stdout.startswith("Pulumi.mine.yaml: every check"), inside.stderr
