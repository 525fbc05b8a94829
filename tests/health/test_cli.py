"""Every operator tool stops quietly when its reader goes away (`... | head`): no traceback, no noise."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.tools import ROOT

TOOLS = ["health", "rehearsal", "maintenance", "migration", "backup", "check"]


@pytest.mark.parametrize("tool", TOOLS)
def test_a_closed_pipe_ends_the_tool_without_a_traceback(tool):
    """`true` reads nothing and exits long before Python has started, so the help text meets a closed pipe.
    Planted (a tool's __main__ back to sys.exit(main())): "Exception ignored ... BrokenPipeError"."""
    done = subprocess.run(f"{sys.executable} -m outsystems_redis.tools.{tool} --help | true", shell=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.stderr == "", done.stderr
    # And with a reader, the help is all there.
    helped = subprocess.run([sys.executable, "-m", f"outsystems_redis.tools.{tool}", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "usage:" in helped.stdout, helped.stderr


@pytest.mark.parametrize("tool", ["rehearsal", "migration"])
def test_the_help_gives_every_command_a_line_and_an_example_that_parses(tool):
    """Every verb the tool accepts is explained in --help, and its example is a valid command line."""
    import importlib
    import shlex

    module = importlib.import_module(f"outsystems_redis.tools.{tool}")
    parser = module.build_parser()
    text = parser.format_help()
    (choices,) = [a.choices for a in parser._actions if a.dest == "command"]
    for verb in choices:
        what, example = module.VERBS[verb]
        assert f"  {verb} " in text and what in text
        assert f"e.g. python -m outsystems_redis.tools.{tool} {example}" in text
        args = parser.parse_args(shlex.split(example))  # exits 2 (SystemExit) on a stale example
        assert args.command == verb


@pytest.mark.parametrize(("extra", "region", "said"), [
    ([], False, "maintenance: the stack file names no aws:region: give --region or set AWS_REGION"),
    (["--region", "eu-west-1"], False, "maintenance: no AWS credentials: `aws sso login`, or set AWS_PROFILE"),
    ([], True, "maintenance: no AWS credentials: `aws sso login`, or set AWS_PROFILE"),  # the file's region
], ids=["no-region", "no-credentials", "the-stack-files-region"])
def test_maintenance_without_a_region_or_credentials_is_one_line(tmp_path, extra, region, said):
    """Before, a botocore traceback. Nothing is sent anywhere: both are known before the first request (the
    instance metadata service is switched off, as it is off an EC2 instance). The region is the stack file's
    aws:region unless --region names one."""
    stack_file = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    if not region:
        del stack_file["config"]["aws:region"]
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump(stack_file))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "outsystems_redis.tools.maintenance", "--stack", "prod", "--dry-run",
                           *extra], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_backup_tools_examples_parse():
    """The examples under `backup --help` are command lines the tool accepts (a stale one exits 2)."""
    import shlex

    from outsystems_redis.tools import backup

    parser = backup.parser()
    lines = parser.epilog.replace("\\\n", " ").splitlines()
    tool = "python -m outsystems_redis.tools.backup "
    examples = [line.split(tool, 1)[1] for line in lines if tool in line]
    assert [parser.parse_args(shlex.split(e)).command for e in examples] == ["list", "restore"]
    assert "examples" in parser.format_help()
