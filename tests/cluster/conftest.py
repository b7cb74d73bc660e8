"""Fixtures for the real-cluster tests: a cluster per test module, an invariant monitor per test.

Each module gets its own prefix (the first free of ``xht0``..``xht9``, or
$XENHA_CLUSTER_PREFIX), so runs from several checkouts at once do not collide, and every
fixture tears down what it started, also when a test fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator

import pytest

from tests.support.cluster import resources
from tests.support.cluster.claim import PrefixClaim, claim_free_prefix
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.invariants import InvariantMonitor
from tests.support.cluster.layout import ClusterLayout
from tests.support.cluster.pacemaker_log import LOG


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cluster: starts a real 3-node Pacemaker cluster (root, ~1 min)")


def claim_prefix() -> PrefixClaim:
    chosen = os.environ.get("XENHA_CLUSTER_PREFIX")
    return PrefixClaim(chosen).acquire() if chosen else claim_free_prefix("xht")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A fresh 3-node cluster, online; killed and removed after the module's tests.

    When a test of the module failed, the nodes' logs are kept in build/cluster-logs/<module>/
    (the next module's cluster starts from clean state directories).
    """
    if os.geteuid() != 0:
        pytest.skip("the cluster tests need root (namespaces, cgroups, mounts)")
    claim = claim_prefix()
    started = Cluster(ClusterLayout(claim.prefix), say=print)
    failed_before = request.session.testsfailed
    try:
        started.up()
        yield started
    finally:
        try:
            started.teardown()
            if request.session.testsfailed > failed_before:
                keep_logs(started, request.module.__name__.rsplit(".", 1)[-1])
        finally:
            claim.release()


def keep_logs(cluster: Cluster, name: str) -> None:
    kept = cluster.layout.repo / "build" / "cluster-logs" / name
    shutil.rmtree(kept, ignore_errors=True)
    for node in cluster.layout.node_names:
        for relative in (LOG, "log/pacemaker/fence_xenha_test.log"):
            source = cluster.node_log(node, relative)
            if source.exists():
                (kept / node).mkdir(parents=True, exist_ok=True)
                shutil.copy(source, kept / node / source.name)
    print(f"the nodes' logs of the failed run are in {kept}")


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
