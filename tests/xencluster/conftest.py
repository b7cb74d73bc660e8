"""A Pacemaker cluster of two real Xen hosts for the session (tests/support/xenlab/cluster.py).

The lab is booted in cluster mode (a shared SBD disk, a watchdog per host) and the cluster
formed once. The tests that crash or fence a host run last (test_xen_cluster.py orders
them); the ``two_hosts`` fixture brings a host that an earlier test killed back into the
cluster before a test that needs both.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.support.xenlab.cluster import XenCluster, form_cluster
from tests.support.xenlab.lab import REPO, attach_lab, start_lab, stop_lab

pytestmark = pytest.mark.xen


@pytest.fixture(scope="session")
def xen_cluster() -> Iterator[XenCluster]:
    debs = sorted((REPO / "dist").glob("xenha-agents_*.deb"))
    if not debs:
        pytest.fail("no xenha .deb in dist/: run these tests with `make xen-cluster-test` (it builds them)")
    if os.environ.get("XENLAB_ATTACH") == "1":
        attached = attach_lab()
        if attached is not None and attached.cluster:  # left up by `xenlab up --cluster --keep`: not ours to stop
            cluster = XenCluster.attach(attached)
            yield cluster
            return
    lab = start_lab(debs[-1:], cluster=True)
    print("\n".join(f"xenlab: {line}" for line in lab.timings.lines()))
    try:
        started = time.monotonic()
        cluster = form_cluster(lab)
        print(f"xenlab: cluster formed and configured in {time.monotonic() - started:.0f} s")
        yield cluster
    finally:
        stop_lab(lab, keep_logs=True)


@pytest.fixture
def two_hosts(xen_cluster: XenCluster) -> XenCluster:
    """Both hosts up and online in the cluster: a host killed by an earlier test boots again
    and rejoins (its rejoin time printed)."""
    for host in xen_cluster.lab.hosts:
        if not host.qemu_running():
            print(f"{host.name} rejoined in {xen_cluster.rejoin(host):.0f} s")
    xen_cluster.wait_online(xen_cluster.nodes)
    return xen_cluster
