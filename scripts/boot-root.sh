#!/usr/bin/env bash
# Builds (once) the Debian 12 root that tests/boot boots the rendered servers in,
# and prints its path on the last line of stdout.
#
# The root has systemd, cloud-init and the usual tools of a cloud server image,
# but NOT redis: its only apt source is a local repository (/srv/repo, trusted,
# file:) holding redis-server and redis-tools of both platforms with their
# dependencies, so cloud-init's own package_update and install of the platform's
# pin run for real at first boot:
# - 7.0.15 (`5:7.0.15*`, ubuntu-24.04-redis-7.0): Debian 12's own packages;
# - 5.0.7 (`5:5.0.7*`, ubuntu-20.04-redis-5.0, the default platform): Ubuntu
#   20.04's own packages, the ones its EC2 servers install (5:5.0.7-2ubuntu0.1, from
#   focal-updates), downloaded from Ubuntu's archive and checked against the
#   SHA-256 below. They install on Debian 12 (glibc 2.36 runs what 2.31 built),
#   with Debian 12's libhiredis0.14, libjemalloc2 and Lua libraries. What stays
#   Debian's and not Ubuntu 20.04's: systemd 252 (not 245), cloud-init 22.4 and
#   Python 3.11 (not 3.8).
#
# Cache: $OSR_BOOT_CACHE (default /var/cache/outsystems-redis/boot)/root-<key>/root,
# where <key> is a hash of this script: any change of the recipe builds a new
# root. The build happens in a temporary directory that is renamed when complete,
# so an interrupted run never leaves a half root; a lock serialises builders.
set -euo pipefail

