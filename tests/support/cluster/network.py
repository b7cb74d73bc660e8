"""The private network of a test cluster: a bridge in its own namespace, one veth per node.

Addresses exist only inside namespaces created here; nothing is routed anywhere else.
A cable cut is the bridge side of a node's veth set down: the node still sees its own
interface up, as with a pulled cable on a switch port.
"""

from __future__ import annotations

from tests.support import commands
from tests.support.cluster.layout import BRIDGE, NODE_LINK, SUBNET_BITS, ClusterLayout


class NetworkError(RuntimeError):
    pass


def ip(*args: str) -> None:
    result = commands.run(["ip", *args], timeout_s=30)
    if not result.ok:
        raise NetworkError(result.explain())


def namespaces() -> list[str]:
    listing = commands.run(["ip", "netns", "list"], timeout_s=30)
    return [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]


def own_namespaces(layout: ClusterLayout) -> list[str]:
    return [name for name in namespaces() if layout.is_own_netns(name)]


def create(layout: ClusterLayout) -> None:
    switch = layout.switch_netns
    ip("netns", "add", switch)
    ip("-n", switch, "link", "set", "lo", "up")
    ip("-n", switch, "link", "add", BRIDGE, "type", "bridge")
    ip("-n", switch, "link", "set", BRIDGE, "up")
    for node in layout.node_names:
        netns, port = layout.netns(node), layout.switch_port(node)
        ip("netns", "add", netns)
        ip("-n", netns, "link", "set", "lo", "up")
        ip("-n", netns, "link", "add", NODE_LINK, "type", "veth", "peer", "name", port, "netns", switch)
        ip("-n", switch, "link", "set", port, "master", BRIDGE, "up")
        ip("-n", netns, "addr", "add", f"{layout.address(node)}/{SUBNET_BITS}", "dev", NODE_LINK)
        ip("-n", netns, "link", "set", NODE_LINK, "up")


def exists(layout: ClusterLayout) -> bool:
    present = set(namespaces())
    return layout.switch_netns in present and all(layout.netns(n) in present for n in layout.node_names)


def cut(layout: ClusterLayout, node: str) -> None:
    ip("-n", layout.switch_netns, "link", "set", layout.switch_port(node), "down")


def restore(layout: ClusterLayout, node: str) -> None:
    ip("-n", layout.switch_netns, "link", "set", layout.switch_port(node), "up")


def remove(layout: ClusterLayout) -> None:
    """Delete this layout's namespaces (only names matching its prefix exactly)."""
    for name in own_namespaces(layout):
        ip("netns", "del", name)
