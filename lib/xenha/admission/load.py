"""Host-load arithmetic: what occupies a host, whether a guest fits, and the host's health.

Pure functions only. One counting rule (:func:`tally`) serves the admission check and
``xenha status`` (:func:`xenha.planner.report.host_usage`), so they cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from xenha.admission.resources import Resources, guest_type_from_os_type, memory_demand_mib
from xenha.libvirt.domxml import GuestType

if TYPE_CHECKING:
    from xenha.libvirt.connection import ActiveDomain

DEFAULT_MEMORY_RESERVE_MIB = 1024


def cpu_capacity(physical_cpus: int, overcommit: float) -> int:
    """vCPUs a host may carry: physical CPUs times the overcommit ratio, rounded down.

    >>> cpu_capacity(8, 4.0)
    32
    >>> cpu_capacity(6, 1.5)
    9
    """
    return math.floor(physical_cpus * overcommit + 1e-9)


class HostLoad(NamedTuple):
    """A host's room: capacity, what is used, what is reserved for arrivals.

    The one host-load type: admission's views of a target, the planner's hosts after a
    recovery, the rows of ``xenha status``.
    """

    node: str
    capacity: Resources
    used: Resources
    reserved: Resources = Resources()
    basis: str = ""  # where the capacity comes from, in words
    cpu_limited: bool = True  # False: vCPUs are not limited in this view

    @property
    def free(self) -> Resources:
        return self.capacity - self.used - self.reserved


class Decision(NamedTuple):
    admit: bool
    reason: str  # short enough for Pacemaker's exit reason (it keeps 128 characters)
    detail: str  # where the figures come from, for the log


def _shortfall(action: str, demand: Resources, load: HostLoad) -> str | None:
    """Why ``load`` has no room for ``demand``, or None when it has."""
    free = load.free
    if demand.memory_mib > free.memory_mib:
        return (
            f"cannot {action}: needs {demand.memory_mib} MiB, {load.node} has {max(0, free.memory_mib)} MiB free "
            f"(capacity {load.capacity.memory_mib}, used {load.used.memory_mib}, reserved {load.reserved.memory_mib})"
        )
    if load.cpu_limited and demand.vcpus > free.vcpus:
        return (
            f"cannot {action}: needs {demand.vcpus} vCPUs, {load.node} has {max(0, free.vcpus)} free "
            f"(capacity {load.capacity.vcpus}, used {load.used.vcpus}, reserved {load.reserved.vcpus})"
        )
    return None


def decide(action: str, guest: str, demand: Resources, loads: Sequence[HostLoad]) -> Decision:
    """Admit the guest only if every view of the target has room for it.

    ``action`` completes the sentence "cannot ...", e.g. "migrate web1 to node2".

    >>> load = HostLoad("node2", Resources(16384), Resources(13312), Resources(), "the CIB's hv_memory", False)
    >>> decision = decide("migrate web1 to node2", "web1", Resources(4160, 2), [load])
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
        shortfall = _shortfall(action, demand, load)
        if shortfall is not None:
            return Decision(False, shortfall, f"capacity from {load.basis}")
    tightest = min(loads, key=lambda load: load.free.memory_mib)
    return Decision(
        True,
        f"{guest} fits on {tightest.node}: needs {demand.memory_mib} MiB and {demand.vcpus} vCPUs, "
        f"{tightest.free.memory_mib} MiB free (capacity {tightest.capacity.memory_mib}, used "
        f"{tightest.used.memory_mib}, reserved {tightest.reserved.memory_mib})",
        f"capacity from {tightest.basis}",
    )


class Occupant(NamedTuple):
    """Something taking room on a host: an active domain or a reservation for one arriving."""

    resource: str | None  # cluster resource, None for a domain the cluster does not manage
    domain: str | None
    demand: Resources


class Tally(NamedTuple):
    used: Resources
    reserved: Resources


def tally(
    domains: Iterable[Occupant],
    reservations: Iterable[Occupant],
    admitting: Occupant | None = None,
    managed_only: bool = False,
) -> Tally:
    """Sum what occupies a host, without counting anything twice.

    - the guest being admitted (``admitting``) counts neither as a domain nor as a reservation;
    - a reservation whose guest is already active on the host is counted once, as a domain;
    - with ``managed_only``, domains the cluster does not manage are left out (for the
      cluster's capacity figure, which already excludes them).

    >>> web = Occupant("web1", "web1", Resources(1000, 1))
    >>> tally([web], [Occupant("web1", None, Resources(1000, 1)), Occupant("db1", None, Resources(50, 2))])
    Tally(used=Resources(memory_mib=1000, vcpus=1), reserved=Resources(memory_mib=50, vcpus=2))
    """
    used = reserved = Resources()
    present: set[str] = set()
    for domain in domains:
        if admitting is not None and (domain.domain == admitting.domain or domain.resource == admitting.resource):
            continue
        if domain.resource is not None:
            present.add(domain.resource)
        if managed_only and domain.resource is None:
            continue
        used += domain.demand
    for reservation in reservations:
        if reservation.resource is None or reservation.resource in present:
            continue
        if admitting is not None and reservation.resource == admitting.resource:
            continue
        reserved += reservation.demand
    return Tally(used, reserved)


