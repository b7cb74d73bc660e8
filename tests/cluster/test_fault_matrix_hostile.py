"""Fault-matrix scenarios from issue 12: a hostile operator, on the real 3-node cluster.

WRITTEN, NOT YET RUN: the 3-node cluster belonged to another helper while these were
written (issue 12 report). Each is a strict xfail naming the finding it pins; the fixer of
that finding runs it, and removes the mark once it passes.

They reuse the fault matrix's fixtures and its end-state check (:meth:`Scenario.assert_final`:
no guest on two hosts at once, capacity respected, no action out of time, no reservation
left) with the invariant monitor sweeping every node's libvirtd throughout. Run them after
test_fault_matrix.py or alone (``pytest tests/cluster/test_fault_matrix_hostile.py``); the
last scenario of test_fault_matrix.py stops the cluster, so not in one session after it.
"""

from __future__ import annotations

import threading
import time

import libvirt
import pytest

from tests.cluster import resources
from tests.cluster.scenario import Scenario
from tests.cluster.test_fault_matrix import TINY_DEMAND, TINY_MIB, place, scenario, xenha
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.invariants import Placement
from tests.support.guests import domain_xml

pytestmark = [pytest.mark.cluster, pytest.mark.qemu, pytest.mark.slow]


def intervals(placements: list[Placement], now: float) -> list[tuple[float, float, frozenset[str]]]:
    """Each placement of a guest as (from, until, nodes), monotonic times."""
    ends = [placement.since for placement in placements[1:]] + [now]
    return [(placement.since, end, placement.nodes) for placement, end in zip(placements, ends)]


def domain_uuid(cluster: Cluster, node: str, name: str) -> str | None:
    uri = cluster.libvirt_uri(node)
    assert uri is not None, f"{node} is down"
    connection = libvirt.open(uri)
    try:
        return str(connection.lookupByName(name).UUIDString())
    except libvirt.libvirtError:
        return None
    finally:
        connection.close()


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 1: after a rename in the shared XML, the probe looks up the new name only, "
    "answers 7, and Pacemaker starts a second copy from the same disks",
)
def test_renamed_guest_never_runs_twice(scenario: Scenario) -> None:
    """The operator renames a running guest in its shared XML (documented as taking effect at
    the next start), then something makes Pacemaker probe it again (here: a refresh)."""
    cluster = scenario.cluster
    place(scenario, "ren", "node1", ["ren1"])
    (cluster.layout.san_dir / "ren1.xml").write_text(domain_xml("ren1-renamed", memory_mib=TINY_MIB))
    refreshed_at = time.monotonic()
    cluster.check(resources.any_node(cluster), ["crm_resource", "--refresh", "--resource", "ren1"], 60.0)
    scenario.settle()
    time.sleep(5)  # a few monitor intervals: a second copy, if any, has been started by now
    now = time.monotonic()
    both = [
        (sorted(o_nodes), sorted(n_nodes), round(max(o_start, n_start) - refreshed_at, 2))
        for o_start, o_end, o_nodes in intervals(scenario.monitor.placements("ren1"), now)
        for n_start, n_end, n_nodes in intervals(scenario.monitor.placements("ren1-renamed"), now)
        if o_nodes and n_nodes and o_start < n_end and n_start < o_end
    ]
    assert not both, f"ren1 ran under its old and its new name at once (nodes, nodes, s after the refresh): {both}"
    status = scenario.assert_final()
    scenario.note = f"rename detected; ren1 stays one guest on {status.started_on('ren1')}"


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 2: a probe takes a domain started by hand under the guest's name for the "
    "resource's own; Pacemaker then stops it (or starts the guest a second time)",
)
def test_foreign_domain_under_a_guests_name_is_never_touched(scenario: Scenario) -> None:
    """A domain started by hand on node2 under the name a new resource's XML gives: the
    cluster must report a configuration problem, never adopt it, never stop it."""
    cluster = scenario.cluster
    scenario.start_by_hand("node2", "dup1", TINY_MIB)
    foreign = domain_uuid(cluster, "node2", "dup1")
    assert foreign is not None
    scenario.guest("dup1", TINY_MIB)  # the resource; its probes run on every node
    scenario.settle()
    time.sleep(5)
    assert domain_uuid(cluster, "node2", "dup1") == foreign, "the domain started by hand was stopped or replaced"
    status = cluster.status(resources.any_node(cluster))
    assert "node2" not in status.started_on("dup1"), "the cluster adopted a domain it does not own"
    reasons = [failure.exit_reason for failure in status.failures if failure.op_key.startswith("dup1_")]
    assert any("dup1" in reason and ("owner" in reason or "belongs" in reason or "not started by" in reason)
               for reason in reasons), f"no failure names the foreign domain: {reasons}"  # fmt: skip
    scenario.note = "foreign domain reported, left running"


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 8: stale configuration replaces (as pcs pushes them) bring the ledger's "
    "version back; admissions decided before them commit, and a host takes more than its room",
)
def test_stale_cib_replaces_during_concurrent_moves_never_overbook(scenario: Scenario) -> None:
    """Ten moves into room for three (as test_ten_concurrent_migrations_into_room_for_three),
    while a pcs-like editor keeps reading the configuration and pushing its copy back 0.3 s
    later. The invariant monitor's count of guests running on node2 must never exceed three."""
    cluster = scenario.cluster
    crowd = [f"stale{index}" for index in range(10)]
    away = scenario.prefer("stale", "node2", "-INFINITY")
    for guest in crowd:
        scenario.guest(guest, TINY_MIB)
    scenario.wait_started(crowd)
    scenario.leave_room("node2", 3 * TINY_DEMAND + TINY_DEMAND // 2)
    editing = threading.Event()
    pushes: list[int] = []

    def pcs_like_editor() -> None:
        node = "node3"
        while not editing.is_set():
            copy = cluster.run(node, ["cibadmin", "--query", "--scope", "configuration"], 30.0)
            time.sleep(0.3)
            if copy.ok:
                pushed = cluster.run(
                    node, ["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"], 30.0,
                    input_text=copy.stdout,
                )  # fmt: skip
                pushes.append(pushed.returncode)

    editor = threading.Thread(target=pcs_like_editor, name="stale replaces")
    editor.start()
    try:
        scenario.rescore(away, "INFINITY")  # one transition: ten migrations into node2
        scenario.settle()
    finally:
        editing.set()
        editor.join(60)
    assert pushes, "the editor never pushed a stale copy: nothing tested"
    most = scenario.max_running_at_once(crowd, "node2")
    assert most <= 3, f"{most} guests ran on node2 at once, room for three ({len(pushes)} stale pushes)"
    scenario.assert_final()
    scenario.note = f"{len(pushes)} stale replaces; at most {most} on node2"


__all__ = ["scenario", "xenha"]  # the fault matrix's fixtures, used here by name
