"""Race-safe admission: check a target host's room and book it, as one atomic step.

The protocol (docs/decisions/reservation-protocol.md has the full argument):

1. Each target node has a *ledger* in the CIB: a ``cluster_property_set`` with id
   ``xenha-ledger-<node>`` under ``crm_config``, holding a lock nvpair and one nvpair per
   reservation. Every node sees the same CIB, and the CIB manager applies updates one at
   a time.
2. *Lock* = compare-and-swap: ``cibadmin --modify --xpath`` on the lock nvpair whose value
   is ``free`` or whose lease has expired. When nothing matches, someone else holds it.
3. Under the lock: read the ledger, *then* the target's libvirt (in that order, so a
   reservation released after its guest arrived is seen either as a reservation or as a
   domain), decide with :func:`xenha.capacity.decide`.
4. *Book* = one compare-and-swap that adds the reservation and frees the lock, applied only
   while the lock still holds our token. A holder that stalled past its lease loses the
   lock and its booking fails: the protocol does not depend on timing for safety, only for
   progress.
5. Reservations carry an expiry (a crashed holder cannot block a host forever) and are
   released on success and on failure by a conditional delete.

Outside a cluster (no CIB manager and no ``CIB_file``) the same protocol runs on a ledger
file under ``HA_RSCTMP`` protected by ``flock``: it serializes the agents of this host only.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, Protocol

from xenha.capacity import Decision, Demand, HostLoad, Occupant, cpu_capacity, decide, memory_demand_mib
from xenha.capacity import guest_type_from_os_type as os_guest_type
from xenha.capacity import tally as tally_occupants
from xenha.deadline import Deadline
from xenha.domxml import GuestType
from xenha.hypervisor import ActiveDomain, Hypervisor
from xenha.ocf.log import OcfLog
from xenha.pacemaker import ClusterCli, NotInCluster, xml_attribute, xpath_literal

LOCK_LEASE_S = 30.0
# Node attribute in which xen-host publishes the host reserve it applies (MiB), so that the
# reservation check of every guest uses the same figure as the host's capacity.
RESERVE_ATTRIBUTE = "xenha-memory-reserve"
FREE = "free"
DEFAULT_MEMORY_RESERVE_MIB = 1024
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
    """A ledger as read under its lock, with the node's figures from the same query."""

    node: str
    reservations: tuple[Reservation, ...]
    utilization: Mapping[str, int]
    memory_reserve_mib: int | None = None  # as xen-host publishes it

    def live(self, now: float) -> list[Reservation]:
        return [reservation for reservation in self.reservations if not reservation.expired(now)]


def parse_ledger_query(text: str | None, node: str) -> LedgerState:
    """The ledger and node utilization from ``cibadmin --query --xpath`` output (pure)."""
    from xml.etree import ElementTree

    reservations: list[Reservation] = []
    utilization: dict[str, int] = {}
    reserve: int | None = None
    if text and text.strip():
        root = ElementTree.fromstring(text)  # noqa: S314 - the CIB manager's own output
        elements = list(root) if root.tag == "xpath-query" else [root]
        for element in elements:
            if element.tag == "cluster_property_set":
                for nvpair in element.iter("nvpair"):
                    if "-rsv-" in (nvpair.get("id") or ""):
                        reservation = Reservation.decode(node, nvpair.get("value") or "")
                        if reservation is not None:
                            reservations.append(reservation)
            elif element.tag == "utilization":
                for nvpair in element.iter("nvpair"):
                    value = (nvpair.get("value") or "").strip()
                    if value.isdigit():
                        utilization[nvpair.get("name") or ""] = int(value)
            elif element.tag == "nvpair" and element.get("name") == RESERVE_ATTRIBUTE:
                value = (element.get("value") or "").strip()
                reserve = int(value) if value.isdigit() else None
    return LedgerState(node, tuple(reservations), utilization, reserve)


class Ledger(Protocol):
    node: str

    @property
    def shared(self) -> bool: ...

    def lock(self, token: str, deadline: Deadline) -> LedgerState: ...
    def book(self, token: str, reservation: Reservation) -> None: ...
    def unlock(self, token: str) -> None: ...
    def release(self, reservation: Reservation) -> None: ...
    def forget_expired(self, state: LedgerState, now: float) -> None: ...


