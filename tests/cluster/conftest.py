"""Fixtures for the real-cluster tests: a cluster per test module, an invariant monitor per test.

Each module gets its own prefix (the first free of ``xht0``..``xht9``, or
$XENHA_CLUSTER_PREFIX), so runs from several checkouts at once do not collide, and every
fixture tears down what it started, also when a test fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from tests.support.cluster import resources
from tests.support.cluster.claim import PrefixClaim, claim_free_prefix
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.invariants import InvariantMonitor
from tests.support.cluster.layout import ClusterLayout


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: starts a real 3-node Pacemaker cluster (root, ~1 min)")


def claim_prefix() -> PrefixClaim:
    chosen = os.environ.get("XENHA_CLUSTER_PREFIX")
    return PrefixClaim(chosen).acquire() if chosen else claim_free_prefix("xht")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh 3-node cluster, online; killed and removed after the module's tests."""
    if os.geteuid() != 0:
        pytest.skip("the cluster tests need root (namespaces, cgroups, mounts)")
    claim = claim_prefix()
    started = Cluster(ClusterLayout(claim.prefix), say=print)
    try:
        started.up()
        yield started
    finally:
        try:
            started.teardown()
        finally:
            claim.release()


@pytest.fixture
def monitor(cluster: Cluster) -> Iterator[InvariantMonitor]:
    """Sweeps every node's libvirtd for the duration of one test."""
    nodes = cluster.layout.node_names
    with InvariantMonitor(lambda: {node: cluster.libvirt_uri(node) for node in nodes}) as watching:
        yield watching


@pytest.fixture
def cleanup(cluster: Cluster) -> Iterator[Callable[[str], None]]:
    """``cleanup(resource_id)`` deletes the resource after the test; every node is back online too."""
    created: list[str] = []
    yield created.append
    cluster.restore_all()
    for resource_id in reversed(created):
        resources.delete(cluster, resource_id)
