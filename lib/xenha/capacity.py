"""Capacity arithmetic: what a guest needs, what a host has, and whether one fits the other.

Pure functions only. The same demand formula serves the reservation check (xen-guest
migrate_to and start), the utilization the guest agent publishes (``hv_memory``) and the
host agent's accounting, so that capacity and demand always meet.

Memory demand of a Xen guest (docs/decisions/xen-memory-overhead.md has the sources):

    shadow   = vCPUs + ceil(M / 128)   libvirt's shadow_memkb for every guest type:
                                       libxl_get_required_shadow_memory(max_memkb, vcpus) =
                                       4 * (256 * vcpus + 2 * M) KiB (xen tools/libs/light/libxl_utils.c,
                                       libvirt src/libxl/libxl_conf.c libxlMakeDomBuildInfo)
    external = 1 MiB (PV) or 2 MiB (PVH, HVM)
                                       LIBXL_PV_EXTRA_MEMORY / LIBXL_HVM_EXTRA_MEMORY, added by
                                       libxl_domain_need_memory (libxl_mem.c)
    internal = 1 MiB                   LIBXL_MAXMEM_CONSTANT: Xen lets a domain hold target + 1 MiB
                                       (libxl_dom.c libxl__build_pre); xapi counts it as
                                       extra_internal_mib (xen-api xc/memory.ml)
    demand   = M + shadow + external + internal, rounded up to an even number of MiB
                                       (libxl_domain_need_memory rounds to 2 MiB)

M is the *maximum* memory (<memory>, or <maxMemory> when larger), not <currentMemory>: a
ballooned guest can grow back, so a host must have room for its maximum. HVM video RAM is
not added: libxl carves it out of M (libxl__build_hvm: mem_size = max_memkb - video_memkb).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from xenha.domxml import DomainSpec, GuestType

if TYPE_CHECKING:
    from xenha.hypervisor import ActiveDomain

PV_EXTRA_MIB = 1
HVM_EXTRA_MIB = 2
MAXMEM_CONSTANT_MIB = 1
DEFAULT_MEMORY_RESERVE_MIB = 1024


class Demand(NamedTuple):
    memory_mib: int
    vcpus: int


def shadow_mib(memory_mib: int, vcpus: int) -> int:
    """Shadow/p2m pool: 1 MiB per vCPU plus 8 KiB per MiB of RAM, in whole MiB.

    >>> shadow_mib(4096, 2)
    34
    """
    return vcpus + math.ceil(memory_mib / 128)


def memory_demand_mib(memory_mib: int, vcpus: int, guest_type: GuestType) -> int:
    """Host memory a Xen guest needs, in MiB.

    >>> memory_demand_mib(4096, 2, GuestType.PV)
    4132
    >>> memory_demand_mib(4096, 2, GuestType.PVH)
    4134
    >>> memory_demand_mib(4096, 2, GuestType.HVM)
    4134
    >>> memory_demand_mib(64, 1, GuestType.HVM)
    70
    """
    external = PV_EXTRA_MIB if guest_type is GuestType.PV else HVM_EXTRA_MIB
    total = memory_mib + shadow_mib(memory_mib, vcpus) + external + MAXMEM_CONSTANT_MIB
    return total + (total % 2)


def demand_of(spec: DomainSpec) -> Demand:
    return Demand(memory_demand_mib(spec.memory_mib, spec.vcpus, spec.guest_type), spec.vcpus)


def guest_type_from_os_type(os_type: str) -> GuestType:
    """The guest type of a domain libvirt describes with ``virDomainGetOSType``."""
    lowered = os_type.strip().lower()
    if lowered == "hvm":
        return GuestType.HVM
    if lowered == "xenpvh":
        return GuestType.PVH
    return GuestType.PV


def cpu_capacity(physical_cpus: int, overcommit: float) -> int:
    """vCPUs a host may carry: physical CPUs times the overcommit ratio, rounded down.

    >>> cpu_capacity(8, 4.0)
    32
    >>> cpu_capacity(6, 1.5)
    9
    """
    return math.floor(physical_cpus * overcommit + 1e-9)


class HostLoad(NamedTuple):
    """One view of a host's room: capacity, what is used, what is reserved for arrivals."""

    node: str
    basis: str  # where the capacity comes from, in words
    memory_capacity_mib: int
    memory_used_mib: int
    memory_reserved_mib: int
    cpu_capacity: int | None  # None: vCPUs are not limited in this view
    cpu_used: int
    cpu_reserved: int

    @property
    def memory_free_mib(self) -> int:
        return self.memory_capacity_mib - self.memory_used_mib - self.memory_reserved_mib

    @property
    def cpu_free(self) -> int | None:
        if self.cpu_capacity is None:
            return None
        return self.cpu_capacity - self.cpu_used - self.cpu_reserved


