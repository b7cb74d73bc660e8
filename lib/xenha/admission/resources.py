"""What a guest needs and what a host has: one type, and the Xen demand formula.

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

The same formula serves the reservation check (xen-guest migrate_to and start), the
utilization the guest agent publishes (``hv_memory``) and the host agent's accounting, so
that capacity and demand always meet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from xenha.libvirt.domxml import DomainSpec, GuestType

PV_EXTRA_MIB = 1
HVM_EXTRA_MIB = 2
MAXMEM_CONSTANT_MIB = 1


class Resources(NamedTuple):
    """A demand or a capacity: MiB of memory (``hv_memory``) and vCPUs (``cpu``).

    A NamedTuple, not a dataclass: it is built on the monitor path (performance.md).

    >>> Resources(4096, 2) + Resources(1024, 1), Resources(4096, 2) - Resources(8192, 1)
    (Resources(memory_mib=5120, vcpus=3), Resources(memory_mib=-4096, vcpus=1))
    """

    memory_mib: int = 0
    vcpus: int = 0

    def __add__(self, other: Resources) -> Resources:  # type: ignore[override]
        return Resources(self.memory_mib + other.memory_mib, self.vcpus + other.vcpus)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.memory_mib - other.memory_mib, self.vcpus - other.vcpus)

    def fits_in(self, room: Resources) -> bool:
        """Pacemaker's test: every attribute of the demand is at most what remains."""
        return self.memory_mib <= room.memory_mib and self.vcpus <= room.vcpus

    def clipped(self) -> Resources:
        """Negative components set to zero (a shortfall is never negative)."""
        return Resources(max(0, self.memory_mib), max(0, self.vcpus))


def total(items: Iterable[Resources]) -> Resources:
    memory = vcpus = 0
    for item in items:
        memory += item.memory_mib
        vcpus += item.vcpus
    return Resources(memory, vcpus)


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
    total_mib = memory_mib + shadow_mib(memory_mib, vcpus) + external + MAXMEM_CONSTANT_MIB
    return total_mib + (total_mib % 2)


def demand_of(spec: DomainSpec) -> Resources:
    return Resources(memory_demand_mib(spec.memory_mib, spec.vcpus, spec.guest_type), spec.vcpus)


def guest_type_from_os_type(os_type: str) -> GuestType:
    """The guest type of a domain libvirt describes with ``virDomainGetOSType``."""
    lowered = os_type.strip().lower()
    if lowered == "hvm":
        return GuestType.HVM
    if lowered == "xenpvh":
        return GuestType.PVH
    return GuestType.PV
