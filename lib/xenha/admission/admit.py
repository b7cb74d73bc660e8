"""Race-safe admission: check a target host's room and book it, as one atomic step.

The protocol (docs/decisions/reservation-protocol.md has the full argument):

1. *Read* the CIB's configuration version, then the target's ledger (:mod:`.ledger`, from a
   store in :mod:`.stores`) with the node's utilization and published reserve, *then* the
   target's own facts (its hypervisor: in that order, so a reservation released after its
   guest arrived is seen either as a reservation or as a domain), and decide
   (:func:`xenha.admission.load.decide`).
2. *Book* with one compare-and-swap on that configuration version; if anything changed in
   between, read and decide again. There is no lock in a cluster, so a process that dies
   cannot block anyone.
3. Reservations carry a hold (a crashed holder's room comes back: each node ages them on its
   own clock) and are released on success and on failure. Expired ones are deleted with that
   release, after the move, off the admission's critical path; an admission that books
   nothing deletes them before it returns, so they can always be cleared.

Nothing here calls libvirt or writes the agent's log: the loop takes a :class:`HostFacts`
provider and an :class:`AdmissionLog`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple, Protocol

from xenha.admission.ledger import LedgerState, Reservation
from xenha.admission.load import (
    Decision,
    HostLoad,
    Occupant,
    cpu_capacity,
    decide,
    host_reserve_mib,
    occupant_of,
    tally,
)
from xenha.admission.resources import Resources
from xenha.admission.stores import Ledger, ReservationError

if TYPE_CHECKING:
    from xenha.deadline import Deadline
    from xenha.libvirt.connection import ActiveDomain, NodeFacts


class AdmissionRefused(Exception):
    """The target has no room; the message is the operator-facing reason."""


class HostFacts(Protocol):
    """What admission reads of the target host (its hypervisor, in the agent)."""

    def active_domains(self) -> list[ActiveDomain]: ...
    def node_facts(self) -> NodeFacts: ...
    def domain0_memory_mib(self) -> int | None: ...


class AdmissionLog(Protocol):
    def info(self, message: str) -> None: ...
    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


class AdmissionRequest(NamedTuple):
    action: str  # completes "cannot ...": "migrate web1 to node2", "start web1 on node1"
    resource: str
    domain: str
    demand: Resources
    hold_s: float  # how long the reservation stays valid if nobody releases it
    # The guest's own host_memory_reserve, for hosts where no xen-host publishes one;
    # None: Domain-0's memory when the hypervisor reports one, else the default.
    memory_reserve_mib: int | None
    cpu_overcommit: float
    holder: str  # who holds the reservation: node, process and a random part

    @property
    def occupant(self) -> Occupant:
        return Occupant(self.resource, self.domain, self.demand)


class Booking(NamedTuple):
    reservation: Reservation
    ledger: Ledger
    decision: Decision
    expired: tuple[Reservation, ...]  # found expired when booking: deleted with ours

    def release(self, deadline: Deadline) -> None:
        self.ledger.release(self.reservation, self.expired, deadline)


class HostSize(NamedTuple):
    """What the target offers before anything runs on it."""

    memory_mib: int  # total
    memory_reserve_mib: int  # kept for the host itself
    cpus: int  # physical


def host_loads(request: AdmissionRequest, state: LedgerState, domains: Iterable[Occupant],
               size: HostSize) -> list[HostLoad]:  # fmt: skip
    """The views of the target the decision must satisfy (pure).

    * cluster view, when the CIB gives the node an ``hv_memory``: that capacity (published by
      xen-host net of unmanaged domains) against the cluster's own guests;
    * hypervisor view, always: total memory minus the host reserve against every domain,
      which catches drift the CIB does not know about (a guest started by hand, dom0 grown).

    vCPU capacity is the node's ``cpu`` utilization when set, else physical CPUs times the
    overcommit ratio; it is checked in the cluster view when there is one.

    >>> request = AdmissionRequest("migrate web1 to node2", "web1", "web1", Resources(4134, 2), 180, None, 4.0, "n1")
    >>> old = Reservation("node2", "old", 9999, 9, hold_s=10, holder="node1:5:cd")
    >>> state = LedgerState("node2", (0, 3), (
    ...     Reservation("node2", "db1", 1000, 1, hold_s=200, holder="node3:7:ab"), old,
    ... ), {"hv_memory": 16384, "cpu": 32}, expired=frozenset({old.key}))
    >>> domains = [Occupant("app1", "app1", Resources(8200, 4)), Occupant(None, "by-hand", Resources(2000, 1))]
    >>> def figures(loads):
    ...     return [(*load.capacity, *load.used, *load.reserved, load.cpu_limited) for load in loads]
    >>> figures(host_loads(request, state, domains, HostSize(32768, 4096, 8)))
    [(16384, 32, 8200, 4, 1000, 1, True), (28672, 0, 10200, 5, 1000, 1, False)]
    >>> figures(host_loads(request, state._replace(utilization={}), domains, HostSize(32768, 4096, 6)))
    [(28672, 24, 10200, 5, 1000, 1, True)]
    """
    domains = list(domains)
    reservations = [Occupant(reservation.resource, None, reservation.demand) for reservation in state.live()]
    cpu_limit = state.utilization.get("cpu", cpu_capacity(size.cpus, request.cpu_overcommit))
    cluster_memory = state.utilization.get("hv_memory")

    def view(basis: str, capacity: Resources, managed_only: bool, cpu_limited: bool) -> HostLoad:
        counted = tally(domains, reservations, request.occupant, managed_only)
        return HostLoad(state.node, capacity, counted.used, counted.reserved, basis, cpu_limited)

    hypervisor = view(
        f"the hypervisor: {size.memory_mib} MiB total minus {size.memory_reserve_mib} MiB host reserve "
        "(against every domain)",
        Resources(size.memory_mib - size.memory_reserve_mib, cpu_limit if cluster_memory is None else 0),
        managed_only=False,
        cpu_limited=cluster_memory is None,
    )
    if cluster_memory is None:
        return [hypervisor]
    cluster = view(
        "the node's hv_memory in the CIB (against the cluster's guests)",
        Resources(cluster_memory, cpu_limit),
        managed_only=True,
        cpu_limited=True,
    )
    return [cluster, hypervisor]


def admit(request: AdmissionRequest, ledger: Ledger, target: HostFacts, deadline: Deadline,
          log: AdmissionLog) -> Booking:  # fmt: skip
    """Check the target's room and book it; raise AdmissionRefused when it has none.

    Reads and decides again whenever the configuration changed between the read and the
    booking. Reservations found expired are deleted with the booking's release, or before
    this returns when nothing was booked: an expired entry can always be cleared.
    """
    attempts = 0
    state: LedgerState | None = None
    try:
        while True:
            attempts += 1
            state = ledger.read(deadline)
            if state.unreadable:
                log.warning(f"the ledger of {ledger.node} holds nvpairs that are no reservation (ignored): "
                            f"{', '.join(state.unreadable)}")  # fmt: skip
            decision, reservation = _decide(request, ledger, state, target, log)
            if ledger.book(state, reservation, deadline):
                break
            if deadline.expired():
                raise ReservationError(
                    f"the CIB's configuration kept changing under {attempts} attempts (other bookings, edits): retry"
                )
            jitter = int.from_bytes(os.urandom(2), "big") / 65535  # spreads the retries of racing admissions
            time.sleep((0.01 + 0.04 * jitter) * min(attempts, 5))
    except BaseException:
        if state is not None and state.lapsed():
            _clear(ledger, state.lapsed(), deadline, log)
        raise
    scope = "" if ledger.shared else " (no cluster in the environment: this host's agents only)"
    retried = f" after {attempts} attempts" if attempts > 1 else ""
    log.info(
        f"reservation: {decision.reason}; {decision.detail}; booked until released or {reservation.hold_s} s after "
        f"a node first sees it{retried}{scope}"
    )
    return Booking(reservation, ledger, decision, state.lapsed())


def _decide(request: AdmissionRequest, ledger: Ledger, state: LedgerState, target: HostFacts,
            log: AdmissionLog) -> tuple[Decision, Reservation]:  # fmt: skip
    """The decision on what was read from the ledger, then from the target's hypervisor, and
    the reservation to book; raise AdmissionRefused when the guest does not fit."""
    try:
        domains = [occupant_of(domain) for domain in target.active_domains()]
        facts = target.node_facts()
        configured = state.memory_reserve_mib if state.memory_reserve_mib is not None else request.memory_reserve_mib
        size = HostSize(facts.memory_mib, host_reserve_mib(configured, target.domain0_memory_mib), facts.cpus)
    except BaseException:
        ledger.abandon()
        raise
    decision = decide(request.action, request.domain, request.demand, host_loads(request, state, domains, size))
    if not decision.admit:
        ledger.abandon()
        log.error(f"reservation refused: {decision.reason}; {decision.detail}")
        raise AdmissionRefused(decision.reason)
    reservation = Reservation(
        node=ledger.node,
        resource=request.resource,
        memory_mib=request.demand.memory_mib,
        vcpus=request.demand.vcpus,
        hold_s=math.ceil(request.hold_s),
        holder=request.holder,
    )
    return decision, reservation


def _clear(ledger: Ledger, expired: tuple[Reservation, ...], deadline: Deadline, log: AdmissionLog) -> None:
    """Delete reservations whose hold ran out here, when the admission books nothing."""
    try:
        ledger.release(None, expired, deadline)
    except Exception as error:  # noqa: BLE001 - the admission's own outcome is what the caller needs
        log.warning(f"could not delete expired reservations on {ledger.node}: {error}")
    else:
        log.info(f"deleted expired reservations on {ledger.node}: {', '.join(old.resource for old in expired)}")
