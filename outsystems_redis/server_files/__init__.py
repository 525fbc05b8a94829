"""What runs ON the servers: the shell scripts, their shared library (lib.sh) and the two Python agents.

The renderers in outsystems_redis/render/ read them from here (`source`) and ship them in the user data or
upload them to the stack's bucket; the agents run on the servers' Python 3.8 with the standard library only.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def source(name: str) -> Path:
    """The file `name` of this folder, as the renderers read it."""
    path = HERE / name
    if not path.is_file():
        raise FileNotFoundError(f"outsystems_redis/server_files/ has no {name}")
    return path