CACHE=${OSR_BOOT_CACHE:-/var/cache/outsystems-redis/boot}
MIRROR=${OSR_BOOT_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${OSR_BOOT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
REDIS_VERSION='5:7.0.15*'
UBUNTU_ARCHIVE=${OSR_BOOT_UBUNTU_ARCHIVE:-http://archive.ubuntu.com/ubuntu}
FOCAL_REDIS=5.0.7-2ubuntu0.1
# name  sha256 (of the .deb in $UBUNTU_ARCHIVE/pool/universe/r/redis/)
FOCAL_DEBS="redis-server 89f27b63603f0be61dfe43039bf7469bcd4edbc8750be3e4db4d7016fbbaed94
redis-tools c4308a15519fa68526b7d5a7d8a2c4ce68a67a16aff71f829f42571d472fda5b"
# Their dependencies that Debian 12's 7.0.15 does not pull in already.
FOCAL_DEPENDENCIES=(libhiredis0.14 liblua5.1-0 lua-bitop lua-cjson lsb-base)
# What an Ubuntu cloud image has that minbase lacks and the boot needs: systemd as
# init, iproute2, procps (sysctl, used by the rendered runcmd), sudo and locales
# (cloud-init's users and locale modules), openssh-server (its ssh module), ca-certificates,
# iptables (redis-auth fences the metadata service off from the redis user).
INCLUDE=systemd,systemd-sysv,dbus,iproute2,procps,ca-certificates,sudo,locales,netbase,less,openssh-server,iptables

# The 24.04 servers' AWS CLI (outsystems_redis/platforms.py): its wheels' pip requirements, with their digests,
# and the packages it needs from the distribution (Debian 12's here, with pip's own wheel).
REPO=$(cd "$(dirname "$0")/.." && pwd)
AWS_CLI_WHEELS=$(cd "$REPO" && .venv/bin/python -c 'from outsystems_redis.platforms import AWS_CLI_WHEELS as w; print(*w, sep="\n")')
AWS_CLI_PACKAGES=$(cd "$REPO" && .venv/bin/python -c 'from outsystems_redis.platforms import AWS_CLI_PACKAGES as p; print(*p)')
read -r -a AWS_CLI_DEBIAN <<<"$AWS_CLI_PACKAGES"

key=$( (cat "$0"; echo "$AWS_CLI_WHEELS $AWS_CLI_PACKAGES") | sha256sum | cut -c1-12)
final="$CACHE/root-$key"

log() { echo "boot-root: $*" >&2; }

for tool in debootstrap dpkg-scanpackages chroot flock curl sha256sum; do
  command -v "$tool" >/dev/null || { log "ERROR: $tool is missing (run scripts/setup.sh)"; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { log "ERROR: must run as root"; exit 1; }

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

# The rename below is the only way root-<key> comes to exist: it is complete.
if [ -d "$final/root" ]; then
  echo "$final/root"
  exit 0
fi

# Leftovers of interrupted builds and roots of older recipes.
for old in "$CACHE"/tmp.* "$CACHE"/root-*; do
  [ -e "$old" ] || continue
  [ "$old" = "$final" ] && continue
  # A root another run still boots (an overlay's lower layer) stays until a later build.
  grep -qF "lowerdir=$old/root" /proc/mounts && continue
  log "removing $old"
  for m in dev/pts dev proc sys; do
    mountpoint -q "$old/root/$m" && umount -l "$old/root/$m"
  done
  rm -rf --one-file-system "$old"
done

work=$(mktemp -d "$CACHE/tmp.XXXXXX")
root="$work/root"
cleanup() {
  for m in dev/pts dev proc sys; do
    mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"
  done
  [ -d "$work" ] && rm -rf --one-file-system "$work"
  return 0
}
trap cleanup EXIT

start=$SECONDS
log "debootstrap $SUITE (minbase + $INCLUDE) into $root"
# cloud-init cannot be --include'd: debootstrap does not resolve python3-cffi's
# virtual dependency. It is installed with apt below.
debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -30 "$work/debootstrap.log" >&2
  exit 1
}

cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
cp /etc/resolv.conf "$root/etc/resolv.conf"
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

log "apt-get install cloud-init"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends cloud-init >"$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2
  exit 1
}
# en_US.UTF-8 generated, and LANG=C.UTF-8 in /etc/default/locale, as on Ubuntu's cloud images: cloud-init's
# locale module then finds the system locale set and keeps it. (Without the file it ran locale-gen at every
# first boot: 19 s of the suite's CPU in localedef.)
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' "$root/etc/locale.gen"
in_root locale-gen >/dev/null
echo 'LANG=C.UTF-8' >"$root/etc/default/locale"

log "downloading redis-server/redis-tools $REDIS_VERSION and dependencies into /srv/repo"
in_root apt-get clean
# With apt's defaults (Recommends included), as cloud-init's install will ask for.
in_root apt-get install -y -qq --download-only "redis-server=$REDIS_VERSION" "redis-tools=$REDIS_VERSION" \
  "${FOCAL_DEPENDENCIES[@]}" "${AWS_CLI_DEBIAN[@]}" >>"$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2
  exit 1
}
mkdir -p "$root/srv/repo"
mv "$root"/var/cache/apt/archives/*.deb "$root/srv/repo/"
log "downloading Ubuntu 20.04's redis-server/redis-tools $FOCAL_REDIS into /srv/repo"
while read -r name sum; do
  deb="${name}_${FOCAL_REDIS}_amd64.deb"
  curl -fsS --retry 3 --max-time 120 -o "$root/srv/repo/$deb" "$UBUNTU_ARCHIVE/pool/universe/r/redis/$deb" || {
    log "ERROR: cannot download $deb from $UBUNTU_ARCHIVE"
    exit 1
  }
  echo "$sum  $root/srv/repo/$deb" | sha256sum --quiet -c - || {
    log "ERROR: $deb does not have the expected SHA-256"
    exit 1
  }
done <<<"$FOCAL_DEBS"
# Ubuntu 20.04's servers get the AWS CLI from apt (awscli): the harness's stand-in
# (/usr/local/lib/osr-boot/aws, tests/boot/machines.py) at the path its real CLI would have.
log "building the awscli stand-in package"
pkg="$work/awscli"
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin"
cat >"$pkg/DEBIAN/control" <<EOF
Package: awscli
Version: 1.18.69-1ubuntu0.20.04.1+osrboot
Architecture: all
Maintainer: outsystems-redis tests <tests@localhost>
Description: tests/boot stand-in for Ubuntu 20.04's awscli
 Its /usr/bin/aws runs /usr/local/lib/osr-boot/aws, the boot harness's AWS stand-in.
EOF
printf '#!/bin/sh\nexec /usr/local/lib/osr-boot/aws "$@"\n' >"$pkg/usr/bin/aws"
chmod 0755 "$pkg/usr/bin/aws"
dpkg-deb --root-owner-group -b "$pkg" "$root/srv/repo/awscli_1.18.69-1ubuntu0.20.04.1+osrboot_all.deb" >/dev/null
# 24.04's: its wheels in /srv/wheels, pip's only index here (/etc/pip.conf), checked against their digests now
# and by redis-provision's pip at boot.
log "downloading the AWS CLI's wheels into /srv/wheels"
mkdir -p "$root/srv/wheels"
"$REPO/.venv/bin/pip" download -q --disable-pip-version-check --no-deps --require-hashes --only-binary :all: \
  -d "$root/srv/wheels" -r /dev/stdin <<<"$AWS_CLI_WHEELS" 2>&1 | grep -v "^WARNING: Location 'file:" || true
ls "$root"/srv/wheels/awscli-*.whl "$root"/srv/wheels/botocore-*.whl >/dev/null || {
  log "ERROR: the AWS CLI's wheels did not download"
  exit 1
}
printf '[global]\nno-index = true\nfind-links = /srv/wheels\n' >"$root/etc/pip.conf"
(cd "$root/srv/repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
ls "$root/srv/repo"/redis-server_*7.0.15* >/dev/null || { log "ERROR: no redis-server 7.0.15 downloaded"; exit 1; }

# The local repository is the only source: a boot never reaches a mirror.
echo 'deb [trusted=yes] file:/srv/repo ./' >"$root/etc/apt/sources.list"
in_root apt-get clean
# Either line installs from it alone (a simulation: nothing is installed here).
rm -rf "$root"/var/lib/apt/lists/*
in_root apt-get update -qq >>"$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2
  exit 1
}
for pin in "$REDIS_VERSION" "5:$FOCAL_REDIS"; do
  in_root apt-get install -s -qq "redis-server=$pin" "redis-tools=$pin" awscli >>"$work/apt.log" 2>&1 || {
    tail -30 "$work/apt.log" >&2
    log "ERROR: redis-server=$pin does not install from /srv/repo alone"
    exit 1
  }
done
in_root apt-get install -s -qq "${AWS_CLI_DEBIAN[@]}" >>"$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2
  log "ERROR: the 24.04 AWS CLI's packages do not install from /srv/repo alone"
  exit 1
}
rm -rf "$root"/var/lib/apt/lists/*
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/resolv.conf"
# Each boot gets its own machine id (first boot, as on a new instance).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
if chroot "$root" dpkg -s redis-server >/dev/null 2>&1; then
  log "ERROR: redis-server is installed in the root; it must come from cloud-init"
  exit 1
fi

for m in dev/pts dev proc sys; do umount "$root/$m"; done
du -sh "$root" | sed 's/^/boot-root: size /' >&2
rm -f "$work"/*.log
mv "$work" "$final"
log "built $final in $((SECONDS - start))s"
echo "$final/root"
