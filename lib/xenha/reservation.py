"""Race-safe admission: check a target host's room and book it, as one atomic step.

The protocol (docs/decisions/reservation-protocol.md has the full argument):

1. Each target node has a *ledger* in the CIB: a ``cluster_property_set`` with id
   ``xenha-ledger-<node>`` under ``crm_config``, holding a version number and one nvpair per
   reservation. Every node sees the same CIB, and the CIB manager applies updates one at
   a time.
2. *Read* the ledger (with the node's utilization and published reserve, one query),
   *then* the target's libvirt (in that order, so a reservation released after its guest
   arrived is seen either as a reservation or as a domain), and decide with
   :func:`xenha.capacity.decide`.
3. *Book* with one compare-and-swap: ``cibadmin --modify`` of the ledger *whose version is
   still the one read*, adding the reservation and the next version. If another booking
   came in between, nothing matches, nothing is written, and the admission reads again.
   Every booking is thus decided on a view that includes all bookings before it; there is
   no lock, so a process that dies cannot block anyone.
4. Reservations carry an expiry (a crashed holder's room comes back) and are released on
   success and on failure by a conditional delete. Expired ones found while booking are
   deleted with that release, after the move: never on the admission's critical path.

Outside a cluster (no CIB manager and no ``CIB_file``) the same steps run on a ledger file
under ``HA_RSCTMP`` protected by ``flock``: it serializes the agents of this host only.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from xenha.capacity import (
    Decision,
    Demand,
    HostLoad,
    Occupant,
    cpu_capacity,
    decide,
    host_reserve_mib,
    occupant_of,
)
from xenha.capacity import tally as tally_occupants
from xenha.deadline import Deadline
from xenha.hypervisor import Hypervisor
from xenha.ocf.log import OcfLog
from xenha.pacemaker import (
    ClusterCli,
    NotInCluster,
    integer_value,
    node_figures_xpath,
    parse_node_figures,
    xml_attribute,
    xpath_literal,
)
from xenha.statefile import StateFile
from xenha.xmlscan import scan

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ReservationError(Exception):
    """The reservation could not be made or checked (not a refusal: the check did not run)."""


class AdmissionRefused(Exception):
    """The target has no room; the message is the operator-facing reason."""


def ledger_id(node: str) -> str:
    return f"xenha-ledger-{_ID_UNSAFE.sub('_', node)}"


def reservation_id(node: str, resource: str) -> str:
    return f"{ledger_id(node)}-rsv-{_ID_UNSAFE.sub('_', resource)}"


class Reservation(NamedTuple):
    node: str
    resource: str
    memory_mib: int
    vcpus: int
    expires: int  # wall-clock seconds: shared by every node (cluster nodes keep time in sync)
    holder: str

    def encode(self) -> str:
        return (
            f"memory_mib={self.memory_mib} vcpus={self.vcpus} expires={self.expires} "
            f"holder={self.holder} resource={self.resource}"
        )

    @classmethod
    def decode(cls, node: str, value: str) -> Reservation | None:
        fields = dict(part.split("=", 1) for part in value.split() if "=" in part)
        try:
            return cls(
                node=node,
                resource=fields["resource"],
                memory_mib=int(fields["memory_mib"]),
                vcpus=int(fields["vcpus"]),
                expires=int(fields["expires"]),
                holder=fields["holder"],
            )
        except (KeyError, ValueError):
            return None

    def expired(self, now: float) -> bool:
        return self.expires < now

    def occupant(self) -> Occupant:
        return Occupant(self.resource, None, Demand(self.memory_mib, self.vcpus))


class LedgerState(NamedTuple):
    """A ledger as read, with the node's figures from the same query."""

    node: str
    version: int | None  # None: the ledger does not exist yet
    reservations: tuple[Reservation, ...]
    utilization: Mapping[str, int]
    memory_reserve_mib: int | None = None  # as xen-host publishes it

    def live(self, now: float) -> list[Reservation]:
        return [reservation for reservation in self.reservations if not reservation.expired(now)]


