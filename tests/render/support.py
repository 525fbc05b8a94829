"""What the render tests share: the rendered user data of every stack shape, its files, and systemd's verify.

Test modules import from here (and tests/render/stacks.py), never from one another.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from outsystems_redis.render.cloud_config import render_cloud_config
from tests.render.stacks import PARAMETER, REGION, STACKS, TLS_STACKS, stack
from tests.tools import tool

# Every stack shape on both platforms, and on the 7.0 platform with TLS on too.
SCHEMA_CASES = [(n, p, False) for n, p in STACKS] + [(n, p, True) for n, p in TLS_STACKS]

# What Python 3.8 (Ubuntu 20.04's python3) lacks, which a program the servers run must not use.
NEWER_THAN_3_8 = ("removeprefix", "removesuffix", "functools.cache", "zoneinfo", "graphlib", ".is_relative_to(",
                  "math.lcm", "randbytes")


def rendered(servers: int, platform: str, tls: bool = False) -> list[str]:
    """The user data (cloud-config text) of every server of a stack shape."""
    settings, topology = stack(servers, platform, tls)
    return [
        render_cloud_config(settings, topology, i, memory_mib=8192, password_parameter=PARAMETER, region=REGION)
        for i in range(servers)
    ]


def files_of(user_data: str) -> dict[str, str]:
    """path -> content of a cloud-config's write_files."""
    return {f["path"]: f["content"] for f in yaml.safe_load(user_data)["write_files"]}


def files(servers: int, platform: str, index: int = 0, tls: bool = False) -> dict[str, str]:
    """The files of server `index` of a stack shape."""
    settings, topology = stack(servers, platform, tls)
    return files_of(render_cloud_config(settings, topology, index, memory_mib=8192, password_parameter=PARAMETER,
                                        region=REGION))


def env_of(text: str) -> dict[str, str]:
    """An env file's NAME="value" lines as a dict."""
    return {k: v.strip('"') for k, v in (line.split("=", 1) for line in text.splitlines())}


def shipped_scripts() -> dict[str, str]:
    """Every shell script the user data of any shape carries, by path."""
    scripts = {}
    for servers, platform, tls in SCHEMA_CASES:
        for text in rendered(servers, platform, tls):
            for path, content in files_of(text).items():
                if content.startswith("#!/bin/bash"):
                    scripts[path] = content
    return scripts


def verify_units(unit_dir: Path, *units: str) -> str:
    """`systemd-analyze verify` of `units` with `unit_dir` first on the unit path: "rc=0" when it says nothing."""
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}  # trailing ':' keeps the system dirs
    result = subprocess.run([tool("systemd-analyze"), "verify", *units], capture_output=True, text=True, env=env,
                            timeout=120)
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}".strip()