class CibLedger:
    """The ledger of ``node`` in the CIB (live cluster, or a CIB file)."""

    shared = True

    def __init__(
        self,
        cli: ClusterCli,
        node: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.node = node
        self._cli = cli
        self._clock = clock
        self._sleep = sleep
        self._set = ledger_id(node)
        self._lock_id = f"{self._set}-lock"
        self._held: str | None = None

    def _set_xpath(self) -> str:
        return f"/cib/configuration/crm_config/cluster_property_set[@id={xpath_literal(self._set)}]"

    def _nvpair(self, nvpair_id: str, value: str) -> str:
        return f'<nvpair id="{nvpair_id}" name="{nvpair_id}" value="{xml_attribute(value)}"/>'

    def lock(self, token: str, deadline: Deadline) -> LedgerState:
        created = False
        while True:
            now = self._clock()
            value = f"{int(now + LOCK_LEASE_S)}:{token}"
            free_or_expired = (
                f"{self._set_xpath()}/nvpair[@id={xpath_literal(self._lock_id)}]"
                f"[@value='{FREE}' or number(substring-before(@value, ':')) < {int(now)}]"
            )
            if self._cli.modify_where(free_or_expired, self._nvpair(self._lock_id, value)):
                self._held = value
                return self.read()
            if not created:
                created = True
                ledger = (
                    f'<cluster_property_set id="{self._set}">{self._nvpair(self._lock_id, FREE)}</cluster_property_set>'
                )
                if self._cli.create("crm_config", ledger):
                    continue  # the ledger did not exist: try the lock at once
            if deadline.expired():
                holder = self._cli.query(f"{self._set_xpath()}/nvpair[@id={xpath_literal(self._lock_id)}]")
                raise ReservationError(
                    f"the reservation lock of {self.node} stayed busy ({_lock_holder(holder)}); "
                    "other migrations into it are still being checked: retry"
                )
            self._sleep(random.uniform(0.02, 0.15))  # noqa: S311 - jitter, not security

    def read(self) -> LedgerState:
        node = f"/cib/configuration/nodes/node[@uname={xpath_literal(self.node)}]"
        reserve = f"{node}/instance_attributes/nvpair[@name='{RESERVE_ATTRIBUTE}']"
        query = f"{self._set_xpath()} | {node}/utilization | {reserve}"
        return parse_ledger_query(self._cli.query(query), self.node)

    def _while_held(self) -> str:
        held = xpath_literal(self._held or "")
        return f"{self._set_xpath()}[nvpair[@id={xpath_literal(self._lock_id)} and @value={held}]]"

    def book(self, token: str, reservation: Reservation) -> None:
        body = self._nvpair(self._lock_id, FREE) + self._nvpair(
            reservation_id(self.node, reservation.resource), reservation.encode()
        )
        booked = self._cli.modify_where(
            self._while_held(), f'<cluster_property_set id="{self._set}">{body}</cluster_property_set>'
        )
        self._held = None
        if not booked:
            raise ReservationError(
                f"lost the reservation lock of {self.node} before booking (the check took longer than "
                f"{LOCK_LEASE_S:.0f} s); nothing was booked: retry"
            )

    def unlock(self, token: str) -> None:
        if self._held is not None:
            self._cli.modify_where(self._while_held(), self._nvpair(self._lock_id, FREE))
            self._held = None

    def release(self, reservation: Reservation) -> None:
        nvpair = reservation_id(self.node, reservation.resource)
        self._cli.delete_where(
            f"{self._set_xpath()}/nvpair[@id={xpath_literal(nvpair)} and "
            f"contains(@value, {xpath_literal('holder=' + reservation.holder + ' ')})]"
        )

    def forget_expired(self, state: LedgerState, now: float) -> None:
        """Delete reservations whose holder never released them (call while holding the lock)."""
        for reservation in state.reservations:
            if reservation.expired(now):
                nvpair = reservation_id(self.node, reservation.resource)
                self._cli.delete_where(
                    f"{self._set_xpath()}/nvpair[@id={xpath_literal(nvpair)} and "
                    f"@value={xpath_literal(reservation.encode())}]"
                )


def _lock_holder(query_output: str | None) -> str:
    if not query_output:
        return "holder unknown"
    match = re.search(r'value="\d+:([^"]*)"', query_output)
    return f"held by {match.group(1)}" if match else "holder unknown"


class LocalLedger:
    """The same protocol on a file under ``HA_RSCTMP`` for a host outside any cluster."""

    shared = False

    def __init__(self, directory: str, node: str, clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self._path = os.path.join(directory, f"{ledger_id(node)}.json")
        self._clock = clock
        self._descriptor: int | None = None

    def lock(self, token: str, deadline: Deadline) -> LedgerState:
        os.makedirs(os.path.dirname(self._path), exist_ok=True)
        descriptor = os.open(self._path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline.expired():
                    os.close(descriptor)
                    raise ReservationError(f"the local reservation lock of {self.node} stayed busy: retry") from None
                time.sleep(0.02)
        self._descriptor = descriptor
        return LedgerState(self.node, tuple(self._load().values()), {})

    def _load(self) -> dict[str, Reservation]:
        try:
            with open(self._path, encoding="utf-8") as handle:
                raw = json.load(handle)
        except (OSError, ValueError):
            return {}
        found = {}
        for resource, value in raw.items() if isinstance(raw, dict) else []:
            reservation = Reservation.decode(self.node, str(value))
            if reservation is not None:
                found[resource] = reservation
        return found

    def _store(self, reservations: Mapping[str, Reservation]) -> None:
        temporary = f"{self._path}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump({key: value.encode() for key, value in reservations.items()}, handle)
        os.replace(temporary, self._path)

    def book(self, token: str, reservation: Reservation) -> None:
        reservations = self._load()
        reservations[reservation.resource] = reservation
        self._store(reservations)
        self.unlock(token)

    def unlock(self, token: str) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing releases the flock
            self._descriptor = None

    def forget_expired(self, state: LedgerState, now: float) -> None:
        reservations = {key: value for key, value in self._load().items() if not value.expired(now)}
        self._store(reservations)

    def release(self, reservation: Reservation) -> None:
        self.lock(reservation.holder, Deadline.after(10))
        try:
            reservations = self._load()
            current = reservations.get(reservation.resource)
            if current is not None and current.holder == reservation.holder:
                del reservations[reservation.resource]
                self._store(reservations)
        finally:
            self.unlock(reservation.holder)


class ClusterOrLocalLedger:
    """The CIB ledger of ``node``; the local one when there is no cluster to talk to.

    Which one applies is found out by the first lock attempt, which costs nothing extra
    in a cluster.
    """

    def __init__(self, cli: ClusterCli, rsctmp: str, node: str) -> None:
        self.node = node
        self._current: CibLedger | LocalLedger = CibLedger(cli, node)
        self._rsctmp = rsctmp

    @property
    def shared(self) -> bool:
        return self._current.shared

    def lock(self, token: str, deadline: Deadline) -> LedgerState:
        try:
            return self._current.lock(token, deadline)
        except NotInCluster:
            self._current = LocalLedger(self._rsctmp, self.node)
            return self._current.lock(token, deadline)

    def book(self, token: str, reservation: Reservation) -> None:
        self._current.book(token, reservation)

    def unlock(self, token: str) -> None:
        self._current.unlock(token)

    def release(self, reservation: Reservation) -> None:
        self._current.release(reservation)

    def forget_expired(self, state: LedgerState, now: float) -> None:
        self._current.forget_expired(state, now)


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

    def release(self) -> None:
        self.ledger.release(self.reservation)


def occupant_of(domain: ActiveDomain) -> Occupant:
    """What an active domain occupies: the demand recorded at start, else computed."""
    if domain.recorded_demand_mib is not None and domain.recorded_vcpus is not None:
        return Occupant(domain.resource, domain.name, Demand(domain.recorded_demand_mib, domain.recorded_vcpus))
    guest_type = os_guest_type(domain.os_type)
    if domain.guest_type in {member.value for member in GuestType}:
        guest_type = GuestType(domain.guest_type)
    return Occupant(
        domain.resource,
        domain.name,
        Demand(memory_demand_mib(domain.max_memory_mib, domain.vcpus, guest_type), domain.vcpus),
    )


def host_loads(
    node: str,
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
    """
    domains = list(domains)
    reservations = [reservation.occupant() for reservation in state.live(now)]
    cpu_limit = state.utilization.get("cpu", cpu_capacity(physical_cpus, request.cpu_overcommit))
    loads = []
    cluster_memory = state.utilization.get("hv_memory")
    if cluster_memory is not None:
        counted = tally_occupants(domains, reservations, request.resource, request.domain, managed_only=True)
        loads.append(
            HostLoad(
                node,
                "the node's hv_memory in the CIB (against the cluster's guests)",
                cluster_memory,
                counted.memory_used_mib,
                counted.memory_reserved_mib,
                cpu_limit,
                counted.cpu_used,
                counted.cpu_reserved,
            )
        )
    counted = tally_occupants(domains, reservations, request.resource, request.domain, managed_only=False)
    loads.append(
        HostLoad(
            node,
            f"the hypervisor: {total_memory_mib} MiB total minus {memory_reserve_mib} MiB host reserve "
            "(against every domain)",
            total_memory_mib - memory_reserve_mib,
            counted.memory_used_mib,
            counted.memory_reserved_mib,
            None if cluster_memory is not None else cpu_limit,
            counted.cpu_used,
            counted.cpu_reserved,
        )
    )
    return loads


def admit(
    request: AdmissionRequest,
    ledger: Ledger,
    target: Hypervisor,
    deadline: Deadline,
    log: OcfLog,
    token: str,
    clock: Callable[[], float] = time.time,
) -> Booking:
    """Check the target's room and book it; raise AdmissionRefused when it has none."""
    state = ledger.lock(token, deadline)
    try:
        domains = [occupant_of(domain) for domain in target.active_domains()]
        facts = target.node_facts()
        reserve = state.memory_reserve_mib if state.memory_reserve_mib is not None else request.memory_reserve_mib
        if reserve is None:
            reserve = target.domain0_memory_mib() or DEFAULT_MEMORY_RESERVE_MIB
        now = clock()
        loads = host_loads(ledger.node, request, state, now, domains, facts.memory_mib, reserve, facts.cpus)
        decision = decide(request.action, request.domain, request.demand, loads)
        if any(reservation.expired(now) for reservation in state.reservations):
            ledger.forget_expired(state, now)
    except BaseException:
        ledger.unlock(token)
        raise
    if not decision.admit:
        ledger.unlock(token)
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
    ledger.book(token, reservation)
    scope = "" if ledger.shared else " (no cluster: this host's agents only)"
    until = time.strftime("%H:%M:%S", time.localtime(reservation.expires))
    log.info(f"reservation: {decision.reason}; {decision.detail}; booked until {until}{scope}")
    return Booking(reservation, ledger, decision)
