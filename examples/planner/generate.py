#!/usr/bin/python3
"""Write the example CIBs of the planner's demo and documentation (a running cluster each).

    examples/planner/generate.py        # rewrites pool.xml and pool-tight.xml beside it

pool.xml: five hosts of 64 GiB / 32 vCPUs, 33 guests (186 GiB), one live migration booked
in the xenha ledger: N+1, not N+2. pool-tight.xml: the same guests on hosts of 48 GiB:
not N+1.
"""

from __future__ import annotations

import os
import sys
from xml.sax.saxutils import quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, os.pardir, "lib"))

from xenha.admission.ledger import Reservation, ledger_id  # noqa: E402
from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib  # noqa: E402

SIZES = [
    *[(f"db{i}", 16384, 8) for i in (1, 2, 3)],
    *[(f"ci{i}", 12288, 6) for i in (1, 2)],
    ("files", 12288, 4),
    *[(f"cache{i}", 8192, 4) for i in (1, 2, 3)],
    *[(f"build{i}", 8192, 8) for i in (1, 2)],
    *[(f"web{i}", 4096, 2) for i in range(1, 9)],
    ("monitoring", 4096, 2),
    *[(f"app{i}", 2048, 1) for i in range(1, 13)],
    ("mail", 2048, 1),
]


def placed(host_memory_mib: int) -> list[GuestSpec]:
    """Largest first, each on the host with the most free memory (as balanced keeps them)."""
    free = {f"host{i}": host_memory_mib for i in range(1, 6)}
    guests = []
    for name, memory, vcpus in SIZES:
        host = max(free, key=lambda h: (free[h], h))
        free[host] -= memory
        guests.append(GuestSpec(name, memory, vcpus, host))
    return guests


# A live migration of web3 to host3, booked by the xen-guest agent (a migration with a
# 180 s timeout holds its room for up to 240 s after a node first sees it).
BOOKED = Reservation(node="host3", resource="web3", memory_mib=4160, vcpus=2, hold_s=240, holder="node1:4711:demo")


def ledger(reservation: Reservation) -> str:
    """The target's ledger as the agent's first booking leaves it (xenha.admission.stores.CibLedger.book)."""
    ledger_set = ledger_id(reservation.node)
    nvpairs = [(reservation.nvpair_id, reservation.encode())]
    body = "".join(
        f"<nvpair id={quoteattr(key)} name={quoteattr(key)} value={quoteattr(value)}/>" for key, value in nvpairs
    )
    return f"<cluster_property_set id={quoteattr(ledger_set)}>{body}</cluster_property_set>"


def pool(host_memory_mib: int) -> str:
    hosts = [HostSpec(f"host{i}", host_memory_mib, 32) for i in range(1, 6)]
    return render_cib(hosts, placed(host_memory_mib)).replace("</crm_config>", ledger(BOOKED) + "</crm_config>", 1)


def main() -> None:
    for name, text in (("pool.xml", pool(65536)), ("pool-tight.xml", pool(49152))):
        with open(os.path.join(HERE, name), "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
