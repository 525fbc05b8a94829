"""fetch-tls.sh, the boot step that writes a server's TLS material from SSM, executed with an `aws` stand-in.

Real PEMs (openssl, outsystems_redis.tools.loopback): files root:redis with their modes,
each replaced by a rename (a reader never sees a partial or wrongly-moded file),
the last boot's files kept when SSM is unreachable, an error when there are none,
a certificate that is not the key's refused. The key never reaches stdout or
stderr (the journal); tests/render/test_scripts_argv.py proves it never reaches
a command line either.
"""

from __future__ import annotations

import grp
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from outsystems_redis.tools.loopback import make_ca, make_server_certificate
from tests.integration.stand_ins import Ssm, require_root_and_redis_group
from tests.tools import tool

MODES = {"tls": 0o750, "ca.crt": 0o644, "server.crt": 0o644, "server.key": 0o640}


def material(directory: Path, ca: tuple[Path, Path] | None = None) -> dict[str, str]:
    """A CA (new unless given), and a certificate and key it signed: the three PEM texts."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = ca or make_ca(directory / "ca")
    make_server_certificate(ca, directory / "server.crt", directory / "server.key", ["10.20.1.10", "127.0.0.1"])
    return {"ca.crt": ca[0].read_text(), "server.crt": (directory / "server.crt").read_text(),
            "server.key": (directory / "server.key").read_text()}


def key_lines(pems: dict[str, str]) -> list[str]:
    return [line for line in pems["server.key"].splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def ssm(tmp_path: Path) -> Ssm:
    require_root_and_redis_group()
    tool("openssl")
    return Ssm(tmp_path / "server")


def fetch(ssm: Ssm, secrets: list[str], **overrides: str):
    """One run; whatever it does, no line of a key ever reaches its output (the journal)."""
    result = ssm.fetch(**overrides)
    output = result.stdout + result.stderr
    assert not [s for s in secrets if s in output], "part of the key in fetch-tls's output"
    return result


def on_disk(ssm: Ssm) -> dict[str, str]:
    return {p.name: p.read_text() for p in (ssm.ca_file, ssm.cert_file, ssm.key_file)}


def test_writes_the_ca_certificate_and_key_root_redis_with_their_modes(ssm, tmp_path):
    pems = material(tmp_path / "a")
    ssm.put_material(pems["ca.crt"], pems["server.crt"], pems["server.key"])
    result = fetch(ssm, key_lines(pems))
    assert result.returncode == 0, result.stdout + result.stderr
    assert on_disk(ssm) == pems  # byte for byte, final newline included
    for path in (ssm.tls_dir, *ssm.tls_dir.iterdir()):
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, grp.getgrnam("redis").gr_gid, MODES[path.name]), path


class Watcher:
    """Reads the three files over and over while fetches replace them: every read must be one complete version
    with the file's own mode. A write in place would show a truncated file; a rename never does."""

    def __init__(self, ssm: Ssm, versions: list[dict[str, str]]) -> None:
        self.paths = [ssm.ca_file, ssm.cert_file, ssm.key_file]
        self.allowed = {name: {v[name] for v in versions} for name in MODES if name != "tls"}
        self.bad: list[str] = []
        self.reads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for path in self.paths:
                try:
                    with open(path) as f:
                        mode = os.fstat(f.fileno()).st_mode & 0o777
                        text = f.read()
                except FileNotFoundError:
                    self.bad.append(f"{path.name} missing for a moment")
                    continue
                self.reads += 1
                if text not in self.allowed[path.name]:
                    self.bad.append(f"{path.name}: a partial or unknown version ({len(text)} bytes)")
                if mode != MODES[path.name]:
                    self.bad.append(f"{path.name} visible with mode {oct(mode)}")

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_renewed_material_replaces_each_file_by_a_rename_never_in_place(ssm, tmp_path):
    ca = make_ca(tmp_path / "ca")
    versions = [material(tmp_path / "a", ca), material(tmp_path / "b", ca)]  # a renewal: same CA, new pair
    secrets = key_lines(versions[0]) + key_lines(versions[1])
    ssm.put_material(*versions[0].values())
    assert fetch(ssm, secrets).returncode == 0
    with Watcher(ssm, versions) as watcher:
        for i in range(1, 9):
            before = {p.name: p.stat().st_ino for p in ssm.tls_dir.iterdir()}
            ssm.put_material(*versions[i % 2].values())
            result = fetch(ssm, secrets)
            assert result.returncode == 0, result.stdout + result.stderr
            assert on_disk(ssm) == versions[i % 2]
            # A new inode for each file: renamed into place, not rewritten where Redis may be reading.
            after = {p.name: p.stat().st_ino for p in ssm.tls_dir.iterdir()}
            assert set(after) == set(before) == {"ca.crt", "server.crt", "server.key"}  # no temp file left
            assert [n for n in after if after[n] == before[n]] == []
    assert watcher.reads > 0 and watcher.bad == []


