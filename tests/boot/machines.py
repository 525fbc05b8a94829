"""Boot the program's rendered servers as systemd-nspawn containers of Debian 12.

Debian 12 ships the same Redis 7.0.15 packaging (and redis-server@.service
template) as Ubuntu 24.04, so the `ubuntu-24.04-redis-7.0` platform's
cloud-config runs unchanged; the `ubuntu-20.04-redis-5.0` platform's installs
Ubuntu 20.04's own redis packages (5:5.0.7-2ubuntu0.1) on it. What a server is
made of here:

- **Root.** `scripts/boot-root.sh` builds (once, cached by recipe) a minbase
  Debian 12 with systemd and cloud-init, but no redis: its only apt source is a
  local trusted repository holding redis-server/redis-tools 7.0.15 (Debian's)
  and 5.0.7 (Ubuntu 20.04's) with their dependencies, and an `awscli` package
  that installs the aws stand-in, so cloud-init's own `package_update` and
  pinned install run.
  Each server boots an overlay of that root (its upper layer is its "disk",
  kept across power cycles).
- **Network.** One network namespace is the "VPC": it holds a bridge with
  172.31.0.2/16. Each server has its own namespace, joined to the bridge by a
  veth pair, with its rendered private IP and the VPC prefix (/16), so servers
  in different /24 subnets are on-link. The host's own namespace never routes
  there; test traffic starts inside the VPC namespace.
- **User data.** The instance's `userDataBase64` (decoded once: still gzip, as
  EC2 hands it to cloud-init) or `userData` goes byte for byte into the NoCloud
  seed, /var/lib/cloud/seed/nocloud/user-data, with meta-data giving
  instance-id and local-hostname.
- **AWS, at its edge only.** `aws` answers `aws ssm get-parameter --region R
  --name N --with-decryption --query Parameter.Value --output text` from files
  the test writes (the program's own Parameter resources), and fails with exit
  254 and a message on stderr for an unknown name or while the "SSM
  unreachable" switch file exists. The `awscli` package (20.04's apt install)
  puts it at /usr/bin/aws. On 24.04, redis-provision installs the AWS CLI wheel
  with the real pip, its digest checked, from the root's /srv/wheels (/etc/pip.conf,
  the stand-in for PyPI), and writes /usr/local/bin/aws, which must start there
  (support.assert_first_boot); there is no AWS to call, so the harness puts the
  stand-in ahead of it on the units' PATH, at /usr/local/sbin/aws
  (tests/integration/test_aws_cli_wheel.py runs that CLI's calls against moto).

cloud-init settings the harness adds (/etc/cloud/cloud.cfg.d/90-osr-boot.cfg),
and why:

- `datasource_list: [NoCloud]`: the seed directory stands in for EC2's metadata
  service (probing EC2 would only time out).
- `network: {config: disabled}`: the harness configures the namespace before
  boot, as EC2's DHCP would; a minbase root has no network renderer.

And one systemd setting for each unit that calls AWS (AWS_UNITS, a drop-in
90-osr-boot.conf): it may write the files where the aws stand-in keeps AWS's side
(SERVICE_SETTINGS), as the real CLI reaches AWS over the network from inside its sandbox.

No module is disabled. The root carries what an Ubuntu server image has and a
minbase lacks, so modules that would otherwise fail run for real: `locales`
with en_US.UTF-8 generated and LANG=C.UTF-8 set, as Ubuntu's images ship it (the
`locale` module finds it and keeps it), openssh-server (`ssh` host
keys), sudo (`users-groups`), procps (`sysctl` in the rendered runcmd).

What fails in a container by design, and is expected exactly (EXPECTED_OUTPUT;
any other line of cloud-init-output.log that reads like a failure fails a test,
as do a cloud-init error, a WARNING in cloud-init.log, a failed unit and an
ordering cycle on the console):

- `sysctl --system` (runcmd): "permission denied on key" for every key, the
  rendered vm.overcommit_memory and net.core.somaxconn and Debian's own
  kernel.pid_max and fs.protected_*: /proc/sys is not writable in a container.
- `systemd-tmpfiles --create /etc/tmpfiles.d/redis-thp.conf` (runcmd): /sys is
  read-only, so transparent huge pages cannot be turned off.
- redis-server's postinst: "Failed to preset unit ... masked" and
  deb-systemd-helper's "systemctl preset failed": bootcmd masks the packaged
  redis-server.service before the package exists, on purpose. Harmless, and the
  same on Ubuntu.

runcmd is one shell script without `set -e`, and its status is its last
command's, so the first two do not make cloud-init report an error. At later
boots systemd-tmpfiles-setup.service logs the same THP lines and exits 73, which
that unit counts as success; systemd-sysctl.service is skipped by its condition.
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from outsystems_redis import monitoring
from outsystems_redis.platforms import AWS_CLI_PACKAGES
from tests.unit.program import SERVER_ROLE_ID

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "boot-root.sh"
VPC_PREFIX = 16
VPC_ADDRESS = "172.31.0.2"  # AWS's VPC resolver address; only needs to be in the VPC CIDR
# The region of the mocked program (tests/unit/program.py answers getRegion with it).
REGION = "eu-west-1"
BRIDGE = "vpcbr0"
NS_PREFIX = "osrb"
SSM_DIR = "/var/lib/osr-boot/ssm"
SSM_UNREACHABLE = "/var/lib/osr-boot/ssm-unreachable"
# Faults AWS answers with, one line per call of what it names: "<fault> <target>", consumed first line
# first; a target is an SSM parameter's name, s3:<key> (a download of that object), or
# cloudwatch:put-metric-data, logs:create-log-stream, logs:put-log-events. denied: AccessDenied (the
# instance role's policy not yet propagated); throttled: the service's throttling error (S3: 503); slow:
# an answer that comes after the caller gave up.
SSM_FAULTS = "/var/lib/osr-boot/ssm-faults"
SSM_FAULT_KINDS = ("denied", "throttled", "slow")
AWS_LOG = "/var/log/osr-boot-aws.log"
# Who made each AWS call, and with which HOME ("<uid> <HOME or unset> <args>"): the AWS CLI reads the caller's
# ~/.aws/config, which can name a command to run (credential_process).
AWS_CALLERS = "/var/lib/osr-boot/aws-callers"
PIP_CONF = "etc/pip.conf"  # pip's index: /srv/wheels in the root (scripts/boot-root.sh), none without a way out
APT_SOURCES = "etc/apt/sources.list"

# Lines of cloud-init's output (cloud-init-output.log) that a container produces by
# design, each with the reason. Any other line that reads like a failure fails the test.
EXPECTED_OUTPUT = {
    r'sysctl: permission denied on key "[\w.]+"':
        "sysctl --system: /proc/sys is read-only in a container (vm.*, kernel.*, fs.*, and net.* too here)",
    r'Failed to open file "/sys/kernel/mm/transparent_hugepage/(enabled|defrag)": Read-only file system':
        "systemd-tmpfiles (THP off): /sys is read-only in a container",
    r"Failed to preset unit, unit /etc/systemd/system/redis-server\.service is masked\.":
        "redis-server's postinst cannot preset the unit that bootcmd masked on purpose (harmless; as on Ubuntu)",
    r"/usr/bin/deb-systemd-helper: error: systemctl preset failed on redis-server\.service: No such file or directory":
        "the same preset of the masked redis-server.service, as deb-systemd-helper reports it",
}
# What reads like a failure in that output.
SUSPICIOUS = re.compile(
    r"(?i)\b(errors?|fail(ed|ures?|s)?|denied|warn(ing)?s?|cannot|can't|unable|read-only|traceback)\b|^(E|W): "
)
# systemd's own console lines that say a unit did not run as asked.
CONSOLE_PROBLEM = re.compile(r"ordering cycle|deleted to break|Failed to start|Dependency failed|FAILED")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _names_unit(console_problem: str, name: str) -> bool:
    """Whether a console "Failed to start ..." (or "Dependency failed for ...") line is about the unit `name`
    ("unit - Description"), which the console shortens in the middle ("systemd-tm…reate Static Device Nodes
    in /dev.")."""
    text = re.split(r"Failed to start |Dependency failed for ", console_problem, maxsplit=1)[-1].rstrip(".")
    head, _, tail = text.partition("…")
    return name.startswith(head) and name.endswith(tail) if tail else name == head


def unexpected_output(lines: Iterable[str]) -> list[str]:
    """Lines that read like a failure and are not one of EXPECTED_OUTPUT."""
    patterns = [re.compile(p) for p in EXPECTED_OUTPUT]
    return [
        line for line in (raw.strip() for raw in lines)
        if SUSPICIOUS.search(line) and not any(p.fullmatch(line) for p in patterns)
    ]


CLOUD_CFG = """\
# tests/boot: what differs from an EC2 boot (see tests/boot/machines.py).
datasource_list: [NoCloud]
network: {config: disabled}
"""

# The units that call AWS may write where the aws stand-in keeps AWS's side (uploads, its call log, queued
# faults and the outage switch): the real CLI reaches AWS over the network, which their sandbox
# (systemd.SANDBOX) leaves open. A drop-in for each (a top-level service.d one would put every service of the
# boot, Redis's and systemd's own, in a mount namespace of its own).
AWS_UNITS = ("redis-auth.service", "redis-password-sync.service", "redis-backup.service", "redis-metrics.service",
             "redis-logs.service", "redis-cluster-join.service")
SERVICE_SETTINGS = f"""# tests/boot: what differs from an EC2 boot (see tests/boot/machines.py).
[Service]
ReadWritePaths=-/var/lib/osr-boot -/usr/local/lib/osr-boot/s3 -{AWS_LOG}
"""

AWS_STANDIN = r"""#!/bin/bash
# tests/boot stand-in for the AWS CLI: only `aws ssm get-parameter` of the form
# the servers use, answered from files under SSM_DIR (the program's own
# Parameter resources), and the s3 cp of the fetched programs and backups, put-metric-data, create-log-stream
# and put-log-events (recorded). Anything else fails loudly. Queued faults (SSM_FAULTS) come first.
set -u
dir=@SSM_DIR@
echo "$(id -u) ${HOME:-unset} $*" >> @AWS_CALLERS@
fail() { echo "$2" >&2; exit "$1"; }
# record PAYLOADS ARGS... : the call's line, and with PAYLOADS=1 the files it sent, appended as one record under
# a lock on the log: the servers' jobs call at once, and a reader takes the line after a call as its payload.
record() {
  payloads=$1; shift
  { echo "$(date -u +%FT%TZ) $*"
    [ "$payloads" = 0 ] || for arg in "$@"; do [ "${arg#file://}" = "$arg" ] || { cat "${arg#file://}"; echo; }; done
  } | { flock 9 && cat >&9; } 9>>@AWS_LOG@
}
role=arn:aws:sts::111122223333:assumed-role/outsystems-redis-server-role/i-0
# next_fault TARGET : the queue's next fault if its head names TARGET (the lock: units may call at once).
next_fault() {
  flock @SSM_FAULTS@.lock sh -c '
    [ -s "$1" ] || exit 0
    set -- "$1" "$2" $(head -n 1 "$1")
    [ "$4" = "$2" ] || exit 0
    sed -i 1d "$1" && echo "$3"' sh @SSM_FAULTS@ "$1"
}
case "${1:-} ${2:-}" in
  "sts get-caller-identity")
    # The instance's session as IAM names it (aws:userid): the role's id, then the instance id (the seed's).
    record 0 "$@"
    [ ! -e @SSM_UNREACHABLE@ ] || fail 254 "Could not connect to the endpoint URL: \"https://sts.amazonaws.com/\""
    user_id="@ROLE_ID@:$(awk '$1 == "instance-id:" { print $2 }' /var/lib/cloud/seed/nocloud/meta-data)"
    case " $* " in
      *" --query UserId --output text "*) echo "$user_id" ;;
      *" --output json "*)
        printf '{"UserId": "%s", "Account": "111122223333", "Arn": "%s"}\n' "$user_id" "$role" ;;
      *) fail 252 "aws (stand-in): only --query UserId --output text, or --output json" ;;
    esac
    exit 0 ;;
  "s3 cp" | "cloudwatch put-metric-data" | "logs create-log-stream" | "logs put-log-events")
    # The jobs' calls: recorded, with their payload; s3 cp serves what `pulumi up` uploads, keeps uploads.
    if [ -e @SSM_UNREACHABLE@ ]; then
      record 0 "$@"
      fail 254 "Could not connect to the endpoint URL: \"https://$1.amazonaws.com/\""
    fi
    case "$1 ${3:-}" in
      "s3 s3://"*) target="s3:${3#s3://*/}" ;;
      s3*) target="" ;;  # uploads take no faults
      *) target="$1:$2" ;;
    esac
    fault=""
    [ -z "$target" ] || fault=$(next_fault "$target")
    # A failed or slow call, or a transfer, is recorded without its payload; a call that succeeds, with it.
    if [ -n "$fault" ] || [ "$1" = s3 ]; then record 0 "$@"; fi
    # The operation's name in AWS's messages: PutMetricData, CreateLogStream, PutLogEvents.
    operation=$(echo "$2" | sed -E 's/(^|-)([a-z])/\U\2/g')
    # error CODE [RETRIES] : AWS's message for this call's operation.
    error() {
      printf 'An error occurred (%s) when calling the %s operation' "$1" "$operation"
      [ -z "${2:-}" ] || printf ' (reached max retries: %s)' "$2"
    }
    denied="User: $role is not authorized to perform: $1:$operation because no identity-based policy allows it"
    case "$1 $fault" in
      "s3 denied") fail 1 "fatal error: $(operation=HeadObject error 403): Forbidden" ;;
      "s3 throttled") fail 1 "fatal error: $(operation=HeadObject error 503 1): Service Unavailable" ;;
      "cloudwatch denied") fail 254 "$(error AccessDenied): $denied" ;;
      "cloudwatch throttled") fail 254 "$(error Throttling 2): Rate exceeded" ;;
      "logs denied") fail 254 "$(error AccessDeniedException): $denied" ;;
      "logs throttled") fail 254 "$(error ThrottlingException 2): Rate exceeded" ;;
      *" slow") sleep 60 ;;  # the caller's own timeout ends it
    esac
    if [ "$1" = s3 ]; then
      case "$3" in
        s3://*)  # a download: what `pulumi up` uploaded
          [ -f "/usr/local/lib/osr-boot/s3/${3#s3://*/}" ] || fail 1 "fatal error: An error occurred (404): Not Found"
          exec cp "/usr/local/lib/osr-boot/s3/${3#s3://*/}" "$4" ;;
        *)  # an upload (redis-backup): kept where a test can look
          mkdir -p "$(dirname "/usr/local/lib/osr-boot/s3/${4#s3://*/}")"
          exec cp "$3" "/usr/local/lib/osr-boot/s3/${4#s3://*/}" ;;
      esac
    fi
    [ -n "$fault" ] || record 1 "$@"
    echo "{}"
    exit 0 ;;
esac
[ "${1:-} ${2:-}" = "ssm get-parameter" ] || fail 252 "aws (stand-in): unsupported command: $*"
shift 2
region="" name="" decrypt="" query="" output=""
while [ $# -gt 0 ]; do
  case $1 in
    --region) region=${2:-}; shift 2 ;;
    --name) name=${2:-}; shift 2 ;;
    --with-decryption) decrypt=1; shift ;;
    --query) query=${2:-}; shift 2 ;;
    --output) output=${2:-}; shift 2 ;;
    # The CLI's own global options that change nothing in the answer.
    --cli-connect-timeout | --cli-read-timeout) shift 2 ;;
    --no-cli-pager) shift ;;
    *) fail 252 "aws (stand-in): unsupported option: $1" ;;
  esac
done
record 0 ssm get-parameter --region "$region" --name "$name"
[ -n "$region" ] && [ -n "$name" ] && [ "$decrypt" = 1 ] && [ "$query" = Parameter.Value ] && [ "$output" = text ] ||
  fail 252 "aws (stand-in): only --region R --name N --with-decryption --query Parameter.Value --output text"
if [ -e @SSM_UNREACHABLE@ ]; then
  fail 254 "Could not connect to the endpoint URL: \"https://ssm.$region.amazonaws.com/\""
fi
fault=$(next_fault "$name")
call="An error occurred (%s) when calling the GetParameter operation"
case $fault in
  denied)
    fail 254 "$(printf "$call" AccessDeniedException): User: $role is not authorized to perform: ssm:GetParameter \
on resource: arn:aws:ssm:$region:111122223333:parameter$name because no identity-based policy allows the \
ssm:GetParameter action" ;;
  throttled)
    fail 254 "$(printf "$call" ThrottlingException) (reached max retries: 1): Rate exceeded" ;;
  slow) sleep 60 ;;  # the caller's own timeout ends it
esac
file="$dir/$region$name"
[ -f "$file" ] ||
  fail 254 "An error occurred (ParameterNotFound) when calling the GetParameter operation: Parameter $name not found."
cat "$file"
echo
"""

def run(cmd: list[str], check: bool = True, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    """A command on the host; its output is captured (text)."""
    return subprocess.run(cmd, check=check, timeout=timeout, capture_output=True, text=True, **kw)


def build_root() -> Path:
    """The cached Debian 12 root (built on first use; see scripts/boot-root.sh)."""
    out = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, timeout=1200, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


# --- what the program rendered -------------------------------------------------


def user_data_bytes(inputs: dict[str, Any]) -> bytes:
    """The bytes EC2 would hand cloud-init: userDataBase64 decoded (still gzip), else userData."""
    if inputs.get("userDataBase64"):
        return base64.b64decode(inputs["userDataBase64"])
    return str(inputs["userData"]).encode()


def cloud_config(user_data: bytes) -> dict[str, Any]:
    """The cloud-config those bytes carry (gunzipped when compressed)."""
    text = gzip.decompress(user_data) if user_data[:2] == b"\x1f\x8b" else user_data
    doc = yaml.safe_load(text.decode())
    assert isinstance(doc, dict), "user data is not a cloud-config mapping"
    return doc


def file_content(entry: dict[str, Any]) -> bytes:
    """The bytes cloud-init writes for one write_files entry (its encodings decoded)."""
    raw = entry.get("content", "")
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    encoding = str(entry.get("encoding", "text")).lower()
    if encoding in ("b64", "base64", "gz+b64", "gzip+b64", "gz+base64", "gzip+base64"):
        data = base64.b64decode(data)
    if encoding.startswith(("gz", "gzip")):
        data = gzip.decompress(data)
    return data


def _unit_name(name: str) -> str:
    return name if re.search(r"\.(service|timer|socket|target|path)$", name) else f"{name}.service"


def expected_units(config: dict[str, Any]) -> list[str]:
    """Every unit the rendered config means to be enabled and active, derived from what it renders.

    - units named by a runcmd `systemctl enable`;
    - units named in a rendered env file's UNITS="..." (a unit that enables others);
    - every rendered unit file with an [Install] section;
    - redis-server@PORT for every rendered /etc/redis/redis-PORT.conf.
    """
    units: list[str] = []

    def add(name: str) -> None:
        if _unit_name(name) not in units:
            units.append(_unit_name(name))

    for step in config.get("runcmd", []):
        argv = shlex.split(step) if isinstance(step, str) else [str(a) for a in step]
        if argv[:2] == ["systemctl", "enable"]:
            for arg in argv[2:]:
                if not arg.startswith("-"):
                    add(arg)
    for entry in config.get("write_files", []):
        path, text = str(entry["path"]), file_content(entry).decode(errors="replace")
        port = re.fullmatch(r"/etc/redis/redis-(\d+)\.conf", path)
        if port:
            add(f"redis-server@{port.group(1)}.service")
        if re.fullmatch(r"/etc/systemd/system/[^/@]+\.(service|timer)", path) and "[Install]" in text:
            add(path.rsplit("/", 1)[1])
        for listed in re.findall(r"^UNITS=[\"']?([^\"'\n]*)", text, re.M):
            for name in listed.split():
                add(name)
    return units


# --- namespaces and containers -------------------------------------------------


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def remove_stale_namespaces() -> None:
    """Namespaces left by an earlier run that was killed (their creator pid is gone)."""
    if not Path("/run/netns").is_dir():
        return
    for entry in Path("/run/netns").iterdir():
        m = re.fullmatch(rf"{NS_PREFIX}(\d+)x\d+-.*", entry.name)
        if m and not Path("/proc", m.group(1)).exists():
            run(["ip", "netns", "del", entry.name], check=False)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def reap_stale_runs() -> None:
    """What a killed earlier run left (its owner pid is gone): containers, overlay mounts, files, namespaces."""
    for workdir in Path("/var/tmp").glob("osr-boot-*"):
        try:
            owner = int((workdir / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _comm(owner):
            continue
        for pids in workdir.glob("*/pids"):
            nspawn, leader = (int(p) for p in pids.read_text().split())
            # Only processes that still are what this run started (pids get reused).
            for pid, comm in ((leader, "systemd"), (nspawn, "systemd-nspawn")):
                if _comm(pid) == comm:
                    os.kill(pid, signal.SIGKILL)
        for merged in workdir.glob("*/merged"):
            run(["umount", "-l", str(merged)], check=False)
        run(["rm", "-rf", "--one-file-system", str(workdir)], check=False, timeout=300)
    remove_stale_namespaces()


class Vpc:
    """A network namespace holding the bridge every server's veth joins."""

    count = 0

    def __init__(self) -> None:
        Vpc.count += 1
        self.tag = f"{NS_PREFIX}{os.getpid()}x{Vpc.count}"
        self.ns = f"{self.tag}-vpc"
        self.ports = 0
        run(["ip", "netns", "add", self.ns])
        for cmd in (
            ["link", "set", "lo", "up"],
            ["link", "add", BRIDGE, "type", "bridge"],
            ["addr", "add", f"{VPC_ADDRESS}/{VPC_PREFIX}", "dev", BRIDGE],
            ["link", "set", BRIDGE, "up"],
        ):
            run(["ip", "-n", self.ns, *cmd])

    def attach(self, name: str, ip: str) -> str:
        """A namespace for one server, with `ip`/16 on eth0, bridged into the VPC."""
        ns = f"{self.tag}-{name}"
        self.ports += 1
        port = f"vp{self.ports}"
        if not _netns_exists(ns):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", self.ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "-n", self.ns, "link", "set", port, "master", BRIDGE, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{ip}/{VPC_PREFIX}", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def exec(self, cmd: list[str], timeout: float = 120, env: dict[str, str] | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """A command inside the VPC namespace (never raises on its exit status)."""
        return run(["ip", "netns", "exec", self.ns, *cmd], check=False, timeout=timeout, env=env, cwd=cwd)

    def destroy(self) -> None:
        for entry in Path("/run/netns").iterdir() if Path("/run/netns").is_dir() else []:
            if entry.name.startswith(self.tag + "-"):
                run(["ip", "netns", "del", entry.name], check=False)


@dataclass
class Server:
    """One rendered instance, booted as a container (power it on and off at will)."""

    name: str
    index: int
    ip: str
    user_data: bytes
    parameters: dict[str, str]
    workdir: Path
    vpc: Vpc
    root: Path
    tools: dict[str, str] = field(default_factory=dict)  # the stack bucket's objects (key -> text), as uploaded
    config: dict[str, Any] = field(init=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    leader: int = field(default=0, init=False)
    # Units of this boot that failed at the container's cgroup setup and ran once started again: their
    # console line stays, and a later check must still know it is a recovered one.
    recovered: set[str] = field(default_factory=set, init=False)
    boots: int = field(default=0, init=False)
    # The fleet's servers (shared with Fleet): a wait on one server may be a wait on another (a cluster forms
    # only when every server answers), so its diagnostics show them too.
    fleet: dict[int, Server] = field(default_factory=dict, init=False, repr=False)
    cgroup_retried: set[str] = field(default_factory=set, init=False)  # restart_cgroup_flake's, this boot

    def __post_init__(self) -> None:
        self.config = cloud_config(self.user_data)
        self.hostname = f"outsystems-redis-server-{self.index + 1}"
        self.instance_id = f"i-{self.index:017x}"
        self.dir = self.workdir / self.name
        self.merged = self.dir / "merged"
        self.ns = self.vpc.attach(f"s{self.index}", self.ip)

    # The disk: an overlay of the cached root, its upper layer kept across boots.
    def _mount(self) -> None:
        if os.path.ismount(self.merged):
            return
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={self.root},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}"
        run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)])

    def _provision(self) -> None:
        """Before the first boot: the seed, the AWS stand-ins, the harness's cloud.cfg."""
        m = self.merged
        seed = m / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "user-data").write_bytes(self.user_data)
        (seed / "meta-data").write_text(f"instance-id: {self.instance_id}\nlocal-hostname: {self.hostname}\n")
        (m / "etc/cloud/cloud.cfg.d/90-osr-boot.cfg").write_text(CLOUD_CFG)
        for unit in AWS_UNITS:
            drop_in = m / f"etc/systemd/system/{unit}.d/90-osr-boot.conf"
            drop_in.parent.mkdir(parents=True, exist_ok=True)
            drop_in.write_text(SERVICE_SETTINGS)
        (m / AWS_LOG.lstrip("/")).touch()
        lib = m / "usr/local/lib/osr-boot"
        lib.mkdir(parents=True, exist_ok=True)
        # A server's session is the mocked role's unique id and its instance id, as on EC2.
        aws = AWS_STANDIN.replace("@SSM_DIR@", SSM_DIR).replace("@SSM_UNREACHABLE@", SSM_UNREACHABLE) \
            .replace("@SSM_FAULTS@", SSM_FAULTS).replace("@ROLE_ID@", SERVER_ROLE_ID) \
            .replace("@AWS_CALLERS@", AWS_CALLERS)
        (lib / "aws").write_text(aws.replace("@AWS_LOG@", AWS_LOG))
        (lib / "aws").chmod(0o755)
        # Where the user data installs the AWS CLI's wheels (24.04), the stand-in answers first on the units' PATH.
        if set(AWS_CLI_PACKAGES) <= {p for p in self.config.get("packages", []) if isinstance(p, str)}:
            (m / "usr/local/sbin").mkdir(parents=True, exist_ok=True)
            (m / "usr/local/sbin/aws").symlink_to("/usr/local/lib/osr-boot/aws")
        # The programs `pulumi up` uploads to the stack's bucket (redis-observe.py, redis-backup.sh), as
        # the mocked program uploads them, and that bucket's parameter (the program's own value wins).
        for key, text in self.tools.items():
            tool = lib / "s3" / key
            tool.parent.mkdir(parents=True, exist_ok=True)
            tool.write_text(text)
        stacks = {p.split("/")[2] for p in self.parameters if p.endswith("/redis-password")}
        for name, value in {**{monitoring.backup_bucket_parameter(s): "osr-boot-bucket" for s in stacks},
                            **self.parameters}.items():
            path = m / (SSM_DIR.lstrip("/") + f"/{REGION}{name}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value)
            path.chmod(0o600)

    def set_ssm_reachable(self, reachable: bool) -> None:
        switch = self.merged / SSM_UNREACHABLE.lstrip("/")
        if reachable:
            switch.unlink(missing_ok=True)
        else:
            switch.parent.mkdir(parents=True, exist_ok=True)
            switch.write_text("")

    def queue_ssm_faults(self, faults: list[tuple[str, str]]) -> None:
        """AWS answers the next calls of each target with these faults, in order: (fault, target). A target
        is an SSM parameter's name, s3:<key>, or <service>:<command> (see SSM_FAULTS)."""
        assert all(kind in SSM_FAULT_KINDS for kind, _ in faults), faults
        self._mount()
        path = self.merged / SSM_FAULTS.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{kind} {name}\n" for kind, name in faults))

    def ssm_faults_left(self) -> list[str]:
        path = self.merged / SSM_FAULTS.lstrip("/")
        return path.read_text().splitlines() if path.exists() else []

    def set_way_out(self, up: bool) -> None:
        """No way out (the NAT gateway not ready yet): apt's repository, pip's index and SSM unreachable."""
        self._mount()
        sources, pip = self.merged / APT_SOURCES, self.merged / PIP_CONF
        if up:
            sources.write_bytes((self.root / APT_SOURCES).read_bytes())
            pip.write_bytes((self.root / PIP_CONF).read_bytes())
        else:
            sources.write_text("deb [trusted=yes] file:/srv/unreachable ./\n")
            pip.write_text("[global]\nno-index = true\nfind-links = /srv/unreachable\n")
        self.set_ssm_reachable(up)

    def boot(self) -> None:
        """Power on: start systemd in the container (returns once it runs, not once booted)."""
        assert self.proc is None, f"{self.name} is already running"
        self._mount()
        if self.boots == 0:
            self._provision()
        self.boots += 1
        self.recovered = set()
        self.cgroup_retried = set()
        log = open(self.dir / f"console-{self.boots}.log", "wb")  # noqa: SIM115 (kept by the process)
        self.proc = subprocess.Popen(
            [
                "systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-b",
                "-D", str(self.merged),
                f"--machine={self.hostname}",
                f"--network-namespace-path=/run/netns/{self.ns}",
                # Root on an instance may change its firewall (redis-auth fences the metadata service
                # off from the redis user); nspawn withholds it unless asked. Only this server's namespace.
                "--capability=CAP_NET_ADMIN",
                "--link-journal=no", "--resolv-conf=off", "--timezone=off",
                "--console=read-only",
            ],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        self.leader = 0
        self.leader = wait_for(self._find_leader, 60, f"{self.name}: container init never started")
        # For reap_stale_runs, should this test process die without its teardown.
        (self.dir / "pids").write_text(f"{self.proc.pid} {self.leader}\n")

    def _find_leader(self) -> int:
        """The container's PID 1 (systemd), seen from the host: a descendant of nspawn."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name}: systemd-nspawn exited ({self.proc.returncode}):\n{self.console()}")
        todo = [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                try:
                    comm = Path(f"/proc/{kid}/comm").read_text().strip()
                except OSError:
                    continue
                if comm == "systemd":
                    return kid
                todo.append(kid)
        return 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exec(self, cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A shell command inside the container (all its namespaces); never raises on exit status."""
        assert self.running, f"{self.name} is not running"
        return run(["nsenter", "-t", str(self.leader), "-a", "/bin/sh", "-c", cmd], check=False, timeout=timeout)

    def out(self, cmd: str, timeout: float = 60) -> str:
        return self.exec(cmd, timeout).stdout.strip()

    def start(self, unit: str, timeout: float = 120, verb: str = "start") -> subprocess.CompletedProcess[str]:
        """`systemctl start unit` (or `verb`), to its end. A start that failed at the container's cgroup setup
        (219/CGROUP: the program never ran; EC2 has no nested cgroups) is made once more, and the unit
        counts as recovered for this boot's checks."""
        ran = self.exec(f"systemctl {verb} {unit}", timeout=timeout)
        if ran.returncode != 0 and self._failed_at_cgroup_setup(unit):
            print(f"{self.name}: {unit} failed with 219/CGROUP before it ran; starting it again")
            self.recovered.add(unit)
            ran = self.exec(f"systemctl reset-failed {unit}; systemctl start {unit}", timeout=timeout)
        return ran

    def request_poweroff(self) -> None:
        self.exec("systemctl poweroff", timeout=30)

    def poweroff(self, timeout: float = 120, requested: bool = False) -> None:
        """A clean shutdown (systemctl poweroff); waits for the container to be gone."""
        if not self.running:
            self.proc = None
            return
        assert self.proc is not None
        if not requested:
            self.request_poweroff()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired as e:
            self.kill()
            raise AssertionError(f"{self.name} did not power off within {timeout}s") from e
        self.proc = None

    def kill(self) -> None:
        """Teardown, whatever state it is in: SIGTERM (nspawn asks init to halt), then SIGKILL."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None

    def destroy(self) -> None:
        self.kill()
        if os.path.ismount(self.merged):
            run(["umount", str(self.merged)], check=False)
            if os.path.ismount(self.merged):
                run(["umount", "-l", str(self.merged)], check=False)

    def console(self, tail: int = 4000) -> str:
        """This boot's console (systemd's own messages, colours stripped); its last `tail` characters."""
        path = self.dir / f"console-{self.boots}.log"
        text = ANSI.sub("", path.read_text(errors="replace")) if path.exists() else ""
        return text[-tail:] if tail else text

    # --- what is going on inside -------------------------------------------------

    def wait_booted(self, timeout: float) -> None:
        """Until cloud-init has finished (done or error) on this boot."""

        def finished() -> str:
            status = self.out("cloud-init status 2>/dev/null")
            return status if re.search(r"status: (done|error)", status) else ""

        wait_for(finished, timeout, f"{self.name}: cloud-init did not finish", self.diagnostics)

    def diagnostics(self) -> str:
        """What an engineer wants to see when a boot went wrong."""
        if not self.running:
            return f"=== {self.name}: not running; console tail:\n{self.console()}"
        names = " ".join(expected_units(self.config))
        parts = [
            f"=== {self.name} ({self.ip}) cloud-init status --long",
            self.out("cloud-init status --long"),
            "--- systemd's console complaints",
            "\n".join(line for line in self.console(tail=0).splitlines() if CONSOLE_PROBLEM.search(line)),
            "--- systemctl --failed",
            self.out("systemctl --failed --no-pager"),
            f"--- systemctl is-active {names}",
            self.out(f"systemctl is-active {names}"),
            "--- journal of the rendered units (tail of each)",
            *(self.out(f"journalctl --no-pager -b -n 12 -o short-monotonic -u {unit}")
              for unit in expected_units(self.config)),
            "--- cloud-init-output.log (tail)",
            self.out("tail -n 40 /var/log/cloud-init-output.log"),
            # Failovers, role changes and syncs: what a cluster fault test needs to tell what happened.
            "--- Redis logs (tail of each)",
            self.out("tail -n 25 /var/log/redis/redis-server-*.log"),
        ]
        return "\n".join(parts)

    def brief(self) -> str:
        """A peer's part in another server's diagnostics: cloud-init's verdict and its units not yet done."""
        if not self.running:
            return f"=== peer {self.name} ({self.ip}): not running"
        units = expected_units(self.config)
        waiting = {u: st for u, st in self.units_state(units).items() if st != "done"}
        return "\n".join([
            f"=== peer {self.name} ({self.ip}): cloud-init {self.out('cloud-init status')}; units not done: "
            f"{waiting or 'none'}",
            *(self.out(f"journalctl --no-pager -b -n 8 -o short-monotonic -u {unit}") for unit in waiting),
        ])

    def wait_diagnostics(self, units: list[str]) -> str:
        """What a wait that timed out needs: which units were not done, this server's diagnostics, its peers'."""
        states = self.units_state(units) if self.running else {}
        waiting = [u for u, st in states.items() if st != "done"]
        return "\n".join([
            f"units not done: {({u: states[u] for u in waiting}) or 'none'}",
            self.diagnostics(),
            *(peer.brief() for peer in self.fleet.values() if peer is not self),
            # Last, and longer than the tails above: a report cut in its middle (CI shows the start and the
            # end) still says what the unit that held the wait was doing.
            *(f"--- {self.name}: journal of {unit}, not done (last 60 lines)\n"
              + self.out(f"journalctl --no-pager -b -n 60 -o short-monotonic -u {unit}") for unit in waiting),
        ])

    def units_state(self, units: list[str]) -> dict[str, str]:
        """unit -> "done" (running for a service, finished for a RemainAfterExit one), "failed" or its state."""
        shown = self.out("systemctl show -p Id,ActiveState,SubState,RemainAfterExit,Result " + " ".join(units))
        states = {}
        for block in shown.split("\n\n"):
            p = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if "Id" not in p:
                continue
            finished = p.get("SubState") == ("exited" if p.get("RemainAfterExit") == "yes" else "running")
            if p.get("ActiveState") == "failed" or p.get("Result", "success") != "success":
                states[p["Id"]] = "failed"
            elif p.get("ActiveState") == "active" and (finished or p["Id"].endswith(".timer")):
                states[p["Id"]] = "done"
            else:
                states[p["Id"]] = f"{p.get('ActiveState')}/{p.get('SubState')}"
        return {u: states.get(u, "unknown") for u in units}

    def wait_units_active(self, units: list[str], timeout: float) -> None:
        """Until every unit runs (a service) or has finished (a RemainAfterExit one); a failed one fails at once."""

        def all_done() -> bool:
            states = self.units_state(units)
            failed = [u for u, st in states.items() if st == "failed" and not self.restart_cgroup_flake(u)]
            # This server's bootstrap or join waits for its peers' Redis: a peer's unit that flaked the
            # same way is started again too, or this wait would outlast it for nothing.
            for peer in self.fleet.values():
                if peer is not self and peer.running:
                    peer_units = expected_units(peer.config)
                    for unit, st in peer.units_state(peer_units).items():
                        if st == "failed":
                            peer.restart_cgroup_flake(unit)
            if failed:
                raise AssertionError(f"{self.name}: failed: {failed}\n{self.diagnostics()}")
            if all(st == "done" for st in states.values()):
                # Their console line stays: a later check of this boot must know they recovered.
                self.recovered.update(self.cgroup_retried)
                return True
            # Nothing left that could still start them: the boot is over and no job is queued.
            idle = [u for u, st in states.items() if st != "done"]
            if all(states[u] == "inactive/dead" for u in idle) and not self.out("systemctl list-jobs --no-legend") \
                    and self.out("systemctl is-system-running") in ("running", "degraded"):
                raise AssertionError(f"{self.name}: {idle} never started (no job queued)\n{self.diagnostics()}")
            return False

        wait_for(all_done, timeout, f"{self.name}: not all of {units} running or finished",
                 lambda: self.wait_diagnostics(units))

    def boot_problems(self, defer_cgroup: bool = False) -> list[str]:
        """What went wrong in this boot, beyond what a container does by design (empty: nothing).

        `defer_cgroup`: a unit that failed at the container's cgroup setup (219/CGROUP: it never ran) is left
        for wait_units_active to start again and for the next check to judge, with its console lines and the
        "Dependency failed" lines of the units that require it (the check right after cloud-init, which may
        come before redis-provision starts the Redis units, and so their redis-auth, once more)."""
        problems = []
        status = self.out("cloud-init status --long")
        if not re.search(r"^status: done$", status, re.M):
            problems.append(f"cloud-init status --long:\n{status}")
        for stage_file in ("/run/cloud-init/result.json", "/run/cloud-init/status.json"):
            text = self.out(f"cat {stage_file}")
            if not text:
                problems.append(f"{stage_file} missing")
            elif re.search(r'"errors": \[\s*[^\]\s]', text):
                problems.append(f"{stage_file} lists errors:\n{text}")
        logged = self.out(r"grep -E ' - [a-z_.]+\[(WARNING|ERROR|CRITICAL)\]' /var/log/cloud-init.log")
        if logged:
            problems.append(f"cloud-init.log warnings/errors:\n{logged}")
        output = (self.merged / "var/log/cloud-init-output.log").read_text(errors="replace")
        odd = unexpected_output(output.splitlines())
        if odd:
            problems.append("unexpected lines in cloud-init-output.log:\n" + "\n".join(odd))
        # systemd's complaints before the journal runs (an ordering cycle) reach only the console.
        for line in self.console(tail=0).splitlines():
            if CONSOLE_PROBLEM.search(line):
                problems.append(f"console: {line.strip()}")
        failed = [u for u in self.out("systemctl list-units --failed --plain --no-legend").split("\n") if u.strip()]
        failed = [u.split()[0] for u in failed]
        deferred = {u for u in failed if self._failed_at_cgroup_setup(u)} if defer_cgroup else set()
        self.recovered.update(u for u in failed if u not in deferred and (
            self._cgroup_flake_recovered(u) or self._cgroup_flake_rerun(u)))
        self.recovered.update(self._cgroup_flaked_then_active())
        failed = [u for u in failed if u not in self.recovered and u not in deferred]
        if failed:
            problems.append(f"failed units: {failed}\n{self.out('systemctl status --no-pager ' + ' '.join(failed))}")
        # A recovered unit's failure also reached the console, and stays there for a later check of this boot:
        # that line is not a problem either; nor is "Dependency failed" for a unit that requires one and runs.
        names = [self._named(u) for u in sorted(self.recovered | deferred)]
        dependents = {d for u in self.recovered for d in self.out(f"systemctl show -p RequiredBy --value {u}").split()
                      if self.out(f"systemctl is-active {d}") == "active"}
        dependents |= {d for u in deferred for d in self.out(f"systemctl show -p RequiredBy --value {u}").split()}
        dependent_names = [self._named(d) for d in sorted(dependents)]
        return [p for p in problems if not (p.startswith("console: ") and (
            any(_names_unit(p, n) for n in names)
            or ("Dependency failed for " in p and any(_names_unit(p, n) for n in dependent_names))))]

    def _named(self, unit: str) -> str:
        return f"{unit} - {self.out(f'systemctl show -p Description --value {unit}')}"

    def _cgroup_flaked_then_active(self) -> set[str]:
        """Units whose start in this boot failed at the container's cgroup setup (219/CGROUP: the program never
        ran; EC2 has no nested cgroups) and that run now: something started them again (redis-provision
        enables and starts the Redis units at every boot)."""
        journal = self.out("journalctl -b --no-pager -o cat _PID=1 | grep -F 'status=219/CGROUP'")
        flaked = set(re.findall(r"^(\S+\.service): (?:Main|Control) process exited, code=exited, status=219/CGROUP",
                                journal, re.M))
        return {u for u in flaked if self.out(f"systemctl is-active {u}") == "active"}

    def _cgroup_flake_rerun(self, unit: str, timeout: float = 60) -> bool:
        """True for a unit of systemd's own boot (not a timer's run) that failed at the container's cgroup
        setup (219/CGROUP: it never ran) and, started once more, succeeds. EC2 has no nested cgroups."""
        if not self._failed_at_cgroup_setup(unit) or unit.startswith("redis-"):
            return False
        print(f"{self.name}: {unit} failed with 219/CGROUP (the container's cgroup setup); starting it again")
        self.exec(f"systemctl reset-failed {unit}; systemctl start {unit}", timeout=timeout)
        return self.out(f"systemctl show -p Result --value {unit}") == "success" and \
            self.out(f"systemctl is-failed {unit}") != "failed"

    def restart_cgroup_flake(self, unit: str) -> bool:
        """True when failed `unit` failed at the container's cgroup setup (219/CGROUP: systemd could not set
        up its cgroup, so its program never ran; nested cgroups under load, EC2 has none) and is now started
        once more. Once per unit and boot: a second failure is the unit's own."""
        if unit in self.cgroup_retried or not self._failed_at_cgroup_setup(unit):
            return False
        print(f"{self.name}: {unit} failed with 219/CGROUP before it ran; starting it again")
        self.cgroup_retried.add(unit)
        self.exec(f"systemctl reset-failed {unit}; systemctl start --no-block {unit}")
        return True

    def _failed_at_cgroup_setup(self, unit: str) -> bool:
        """Its main process, or a control process before it (an ExecStartPre: "Control process exited"),
        exited 219/CGROUP."""
        show = self.out(f"systemctl show -p ExecMainStatus -p ExecStartPre {unit}")
        return "ExecMainStatus=219" in show.splitlines() or "status=219/CGROUP" in show

    def _cgroup_flake_recovered(self, unit: str, timeout: float = 75) -> bool:
        """True for a timer's run that failed at systemd's cgroup setup (exit status 219/CGROUP, a
        container artifact: the script never ran) and whose next run, a minute later, succeeded."""
        show = self.out(f"systemctl show -p TriggeredBy -p ExecMainStatus -p ExecMainStartTimestampMonotonic {unit}")
        props = dict(line.split("=", 1) for line in show.splitlines() if "=" in line)
        if not props.get("TriggeredBy", "").endswith(".timer") or props.get("ExecMainStatus") != "219":
            return False
        print(f"{self.name}: {unit} failed with 219/CGROUP (the container's cgroup setup); waiting for its next run")
        started = props.get("ExecMainStartTimestampMonotonic")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = dict(line.split("=", 1) for line in self.out(
                f"systemctl show -p ExecMainStartTimestampMonotonic -p Result -p ActiveState {unit}").splitlines()
                if "=" in line)
            if now.get("ExecMainStartTimestampMonotonic") != started and now.get("ActiveState") != "activating":
                return now.get("Result") == "success"
            time.sleep(2)
        return False

    def rendered_files_mismatch(self) -> list[str]:
        """write_files entries whose file in the server differs in content, mode or owner."""
        bad = []
        for entry in self.config.get("write_files", []):
            path = str(entry["path"])
            on_disk = self.merged / path.lstrip("/")
            if not on_disk.is_file():
                bad.append(f"{path}: missing")
                continue
            if on_disk.read_bytes() != file_content(entry):
                bad.append(f"{path}: content differs from the rendered file")
            mode_owner = self.out(f"stat -c '%a %U:%G' {shlex.quote(path)}")
            want_mode = str(entry.get("permissions", "0644")).lstrip("0") or "0"
            want_owner = str(entry.get("owner", "root:root"))
            if mode_owner != f"{want_mode} {want_owner}":
                bad.append(f"{path}: {mode_owner}, rendered {want_mode} {want_owner}")
        return bad


def wait_for(
    probe: Callable[[], Any], timeout: float, what: str, diagnostics: Callable[[], str] | None = None,
    interval: float = 1.0,
) -> Any:
    """Polls `probe` until it returns something truthy; fails with diagnostics at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = diagnostics() if diagnostics else ""
            raise AssertionError(f"{what} within {timeout:.0f}s\n{detail}")
        time.sleep(interval)


class Fleet:
    """The booted servers of one test module, and their teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        reap_stale_runs()
        self.workdir = Path(tempfile.mkdtemp(prefix="osr-boot-", dir="/var/tmp"))
        (self.workdir / "owner.pid").write_text(str(os.getpid()))
        self.vpc = Vpc()
        self.servers: dict[int, Server] = {}

    def add(self, name: str, index: int, ip: str, user_data: bytes, parameters: dict[str, str],
            tools: dict[str, str] | None = None) -> Server:
        server = Server(name, index, ip, user_data, parameters, self.workdir, self.vpc, self.root, dict(tools or {}))
        server.fleet = self.servers
        self.servers[index] = server
        return server

    def boot(self, servers: Iterable[Server], timeout: float = 300) -> None:
        """Power on together (boots in parallel), then wait for each cloud-init to finish."""
        servers = list(servers)
        for s in servers:
            s.boot()
        for s in servers:
            s.wait_booted(timeout)

    def poweroff(self, servers: Iterable[Server], timeout: float = 180) -> None:
        """A clean shutdown of several servers at once (as when every instance is stopped)."""
        servers = [s for s in servers if s.running]
        for s in servers:
            s.request_poweroff()
        for s in servers:
            s.poweroff(timeout, requested=True)

    def diagnostics(self) -> str:
        return "\n".join(s.diagnostics() for s in self.servers.values())

    def destroy(self) -> None:
        for s in self.servers.values():
            try:
                s.destroy()
            except Exception as e:  # noqa: BLE001 (teardown goes on for the others)
                print(f"teardown of {s.name}: {e}")
        self.vpc.destroy()
        run(["rm", "-rf", "--one-file-system", str(self.workdir)], check=False, timeout=300)


def bounded(cmd: list[str], timeout: float, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> tuple[int | None, str]:
    """(exit status, output) of a command, or (None, partial output) once `timeout` passes.

    The whole process group is killed at the timeout: a check that would wait for
    minutes for a broken cluster must not hold the suite that long.
    """
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out
