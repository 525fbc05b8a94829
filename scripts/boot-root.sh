#!/usr/bin/env bash
# Builds (once) the Debian 12 root that tests/boot boots the rendered servers in,
# and prints its path on the last line of stdout.
#
# The root has systemd, cloud-init and the usual tools of a cloud server image,
# but NOT redis: its only apt source is a local repository (/srv/repo, trusted,
# file:) holding redis-server and redis-tools 7.0.15 with their dependencies, so
# cloud-init's own package_update and install of `redis-server=5:7.0.15*` run
# for real at first boot.
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
# What an Ubuntu cloud image has that minbase lacks and the boot needs: systemd as
# init, iproute2, procps (sysctl, used by the rendered runcmd), sudo and locales
# (cloud-init's users and locale modules), openssh-server (its ssh module), ca-certificates,
# iptables (redis-auth fences the metadata service off from the redis user).
INCLUDE=systemd,systemd-sysv,dbus,iproute2,procps,ca-certificates,sudo,locales,netbase,less,openssh-server,iptables

key=$(sha256sum "$0" | cut -c1-12)
final="$CACHE/root-$key"

log() { echo "boot-root: $*" >&2; }

for tool in debootstrap dpkg-scanpackages chroot flock; do
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
  >>"$work/apt.log" 2>&1 || {
  tail -30 "$work/apt.log" >&2
  exit 1
}
mkdir -p "$root/srv/repo"
mv "$root"/var/cache/apt/archives/*.deb "$root/srv/repo/"
(cd "$root/srv/repo" && dpkg-scanpackages --multiversion . /dev/null >Packages 2>/dev/null)
ls "$root/srv/repo"/redis-server_*7.0.15* >/dev/null || { log "ERROR: no redis-server 7.0.15 downloaded"; exit 1; }

# The local repository is the only source: a boot never reaches a mirror.
echo 'deb [trusted=yes] file:/srv/repo ./' >"$root/etc/apt/sources.list"
in_root apt-get clean
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
