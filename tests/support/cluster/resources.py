"""Pacemaker resources in the test cluster: create, wait for, move, delete (real CLI tools)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from tests.support.cluster.cluster import Cluster, ClusterError
from tests.support.cluster.crm_mon import ClusterStatus


def any_node(cluster: Cluster) -> str:
    running = cluster.running_nodes()
    if not running:
        raise ClusterError(f"no node of cluster {cluster.layout.prefix} is running: start one first")
    return running[0]


def create(cluster: Cluster, resource_id: str, agent: str, *options: str, timeout_s: float = 60.0) -> None:
    """``pcs resource create ID AGENT OPTIONS...`` on any running node."""
    cluster.check(
        any_node(cluster),
        ["pcs", "resource", "create", resource_id, agent, *options],
        timeout_s,
        hint=f"could not create resource {resource_id}",
    )


def delete(cluster: Cluster, resource_id: str, timeout_s: float = 120.0) -> None:
    """Stop and remove a resource and its move constraints; quiet when it does not exist."""
    node = any_node(cluster)
    cluster.run(node, ["crm_resource", "--clear", "-r", resource_id], 30.0)
    status = cluster.status(node)
    if status.resource(resource_id) is None:
        return
    cluster.check(node, ["pcs", "resource", "delete", resource_id], timeout_s,
                  hint=f"resource {resource_id} may still be running")  # fmt: skip


def delete_all(cluster: Cluster, resource_ids: Sequence[str], timeout_s: float = 120.0) -> None:
    """Stop several resources in one transition, then remove them and their move constraints."""
    node = any_node(cluster)
    for resource_id in resource_ids:
        cluster.run(node, ["crm_resource", "--clear", "-r", resource_id], 30.0)
    status = cluster.status(node)
    present = [resource_id for resource_id in resource_ids if status.resource(resource_id) is not None]
    if not present:
        return
    cluster.check(node, ["pcs", "resource", "disable", *present, f"--wait={int(timeout_s)}"], timeout_s + 30.0,
                  hint=f"resources {present} may still be running")  # fmt: skip
    for resource_id in present:
        cluster.check(node, ["cibadmin", "--delete", "--xml-text", f'<primitive id="{resource_id}"/>'], 30.0)


def wait_started(
    cluster: Cluster,
    resource_id: str,
    *,
    on: Sequence[str] = (),
    not_on: Sequence[str] = (),
    timeout_s: float = 60.0,
) -> tuple[str, float]:
    """Wait until ``resource_id`` is Started on one node (of ``on`` if given, not in
    ``not_on``); returns that node and the seconds waited."""
    found: list[str] = []

    def started(status: ClusterStatus) -> bool:
        nodes = status.started_on(resource_id)
        if len(nodes) == 1 and (not on or nodes[0] in on) and nodes[0] not in not_on:
            found[:] = [nodes[0]]
            return True
        return False

    where = f" on {' or '.join(on)}" if on else ""
    elsewhere = f" outside {', '.join(not_on)}" if not_on else ""
    waited = cluster.wait_for(f"{resource_id} Started{where}{elsewhere}", started, timeout_s=timeout_s)
    return found[0], waited


def move(cluster: Cluster, resource_id: str, target: str) -> float:
    """``crm_resource --move`` to ``target``; returns seconds until crm_mon shows it Started
    there. The move constraint stays until :func:`clear`."""
    started = time.monotonic()
    cluster.check(any_node(cluster), ["crm_resource", "--move", "-r", resource_id, "-N", target], 30.0)
    wait_started(cluster, resource_id, on=(target,))
    return time.monotonic() - started


def clear(cluster: Cluster, resource_id: str) -> None:
    cluster.check(any_node(cluster), ["crm_resource", "--clear", "-r", resource_id], 30.0)
