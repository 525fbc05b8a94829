"""OutSystems minimums per tier, and the check of an instance type against them.

The numbers come from the OutSystems requirements page ("System requirements for
using Redis"). They live here once; the policy pack imports them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from outsystems_redis.errors import SettingsError


class Sized(Protocol):
    """What sizing reads of a stack's settings (settings.Settings): the checks take the settings whole, so a
    setting that changes them is read here and nowhere between."""

    @property
    def cluster(self) -> bool: ...

    @property
    def minimums(self) -> Minimums: ...


@dataclass(frozen=True)
class Minimums:
    tier: str
    servers: int
    vcpus: int
    memory_mib: int
    clock_ghz: float  # the page asks for "> 2.6 GHz": strictly above
    disk_gib: int


NON_PRODUCTION = Minimums(
    tier="non-production", servers=1, vcpus=2, memory_mib=4 * 1024, clock_ghz=2.6, disk_gib=10
)
PRODUCTION = Minimums(
    tier="production", servers=3, vcpus=3, memory_mib=8 * 1024, clock_ghz=2.6, disk_gib=10
)


def minimums_for(servers: int) -> Minimums:
    """One server is the non-production layout; three or more is the production cluster."""
    return NON_PRODUCTION if servers == 1 else PRODUCTION


@dataclass(frozen=True)
class InstanceTypeInfo:
    """What AWS says about an instance type (aws.ec2.get_instance_type)."""

    name: str
    vcpus: int
    memory_mib: int
    sustained_clock_ghz: float
    burstable: bool


def check_instance_type(info: InstanceTypeInfo, settings: Sized, key: str = "instanceType") -> None:
    """Raise SettingsError naming `key` when `info` falls short of the settings' tier's minimums."""
    minimums = settings.minimums
    short: list[str] = []
    if info.vcpus < minimums.vcpus:
        short.append(f"{info.vcpus} vCPU (needs at least {minimums.vcpus})")
    if info.memory_mib < minimums.memory_mib:
        short.append(
            f"{info.memory_mib / 1024:g} GiB of memory (needs at least {minimums.memory_mib / 1024:g} GiB)"
        )
    if not info.sustained_clock_ghz > minimums.clock_ghz:
        short.append(
            f"a sustained clock of {info.sustained_clock_ghz:g} GHz (needs more than {minimums.clock_ghz:g} GHz)"
        )
    if info.burstable:
        # Burstable types run out of CPU credits under steady session traffic.
        short.append("burstable CPU credits (needs sustained, non-burstable CPU)")
    if short:
        raise SettingsError(
            key,
            info.name,
            f"an instance type meeting the OutSystems {minimums.tier} minimums "
            f"({minimums.vcpus} vCPU, {minimums.memory_mib / 1024:g} GiB, > {minimums.clock_ghz:g} GHz); "
            f"{info.name} has " + ", ".join(short),
        )


def check_zones_offer(instance_type: str, zones: list[str], offered: set[str], regional: set[str],
                      chosen: bool) -> None:
    """Every zone of a subnet must offer the instance type, or RunInstances fails there after the network is built.

    `regional`: the region's own zones (the ones worth suggesting). `chosen`: the zones came from the
    availabilityZones key (else the program picked the region's first ones).
    """
    missing = [z for z in zones if z not in offered]
    if not missing:
        return
    elsewhere = sorted((offered & regional) - set(zones))
    where = f"; it is offered in {', '.join(elsewhere)}" if elsewhere else ""
    if chosen:
        raise SettingsError("availabilityZones", list(zones),
                            f"zones that offer {instance_type} (not {', '.join(missing)}{where})")
    raise SettingsError("instanceType", instance_type,
                        lambda n: f"a type offered in every zone picked for the subnets ({', '.join(zones)}; not "
                        f"offered in {', '.join(missing)}{where}), or set {n('availabilityZones')} to zones that "
                        "offer it")


def usable_memory_mib(instance_memory_mib: int, settings: Sized) -> int:
    """maxmemory per Redis process: leave the OS its share, then split the rest.

    The OS, page cache and Redis' own overhead (fragmentation, replication and
    client buffers) get a quarter of RAM, at least 1 GiB. A replica needs as
    much room as its master, so the rest is split evenly between the processes.
    With 8 GiB and two processes that gives 3 GiB each, in line with the
    requirements page's "only 4 GB for sessions" per server.
    """
    reserve = max(1024, instance_memory_mib // 4)
    processes_per_server = 2 if settings.cluster else 1  # a master and a replica, or one standalone process
    return max(64, (instance_memory_mib - reserve) // processes_per_server)