class Decision(NamedTuple):
    admit: bool
    reason: str  # short enough for Pacemaker's exit reason (it keeps 128 characters)
    detail: str  # where the figures come from, for the log


def decide(action: str, guest: str, demand: Demand, loads: Sequence[HostLoad]) -> Decision:
    """Admit the guest only if every view of the target has room for it.

    ``action`` completes the sentence "cannot ...", e.g. "migrate web1 to node2".

    >>> load = HostLoad("node2", "the CIB's hv_memory", 16384, 13312, 0, None, 0, 0)
    >>> decision = decide("migrate web1 to node2", "web1", Demand(4160, 2), [load])
    >>> decision.admit, decision.reason.split(": ", 1)[0]
    (False, 'cannot migrate web1 to node2')
    >>> decision.reason.split(": ", 1)[1]
    'needs 4160 MiB, node2 has 3072 MiB free (capacity 16384, used 13312, reserved 0)'
    >>> decision.detail
    "capacity from the CIB's hv_memory"
    """
    if not loads:
        return Decision(False, f"cannot {action}: no capacity figure for the target", "")
    for load in loads:
        detail = f"capacity from {load.basis}"
        if demand.memory_mib > load.memory_free_mib:
            return Decision(
                False,
                f"cannot {action}: needs {demand.memory_mib} MiB, {load.node} has "
                f"{max(0, load.memory_free_mib)} MiB free (capacity {load.memory_capacity_mib}, "
                f"used {load.memory_used_mib}, reserved {load.memory_reserved_mib})",
                detail,
            )
        cpu_free = load.cpu_free
        if cpu_free is not None and demand.vcpus > cpu_free:
            return Decision(
                False,
                f"cannot {action}: needs {demand.vcpus} vCPUs, {load.node} has {max(0, cpu_free)} free "
                f"(capacity {load.cpu_capacity}, used {load.cpu_used}, reserved {load.cpu_reserved})",
                detail,
            )
    tightest = min(loads, key=lambda load: load.memory_free_mib)
    return Decision(
        True,
        f"{guest} fits on {tightest.node}: needs {demand.memory_mib} MiB and {demand.vcpus} vCPUs, "
        f"{tightest.memory_free_mib} MiB free (capacity {tightest.memory_capacity_mib}, used "
        f"{tightest.memory_used_mib}, reserved {tightest.memory_reserved_mib})",
        f"capacity from {tightest.basis}",
    )


class Occupant(NamedTuple):
    """Something taking room on a host: an active domain or a reservation for one arriving."""

    resource: str | None  # cluster resource, None for a domain the cluster does not manage
    domain: str | None
    demand: Demand


class Tally(NamedTuple):
    memory_used_mib: int
    cpu_used: int
    memory_reserved_mib: int
    cpu_reserved: int


