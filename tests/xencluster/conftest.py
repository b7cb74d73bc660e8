"""A Pacemaker cluster of two real Xen hosts for the session (tests/support/xenlab/cluster.py).

The lab is booted in cluster mode (a shared SBD disk, a watchdog per host) and the cluster
formed once. The tests that crash or fence a host run last (test_xen_cluster.py orders
them); the ``two_hosts`` fixture brings a host that an earlier test killed back into the
cluster before a test that needs both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.xenlab.cluster import XenCluster, form_cluster
from tests.support.xenlab.lab import Lab, session_lab

pytestmark = pytest.mark.xen


@pytest.fixture(scope="session")
def xen_cluster() -> Iterator[XenCluster]:
    with session_lab("xen-cluster-test", cluster=True) as lab:
        # attached: left up by `xenlab up --cluster --keep`, its cluster formed by that run
        yield XenCluster.attach(lab) if lab.attached else formed(lab)


def formed(lab: Lab) -> XenCluster:
    started = time.monotonic()
    cluster = form_cluster(lab)
    print(f"xenlab: cluster formed and configured in {time.monotonic() - started:.0f} s")
    return cluster


@pytest.fixture
def two_hosts(xen_cluster: XenCluster) -> XenCluster:
    """Both hosts up and online in the cluster: a host killed by an earlier test boots again
    and rejoins (its rejoin time printed)."""
    for host in xen_cluster.lab.hosts:
        if not host.qemu_running():
            print(f"{host.name} rejoined in {xen_cluster.rejoin(host):.0f} s")
    xen_cluster.wait_online(xen_cluster.nodes)
    return xen_cluster
