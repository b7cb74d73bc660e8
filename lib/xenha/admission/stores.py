"""Where a ledger lives: in the CIB, or in a file for a host outside any cluster.

The CIB store books with one compare-and-swap: ``cibadmin --modify`` of the ledger *whose
version is still the one read*, adding the reservation and the next version. If another
booking came in between, nothing matches, nothing is written, and the admission reads
again (docs/decisions/reservation-protocol.md). Outside a cluster (no CIB manager and no
``CIB_file``) the same steps run on a ledger file under ``HA_RSCTMP`` protected by
``flock``: it serializes the agents of this host only.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from xenha.admission.ledger import LedgerState, Reservation, ledger_id, read_ledger_set, reservation_id, version_id
from xenha.deadline import Deadline
from xenha.pacemaker.cibxml import node_figures_xpath, parse_node_figures, xml_attribute, xpath_literal
from xenha.pacemaker.cluster import ClusterCli, NotInCluster
from xenha.statefile import StateFile
from xenha.xmlscan import scan


class ReservationError(Exception):
    """The reservation could not be made or checked (not a refusal: the check did not run)."""


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
    exists = any(element.tag == "cluster_property_set" for element in found)
    nvpairs = [
        (element.attributes.get("id", ""), element.attributes.get("value", ""))
        for element in found
        if element.tag == "nvpair" and element.path[-2:-1] == ("cluster_property_set",)
    ]
    version, reservations = read_ledger_set(node, nvpairs)
    figures = parse_node_figures(found)
    return LedgerState(node, version if exists else None, reservations, figures.utilization, figures.memory_reserve_mib)


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
        self._version_id = version_id(node)

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
