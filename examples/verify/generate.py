#!/usr/bin/python3
"""Write the example CIB of ``xenha verify``'s documentation: a running cluster with the
mistakes its users make most.

    examples/verify/generate.py        # rewrites cluster.xml beside it

Three hosts of 64 GiB / 32 vCPUs, eight guests, N+1. Wrong in it: the fence device's host
list forgets host3; xen-host runs as a clone, but without allow-unhealthy-nodes and with no
node-health-strategy to use its health; db1 (16 GiB) keeps a migrate_to timeout of 120 s;
web2 was created without allow-migrate; app1 still carries NodeUtilization's host_memory.
"""

from __future__ import annotations

import os
import sys

from lxml import etree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, os.pardir, "lib"))

from xenha.planner.synthetic import GuestSpec, HostSpec, render_cib  # noqa: E402

MIGRATE = (("allow-migrate", "true"),)
GUESTS = [
    GuestSpec("db1", 16384, 8, "host1"),
    GuestSpec("db2", 16384, 8, "host2"),
    GuestSpec("web1", 4096, 2, "host1"),
    GuestSpec("web2", 4096, 2, "host2"),
    GuestSpec("web3", 4096, 2, "host3"),
    GuestSpec("app1", 8192, 4, "host3"),
    GuestSpec("app2", 8192, 4, "host3"),
    GuestSpec("mail", 2048, 1, "host1"),
]
TIMEOUTS = {"db1": "120s", "db2": "330s"}  # db1's is too short for 16 GiB at 100 MiB/s


def nvpair(parent: etree._Element, owner: str, name: str, value: str) -> None:
    etree.SubElement(parent, "nvpair", {"id": f"{owner}-{name}", "name": name, "value": value})


def main() -> None:
    hosts = [HostSpec(f"host{i}", 65536, 32) for i in (1, 2, 3)]
    root = etree.fromstring(render_cib(hosts, GUESTS, properties=(("migration-limit", "2"),), stickiness=100).encode())
    fence = root.find(".//primitive[@id='fence']")
    attributes = etree.SubElement(fence, "instance_attributes", {"id": "fence-instance_attributes"})
    nvpair(attributes, "fence-instance_attributes", "pcmk_host_list", "host1 host2")
    for guest in GUESTS:
        primitive = root.find(f".//primitive[@id='{guest.name}']")
        operations = primitive.find("operations")
        timeout = TIMEOUTS.get(guest.name, "180s")
        etree.SubElement(
            operations,
            "op",
            {"id": f"{guest.name}-migrate_to", "name": "migrate_to", "interval": "0s", "timeout": timeout},
        )
        if guest.name == "web2":
            meta = primitive.find("meta_attributes")
            primitive.remove(meta)
        if guest.name == "app1":
            nvpair(primitive.find("utilization"), f"{guest.name}-utilization", "host_memory", "8192")
    with open(os.path.join(HERE, "cluster.xml"), "w") as handle:
        handle.write(etree.tostring(root, encoding="unicode") + "\n")


if __name__ == "__main__":
    main()
