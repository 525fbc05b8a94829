"""The user data's launcher (redis-run-fetched) runs a program from the stack's bucket only if it is signed by
the stack's deployer: the shipped launcher, the real AWS CLI against moto's S3 and SSM, the real openssl.

A program someone else put in the bucket (or in another bucket the parameter was pointed at) is refused,
and the last good copy runs; the signature is checked against the public key in the user data
(outsystems_redis/signing.py, what `pulumi up` uploads beside each program). So is a program the deployer
signed for an older release than the server runs.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from outsystems_redis import monitoring, signing
from outsystems_redis.render.metrics import observe_launcher
from outsystems_redis.tools.loopback import BASH
from tests.integration.moto_stand_in import REGION, Moto

SEED = "Deployer" * 5  # the stack's seed (the program's is a generated secret)
STACK = "signed"
KEY = "tools/probe.sh"


class Bucket:
    def __init__(self, moto: Moto) -> None:
        self.s3 = moto.client("s3")
        self.name = f"osr-{STACK}-bucket"
        self.s3.create_bucket(Bucket=self.name, CreateBucketConfiguration={"LocationConstraint": REGION})
        moto.client("ssm").put_parameter(Name=monitoring.backup_bucket_parameter(STACK), Value=self.name,
                                         Type="String")

    def put(self, text: str, signed: str | None) -> None:
        """The program (what a launcher without the key fetches), and `signed` (its release and signature) followed
        by it, as tools/probe.sh.signed (what a launcher with the key fetches); no such object when None."""
        self.s3.put_object(Bucket=self.name, Key=KEY, Body=text.encode())
        if signed is None:
            self.s3.delete_object(Bucket=self.name, Key=KEY + signing.SIGNED_SUFFIX)
        else:
            self.s3.put_object(Bucket=self.name, Key=KEY + signing.SIGNED_SUFFIX, Body=(signed + text).encode())


def program(version: int) -> str:
    return f"#!/bin/bash\necho \"probe version {version}\"\n"


def signed(text: str, release: int = 1, seed: str = SEED, key: str = KEY) -> str:
    """The release and signature that `pulumi up` puts before `text` in tools/probe.sh.signed, at `release`."""
    return signing.release_signature(seed, key, text, release)


def launcher_command(moto: Moto, tmp: Path, public_key: Path, state: str = "state", release: int = 1,
                     **extra: str) -> tuple[list[str], dict[str, str]]:
    """The launcher of a server whose user data was rendered with the programs of `release`."""
    launcher = tmp / f"redis-run-fetched-{release}"
    launcher.write_text(observe_launcher(release))
    env = {**moto.env(), "BUCKET_PARAMETER": monitoring.backup_bucket_parameter(STACK), "TOOLS_KEY": KEY,
           "STATE_DIR": str(tmp / state), "TOOLS_PUBLIC_KEY": str(public_key), **extra}
    return [BASH, str(launcher)], env


def launch(moto: Moto, tmp: Path, public_key: Path, state: str = "state", release: int = 1
           ) -> subprocess.CompletedProcess:
    argv, env = launcher_command(moto, tmp, public_key, state, release)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_only_programs_signed_by_the_deployer_run_and_a_refused_one_leaves_the_last_good_copy(moto, tmp_path):
    public_key = tmp_path / "tools.pub"
    public_key.write_text(signing.public_key_pem(SEED))
    bucket = Bucket(moto)

    bucket.put(program(1), signed(program(1)))
    ran = launch(moto, tmp_path, public_key)
    assert ran.returncode == 0 and ran.stdout == "probe version 1\n", ran.stdout + ran.stderr
    assert ran.stderr == ""

    # Tampered: new text under the old signature; signed by another key; signed for another object's name
    # (one of the deployer's programs put in another's place).
    for signature in (signed(program(1)), signed(program(2), seed="Attacker" * 5),
                      signed(program(2), key="tools/other.sh"),
                      # the plain signature, which servers created before releases check
                      signing.signature(SEED, KEY, program(2)),
                      # the release number changed after signing
                      signed(program(2), release=2).replace("2\n", "3\n", 1)):
        bucket.put(program(2), signature)
        ran = launch(moto, tmp_path, public_key)
        assert ran.returncode == 0 and ran.stdout == "probe version 1\n", ran.stdout + ran.stderr  # the last good copy
        assert "ERROR" in ran.stderr and "refused" in ran.stderr and "running the copy of" in ran.stderr, ran.stderr
    # No signed object at all, only a plain one (as anyone allowed to write tools/ could put): not even fetched.
    bucket.put(program(2), None)
    ran = launch(moto, tmp_path, public_key)
    assert ran.returncode == 0 and ran.stdout == "probe version 1\n" and "running the copy of" in ran.stderr, \
        ran.stdout + ran.stderr

    # A first run with nothing good to fall back on runs nothing.
    ran = launch(moto, tmp_path, public_key, state="fresh-state")
    assert ran.returncode == 1 and ran.stdout == "" and "no earlier copy" in ran.stderr, ran.stdout + ran.stderr

    # The deployer's next upload is taken at the next run.
    bucket.put(program(2), signed(program(2)))
    ran = launch(moto, tmp_path, public_key)
    assert ran.returncode == 0 and ran.stdout == "probe version 2\n" and ran.stderr == "", ran.stdout + ran.stderr
    # No download left behind: the copy, and its signature (checked again at every run).
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["probe.sh", "probe.sh.sig"]

    # Another unit of the server (the state directory is shared) plants a program there while S3 is out of
    # reach: the copy no longer matches its signature, and nothing runs. Planted (the copy run unchecked): the
    # planted program runs.
    bucket.s3.delete_object(Bucket=bucket.name, Key=KEY + signing.SIGNED_SUFFIX)
    (tmp_path / "state" / "probe.sh").write_text("#!/bin/bash\necho planted\n")
    ran = launch(moto, tmp_path, public_key)
    assert ran.returncode == 1 and "planted" not in ran.stdout, ran.stdout + ran.stderr
    assert "has no valid signature from this stack's deployer: refused" in ran.stderr, ran.stderr


def test_a_server_whose_user_data_has_no_key_runs_what_it_fetches(moto, tmp_path):
    """Servers created before the signatures (their user data carries no key, and their launcher predates the
    check) are unchanged by them: the launcher verifies only when the key file exists."""
    bucket = Bucket(moto)
    bucket.put(program(3), None)
    ran = launch(moto, tmp_path, tmp_path / "no-such-key.pub")
    assert ran.returncode == 0 and ran.stdout == "probe version 3\n", ran.stdout + ran.stderr


def test_a_first_boot_waits_for_its_program_within_first_fetch_seconds(moto, tmp_path):
    """redis-auth's programs (the password, the certificates) come through the launcher, and Redis cannot
    start without them: with no copy yet, it tries again every 10 s for FIRST_FETCH_SECONDS (the instance
    role's policy may not have reached S3 yet), runs the program once it is there, and otherwise gives up
    with an ERROR once that time is spent. Planted (no retry: FIRST_FETCH_SECONDS ignored): the program
    uploaded after the first try never runs."""
    public_key = tmp_path / "tools.pub"
    public_key.write_text(signing.public_key_pem(SEED))
    bucket = Bucket(moto)
    argv, env = launcher_command(moto, tmp_path, public_key, FIRST_FETCH_SECONDS="30")
    started = time.monotonic()
    errors = tmp_path / "launcher.err"
    with open(errors, "w") as err_file:
        waiting = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True,
                                   stdin=subprocess.DEVNULL)
    try:
        # Upload only once the first try has found nothing (however long its calls took).
        while "cannot fetch tools/probe.sh yet; retrying in 10s" not in errors.read_text():
            assert waiting.poll() is None and time.monotonic() - started < 40, errors.read_text()
            time.sleep(0.2)
        bucket.put(program(4), signed(program(4)))
        out, _ = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0 and out == "probe version 4\n", out + errors.read_text()

    # Never there: an ERROR once FIRST_FETCH_SECONDS are spent, and nothing runs.
    argv, env = launcher_command(moto, tmp_path, public_key, state="never",
                                 FIRST_FETCH_SECONDS="12", TOOLS_KEY="tools/absent.sh")
    started = time.monotonic()
    gave_up = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert gave_up.returncode == 1 and gave_up.stdout == "", gave_up.stdout + gave_up.stderr
    assert "ERROR: cannot fetch tools/absent.sh" in gave_up.stderr and time.monotonic() - started < 25


def test_a_reboot_with_a_copy_gives_a_hanging_aws_only_short_bounds(moto, tmp_path):
    """redis-auth's launcher (FIRST_FETCH_SECONDS set) on a reboot with its copy and AWS hanging: its calls get
    short bounds (the bucket's name 5 s), so Redis starts from the copy within seconds; a minute job keeps the
    long ones (20 s for the name). Planted (the same bounds for both): the reboot takes 20 s and more."""
    public_key = tmp_path / "tools.pub"
    public_key.write_text(signing.public_key_pem(SEED))
    bucket = Bucket(moto)
    bucket.put(program(5), signed(program(5)))
    assert launch(moto, tmp_path, public_key).returncode == 0  # the copy of the first boot
    # An endpoint that takes connections and never answers: every call hangs until its bound.
    with socket.socket() as hanging:
        hanging.bind((moto.host, 0))
        hanging.listen(64)
        # The CLI's own retries would outlast either bound: only the launcher's bound ends the call.
        argv, env = launcher_command(moto, tmp_path, public_key, FIRST_FETCH_SECONDS="240", AWS_MAX_ATTEMPTS="10",
                                     AWS_ENDPOINT_URL=f"http://{moto.host}:{hanging.getsockname()[1]}")
        started = time.monotonic()
        reboot = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        took = time.monotonic() - started
    assert reboot.returncode == 0 and reboot.stdout == "probe version 5\n", reboot.stdout + reboot.stderr
    assert "running the copy of" in reboot.stderr and took < 12, (took, reboot.stderr)


def test_a_program_run_as_redis_is_fetched_by_one_step_and_run_by_another(moto, tmp_path):
    """redis-cluster-join runs as redis, who reaches no AWS: root's step (FETCH_ONLY=1) fetches and verifies
    it and runs nothing; the redis step (NO_FETCH=1) calls no AWS and runs the copy only if it still matches
    its signature. (systemd switches the user between the two: booted in tests/boot.) Planted (NO_FETCH
    ignored): the second step needs AWS and fails here without it."""
    public_key = tmp_path / "tools.pub"
    public_key.write_text(signing.public_key_pem(SEED))
    bucket = Bucket(moto)
    bucket.put(program(5), signed(program(5)))
    argv, env = launcher_command(moto, tmp_path, public_key, FETCH_ONLY="1")
    fetched = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert fetched.returncode == 0 and fetched.stdout == "" and fetched.stderr == "", fetched.stdout + fetched.stderr
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["probe.sh", "probe.sh.sig"]

    # The redis step: no AWS settings, no credentials, no moto.
    run_env = {"PATH": "/usr/bin:/bin", "TOOLS_KEY": KEY, "STATE_DIR": str(tmp_path / "state"),
               "TOOLS_PUBLIC_KEY": str(public_key), "NO_FETCH": "1"}
    moto.stop()
    ran = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0 and ran.stdout == "probe version 5\n" and ran.stderr == "", ran.stdout + ran.stderr

    (tmp_path / "state" / "probe.sh").write_text(program(6))  # changed after root's check
    ran = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert ran.returncode == 1 and "probe version" not in ran.stdout, ran.stdout + ran.stderr
    assert "has no valid signature from this stack's deployer: refused" in ran.stderr, ran.stderr

    (tmp_path / "state" / "probe.sh").unlink()
    ran = subprocess.run(argv, env=run_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert ran.returncode == 1 and "no copy of tools/probe.sh" in ran.stderr, ran.stdout + ran.stderr


def test_a_server_given_its_bucket_by_name_never_follows_the_parameter_elsewhere(moto, tmp_path):
    """The user data names the stack's bucket (BUCKET): the launcher fetches from it even when the bucket's
    parameter is pointed at another bucket that serves an older program the deployer once signed. A server
    whose user data has only the parameter (created before) follows it there. Planted (the launcher reading
    the parameter first): the first run runs the other bucket's program."""
    public_key = tmp_path / "tools.pub"
    public_key.write_text(signing.public_key_pem(SEED))
    bucket = Bucket(moto)
    bucket.put(program(1), signed(program(1)))
    s3, other = moto.client("s3"), f"osr-{STACK}-elsewhere"
    s3.create_bucket(Bucket=other, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=other, Key=KEY, Body=program(0).encode())
    s3.put_object(Bucket=other, Key=KEY + signing.SIGNED_SUFFIX, Body=signed(program(0)) + program(0))
    moto.client("ssm").put_parameter(Name=monitoring.backup_bucket_parameter(STACK), Value=other, Type="String",
                                     Overwrite=True)
    argv, env = launcher_command(moto, tmp_path, public_key, BUCKET=bucket.name)
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0 and ran.stdout == "probe version 1\n", ran.stdout + ran.stderr
    older = launch(moto, tmp_path, public_key, state="older-server")
    assert older.returncode == 0 and older.stdout == "probe version 0\n", older.stdout + older.stderr


def test_a_program_the_deployer_signed_for_an_older_release_is_not_run_again(moto, tmp_path):
    """Whoever may write tools/ (the toolWriters) cannot sign, but could serve again a program the deployer signed
    for an earlier release (one with a known flaw, say). The launcher runs no release older than its own (rendered
    into the user data with the programs of its day) or than the newest that a copy on the server verifies for
    (any program's): the older one is refused with an ERROR that names both releases, and the copy runs; a later
    release is taken. Planted: the release check removed from the launcher (the older program runs); the floor
    read from the copy of the same program only (the boot-only program takes release 2); the floor read from a
    copy's signature without checking it (the planted number shuts the program out)."""
    public_key = tmp_path / "tools.pub"
    public_key.write_text(signing.public_key_pem(SEED))
    bucket = Bucket(moto)
    # A server created at release 1 takes release 2's program, then is served release 1's again.
    bucket.put(program(2), signed(program(2), release=2))
    ran = launch(moto, tmp_path, public_key, release=1)
    assert ran.returncode == 0 and ran.stdout == "probe version 2\n" and ran.stderr == "", ran.stdout + ran.stderr
    bucket.put(program(1), signed(program(1), release=1))
    ran = launch(moto, tmp_path, public_key, release=1)
    assert ran.returncode == 0 and ran.stdout == "probe version 2\n", ran.stdout + ran.stderr  # the copy
    assert "ERROR: tools/probe.sh: signed for release 1, older than release 2 that this server runs: refused" \
        in ran.stderr and "running the copy of" in ran.stderr, ran.stderr
    # A server created at release 2 refuses release 1 at its first boot, with no copy to compare with.
    ran = launch(moto, tmp_path, public_key, state="first-boot", release=2)
    assert ran.returncode == 1 and ran.stdout == "" and "older than release 2" in ran.stderr, ran.stdout + ran.stderr
    # The same release again, and a later one, run.
    for release, version in ((2, 3), (3, 4)):
        bucket.put(program(version), signed(program(version), release=release))
        ran = launch(moto, tmp_path, public_key, release=1)
        assert ran.returncode == 0 and ran.stdout == f"probe version {version}\n", ran.stdout + ran.stderr

    # A program fetched only at boot (redis-auth's) takes its floor from the copies of the minute jobs' programs:
    # one upload signs every program with one release. Served release 2 while probe.sh's copy is release 3: refused.
    boot_key = "tools/boot.sh"
    bucket.s3.put_object(Bucket=bucket.name, Key=boot_key + signing.SIGNED_SUFFIX,
                         Body=(signed(program(9), release=2, key=boot_key) + program(9)).encode())
    argv, env = launcher_command(moto, tmp_path, public_key, release=1, TOOLS_KEY=boot_key)
    ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert ran.returncode == 1 and "signed for release 2, older than release 3" in ran.stderr, ran.stdout + ran.stderr

    # A release number written into a copy's signature here (by anything else that may write the state directory)
    # counts for nothing: it neither shuts the program out nor lifts the floor.
    (tmp_path / "state" / "probe.sh.sig").write_text("999999\n" + signed(program(4), release=3).split("\n")[1])
    bucket.put(program(5), signed(program(5), release=3))
    ran = launch(moto, tmp_path, public_key, release=1)
    assert ran.returncode == 0 and ran.stdout == "probe version 5\n" and ran.stderr == "", ran.stdout + ran.stderr


def test_a_launcher_without_a_release_number_runs_nothing(tmp_path):
    """The release is written into the launcher when the user data is rendered; a launcher left without one (its
    placeholder, or anything but a number from 1) refuses to run rather than run without the release check.
    Planted (no check of TOOLS_RELEASE): the placeholder passes, and the fetch is tried."""
    from outsystems_redis.render.metrics import LAUNCHER_SOURCE
    from outsystems_redis.render.shipped import shipped_script

    for text in (shipped_script(LAUNCHER_SOURCE), observe_launcher(1).replace("TOOLS_RELEASE=1", "TOOLS_RELEASE=01")):
        launcher = tmp_path / "redis-run-fetched"
        launcher.write_text(text)
        env = {"PATH": "/usr/bin:/bin", "TOOLS_KEY": KEY, "STATE_DIR": str(tmp_path / "state"),
               "AWS_REGION": REGION, "BUCKET": "unused"}
        ran = subprocess.run([BASH, str(launcher)], env=env, capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
        assert ran.returncode == 2 and "a release number" in ran.stderr and ran.stdout == "", ran.stderr
    with pytest.raises(ValueError, match="release 0"):
        observe_launcher(0)
