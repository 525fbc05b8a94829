"""Installing this repository gives another Pulumi program everything the store needs.

A fresh virtualenv gets the package from a copy of the repository with its dependencies, as a user's
program would: a wheel built from pyproject.toml by its build backend (setuptools), the dependencies
its metadata names from the index. The installer is uv's pip interface, the one `make setup` uses:
it follows the same standards (PEP 517 build, the same metadata) as pip, whose install with
dependencies took 42 s of CPU here against uv's 4, on a suite bound by CPU. Then the example that
uses the store beside other resources runs under Pulumi mocks from a folder outside the repository,
with the mock harness copied beside it, in isolated mode (-I), so nothing can import the
repository's own files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.unit.program import ROOT

INSTALL_TIMEOUT = 600  # uv took 6 s here, its cache warm from `make setup`
UV = Path(sys.executable).parent / "uv"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done


def test_install_then_an_example_creates_the_store(tmp_path: Path) -> None:
    assert UV.exists(), f"{UV}: `make setup` installs uv into the venv"
    fresh = tmp_path / "venv"
    run([str(UV), "venv", "-q", "--python", sys.executable, str(fresh)], tmp_path)
    python = fresh / "bin" / "python"
    # From a copy: setuptools builds inside the source folder (build/, *.egg-info).
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", ".rehearsal", "build", "*.egg-info", "__pycache__", ".ruff_cache"))
    run([str(UV), "pip", "install", "-q", "--system-certs", "--python", str(python), str(source)], tmp_path)
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path)
                .stdout.strip())
    run([str(UV), "pip", "check", "--python", str(python)], tmp_path)

    program = tmp_path / "program"
    shutil.copytree(ROOT / "examples" / "alongside-other-resources", program)
    shutil.copy(ROOT / "tests" / "unit" / "program.py", program / "mock_harness.py")
    # -I: no PYTHONPATH, no user site, not even the current folder; the harness is put on the path by hand.
    script = textwrap.dedent("""\
        import json
        import sys
        from pathlib import Path
        sys.path.insert(0, str(Path.cwd()))
        import mock_harness
        import warnings
        import outsystems_redis, outsystems_redis.tools.health
        from outsystems_redis.pulumi.session_store import RedisSessionStore
        with warnings.catch_warnings(record=True) as said:  # the former names, for one release
            warnings.simplefilter("always")
            from components.session_store import RedisSessionStore as former
            from operator_tools import health as former_health
        key = "outsystems-platform:redisPassword"
        done = mock_harness.run_program("staging", {key: "Sixteen-or-more-characters-42"}, secret_keys=(key,),
                                        directory=Path.cwd())
        print(json.dumps({
            "package": outsystems_redis.__file__,
            "tools": outsystems_redis.tools.health.__file__,
            "former": [former is RedisSessionStore, former_health is outsystems_redis.tools.health,
                       sorted({str(w.message).split("'")[1] for w in said if w.category is FutureWarning})],
            "types": sorted({r.type for r in done.resources}),
            "servers": len(done.of_type("aws:ec2/instance:Instance")),
            "exports": sorted(done.exports),
        }))
        """)
    found = json.loads(run([str(python), "-I", "-c", script], program).stdout.splitlines()[-1])
    assert found["package"].startswith(str(site)) and found["tools"].startswith(str(site)), found
    assert found["former"] == [True, True, ["components", "operator_tools"]], found
    assert {"outsystems:redis:Environment", "aws:ec2/securityGroup:SecurityGroup",
            "aws:secretsmanager/secretVersion:SecretVersion", "command:local:Command"} <= set(found["types"])
    assert found["servers"] == 1
    # The tools as installed commands, each its own main (the same --help as `python -m outsystems_redis.tools.<tool>`).
    for tool in ("health", "check", "backup", "maintenance", "rehearsal", "migration"):
        done = run([str(fresh / "bin" / f"outsystems-redis-{tool}"), "--help"], program)
        assert f"python -m outsystems_redis.tools.{tool}" in done.stdout.splitlines()[0], (tool, done.stdout)
    assert found["exports"] == ["connectionSecretArn", "frontEndSecurityGroupId", "serverPrivateIps"]
