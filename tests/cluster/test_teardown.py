"""Teardown leaves nothing behind: processes, guests, network namespaces, cgroups, mounts.

Runs its own cluster (not the shared module fixture). It stops one node gracefully with a
guest running behind Pacemaker's back, then leaves the cluster untidy, as a failed test
would: a guest running, a node frozen, a network cable cut. Then teardown.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import claim_prefix
from tests.support.cluster import cgroups, network
from tests.support.cluster.claim import PrefixClaim
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.layout import ClusterLayout
from tests.support.guests import domain_xml

pytestmark = [pytest.mark.cluster, pytest.mark.qemu, pytest.mark.slow]

DAEMONS = ("corosync", "pacemakerd", "libvirtd", "qemu-system-x86")


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def host_mounts_naming(words: list[str], *, netns_too: bool = True) -> list[str]:
    """Mounts of the harness's own namespace whose line names one of ``words``."""
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if any(word in line for word in words) and (netns_too or " - nsfs " not in line)
    ]


@pytest.fixture
def claimed() -> Iterator[PrefixClaim]:
    if os.geteuid() != 0:
        pytest.skip("the cluster tests need root")
    claim = claim_prefix()
    yield claim
    claim.release()


def test_teardown_leaves_nothing_behind(claimed: PrefixClaim) -> None:
    layout = ClusterLayout(claimed.prefix)
    cluster = Cluster(layout, say=print)
    virsh = ["virsh", "-q", "-c", "qemu:///system"]
    try:
        cluster.up()
        for node in ("node1", "node2"):
            started = cluster.run(node, [*virsh, "create", "/dev/stdin"], input_text=domain_xml("stray"))
            assert started.ok, started.explain()
        stop_s = cluster.stop_node("node1")
        stopping = [event for _, event in cluster.events("node1")]
        assert stopping[-5:] == [
            "pacemakerd stopped", "corosync stopped", "destroyed guest stray", "libvirtd stopped", "stopped"
        ], stopping  # fmt: skip
        cluster.freeze_node("node2")
        cluster.cut_network("node3")
        ours = {pid: start_time(pid) for pid in cgroups.pids_under(f"/{layout.prefix}")}
        names = {command_name(pid) for pid in ours}
        assert set(DAEMONS) <= names, f"expected the daemons and a guest among {names}"
        # The nodes' mounts live in their own mount namespaces only.
        assert host_mounts_naming([f"{layout.prefix}-node", str(layout.state_dir)], netns_too=False) == []
    finally:
        cluster.teardown()

    survivors = [f"{pid} {command_name(pid)}" for pid, started in ours.items() if start_time(pid) == started]
    assert survivors == [], f"processes of the cluster survived teardown: {survivors}"
    assert cgroups.pids_under(f"/{layout.prefix}") == []
    assert not layout.cgroup_root.exists(), f"cgroup {layout.cgroup_root} is left"
    assert network.own_namespaces(layout) == [], "network namespaces are left"
    assert host_mounts_naming([f"{layout.prefix}-", str(layout.state_dir)]) == [], "mounts are left"
    print(f"\nnode1 stopped gracefully (pacemakerd, corosync, its guest, libvirtd) in {stop_s:.1f} s")
