"""Names, addresses and paths of one test cluster: everything derived from a prefix.

Pure: nothing here touches the system. Every name the harness creates outside its own
state directory (network namespaces, cgroups, tmpfs names) starts with the prefix, so that
a later run can find and remove the leftovers of an interrupted one by exact name, and
concurrent runs with different prefixes never collide.

Worked example for prefix ``xhc`` and 3 nodes, checkout ``/src/xenha``::

    node names            node1 node2 node3 (also their hostnames)
    addresses             10.254.0.1 .. 10.254.0.3 /24, only inside the namespaces below
    network namespaces    xhc-sw (bridge br0), xhc-node1 .. xhc-node3 (eth0)
    cgroups               /sys/fs/cgroup/unified/xhc/node1 ..
    state                 /src/xenha/build/cluster/xhc/{node1,..,etc,san,layers}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CGROUP2_MOUNT = Path("/sys/fs/cgroup/unified")
DEFAULT_PREFIX = "xhc"
DEFAULT_NODE_COUNT = 3
SUBNET = "10.254.0"
SUBNET_BITS = 24
BRIDGE = "br0"
NODE_LINK = "eth0"
LIBVIRT_TCP_PORT = 16509
# Inside a node: where its libvirtd listens, and the seeded qemu capabilities cache.
LIBVIRT_SOCKET_IN_NODE = "/run/libvirt/libvirt-sock"
QEMU_CAPS_SEED = REPO / "build" / "qemu-caps"
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,7}$")


class LayoutError(ValueError):
    """A prefix or node count the harness cannot use."""


@dataclass(frozen=True)
class ClusterLayout:
    prefix: str = DEFAULT_PREFIX
    node_count: int = DEFAULT_NODE_COUNT
    repo: Path = REPO

    def __post_init__(self) -> None:
        # Network namespace and interface names are short; keep every derived name well
        # inside Linux's 15-character interface limit.
        if not PREFIX_PATTERN.match(self.prefix):
            raise LayoutError(
                f"cluster prefix {self.prefix!r} is not usable: use 1-8 lower-case letters or digits, "
                "starting with a letter (e.g. xhc)"
            )
        if not 1 <= self.node_count <= 16:
            raise LayoutError(f"a test cluster has 1 to 16 nodes, not {self.node_count}")

    # ---- names -----------------------------------------------------------------------------
    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(f"node{index}" for index in range(1, self.node_count + 1))

    def index(self, node: str) -> int:
        if node not in self.node_names:
            raise LayoutError(f"no node {node!r} in cluster {self.prefix} (nodes: {' '.join(self.node_names)})")
        return self.node_names.index(node) + 1

    def address(self, node: str) -> str:
        return f"{SUBNET}.{self.index(node)}"

    @property
    def cluster_name(self) -> str:
        return f"xenha-{self.prefix}"

    @property
    def switch_netns(self) -> str:
        return f"{self.prefix}-sw"

    def netns(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def switch_port(self, node: str) -> str:
        """The bridge side of the node's veth pair (inside the switch namespace)."""
        return f"sw-{node}"

    def host_uuid(self, node: str) -> str:
        """libvirt refuses to migrate between hosts with the same UUID: one per node."""
        return f"c1a5e000-0000-4000-8000-{self.index(node):012d}"

    def is_own_netns(self, name: str) -> bool:
        """True for exactly the network namespace names this layout creates."""
        return bool(re.fullmatch(rf"{re.escape(self.prefix)}-(sw|node[0-9]+)", name))

    # ---- cgroups -----------------------------------------------------------------------------
    @property
    def cgroup_root(self) -> Path:
        return CGROUP2_MOUNT / self.prefix

    def cgroup(self, node: str) -> Path:
        return self.cgroup_root / node

    # ---- state directories -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.repo / "build" / "cluster" / self.prefix

    def node_dir(self, node: str) -> Path:
        return self.state_dir / node

    @property
    def etc_dir(self) -> Path:
        """Files every node shares: /etc/hosts, passwd, group, corosync.conf."""
        return self.state_dir / "etc"

    @property
    def san_dir(self) -> Path:
        """Plays the shared storage: the same path, the same files, on every node."""
        return self.state_dir / "san"

    @property
    def ocf_layer(self) -> Path:
        """Lower overlay layer for /usr/lib/ocf/resource.d: xenha/<agent> -> this checkout."""
        return self.state_dir / "layers" / "ocf"

    @property
    def sbin_layer(self) -> Path:
        """Lower overlay layer for /usr/sbin: the test fence agent, visible inside nodes only."""
        return self.state_dir / "layers" / "sbin"

    @property
    def agents_dir(self) -> Path:
        return self.repo / "agents"

    @property
    def harness_dir(self) -> Path:
        return self.repo / "tests" / "cluster"

    def libvirt_uri(self, init_pid: int) -> str:
        """The node's libvirtd (qemu driver) reached from the root namespaces."""
        return f"qemu+unix:///system?socket=/proc/{init_pid}/root{LIBVIRT_SOCKET_IN_NODE}"
