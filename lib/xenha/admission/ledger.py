"""The reservation ledger's format: the one definition, read by the agent and the planner.

Each target node has a ledger in the CIB: a ``cluster_property_set`` with id
``xenha-ledger-<node>`` under ``crm_config`` that holds reservations and nothing else, one
nvpair each, id ``xenha-ledger-<node>-r-<12 hex digits of sha256(resource)>``, value
``xenha-reservation/2 resource=web:1 memory_mib=4160 vcpus=2 hold_s=240 holder=<token>``
(docs/decisions/reservation-protocol.md).

* A reservation is recognised by structure (its set, its value's marker), never by how its
  id ends: a resource called ``app-version`` is a reservation like any other.
* Ids are hashes of the exact resource id, so ``web:1`` and ``web_1`` never share one; the
  value carries the resource id itself, percent-encoded.
* The value holds a duration (``hold_s``), never a timestamp: each node measures a
  reservation's age on its own clock from when it first saw it (:func:`expired_keys`), so
  no node trusts another's wall clock.

Pure: callers hand in the nvpairs of a ledger set, however they parsed the XML (expat in
the agent, which counts milliseconds; lxml in the planner, which has the whole CIB).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple
from urllib.parse import quote, unquote

from xenha.admission.resources import Resources

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
LEDGER_PREFIX = "xenha-ledger-"
MARKER = "xenha-reservation/2"


def ledger_id(node: str) -> str:
    return f"{LEDGER_PREFIX}{_ID_UNSAFE.sub('_', node)}"


def reservation_id(node: str, resource: str) -> str:
    """The nvpair id of ``resource``'s reservation on ``node``: distinct for distinct resource ids.

    >>> reservation_id("n2", "web:1") != reservation_id("n2", "web_1")
    True
    >>> reservation_id("n2", "web1")
    'xenha-ledger-n2-r-659a7fb2af47'
    """
    return f"{ledger_id(node)}-r-{hashlib.sha256(resource.encode()).hexdigest()[:12]}"


class Reservation(NamedTuple):
    node: str
    resource: str
    memory_mib: int
    vcpus: int
    hold_s: int  # how long it stays valid after a node first sees it, on that node's clock
    holder: str
    # (nvpair id, value) exactly as read from a ledger; None for one this process booked
    read_as: tuple[str, str] | None = None

    @property
    def nvpair_id(self) -> str:
        return reservation_id(self.node, self.resource)

    @property
    def key(self) -> str:
        """What a node remembers it by: the same resource booked again is a new reservation."""
        return f"{self.nvpair_id} {self.holder}"

    def encode(self) -> str:
        return (
            f"{MARKER} resource={quote(self.resource, safe=':')} memory_mib={self.memory_mib} vcpus={self.vcpus} "
            f"hold_s={self.hold_s} holder={self.holder}"
        )

    @classmethod
    def decode(cls, node: str, value: str) -> Reservation | None:
        """The reservation an nvpair's value encodes; None when it is no reservation of this format.

        >>> Reservation.decode("n2", "xenha-reservation/2 resource=web%3A1 memory_mib=70 vcpus=1 hold_s=90 holder=h")
        Reservation(node='n2', resource='web:1', memory_mib=70, vcpus=1, hold_s=90, holder='h', read_as=None)
        >>> Reservation.decode("n2", "memory_mib=70 vcpus=1 expires=9 holder=h resource=web1") is None  # format 1
        True
        """
        parts = value.split()
        if not parts or parts[0] != MARKER:
            return None
        fields = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
        try:
            return cls(
                node=node,
                resource=unquote(fields["resource"]),
                memory_mib=int(fields["memory_mib"]),
                vcpus=int(fields["vcpus"]),
                hold_s=int(fields["hold_s"]),
                holder=fields["holder"],
            )
        except (KeyError, ValueError):
            return None

    @property
    def demand(self) -> Resources:
        return Resources(self.memory_mib, self.vcpus)


class LedgerState(NamedTuple):
    """A ledger as read, with the node's figures from the same query."""

    node: str
    epoch: tuple[int, int] | None  # the CIB's (admin_epoch, epoch) read before the ledger; None outside a CIB
    reservations: tuple[Reservation, ...]
    utilization: Mapping[str, int]
    memory_reserve_mib: int | None = None  # as xen-host publishes it
    expired: frozenset[str] = frozenset()  # keys of reservations this node has seen for longer than their hold
    unreadable: tuple[str, ...] = ()  # ids of nvpairs in the ledger set that are no reservation

    def live(self) -> list[Reservation]:
        return [reservation for reservation in self.reservations if reservation.key not in self.expired]

    def lapsed(self) -> tuple[Reservation, ...]:
        return tuple(reservation for reservation in self.reservations if reservation.key in self.expired)


def read_ledger_set(node: str, nvpairs: Iterable[tuple[str, str]]) -> tuple[tuple[Reservation, ...], tuple[str, ...]]:
    """The reservations among the (id, value) nvpairs of ``node``'s ledger set, and the ids of
    the nvpairs there that are none (never taken for anything else).

    >>> reservations, unreadable = read_ledger_set("n2", [("xenha-ledger-n2-version", "41"),
    ...     ("x", "xenha-reservation/2 resource=app-version memory_mib=70 vcpus=1 hold_s=9 holder=h")])
    >>> [(reservation.resource, reservation.read_as[0]) for reservation in reservations], unreadable
    ([('app-version', 'x')], ('xenha-ledger-n2-version',))
    """
    reservations: list[Reservation] = []
    unreadable: list[str] = []
    for nvpair_id, value in nvpairs:
        reservation = Reservation.decode(node, value)
        if reservation is None:
            unreadable.append(nvpair_id)
        else:
            reservations.append(reservation._replace(read_as=(nvpair_id, value)))
    return tuple(reservations), tuple(unreadable)


def sightings(reservations: Iterable[Reservation], seen: Mapping[str, float], now: float) -> dict[str, float]:
    """When this node first saw each reservation: ``seen``'s record, ``now`` for new ones;
    reservations no longer in the ledger are forgotten.

    >>> sightings([Reservation("n2", "a", 1, 1, 60, "h")], {"gone x": 5.0}, 100.0)
    {'xenha-ledger-n2-r-ca978112ca1b h': 100.0}
    """
    return {reservation.key: seen.get(reservation.key, now) for reservation in reservations}


def expired_keys(reservations: Iterable[Reservation], first_seen: Mapping[str, float], now: float) -> frozenset[str]:
    """Reservations seen by this node for longer than their hold, on this node's clock only.

    A node that sees a reservation late waits longer, never shorter; a record from the
    future (a clock that jumped back) counts as just seen.

    >>> r = Reservation("n2", "a", 1, 1, 60, "h")
    >>> expired_keys([r], {r.key: 100.0}, 150.0), expired_keys([r], {r.key: 100.0}, 161.0) == {r.key}
    (frozenset(), True)
    """
    return frozenset(
        reservation.key
        for reservation in reservations
        if now - min(first_seen.get(reservation.key, now), now) > reservation.hold_s
    )


def node_of_ledger(set_id: str, nodes: Iterable[str]) -> str | None:
    """The node whose ledger the property set ``set_id`` is; None when it is no ledger.

    >>> node_of_ledger("xenha-ledger-node_1", ["node 1"]), node_of_ledger("cib-bootstrap-options", [])
    ('node 1', None)
    """
    if not set_id.startswith(LEDGER_PREFIX):
        return None
    by_set = {ledger_id(node): node for node in nodes}
    return by_set.get(set_id, set_id[len(LEDGER_PREFIX) :])
