"""xenha on the test cluster, configured as an operator would: with pcs, inside a node.

Shared by the demo and the fault matrix: the cluster options, the xen-host clone (with a
fixed ``memory_capacity``, because the memory this machine's kernel reports moves by
100 MiB between reads), and guests that live-migrate between the nodes' libvirtd over TCP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from xml.etree import ElementTree

from tests.support.cluster import resources
from tests.support.cluster.cluster import Cluster, ClusterError
from tests.support.guests import domain_xml, filler_boot_image

HOST_CLONE = "xen-host-clone"
GUEST_OPS = ("monitor", "interval=5s", "timeout=30s", "migrate_to", "timeout=60s")


def guest_demand_mib(memory_mib: int, vcpus: int = 1) -> int:
    """What xen-guest publishes as hv_memory for a tiny HVM guest (xenha.capacity's formula)."""
    from xenha.admission.resources import memory_demand_mib
    from xenha.libvirt.domxml import GuestType

    return memory_demand_mib(memory_mib, vcpus, GuestType.HVM)


Show = Callable[[Sequence[str]], None]


def pcs(cluster: Cluster, *argv: str, timeout_s: float = 60.0, show: Show | None = None) -> str:
    if show is not None:
        show(["pcs", *argv])
    return cluster.check(resources.any_node(cluster), ["pcs", *argv], timeout_s, hint="pcs failed").stdout


def configure_cluster(
    cluster: Cluster,
    capacity_mib: int,
    *,
    placement: str = "balanced",
    health: str = "migrate-on-red",
    host_monitor: str = "10s",
    cpu_overcommit: int = 4,
    show: Show | None = None,
) -> None:
    """Cluster options and the xen-host clone; returns once every node has its capacity.

    The clone may run on a node whose health is red (``allow-unhealthy-nodes``): it is the
    agent that says so, and without this Pacemaker stops it there, its stop withdraws the
    red, and guests are sent back to the sick node.
    """
    pcs(cluster, "property", "set", f"placement-strategy={placement}", f"node-health-strategy={health}", show=show)
    pcs(cluster, "resource", "create", "xen-host", "ocf:xenha:xen-host",
        "hypervisor=qemu:///system", f"memory_capacity={capacity_mib}", f"cpu_overcommit={cpu_overcommit}",
        "op", "monitor", f"interval={host_monitor}", "clone", "allow-unhealthy-nodes=true", show=show)  # fmt: skip
    wait_capacity(cluster, dict.fromkeys(cluster.running_nodes(), capacity_mib))


def node_utilization(cluster: Cluster) -> dict[str, dict[str, int]]:
    """Each node's utilization as the CIB holds it."""
    text = cluster.check(resources.any_node(cluster), ["cibadmin", "--query", "--scope", "nodes"]).stdout
    found: dict[str, dict[str, int]] = {}
    for node in ElementTree.fromstring(text).iter("node"):
        values: dict[str, int] = {}
        for utilization in node.iter("utilization"):
            for nvpair in utilization.iter("nvpair"):
                values[nvpair.get("name", "")] = int(nvpair.get("value", "0"))
        found[node.get("uname", "")] = values
    return found


def wait_capacity(cluster: Cluster, expected: dict[str, int], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        published = node_utilization(cluster)
        if all(published.get(node, {}).get("hv_memory") == value for node, value in expected.items()):
            return
        time.sleep(0.5)
    raise ClusterError(f"xen-host did not publish {expected} within {timeout_s:.0f} s: {node_utilization(cluster)}")


def write_guest_config(cluster: Cluster, name: str, memory_mib: int, boot_image: str | None = None) -> str:
    path = cluster.layout.san_dir / f"{name}.xml"
    path.write_text(domain_xml(name, memory_mib=memory_mib, boot_image=boot_image))
    return str(path)


def filler_image(cluster: Cluster) -> str:
    """The shared floppy image of guests whose live migration takes a while (guests.py)."""
    path = cluster.layout.san_dir / "filler.img"
    if not path.exists():
        path.write_bytes(filler_boot_image())
    return str(path)


def create_guest(
    cluster: Cluster,
    name: str,
    memory_mib: int = 64,
    *extra: str,
    boot_image: str | None = None,
    ops: Sequence[str] = GUEST_OPS,
    meta: Sequence[str] = (),
    show: Show | None = None,
) -> None:
    """A xen-guest resource that live-migrates (its guest has no OS: stop destroys at once).

    ``extra``: more parameters, and pcs flags (``--disabled``); ``ops``: the operation
    settings (pcs syntax); ``meta``: more meta attributes.
    """
    config = write_guest_config(cluster, name, memory_mib, boot_image)
    flags = [option for option in extra if option.startswith("--")]
    params = [option for option in extra if not option.startswith("--")]
    pcs(cluster, "resource", "create", name, "ocf:xenha:xen-guest",
        f"config={config}", "hypervisor=qemu:///system", "remoteuri=qemu+tcp://%n/system",
        "hvm_migration=live", "force_stop=true", *params,
        "meta", "allow-migrate=true", *meta,
        "op", *ops, *flags, show=show)  # fmt: skip


def placements(cluster: Cluster, guests: Sequence[str]) -> dict[str, str | None]:
    """Where Pacemaker says each guest is started (None: stopped)."""
    status = cluster.status(resources.any_node(cluster))
    return {guest: (status.started_on(guest) or (None,))[0] for guest in guests}