def parse_ledger_query(text: str | None, node: str) -> LedgerState:
    """The ledger and the node's figures from ``cibadmin --query --xpath`` output (pure).

    >>> state = parse_ledger_query(
    ...     '<xpath-query><cluster_property_set id="xenha-ledger-node2">'
    ...     '<nvpair id="xenha-ledger-node2-version" name="xenha-ledger-node2-version" value="41"/>'
    ...     '<nvpair id="xenha-ledger-node2-rsv-web1" name="xenha-ledger-node2-rsv-web1" '
    ...     'value="memory_mib=4134 vcpus=2 expires=1795000000 holder=node1:4711:9f2c resource=web1"/>'
    ...     '</cluster_property_set><utilization id="nodes-2-utilization">'
    ...     '<nvpair id="nodes-2-hv_memory" name="hv_memory" value="16384"/></utilization>'
    ...     '<nvpair id="nodes-2-xenha-memory-reserve" name="xenha-memory-reserve" value="4096"/>'
    ...     '</xpath-query>',
    ...     "node2",
    ... )
    >>> state.version, state.utilization, state.memory_reserve_mib
    (41, {'hv_memory': 16384}, 4096)
    >>> state.reservations[0].encode()
    'memory_mib=4134 vcpus=2 expires=1795000000 holder=node1:4711:9f2c resource=web1'
    >>> parse_ledger_query(None, "node2").version is None  # no ledger yet
    True
    """
    found = scan(text or "")
    version: int | None = None
    reservations: list[Reservation] = []
    for element in found:
        if element.tag == "cluster_property_set" and version is None:
            version = 0  # the ledger exists; a version nvpair, if any, follows
        if element.tag != "nvpair" or element.path[-2:-1] != ("cluster_property_set",):
            continue
        nvpair_id = element.attributes.get("id", "")
        if nvpair_id.endswith("-version"):
            version = integer_value(element) or 0
        elif "-rsv-" in nvpair_id:
            reservation = Reservation.decode(node, element.attributes.get("value", ""))
            if reservation is not None:
                reservations.append(reservation)
    figures = parse_node_figures(found)
    return LedgerState(node, version, tuple(reservations), figures.utilization, figures.memory_reserve_mib)


class Ledger(Protocol):
    node: str

    @property
    def shared(self) -> bool: ...

    def read(self, deadline: Deadline) -> LedgerState: ...
    def book(self, state: LedgerState, reservation: Reservation) -> bool: ...
    def abandon(self) -> None: ...
    def release(self, reservation: Reservation, expired: Sequence[Reservation]) -> None: ...


class CibLedger:
    """The ledger of ``node`` in the CIB (live cluster, or a CIB file)."""

    shared = True

    def __init__(self, cli: ClusterCli, node: str) -> None:
        self.node = node
        self._cli = cli
        self._set = ledger_id(node)
        self._version_id = f"{self._set}-version"

    def _set_xpath(self) -> str:
        return f"/cib/configuration/crm_config/cluster_property_set[@id={xpath_literal(self._set)}]"

    def _nvpair(self, nvpair_id: str, value: str) -> str:
        return f'<nvpair id="{nvpair_id}" name="{nvpair_id}" value="{xml_attribute(value)}"/>'

    def read(self, deadline: Deadline) -> LedgerState:
        query = f"{self._set_xpath()} | {node_figures_xpath(self.node)}"
        return parse_ledger_query(self._cli.query(query), self.node)

    def book(self, state: LedgerState, reservation: Reservation) -> bool:
        """Add ``reservation`` if nobody booked since ``state`` was read (compare-and-swap)."""
        version = (state.version or 0) + 1
        body = self._nvpair(self._version_id, str(version)) + self._nvpair(
            reservation_id(self.node, reservation.resource), reservation.encode()
        )
        ledger = f'<cluster_property_set id="{self._set}">{body}</cluster_property_set>'
        if state.version is None:
            return self._cli.create("crm_config", ledger)  # fails if another booking created it
        version_nvpair = f"nvpair[@id={xpath_literal(self._version_id)}]"
        unchanged = f"not({version_nvpair})" if state.version == 0 else f"{version_nvpair}[@value='{state.version}']"
        return self._cli.modify_where(f"{self._set_xpath()}[{unchanged}]", ledger)

    def abandon(self) -> None:
        """Nothing to undo: reading takes no lock."""

    def release(self, reservation: Reservation, expired: Sequence[Reservation]) -> None:
        """Delete ``reservation`` while it holds our token, and ``expired`` ones (whose holder
        never released them) only as they were read, so that a newer booking is never removed."""
        self._delete(reservation, f"contains(@value, {xpath_literal('holder=' + reservation.holder + ' ')})")
        for old in expired:
            self._delete(old, f"@value={xpath_literal(old.encode())}")

    def _delete(self, reservation: Reservation, condition: str) -> None:
        nvpair = reservation_id(self.node, reservation.resource)
        self._cli.delete_where(f"{self._set_xpath()}/nvpair[@id={xpath_literal(nvpair)} and {condition}]")