def tally(
    domains: Iterable[Occupant],
    reservations: Iterable[Occupant],
    admitting: str,
    admitting_domain: str,
    managed_only: bool,
) -> Tally:
    """Sum what occupies a host, without counting anything twice.

    - the guest being admitted counts neither as a domain nor as a reservation;
    - a reservation whose guest is already active on the host is counted once, as a domain;
    - with ``managed_only``, domains the cluster does not manage are left out (for the
      cluster's capacity figure, which already excludes them).
    """
    memory_used = cpu_used = memory_reserved = cpu_reserved = 0
    present: set[str] = set()
    for domain in domains:
        if domain.domain == admitting_domain or domain.resource == admitting:
            continue
        if domain.resource is not None:
            present.add(domain.resource)
        if managed_only and domain.resource is None:
            continue
        memory_used += domain.demand.memory_mib
        cpu_used += domain.demand.vcpus
    for reservation in reservations:
        if reservation.resource in (admitting, None) or reservation.resource in present:
            continue
        memory_reserved += reservation.demand.memory_mib
        cpu_reserved += reservation.demand.vcpus
    return Tally(memory_used, cpu_used, memory_reserved, cpu_reserved)


def occupant_of(domain: ActiveDomain) -> Occupant:
    """What an active domain occupies: the demand recorded at start, else computed."""
    if domain.recorded_demand_mib is not None and domain.recorded_vcpus is not None:
        return Occupant(domain.resource, domain.name, Demand(domain.recorded_demand_mib, domain.recorded_vcpus))
    try:
        guest_type = GuestType(domain.guest_type)
    except ValueError:
        guest_type = guest_type_from_os_type(domain.os_type or "")  # read whenever no demand was recorded
    return Occupant(
        domain.resource,
        domain.name,
        Demand(memory_demand_mib(domain.max_memory_mib, domain.vcpus, guest_type), domain.vcpus),
    )


def host_reserve_mib(configured_mib: int | None, domain0_mib: Callable[[], int | None]) -> int:
    """The host memory kept from guests: as configured, else Domain-0's memory when the
    hypervisor has a Domain-0 (asked only then: it costs libvirt calls), else 1024 MiB.

    >>> host_reserve_mib(4096, lambda: 2048), host_reserve_mib(None, lambda: 2048), host_reserve_mib(None, lambda: None)
    (4096, 2048, 1024)
    """
    if configured_mib is not None:
        return configured_mib
    return domain0_mib() or DEFAULT_MEMORY_RESERVE_MIB


def host_memory_capacity_mib(total_mib: int, reserve_mib: int, unmanaged_mib: int) -> int:
    """Memory a host offers the cluster's guests: total minus the host reserve minus what
    domains the cluster does not manage occupy.

    >>> host_memory_capacity_mib(65536, 4096, 2064)
    59376
    """
    return max(0, total_mib - reserve_mib - unmanaged_mib)


GREEN, YELLOW, RED = "green", "yellow", "red"


class Health(NamedTuple):
    colour: str
    reason: str


def memory_health(free_mib: int, capacity_mib: int, booked_mib: int, tolerance_mib: int) -> Health:
    """Yellow when the hypervisor's free memory has fallen below what the cluster believes free.

    The cluster believes ``capacity - booked`` is free (booked: its guests on the host and
    reservations for arrivals). If the hypervisor has less than that, minus a tolerance,
    something outside the cluster's accounting took memory (a guest started by hand, dom0
    grown, a reserve set too small) and placements made from the published figure may fail.

    >>> memory_health(4000, 16384, 12288, 256).colour
    'green'
    >>> memory_health(3000, 16384, 12288, 256).colour
    'yellow'
    >>> memory_health(3000, 16384, 12288, 0).reason
    'the hypervisor has 3000 MiB free, the cluster counts on 4096 MiB (capacity 16384 - booked 12288)'
    """
    believed = capacity_mib - booked_mib
    reason = (
        f"the hypervisor has {free_mib} MiB free, the cluster counts on {believed} MiB "
        f"(capacity {capacity_mib} - booked {booked_mib})"
    )
    if free_mib + tolerance_mib < believed:
        return Health(YELLOW, reason)
    return Health(GREEN, reason)
