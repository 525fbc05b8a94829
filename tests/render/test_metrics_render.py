"""redis-observe as the servers get it: the launcher and units in the user data, the program it fetches."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from outsystems_redis import judge, monitoring, topology
from outsystems_redis.render import metrics
from outsystems_redis.render.shipped import strip_docstrings
from tests.render.stacks import PASSWORD, STACKS, stack
from tests.render.support import NEWER_THAN_3_8, env_of, files
from tests.tools import tool


@pytest.mark.parametrize("servers,platform", STACKS)
def test_every_server_gets_the_launcher_its_names_and_two_timers(servers, platform):
    for index in range(servers):
        f = files(servers, platform, index)
        assert f[metrics.OBSERVE_PATH] == metrics.observe_launcher()
        env = env_of(f[metrics.OBSERVE_ENV_PATH])
        settings, topology = stack(servers, platform)
        server = topology.servers[index]
        assert env["SERVER_NAME"] == server.name and env["SERVER_IP"] == server.private_ip
        assert env["STACK"] == settings.stack and env["LOG_GROUP"] == monitoring.log_group_name(settings.stack)
        assert env["PORTS"].split() == [str(p.port) for p in server.processes]
        assert env["CLUSTER"] == ("1" if servers > 1 else "0")
        assert env["REDIS_LOGS"].split() == [f"{p.port}=/var/log/redis/redis-server-{p.port}.log"
                                             for p in server.processes]
        assert not [k for k in env if k.startswith("BUCKET")]  # the bucket: auth.env's (test_backup)
        assert env["TOOLS_KEY"] == monitoring.OBSERVE_TOOL_KEY
        cluster_units = (["redis-cluster-bootstrap.service"] if servers > 1 and index == 0 else []) + (
            ["redis-cluster-join.service"] if servers > 1 else []) + (  # every cluster server can (re)join
            ["redis-role-restore.service"] if servers > 1 else [])
        make_room = ["redis-make-room.service"] if "5.0" in platform else []  # Redis 5.0 only
        # Only the units this server has; not redis-logs (each run would ship the run before's lines).
        assert env["JOURNAL_UNITS"].split() == ["redis-auth.service", "redis-server@*.service", *cluster_units,
                                                *make_room, "redis-password-sync.service",
                                                "redis-metrics.service", "redis-provision.service"]
        assert PASSWORD not in f[metrics.OBSERVE_ENV_PATH]
        for unit in (metrics.METRICS_UNIT, metrics.LOGS_UNIT):
            assert "EnvironmentFile=/etc/redis/auth.env" in f[f"/etc/systemd/system/{unit}"]
        assert "OnCalendar=*:*:15" in f["/etc/systemd/system/redis-metrics.timer"]
        assert "OnCalendar=*:*:45" in f["/etc/systemd/system/redis-logs.timer"]


def test_tls_servers_reach_redis_through_the_stacks_ca():
    env = env_of(files(3, "ubuntu-24.04-redis-7.0", tls=True)[metrics.OBSERVE_ENV_PATH])
    assert env["TLS_CA"] == "/etc/redis/tls/ca.crt"
    assert "TLS_CA" not in env_of(files(3, "ubuntu-24.04-redis-7.0")[metrics.OBSERVE_ENV_PATH])


def test_units_and_timers_pass_systemd_analyze_verify(tmp_path):
    f = files(3, "ubuntu-20.04-redis-5.0")
    copy = tmp_path / "redis-observe"
    copy.write_text(f[metrics.OBSERVE_PATH])
    copy.chmod(0o755)
    units = []
    for unit in (metrics.METRICS_UNIT, metrics.METRICS_TIMER, metrics.LOGS_UNIT, metrics.LOGS_TIMER):
        text = f[f"/etc/systemd/system/{unit}"].replace(f"ExecStart={metrics.OBSERVE_PATH}", f"ExecStart={copy}")
        (tmp_path / unit).write_text(text)
        units.append(str(tmp_path / unit))
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}
    result = subprocess.run([tool("systemd-analyze"), "verify", *units], capture_output=True, text=True, env=env,
                            timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


STANDARD_LIBRARY = {"__future__", "calendar", "collections", "dataclasses", "errno", "hashlib", "importlib",
                    "ipaddress", "json", "os", "re", "shlex", "socket", "ssl", "stat", "subprocess", "sys", "tempfile",
                    "time", "typing"}


def _imports(tree: ast.AST) -> set[str]:
    return {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


def carried(text: str) -> dict[str, str]:
    """The modules a shipped program carries (its _CARRIED literal): name -> source."""
    found = [n.value for n in ast.parse(text).body if isinstance(n, ast.Assign)
             and [t.id for t in n.targets if isinstance(t, ast.Name)] == ["_CARRIED"]]
    assert len(found) == 1, "no _CARRIED in the program"
    return ast.literal_eval(found[0])


def test_the_program_is_self_contained_python_3_8_with_the_health_checks_own_functions(tmp_path):
    text = metrics.observe_script()
    tree = ast.parse(text, feature_version=(3, 8))
    assert not [n for n in NEWER_THAN_3_8 if n in text]
    # `X | None` and `list[str]` stay annotations only: never evaluated on 3.8.
    assert ast.unparse(tree.body[0]) == "from __future__ import annotations"
    modules = carried(text)
    # The judge and monitoring's names travel whole, as the modules they are here: no second judge, and
    # judge.py can be reorganised freely.
    # (judge.py's crossed-ring fix hint imports the topology module inside a function: it travels too.)
    assert set(modules) == {"outsystems_redis", "outsystems_redis.judge", "outsystems_redis.monitoring",
                            "outsystems_redis.parameters", "outsystems_redis.topology"}
    for module in (judge, monitoring):
        source = ast.parse(Path(module.__file__).read_text())
        strip_docstrings(source)
        assert modules[module.__name__] == ast.unparse(source) + "\n", module.__name__
    assert _imports(tree) <= STANDARD_LIBRARY | {"outsystems_redis"}
    for name, source in modules.items():
        module = ast.parse(source, feature_version=(3, 8))
        assert not [n for n in NEWER_THAN_3_8 if n in source], name
        assert _imports(module) <= STANDARD_LIBRARY | {"outsystems_redis"}, name  # and what they import is carried
        if source:
            assert ast.unparse(module.body[0]) == "from __future__ import annotations", name
    # It runs with a bare system python3 (no redis-py, no repository on the path).
    program = tmp_path / "redis-observe.py"
    program.write_text(text)
    result = subprocess.run(["/usr/bin/python3", "-I", str(program)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert (result.returncode, result.stderr.strip()) == (2, "usage: redis-observe metrics|logs")
    result = subprocess.run(["/usr/bin/python3", "-I", str(program), "metrics"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1 and "STACK, SERVER_NAME, SERVER_IP" in result.stderr  # names what is missing


def test_last_save_age_counts_only_what_is_unsaved() -> None:
    """An idle master is as good as freshly saved (else the 2-hour alarm pages every quiet night)."""
    from outsystems_redis.judge import Facts, NodeFacts
    from outsystems_redis.server_files.metrics_agent import compute_metrics

    def age(changes: int) -> float:
        info = {"role": "master", "rdb_last_save_time": "1000", "rdb_changes_since_last_save": str(changes)}
        facts = Facts(cluster=False, expected_version="7.0", nodes=[NodeFacts("10.0.0.1", 6379, info=info)])
        return compute_metrics(facts, "10.0.0.1", {}, now=1000 + 3 * 3600)[0]["LastSaveAgeSeconds"]

    assert age(0) == 0 and age(5) == 3 * 3600


def test_the_fetched_programs_do_not_depend_on_the_hash_seed() -> None:
    # Set order differs between processes; a text that followed it would upload anew at every `pulumi up`.
    # Seeds 1 to 4 put this module's names in different orders (the unsorted rendering differed for them).
    code = "import hashlib, json; from outsystems_redis.render.fetched import fetched_tools; " \
           "print(json.dumps({k: hashlib.sha256(v.encode()).hexdigest() for k, v in fetched_tools().items()}))"
    root = Path(__file__).resolve().parents[2]
    seen = {
        seed: subprocess.run(
            [str(root / ".venv/bin/python"), "-c", code], cwd=root, capture_output=True, text=True, check=True,
            timeout=60, env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(set(seen.values())) == 1, seen


def test_a_carried_program_gets_every_module_it_names_and_no_relative_import(tmp_path: Path) -> None:
    """`from package import module` names a module too; a relative import cannot be resolved on the server."""
    from outsystems_redis.render.shipped import python_program

    program = tmp_path / "agent.py"
    program.write_text("from outsystems_redis import topology\n\nprint(topology.MASTER_PORT)\n")
    text = python_program(program, "outsystems_redis", "#!/usr/bin/python3\n")
    assert "outsystems_redis.topology" in carried(text)
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", text], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, str(topology.MASTER_PORT)), done.stderr
    program.write_text("from .judge import parse_info\n")
    with pytest.raises(ValueError, match=r"agent\.py: relative import on line 1"):
        python_program(program, "outsystems_redis", "#!/usr/bin/python3\n")