class LocalLedger:
    """The same protocol on a file under ``HA_RSCTMP`` for a host outside any cluster.

    Here reading takes an ``flock`` that booking (or abandoning) gives back: this host's
    agents are the only writers, and they take turns.
    """

    shared = False

    def __init__(self, directory: str, node: str) -> None:
        self.node = node
        self._file = StateFile(directory, "ledger", node)
        self._descriptor: int | None = None

    def read(self, deadline: Deadline) -> LedgerState:
        os.makedirs(self._file.directory, exist_ok=True)
        descriptor = os.open(self._file.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline.expired():
                    os.close(descriptor)
                    raise ReservationError(f"the local reservation ledger of {self.node} stayed busy: retry") from None
                time.sleep(0.02)
        self._descriptor = descriptor
        return LedgerState(self.node, 0, tuple(self._load().values()), {})

    def _load(self) -> dict[str, Reservation]:
        found = {}
        for resource, value in self._file.load().items():
            reservation = Reservation.decode(self.node, str(value))
            if reservation is not None:
                found[resource] = reservation
        return found

    def _store(self, reservations: Mapping[str, Reservation]) -> None:
        if not self._file.save({key: value.encode() for key, value in reservations.items()}):
            raise ReservationError(f"cannot write the local reservation ledger {self._file.path}: check HA_RSCTMP")

    def book(self, state: LedgerState, reservation: Reservation) -> bool:
        reservations = self._load()
        reservations[reservation.resource] = reservation
        self._store(reservations)
        self.abandon()
        return True

    def abandon(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing releases the flock
            self._descriptor = None

    def release(self, reservation: Reservation, expired: Sequence[Reservation]) -> None:
        self.read(Deadline.after(10))
        try:
            reservations = self._load()
            gone = (reservation, *expired)  # as booked and as read: never a newer booking
            kept = {resource: current for resource, current in reservations.items() if current not in gone}
            if kept != reservations:
                self._store(kept)
        finally:
            self.abandon()


class ClusterOrLocalLedger:
    """The CIB ledger of ``node``; the local one when there is no cluster to talk to.

    Which one applies is found out by the first read, which costs nothing extra in a
    cluster.
    """

    def __init__(self, cli: ClusterCli, rsctmp: str, node: str) -> None:
        self.node = node
        self._current: CibLedger | LocalLedger = CibLedger(cli, node)
        self._rsctmp = rsctmp

    @property
    def shared(self) -> bool:
        return self._current.shared

    def read(self, deadline: Deadline) -> LedgerState:
        try:
            return self._current.read(deadline)
        except NotInCluster:
            self._current = LocalLedger(self._rsctmp, self.node)
            return self._current.read(deadline)

    def book(self, state: LedgerState, reservation: Reservation) -> bool:
        return self._current.book(state, reservation)

    def abandon(self) -> None:
        self._current.abandon()

    def release(self, reservation: Reservation, expired: Sequence[Reservation]) -> None:
        self._current.release(reservation, expired)


# ---- admission ------------------------------------------------------------------------------


class AdmissionRequest(NamedTuple):
    action: str  # completes "cannot ...": "migrate web1 to node2", "start web1 on node1"
    resource: str
    domain: str
    demand: Demand
    hold_s: float  # how long the reservation stays valid if nobody releases it
    # The guest's own host_memory_reserve, for hosts where no xen-host publishes one;
    # None: Domain-0's memory when the hypervisor reports one, else the default.
    memory_reserve_mib: int | None
    cpu_overcommit: float


class Booking(NamedTuple):
    reservation: Reservation
    ledger: Ledger
    decision: Decision
    expired: tuple[Reservation, ...]  # found expired when booking: deleted with ours

    def release(self) -> None:
        self.ledger.release(self.reservation, self.expired)


def host_loads(
    request: AdmissionRequest,
    state: LedgerState,
    now: float,
    domains: Iterable[Occupant],
    total_memory_mib: int,
    memory_reserve_mib: int,
    physical_cpus: int,
) -> list[HostLoad]:
    """The views of the target the decision must satisfy (pure).

    * cluster view, when the CIB gives the node an ``hv_memory``: that capacity (published by
      xen-host net of unmanaged domains) against the cluster's own guests;
    * hypervisor view, always: total memory minus the host reserve against every domain,
      which catches drift the CIB does not know about (a guest started by hand, dom0 grown).

    vCPU capacity is the node's ``cpu`` utilization when set, else physical CPUs times the
    overcommit ratio; it is checked in the cluster view when there is one.

    >>> request = AdmissionRequest("migrate web1 to node2", "web1", "web1", Demand(4134, 2), 180, None, 4.0)
    >>> state = LedgerState("node2", 3, (
    ...     Reservation("node2", "db1", 1000, 1, expires=2000, holder="node3:7:ab"),
    ...     Reservation("node2", "old", 9999, 9, expires=10, holder="node1:5:cd"),  # expired
    ... ), {"hv_memory": 16384, "cpu": 32})
    >>> domains = [Occupant("app1", "app1", Demand(8200, 4)), Occupant(None, "by-hand", Demand(2000, 1))]
    >>> def figures(loads):
    ...     return [(load.memory_capacity_mib, load.memory_used_mib, load.memory_reserved_mib, load.cpu_capacity,
    ...              load.cpu_used, load.cpu_reserved) for load in loads]
    >>> figures(host_loads(request, state, 1000, domains, 32768, 4096, 8))
    [(16384, 8200, 1000, 32, 4, 1), (28672, 10200, 1000, None, 5, 1)]
    >>> figures(host_loads(request, state._replace(utilization={}), 1000, domains, 32768, 4096, 6))
    [(28672, 10200, 1000, 24, 5, 1)]
    """
    domains = list(domains)
    reservations = [reservation.occupant() for reservation in state.live(now)]
    cpu_limit = state.utilization.get("cpu", cpu_capacity(physical_cpus, request.cpu_overcommit))
    cluster_memory = state.utilization.get("hv_memory")

    def view(basis: str, memory_capacity_mib: int, cpu_capacity: int | None, managed_only: bool) -> HostLoad:
        counted = tally_occupants(domains, reservations, request.resource, request.domain, managed_only)
        return HostLoad(
            state.node,
            basis,
            memory_capacity_mib,
            counted.memory_used_mib,
            counted.memory_reserved_mib,
            cpu_capacity,
            counted.cpu_used,
            counted.cpu_reserved,
        )

    hypervisor = view(
        f"the hypervisor: {total_memory_mib} MiB total minus {memory_reserve_mib} MiB host reserve "
        "(against every domain)",
        total_memory_mib - memory_reserve_mib,
        cpu_limit if cluster_memory is None else None,
        managed_only=False,
    )
    if cluster_memory is None:
        return [hypervisor]
    cluster = view(
        "the node's hv_memory in the CIB (against the cluster's guests)", cluster_memory, cpu_limit, managed_only=True
    )
    return [cluster, hypervisor]


def admit(
    request: AdmissionRequest,
    ledger: Ledger,
    target: Hypervisor,
    deadline: Deadline,
    log: OcfLog,
    token: str,
    clock: Callable[[], float] = time.time,
) -> Booking:
    """Check the target's room and book it; raise AdmissionRefused when it has none.

    Reads and decides again whenever another booking into the same node got in between.
    """
    attempts = 0
    while True:
        attempts += 1
        state = ledger.read(deadline)
        try:
            decision, now = _decide(request, state, target, clock)
        except BaseException:
            ledger.abandon()
            raise
        if not decision.admit:
            ledger.abandon()
            log.error(f"reservation refused: {decision.reason}; {decision.detail}")
            raise AdmissionRefused(decision.reason)
        reservation = Reservation(
            node=ledger.node,
            resource=request.resource,
            memory_mib=request.demand.memory_mib,
            vcpus=request.demand.vcpus,
            expires=int(now + request.hold_s),
            holder=token,
        )
        if ledger.book(state, reservation):
            break
        if deadline.expired():
            raise ReservationError(
                f"the ledger of {ledger.node} kept changing under {attempts} attempts (other bookings): retry"
            )
        jitter = int.from_bytes(os.urandom(2), "big") / 65535  # spreads the retries of racing admissions
        time.sleep((0.01 + 0.04 * jitter) * min(attempts, 5))
    scope = "" if ledger.shared else " (no cluster: this host's agents only)"
    until = time.strftime("%H:%M:%S", time.localtime(reservation.expires))
    retried = f" after {attempts} attempts" if attempts > 1 else ""
    log.info(f"reservation: {decision.reason}; {decision.detail}; booked until {until}{retried}{scope}")
    return Booking(reservation, ledger, decision, tuple(old for old in state.reservations if old.expired(now)))


def _decide(
    request: AdmissionRequest, state: LedgerState, target: Hypervisor, clock: Callable[[], float]
) -> tuple[Decision, float]:
    """The decision on what was read from the ledger, then from the target's libvirt."""
    domains = [occupant_of(domain) for domain in target.active_domains()]
    facts = target.node_facts()
    configured = state.memory_reserve_mib if state.memory_reserve_mib is not None else request.memory_reserve_mib
    reserve = host_reserve_mib(configured, target.domain0_memory_mib)
    now = clock()
    loads = host_loads(request, state, now, domains, facts.memory_mib, reserve, facts.cpus)
    return decide(request.action, request.domain, request.demand, loads), now