def occupant_of(domain: ActiveDomain) -> Occupant:
    """What an active domain occupies: the demand recorded at start, else computed."""
    owner = domain.owner
    recorded = owner.recorded_size if owner is not None else None
    if recorded is not None:
        return Occupant(domain.resource, domain.name, Resources(recorded.demand_mib, recorded.vcpus))
    try:
        guest_type = GuestType(owner.guest_type if owner is not None else None)
    except ValueError:
        guest_type = guest_type_from_os_type(domain.os_type or "")  # read whenever no demand was recorded
    return Occupant(
        domain.resource,
        domain.name,
        Resources(memory_demand_mib(domain.max_memory_mib, domain.vcpus, guest_type), domain.vcpus),
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


def hypervisor_own_mib(total_mib: int, free_mib: int, domain0_mib: int, guests_mib: int) -> int:
    """Memory the hypervisor keeps for itself (Xen's heap, frame table): total minus what is free
    minus what Domain-0 and the guests hold. Exact with no guest running (``guests_mib`` 0);
    with guests it is a little low, their demand being an estimate from above.

    >>> hypervisor_own_mib(1535, 748, 768, 0)  # the lab's host: dom0_mem=768M, nothing running
    19
    >>> hypervisor_own_mib(1535, 600, 768, 200)
    0
    """
    return max(0, total_mib - free_mib - domain0_mib - guests_mib)


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


def unsized_domain0_health(domain0_current_mib: int, domain0_max_mib: int, total_mib: int, capacity_mib: int) -> Health:
    """Yellow when Xen lets Domain-0 grow into all of the host's memory.

    Xen booted without ``dom0_mem=<size>,max:<size>`` gives Domain-0 all memory but its own
    (the lab: 1421 of 1535 MiB) and no ceiling below the host's total. libvirt 9.0's libxl
    driver then does not balloon Domain-0 down for a guest (its ``autoballoon`` is off unless
    set in libxl.conf, and failed when set: docs/decisions/xen-autoballoon.md), so the
    capacity is what Domain-0 happens to have left, and it moves whenever Domain-0 is resized.
    The host still works: the capacity published is what guests can really get; yellow tells
    the operator it is small and unstable, and what to change.

    >>> unsized_domain0_health(768, 768, 1535, 748).colour  # dom0_mem=768M,max:768M
    'green'
    >>> health = unsized_domain0_health(1421, 1536, 1535, 95)  # no dom0_mem
    >>> health.colour
    'yellow'
    >>> print(health.reason)  # doctest: +NORMALIZE_WHITESPACE
    Domain-0 has no fixed size (no dom0_mem=<size>,max:<size> on Xen's command line): it holds
    1421 of 1535 MiB and libvirt does not balloon it down for guests, so this host offers them
    95 MiB; set dom0_mem=<size>,max:<size> (e.g. dom0_mem=1024M,max:1024M) on Xen's command
    line and reboot, or shrink it now (xl mem-set 0 <size>) and set host_memory_reserve
    """
    if domain0_max_mib < total_mib:
        return Health(GREEN, f"Domain-0 is sized: {domain0_current_mib} MiB, at most {domain0_max_mib}")
    return Health(
        YELLOW,
        "Domain-0 has no fixed size (no dom0_mem=<size>,max:<size> on Xen's command line): it holds "
        f"{domain0_current_mib} of {total_mib} MiB and libvirt does not balloon it down for guests, so this host "
        f"offers them {capacity_mib} MiB; set dom0_mem=<size>,max:<size> (e.g. dom0_mem=1024M,max:1024M) on Xen's "
        "command line and reboot, or shrink it now (xl mem-set 0 <size>) and set host_memory_reserve",
    )


def worst_health(*healths: Health) -> Health:
    """The worst colour; the reasons of every health of that colour, joined.

    >>> worst_health(Health(GREEN, "a"), Health(YELLOW, "b"), Health(YELLOW, "c"))
    Health(colour='yellow', reason='b; c')
    >>> worst_health(Health(GREEN, "a"), Health(GREEN, "b"))
    Health(colour='green', reason='a')
    """
    order = (RED, YELLOW, GREEN)
    colour = min((health.colour for health in healths), key=order.index)
    reasons = [health.reason for health in healths if health.colour == colour]
    return Health(colour, reasons[0] if colour == GREEN else "; ".join(reasons))
