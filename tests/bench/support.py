"""What the benchmark smoke tests share: finding the redis-server processes a run left on its address blocks."""

from __future__ import annotations

from pathlib import Path

# Every address block a run with --host-base B may use: 127.0.<B..B+4>.x (its --help; the smoke run itself
# uses B for ours-prod and its TLS twin and the scale-out's 4th server, B+1 stock-prod, B+2 ours-dev).
BLOCKS = 5


def redis_on_blocks(base: int) -> dict[str, str]:
    """pid -> command line of every redis-server serving an address of the blocks (Redis titles itself
    "redis-server HOST:PORT [cluster]")."""
    blocks = [f"127.0.{base + i}." for i in range(BLOCKS)]
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone
        if "redis-server" in text and any(b in text for b in blocks):
            found[cmdline.parent.name] = text
    return found
