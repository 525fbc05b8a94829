"""Watch every command line a shipped script runs, to prove a secret never reaches one.

Two guards, because each misses what the other sees:

- `Shims`: a PATH made only of logging shims, one per executable of the real
  PATH (so nothing a script runs by name escapes the log: a command missing
  here is not found at all). Deterministic: every argv of every command run
  by name, and of `$REDIS_CLI` when it points at the shim, is in the log.
- `CmdlineSampler`: a thread reading /proc/<pid>/cmdline of every process that
  appears while it runs. It also sees commands run by absolute path, which
  bypass the shims, but only those that live longer than its interval.

`detectors_work()` plants the defect each one guards against, so a guard that
stopped seeing anything fails loudly instead of passing quietly.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

from outsystems_redis.tools.loopback import BASH

SEP = "\x1f"  # after each argument of a logged command line
END = "\x1e"  # after each command line (an argument may hold newlines)


class Shims:
    """A directory of shims that log their argv to `log`, then exec the real command."""

    def __init__(self, directory: Path, first: list[str | os.PathLike[str]] | None = None) -> None:
        """`first`: directories searched before the real PATH (the `aws` stand-in, a Redis line's bin)."""
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir.parent / f"{self.dir.name}.log"
        self.log.touch()
        search = [str(d) for d in first or []] + os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
        written: set[str] = set()
        for d in search:
            if not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                real = os.path.join(d, name)
                if name in written or not os.access(real, os.X_OK) or os.path.isdir(real):
                    continue
                written.add(name)
                shim = self.dir / name
                # One printf: the whole argv lands in one write, so parallel commands never split an argument.
                shim.write_text(f"#!{BASH}\nprintf '%s{SEP}' \"${{0##*/}}\" \"$@\" >>{shlex.quote(str(self.log))}\n"
                                f"printf '{END}' >>{shlex.quote(str(self.log))}\n"
                                f"exec {shlex.quote(real)} \"$@\"\n")
                shim.chmod(0o755)
        self.names = written

    @property
    def path(self) -> str:
        """PATH for a script under watch: the shims only."""
        return str(self.dir)

    def command(self, name: str) -> str:
        """The shim of `name` (e.g. REDIS_CLI for the cluster scripts)."""
        assert name in self.names, f"{name} not found on PATH"
        return str(self.dir / name)

    def lines(self) -> list[list[str]]:
        """Every logged command line: [name, arg, ...]."""
        return [record.split(SEP)[:-1] for record in self.log.read_text(errors="replace").split(END) if record]

    def leaks(self, secrets: list[str]) -> list[str]:
        """Logged command lines holding any of `secrets` (shown with them masked)."""
        found = []
        for args in self.lines():
            line = " ".join(args)
            if any(secret in SEP.join(args) for secret in secrets):
                for secret in secrets:
                    line = line.replace(secret, "<SECRET>")
                found.append(line)
        return found

    def ran(self, name: str) -> int:
        """How many times `name` ran: proof the log is real."""
        return sum(1 for args in self.lines() if args and args[0] == name)


class CmdlineSampler:
    """Scans the command line of every process that appears after start(), every `interval` seconds."""

    def __init__(self, secrets: list[str], interval: float = 0.005) -> None:
        self.secrets = [s.encode() for s in secrets]
        self.interval = interval
        self.hits: list[str] = []
        self.seen = 0  # command lines read: proof the sampler looked
        self.marker_seen = 0
        self.marker = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._before: set[str] = set()

    def start(self, marker: str = "") -> CmdlineSampler:
        """`marker`: a string the watched processes' command lines carry (counted, to prove they were seen)."""
        self.marker = marker.encode()
        # Processes older than the run cannot be its children; skipping them keeps each scan cheap.
        self._before = set(os.listdir("/proc"))
        self._thread.start()
        return self

    def stop(self) -> CmdlineSampler:
        self._stop.set()
        self._thread.join(timeout=10)
        return self

    def __enter__(self) -> CmdlineSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        me = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if pid in self._before or not pid.isdigit() or pid == me:
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue  # gone already
                self.seen += 1
                if self.marker and self.marker in cmdline:
                    self.marker_seen += 1
                if any(secret in cmdline for secret in self.secrets):
                    shown = cmdline.replace(b"\0", b" ")
                    for secret in self.secrets:
                        shown = shown.replace(secret, b"<SECRET>")
                    self.hits.append(f"pid {pid}: {shown.decode(errors='replace')}")
            time.sleep(self.interval)


def run_watched(args: list[str], env: dict[str, str], secrets: list[str], shims: Shims,
                timeout: float) -> tuple[subprocess.CompletedProcess, CmdlineSampler]:
    """Run `args` while sampling every new command line for `secrets`; never raises on a failed run.

    On `timeout` the whole process group goes (a redis-cli stuck under the script too), then AssertionError.
    """
    with CmdlineSampler(secrets).start(marker=shims.path) as sampler:
        proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(f"{args} still running after {timeout}s:\n{out}{err}") from None
    return subprocess.CompletedProcess(args, proc.returncode, out, err), sampler


def detectors_work(tmp_path: Path) -> None:
    """Plant both defects: a secret in a shimmed command's argv, and in an absolute-path command's. Both caught."""
    secret = "PlantedSecret" + os.urandom(8).hex()
    shims = Shims(tmp_path / "planted-shims")
    script = tmp_path / "planted.sh"
    script.write_text(f"#!{BASH}\nprintf '%s' x | tr x y >/dev/null\n"
                      f'tr -d "$SECRET" </dev/null\n{BASH} -c "sleep 0.3; :" planted "$SECRET"\n')
    result, sampler = run_watched([BASH, str(script)], {"PATH": shims.path, "SECRET": secret}, [secret], shims, 30)
    assert result.returncode == 0, result.stderr
    assert shims.ran("tr") == 2 and shims.leaks([secret]), "the shims did not log a secret passed to tr"
    # Run by absolute path, so no shim saw it: only the sampler can.
    assert any("planted <SECRET>" in hit for hit in sampler.hits), "the sampler missed an absolute path's argv"


def assert_never_shown(result: subprocess.CompletedProcess, sampler: CmdlineSampler, shims: Shims,
                       secrets: list[str]) -> None:
    """No secret in any logged or sampled command line, nor in the script's stdout or stderr."""
    assert shims.leaks(secrets) == [], "a secret on a command line (shim log)"
    assert sampler.hits == [], "a secret on a command line (/proc)"
    output = result.stdout + result.stderr
    assert not [s for s in secrets if s in output], "a secret in the script's output"
