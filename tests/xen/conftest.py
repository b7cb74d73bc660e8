"""The Xen lab for the whole session: two Xen 4.17 hosts booted once, with xenha's .deb.

The lab needs root, QEMU and mmdebstrap (network access to Debian's mirror the first time,
to build the cached dom0 image) and the packages in dist/ (`make xen-test` builds them).

The tests of a Pacemaker cluster of the two hosts (test_xen_cluster.py, the ``xen_cluster``
fixture) share the lab: when any is collected the lab boots in cluster mode (a shared SBD
disk, a watchdog per host), and they run after every other test, in the order written —
once corosync and Pacemaker run in the dom0s they own the guests, and the crash test kills
a host for good. One boot and one lab for `make test` (docs/decisions/xen-cluster.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cib import write_cib
from tests.support.xenlab.cluster import XenCluster, form_cluster
from tests.support.xenlab.guests import destroy_everywhere
from tests.support.xenlab.lab import Lab, session_lab

CLUSTER_FIXTURE = "xen_cluster"


def needs_cluster(item: pytest.Item) -> bool:
    return CLUSTER_FIXTURE in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster's tests after every other one (a stable sort keeps each group's order)."""
    items.sort(key=needs_cluster)


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    cluster = any(needs_cluster(item) for item in request.session.items)
    with session_lab("xen-test", cluster=cluster) as booted:
        yield booted


@pytest.fixture
def cib(lab: Lab) -> Path:
    """A fresh CIB on the SAN playing the two-node cluster (both dom0s use the same file)."""
    return write_cib(lab.san / "cib.xml", {"xenhost1": {}, "xenhost2": {}})


@pytest.fixture
def guest_name(lab: Lab, request: pytest.FixtureRequest) -> Iterator[str]:
    """A guest name for this test; the domain is destroyed on every host afterwards."""
    name = "pv-" + request.node.name.removeprefix("test_")[:24].replace("_", "-").rstrip("-")
    yield name
    destroy_everywhere(lab, name)


@pytest.fixture(scope="session")
def xen_cluster(lab: Lab) -> XenCluster:
    """The lab's hosts formed into a Pacemaker cluster (tests/support/xenlab/cluster.py), once.
    A lab left up by ``xenlab up --cluster --keep`` (XENLAB_ATTACH=1) keeps its cluster."""
    if lab.attached:
        return XenCluster.attach(lab)
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
