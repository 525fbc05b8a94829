"""redis-make-room as the servers get it: only on Redis 5.0, as the redis user, a Python 3.8 program.

What it does against real Redis: tests/integration/test_memory.py (a fill past maxmemory),
tests/render/test_scripts_argv.py (the password never on a command line) and
tests/integration/test_rehearsal.py (the rehearsal runs it).
"""

from __future__ import annotations

import ast

import pytest

from outsystems_redis.alarms import RULES
from outsystems_redis.render import make_room
from tests.render.stacks import PASSWORD, STACKS
from tests.render.support import NEWER_THAN_3_8, env_of, files


@pytest.mark.parametrize("servers,platform", STACKS)
def test_only_redis_5_0_servers_run_it_with_their_own_ports(servers, platform):
    for index in range(servers):
        f = files(servers, platform, index)
        unit = f.get(f"/etc/systemd/system/{make_room.MAKE_ROOM_UNIT}")
        if "5.0" not in platform:
            assert unit is None and make_room.MAKE_ROOM_PATH not in f
            continue
        assert f[make_room.MAKE_ROOM_PATH] == make_room.make_room_script()
        assert "User=redis\n" in unit and "Restart=always\n" in unit
        assert all(f"{h}\n" in unit for h in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes"))
        env = env_of(f[make_room.MAKE_ROOM_ENV_PATH])
        assert env["PORTS"].split() == (["6379"] if servers == 1 else ["7000", "7001"])
        assert env["AUTH_FILE"] == "/etc/redis/auth/auth.conf" and PASSWORD not in f[make_room.MAKE_ROOM_ENV_PATH]


def test_the_memory_alarm_fires_before_it_evicts():
    threshold = RULES["MemoryUsedPercent"].threshold
    assert make_room.TARGET_PERCENT < make_room.TRIGGER_PERCENT and threshold < make_room.TRIGGER_PERCENT < 100


def test_the_program_is_python_3_8_with_the_standard_library_and_no_docstrings():
    text = make_room.make_room_script()
    assert text.startswith("#!/usr/bin/python3\n")
    tree = ast.parse(text, feature_version=(3, 8))
    assert not [n for n in NEWER_THAN_3_8 if n in text]
    imports = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imports <= {"os", "socket", "time"} and not any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))
    assert '"""' not in text and "->" not in text  # docstrings and annotations stay in the source
