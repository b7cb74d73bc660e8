"""The reservation ledger's format: the one definition, read by the agent and the planner.

Each target node has a ledger in the CIB: a ``cluster_property_set`` with id
``xenha-ledger-<node>`` under ``crm_config``, holding a version number (nvpair
``xenha-ledger-<node>-version``) and one nvpair per reservation, id
``xenha-ledger-<node>-rsv-<resource>``, value
``memory_mib=4160 vcpus=2 expires=<epoch> holder=<token> resource=<resource>``.

Pure: callers hand in the nvpairs of a ledger set, however they parsed the XML (expat in
the agent, which counts milliseconds; lxml in the planner, which has the whole CIB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from xenha.admission.resources import Resources

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
LEDGER_PREFIX = "xenha-ledger-"


def ledger_id(node: str) -> str:
    return f"{LEDGER_PREFIX}{_ID_UNSAFE.sub('_', node)}"


def version_id(node: str) -> str:
    return f"{ledger_id(node)}-version"


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
        """The reservation an nvpair's value encodes; None when the value is malformed.

        >>> Reservation.decode("n2", "memory_mib=70 vcpus=1 expires=9 holder=n1:7:ab resource=web1")
        Reservation(node='n2', resource='web1', memory_mib=70, vcpus=1, expires=9, holder='n1:7:ab')
        >>> Reservation.decode("n2", "memory_mib=lots") is None
        True
        """
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

    @property
    def demand(self) -> Resources:
        return Resources(self.memory_mib, self.vcpus)

    def expired(self, now: float) -> bool:
        return self.expires < now


class LedgerState(NamedTuple):
    """A ledger as read, with the node's figures from the same query."""

    node: str
    version: int | None  # None: the ledger does not exist yet
    reservations: tuple[Reservation, ...]
    utilization: Mapping[str, int]
    memory_reserve_mib: int | None = None  # as xen-host publishes it

    def live(self, now: float) -> list[Reservation]:
        return [reservation for reservation in self.reservations if not reservation.expired(now)]


def read_ledger_set(node: str, nvpairs: Iterable[tuple[str, str]]) -> tuple[int, tuple[Reservation, ...]]:
    """The version and the reservations among the (id, value) nvpairs of ``node``'s ledger set.

    A missing version is 0 (the set exists); malformed reservations are skipped.

    >>> read_ledger_set("n2", [("xenha-ledger-n2-version", "41"),
    ...     ("xenha-ledger-n2-rsv-web1", "memory_mib=70 vcpus=1 expires=9 holder=h resource=web1"),
    ...     ("xenha-ledger-n2-rsv-bad", "memory_mib=70")])[0]
    41
    """
    version = 0
    reservations: list[Reservation] = []
    for nvpair_id, value in nvpairs:
        if nvpair_id.endswith("-version"):
            version = int(value) if value.strip().isdigit() else 0
        elif "-rsv-" in nvpair_id:
            reservation = Reservation.decode(node, value)
            if reservation is not None:
                reservations.append(reservation)
    return version, tuple(reservations)


def node_of_ledger(set_id: str, nodes: Iterable[str]) -> str | None:
    """The node whose ledger the property set ``set_id`` is; None when it is no ledger.

    >>> node_of_ledger("xenha-ledger-node_1", ["node 1"]), node_of_ledger("cib-bootstrap-options", [])
    ('node 1', None)
    """
    if not set_id.startswith(LEDGER_PREFIX):
        return None
    by_set = {ledger_id(node): node for node in nodes}
    return by_set.get(set_id, set_id[len(LEDGER_PREFIX) :])
