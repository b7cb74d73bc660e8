"""Pacemaker's own scheduler, fed with the numbers xen-host and xen-guest published.

xen-host publishes each host's capacity from its real libvirtd, xen-guest publishes each
guest's demand; then ``crm_simulate`` places the guests (and re-places them after a host
fails). The scheduler must never put a guest on a host without room, must pick a host with
room, and must leave a guest stopped when no host has room.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.etree import ElementTree

import libvirt
import pytest

from tests.support.cib import write_cib
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import HostSet
from tests.support.ocf import AgentCase

pytestmark = pytest.mark.qemu
GUEST_DEMAND_MIB = 70  # a 64 MiB HVM guest with 1 vCPU, as capacity.memory_demand_mib computes it


def publish_host(hosts: HostSet, name: str, cib: Path, rsctmp: Path, capacity_mib: int) -> None:
    """Run xen-host's start for ``name`` with a reserve that leaves ``capacity_mib`` for guests."""
    host = hosts.hosts[name]
    connection = libvirt.open(host.qemu_uri)
    try:
        total = int(connection.getInfo()[1])
    finally:
        connection.close()
    agent = AgentCase(
        "xen-host", "xen-host", {"hypervisor": host.qemu_uri, "host_memory_reserve": str(total - capacity_mib)},
        str(rsctmp / name), extra_env={"CIB_file": str(cib), "OCF_RESKEY_CRM_meta_on_node": name},
    )  # fmt: skip
    started = agent.run("start")
    assert started.code == 0, started


def publish_guests(hosts: HostSet, cib: Path, tmp_path: Path, count: int) -> list[str]:
    """Each guest's demand, as xen-guest publishes it (reload-agent publishes without a start)."""
    names = []
    for name in GUESTS[:count]:
        config = tmp_path / f"{name}.xml"
        config.write_text(domain_xml(name, driver="qemu", memory_mib=64))
        guest = AgentCase(
            "xen-guest", name, {"config": str(config), "hypervisor": hosts.hosts["hostA"].qemu_uri},
            str(tmp_path / "guests"), extra_env={"CIB_file": str(cib)},
        )  # fmt: skip
        reloaded = guest.run("reload-agent")
        assert reloaded.code == 0, reloaded
        names.append(name)
    return names


def simulate(cib: Path, out: Path, *extra: str) -> dict[str, str | None]:
    """Where each guest runs after the scheduler's transition (None: stopped)."""
    subprocess.run(["crm_simulate", "--xml-file", str(cib), "--simulate", "--save-output", str(out), *extra],
                   check=True, capture_output=True)  # fmt: skip
    shown = subprocess.run(["crm_mon", "--one-shot", "--inactive", "--output-as=xml"],
                           env={"CIB_file": str(out), "PATH": "/usr/sbin:/usr/bin"},
                           check=True, capture_output=True, text=True).stdout  # fmt: skip
    placement: dict[str, str | None] = {}
    for resource in ElementTree.fromstring(shown).iter("resource"):
        running_on = resource.find("node")
        placement[resource.get("id", "")] = running_on.get("name") if running_on is not None else None
    return placement


def node_capacity(cib: Path, node: str) -> int:
    root = ElementTree.parse(cib).getroot()
    for element in root.iter("node"):
        if element.get("uname") == node:
            for nvpair in element.iter("nvpair"):
                if nvpair.get("name") == "hv_memory":
                    return int(nvpair.get("value", "0"))
    raise AssertionError(f"{node} has no published hv_memory")


def load(placement: dict[str, str | None], node: str) -> int:
    return GUEST_DEMAND_MIB * sum(1 for where in placement.values() if where == node)


GUESTS = ("sched1", "sched2", "sched3")


@pytest.fixture
def cib(qemu_hosts: HostSet, tmp_path: Path) -> Path:
    """Two nodes without capacity yet and three xen-guest resources without utilization yet."""
    guests = {name: {"config": str(tmp_path / f"{name}.xml")} for name in GUESTS}
    return write_cib(tmp_path / "cib.xml", {"hostA": {}, "hostB": {}}, guests=guests)


def test_guests_are_placed_only_where_there_is_room(qemu_hosts: HostSet, cib: Path, tmp_path: Path) -> None:
    publish_host(qemu_hosts, "hostA", cib, tmp_path, capacity_mib=150)  # room for two guests
    publish_host(qemu_hosts, "hostB", cib, tmp_path, capacity_mib=150)
    guests = publish_guests(qemu_hosts, cib, tmp_path, 3)
    assert 'name="hv_memory" value="70"' in cib.read_text()

    placed = simulate(cib, tmp_path / "placed.xml")
    assert all(placed[guest] is not None for guest in guests), placed
    for node in ("hostA", "hostB"):
        assert load(placed, node) <= node_capacity(cib, node), placed

    # hostA fails: of its guests, only what fits in hostB's remaining room may move there
    after = simulate(tmp_path / "placed.xml", tmp_path / "after.xml", "--node-fail=hostA")
    assert load(after, "hostB") <= node_capacity(cib, "hostB"), after
    assert sum(1 for where in after.values() if where == "hostB") == 2, after
    assert sum(1 for where in after.values() if where is None) == 1, after
    assert "hostA" not in after.values()


def test_scheduler_picks_the_host_with_room(qemu_hosts: HostSet, cib: Path, tmp_path: Path) -> None:
    publish_host(qemu_hosts, "hostA", cib, tmp_path, capacity_mib=60)  # too small for any guest
    publish_host(qemu_hosts, "hostB", cib, tmp_path, capacity_mib=150)
    guests = publish_guests(qemu_hosts, cib, tmp_path, 3)
    placed = simulate(cib, tmp_path / "placed.xml")
    assert [placed[guest] for guest in guests].count("hostB") == 2, placed
    assert "hostA" not in placed.values()
    assert list(placed.values()).count(None) == 1, placed  # no host has room for the third
