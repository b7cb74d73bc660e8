"""Where a ledger lives: in the CIB, or in a file for a host outside any cluster.

Which one is decided once, from the environment (:func:`xenha.pacemaker.cluster.cluster_mode`),
never from a tool's failure: inside a cluster every error reading or writing the ledger is a
:class:`ReservationError` with its reason, and the admission fails; it never falls back to a
ledger that ignores the other nodes (docs/decisions/reservation-protocol.md).

The CIB store books with one compare-and-swap on the CIB's configuration version: it reads
``(admin_epoch, epoch)``, then the ledger, and books with ``cibadmin --modify`` of
``/cib[@admin_epoch=A and @epoch=E]/configuration/crm_config``. Any configuration change in
between (another booking, an operator's edit, a stale replace of the configuration, which
raises the epoch too) makes the condition match nothing: nothing is written, and the
admission reads again. Against a CIB file the read-decide-book runs under the file's lock
(docs/decisions/cib-file-serialisation.md). Outside a cluster the same steps run on a
ledger file under ``HA_RSCTMP`` protected by ``flock``: it serialises this host's agents only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Protocol

from xenha.admission.ledger import LedgerState, Reservation, ledger_id, read_ledger_set
from xenha.admission.sightings import Sightings
from xenha.deadline import Deadline
from xenha.filelock import LockBusy, lock_file
from xenha.pacemaker.cibxml import node_figures_xpath, parse_node_figures, xml_attribute, xpath_literal
from xenha.pacemaker.cluster import ClusterCli, PacemakerError
from xenha.statefile import StateFile
from xenha.xmlscan import scan

# Time a booking keeps back for withdrawing itself when cibadmin does not answer in time.
WITHDRAW_S = 5.0


class ReservationError(Exception):
    """The reservation could not be made or checked (not a refusal: the check did not run)."""


def parse_ledger_query(text: str | None, node: str, epoch: tuple[int, int] | None = None) -> LedgerState:
    """The ledger and the node's figures from ``cibadmin --query --xpath`` output (pure).

    >>> state = parse_ledger_query(
    ...     '<xpath-query><cluster_property_set id="xenha-ledger-node2">'
    ...     '<nvpair id="xenha-ledger-node2-r-1" name="xenha-ledger-node2-r-1" '
    ...     'value="xenha-reservation/2 resource=web1 memory_mib=4134 vcpus=2 hold_s=240 holder=node1:4711:9f2c"/>'
    ...     '<nvpair id="app-version" name="app-version" value="41"/>'
    ...     '</cluster_property_set><utilization id="nodes-2-utilization">'
    ...     '<nvpair id="nodes-2-hv_memory" name="hv_memory" value="16384"/></utilization>'
    ...     '<nvpair id="nodes-2-xenha-memory-reserve" name="xenha-memory-reserve" value="4096"/>'
    ...     '</xpath-query>',
    ...     "node2", (0, 12),
    ... )
    >>> state.epoch, state.utilization, state.memory_reserve_mib, state.unreadable
    ((0, 12), {'hv_memory': 16384}, 4096, ('app-version',))
    >>> state.reservations[0].encode()
    'xenha-reservation/2 resource=web1 memory_mib=4134 vcpus=2 hold_s=240 holder=node1:4711:9f2c'
    >>> parse_ledger_query(None, "node2").reservations  # no ledger yet
    ()
    """
    found = scan(text or "")
    nvpairs = [
        (element.attributes.get("id", ""), element.attributes.get("value", ""))
        for element in found
        if element.tag == "nvpair" and element.path[-2:-1] == ("cluster_property_set",)
    ]
    reservations, unreadable = read_ledger_set(node, nvpairs)
    figures = parse_node_figures(found)
    return LedgerState(node, epoch, reservations, figures.utilization, figures.memory_reserve_mib, frozenset(),
                       unreadable)  # fmt: skip


class Ledger(Protocol):
    node: str

    @property
    def shared(self) -> bool: ...

    def read(self, deadline: Deadline) -> LedgerState: ...
    def book(self, state: LedgerState, reservation: Reservation, deadline: Deadline) -> bool: ...
    def abandon(self) -> None: ...
    def release(self, reservation: Reservation | None, expired: Sequence[Reservation], deadline: Deadline) -> None: ...


class CibLedger:
    """The ledger of ``node`` in the CIB (live cluster, or a CIB file)."""

    shared = True

    def __init__(self, cli: ClusterCli, rsctmp: str, node: str) -> None:
        self.node = node
        self._cli = cli
        self._set = ledger_id(node)
        self._sightings = Sightings(rsctmp, node)
        self._held = False

    def _set_xpath(self) -> str:
        return f"/cib/configuration/crm_config/cluster_property_set[@id={xpath_literal(self._set)}]"

    def read(self, deadline: Deadline) -> LedgerState:
        """The CIB's configuration version, then the ledger and the node's figures as of that version."""
        try:
            self._cli.hold(deadline)  # a CIB file: ours until the booking (or abandon)
            self._held = True
            version = self._cli.configuration_version(deadline)
            return self.observe(deadline)._replace(epoch=version)
        except PacemakerError as error:
            self.abandon()
            raise ReservationError(f"{error}; nothing was booked: check that Pacemaker runs on this node") from None

    def observe(self, deadline: Deadline) -> LedgerState:
        """The ledger and the node's figures in one query, without the version (xen-host's monitor
        reads them so, and deletes what lapsed). Raises PacemakerError."""
        text = self._cli.query(f"{self._set_xpath()} | {node_figures_xpath(self.node)}", deadline)
        state = parse_ledger_query(text, self.node)
        return state._replace(expired=self._sightings.expired(state.reservations, deadline))

    def book(self, state: LedgerState, reservation: Reservation, deadline: Deadline) -> bool:
        """Add ``reservation`` if the configuration did not change since ``state`` was read.

        False when it did (nothing written). When cibadmin fails or is killed at its deadline,
        the booking may have landed: it is withdrawn before the ReservationError is raised.
        """
        try:
            if state.epoch is None:
                raise ReservationError("the ledger was read without the CIB's configuration version")
            admin_epoch, epoch = state.epoch
            unchanged = f"/cib[@admin_epoch='{admin_epoch}' and @epoch='{epoch}']/configuration/crm_config"
            booking = deadline.minus(WITHDRAW_S)
            if booking.expired():
                raise ReservationError("no time was left to book; nothing was booked: retry")
            nvpair = _nvpair(reservation.nvpair_id, reservation.encode())
            ledger = f'<crm_config><cluster_property_set id="{self._set}">{nvpair}</cluster_property_set></crm_config>'
            try:
                return self._cli.modify_where(unchanged, ledger, booking)
            except PacemakerError as error:
                failure = str(error)
        finally:
            self.abandon()
        self._withdraw(reservation, failure, deadline)
        return False  # not reached: _withdraw raises

    def _withdraw(self, reservation: Reservation, failure: str, deadline: Deadline) -> None:
        try:
            self._delete(reservation, deadline)
        except PacemakerError as error:
            raise ReservationError(
                f"{failure} while booking, and withdrawing the booking failed too ({error}); if it landed, "
                f'delete it: cibadmin --delete --xpath "{self._exactly(reservation)}" '
                f"(else it lapses {reservation.hold_s} s after each node saw it)"
            ) from None
        raise ReservationError(f"{failure} while booking; the booking was withdrawn: retry")

    def abandon(self) -> None:
        """Give the CIB file back, if this ledger holds it; nothing else to undo (no lock in a cluster)."""
        if self._held:
            self._held = False
            self._cli.let_go()

    def release(self, reservation: Reservation | None, expired: Sequence[Reservation], deadline: Deadline) -> None:
        """Delete ``reservation`` and the ``expired`` ones, each only as it was booked or read:
        a newer booking of the same resource is never removed."""
        try:
            for old in (*([reservation] if reservation else []), *expired):
                self._delete(old, deadline)
        except PacemakerError as error:
            raise ReservationError(str(error)) from None

    def _exactly(self, reservation: Reservation) -> str:
        """The nvpair of ``reservation`` as it was read (or booked): id and value must both match."""
        nvpair, value = reservation.read_as or (reservation.nvpair_id, reservation.encode())
        return f"{self._set_xpath()}/nvpair[@id={xpath_literal(nvpair)} and @value={xpath_literal(value)}]"

    def _delete(self, reservation: Reservation, deadline: Deadline) -> None:
        self._cli.delete_where(self._exactly(reservation), deadline)


def _nvpair(nvpair_id: str, value: str) -> str:
    return f'<nvpair id="{nvpair_id}" name="{nvpair_id}" value="{xml_attribute(value)}"/>'


class LocalLedger:
    """The same protocol on a file under ``HA_RSCTMP`` for a host outside any cluster.

    Here reading takes an ``flock`` that booking (or abandoning) gives back: this host's
    agents are the only writers, and they take turns.
    """

    shared = False

    def __init__(self, directory: str, node: str) -> None:
        self.node = node
        self._file = StateFile(directory, "ledger", node)
        self._sightings = Sightings(directory, node)
        self._descriptor: int | None = None

    def read(self, deadline: Deadline) -> LedgerState:
        self._lock(deadline)
        reservations = tuple(self._load().values())
        expired = self._sightings.expired(reservations, deadline)
        return LedgerState(self.node, None, reservations, {}, expired=expired)

    def _lock(self, deadline: Deadline) -> None:
        try:
            os.makedirs(self._file.directory, exist_ok=True)
            self._descriptor = lock_file(self._file.path + ".lock", deadline)
        except LockBusy:
            raise ReservationError(f"the local reservation ledger of {self.node} stayed busy: retry") from None
        except OSError as error:
            raise ReservationError(f"cannot open the local reservation ledger {self._file.path}: {error}") from None

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

    def book(self, state: LedgerState, reservation: Reservation, deadline: Deadline) -> bool:
        try:
            reservations = self._load()
            reservations[reservation.resource] = reservation
            self._store(reservations)
        finally:
            self.abandon()
        return True

    def abandon(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing releases the flock
            self._descriptor = None

    def release(self, reservation: Reservation | None, expired: Sequence[Reservation], deadline: Deadline) -> None:
        self._lock(deadline)  # within the action's time, not a fresh wait of its own
        try:
            reservations = self._load()
            gone = (*([reservation] if reservation else []), *expired)  # as booked and as read: never a newer one
            kept = {resource: current for resource, current in reservations.items() if current not in gone}
            if kept != reservations:
                self._store(kept)
        finally:
            self.abandon()
