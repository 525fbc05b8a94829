"""render/programs.py: each program on the servers described once, and both consumers reading that description.

- every environment file a program's units read is one the description names (`reads`, then its own), so
  `environment()`, which the loopback rehearsal runs the scripts with, is what systemd gives them on EC2;
- no two programs write the same path;
- the rehearsal gives every script the same variables as EC2 (only paths, redis-cli and names differ).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from outsystems_redis.render import programs
from outsystems_redis.render.programs import Where
from outsystems_redis.tools.loopback import Loopback
from tests.render.stacks import PARAMETER, REGION, STACKS, TLS_STACKS, stack
from tests.render.support import files_of, rendered

# Variables that name where something is or what it is called: the rehearsal's own.
PLACES_AND_NAMES = r"FILE|CLI|PARAMETER|REGION|LOGS|DIR|TLS_CA|SERVERS|MASTERS|REPLICAS|IP$|STACK|LOG_GROUP|NAME$"
CASES = [(n, p, False) for n, p in STACKS] + [(n, p, True) for n, p in TLS_STACKS]


def wheres(servers: int, platform: str, tls: bool) -> list[Where]:
    settings, topology = stack(servers, platform, tls)
    return [Where.on_ec2(settings, topology, i, password_parameter=PARAMETER, region=REGION, memory_mib=8192)
            for i in range(servers)]


@pytest.mark.parametrize("servers,platform,tls", CASES)
def test_the_environment_files_a_programs_units_read_are_the_ones_it_declares(servers, platform, tls) -> None:
    for where in wheres(servers, platform, tls):
        written = {path for path, _, _ in programs.server_files(where)}
        owners = {p.env_path: p for p in programs.PROGRAMS if p.env_path}
        for program in programs.carried(where):
            declared = list(programs.env_files(program))
            read_by_any: set[str] = set()
            for name, text in program.units(where):
                read = [line.split("=", 1)[1].lstrip("-") for line in text.splitlines()
                        if line.startswith("EnvironmentFile=")]
                read_by_any |= set(read)
                # In systemd's order: a later file's variable wins, as in environment()'s merge.
                assert read == [p for p in declared if p in read], (program.name, name, read, declared)
                assert set(read) <= set(declared), (program.name, name, read, declared)
                assert all(p in written for p in read if not text.count(f"EnvironmentFile=-{p}")), \
                    (program.name, name, "reads an environment file no program on this server writes")
            # And nothing declared that no unit of it reads (a program without units, step-down, runs in another's).
            if any(name.endswith(".service") or ".service.d/" in name for name, _ in program.units(where)):
                expected = {p for p in declared if owners[p].carried(where)}
                assert read_by_any == expected, (program.name, read_by_any, expected)


@pytest.mark.parametrize("servers,platform,tls", CASES)
def test_the_user_data_is_the_carried_programs_files_and_no_two_write_one_path(servers, platform, tls) -> None:
    for where, text in zip(wheres(servers, platform, tls), rendered(servers, platform, tls), strict=True):
        paths = [path for path, _, _ in programs.server_files(where)]
        assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)
        assert set(paths) <= set(files_of(text))
        # What the boot enables is what the carried programs enable, and each is a unit the user data writes.
        for unit in programs.enabled_units(where):
            assert unit.startswith("redis-server@") or f"/etc/systemd/system/{unit}" in files_of(text), unit


def test_a_program_a_server_does_not_carry_has_no_environment_there() -> None:
    where = wheres(1, STACKS[0][1], False)[0]
    with pytest.raises(ValueError, match="does not carry redis-cluster-join"):
        programs.environment("redis-cluster-join", where)


@pytest.mark.parametrize("servers,platform,tls", [c for c in CASES if c[0] > 1])
def test_the_rehearsal_gives_each_script_the_variables_ec2_gives_it(servers, platform, tls, tmp_path) -> None:
    settings, _ = stack(servers, platform, tls)
    lo = Loopback.from_settings(settings, tmp_path)
    for server in range(servers):
        ec2 = Where.on_ec2(settings, lo.topology, server, password_parameter=PARAMETER, region=REGION)
        for program in programs.carried(ec2):
            if not (program.env or program.reads):
                continue
            here, there = lo.environment(program.name, server), programs.environment(program.name, ec2)
            assert set(here) == set(there), (program.name, set(here) ^ set(there))
            # Only where things are and what they are called differ; never a figure or a list of peers' ports.
            differ = {k for k in here if here[k] != there[k]}
            assert all(re.search(PLACES_AND_NAMES, k) for k in differ), \
                (program.name, {k: (here[k], there[k]) for k in differ})
            # And every place is the rehearsal's own: nothing of it writes to the host's /var/lib or /etc.
            places = [v.split("=", 1)[-1] for k, v in here.items() if re.search(r"(FILE|DIR|^TLS_CA)$", k)] + \
                [item.split("=", 1)[1] for item in here.get("REDIS_LOGS", "").split()]
            assert all(Path(v).is_relative_to(tmp_path) for v in places), (program.name, places)


def test_environment_refuses_a_required_environment_file_that_no_carried_program_writes(monkeypatch) -> None:
    """systemd fails a unit whose plain EnvironmentFile= is missing: the rehearsal must not quietly run the
    script without it. Planted: role-restore's units reading a file that no program writes."""
    where = wheres(3, "ubuntu-20.04-redis-5.0", False)[0]
    role_restore, planted = programs.PROGRAM["redis-role-restore"], "/etc/redis/nobody-writes.env"
    monkeypatch.setitem(programs.PROGRAM, "redis-role-restore", dataclasses.replace(
        role_restore, reads=(planted, *role_restore.reads),
        units=lambda w: [(n, t.replace("[Service]\n", f"[Service]\nEnvironmentFile={planted}\n"))
                         for n, t in role_restore.units(w)]))
    with pytest.raises(ValueError, match="redis-role-restore on server 1 reads /etc/redis/nobody-writes.env"):
        programs.environment("redis-role-restore", where)
    # The optional one (`EnvironmentFile=-`: the step-down drop-in of a single server, which has no step-down).
    dev = wheres(1, "ubuntu-20.04-redis-5.0", False)[0]
    assert not programs.PROGRAM["redis-step-down"].carried(dev)
    assert programs.environment("redis-server", dev) == {}