def test_unreachable_ssm_keeps_the_last_boots_files(ssm, tmp_path):
    pems = material(tmp_path / "a")
    ssm.put_material(*pems.values())
    assert fetch(ssm, key_lines(pems)).returncode == 0
    inodes = {p.name: p.stat().st_ino for p in ssm.tls_dir.iterdir()}
    ssm.outage("fail")
    result = fetch(ssm, key_lines(pems), ATTEMPTS="2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attempt 1 of 2" in result.stdout and "keeping the existing files" in result.stdout
    assert on_disk(ssm) == pems and {p.name: p.stat().st_ino for p in ssm.tls_dir.iterdir()} == inodes


def test_unreachable_ssm_on_a_first_boot_fails_and_writes_nothing(ssm, tmp_path):
    ssm.outage("fail")
    result = fetch(ssm, [])
    assert result.returncode == 1
    assert "ERROR: no TLS material from Parameter Store and none from an earlier boot" in result.stdout
    assert not ssm.tls_dir.exists()


def test_a_certificate_that_is_not_the_keys_is_refused(ssm, tmp_path):
    good, other = material(tmp_path / "a"), material(tmp_path / "b")
    secrets = key_lines(good) + key_lines(other)
    ssm.put_material(good["ca.crt"], good["server.crt"], other["server.key"])
    refused = fetch(ssm, secrets)
    assert refused.returncode == 1 and "does not match the key" in refused.stdout
    assert not ssm.tls_dir.exists()  # a first boot: nothing written, so Redis never starts with the pair
    # On a reboot the mismatched pair in SSM is still refused; the last boot's good files stay.
    ssm.put_material(*good.values())
    assert fetch(ssm, secrets).returncode == 0
    ssm.put_material(good["ca.crt"], good["server.crt"], other["server.key"])
    kept = fetch(ssm, secrets)
    assert kept.returncode == 0 and "does not match the key" in kept.stdout and "keeping the existing" in kept.stdout
    assert on_disk(ssm) == good


def test_a_parameter_that_holds_no_pem_is_refused(ssm, tmp_path):
    pems = material(tmp_path / "a")
    ssm.put_material(pems["ca.crt"], pems["server.crt"], "None")  # what `--output text` prints for a null
    result = fetch(ssm, key_lines(pems))
    assert result.returncode == 1 and "holds no PEM block" in result.stdout
    assert not ssm.tls_dir.exists()


def test_a_hanging_ssm_on_a_reboot_gives_up_after_the_cached_wait_and_keeps_the_files(ssm, tmp_path):
    """SSM that never answers: each call is cut at SSM_CALL_SECONDS, and with an earlier boot's files the
    whole fetch at CACHED_WAIT_SECONDS (30 s on EC2, 3 s here), so Redis starts instead of waiting minutes."""
    pems = material(tmp_path / "a")
    ssm.put_material(*pems.values())
    assert fetch(ssm, key_lines(pems)).returncode == 0
    ssm.outage("hang")
    started = time.monotonic()
    result = fetch(ssm, key_lines(pems), ATTEMPTS="30", CACHED_WAIT_SECONDS="3", SSM_CALL_SECONDS="1")
    took = time.monotonic() - started
    assert result.returncode == 0 and "keeping the existing files" in result.stdout, result.stdout + result.stderr
    assert 3 <= took < 15, f"took {took:.1f}s"
    assert on_disk(ssm) == pems
    # A first boot has nothing to fall back on: it keeps trying for ATTEMPTS, then fails.
    shutil.rmtree(ssm.tls_dir)
    first = fetch(ssm, [], ATTEMPTS="2", CACHED_WAIT_SECONDS="0", SSM_CALL_SECONDS="1")
    assert first.returncode == 1 and "attempt 1 of 2" in first.stdout and not ssm.tls_dir.exists()
