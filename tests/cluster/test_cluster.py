"""A real 3-node cluster on one machine: membership, moves, fencing, xen-guest on qemu.

One cluster serves the whole module (about 5 s to start); every test leaves it with all
nodes online and its own resources deleted. Measured timings are printed (pytest -s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.cluster import resources
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.invariants import InvariantMonitor
from tests.support.cluster.timings import Stopwatch
from tests.support.guests import domain_xml

pytestmark = [pytest.mark.cluster, pytest.mark.qemu, pytest.mark.slow]

Cleanup = Callable[[str], None]
VIRSH = ("virsh", "-q", "-c", "qemu:///system")


@pytest.fixture
def stray_guests(cluster: Cluster) -> Iterator[Callable[[str, str], None]]:
    """``start(node, name)`` creates a guest behind Pacemaker's back; all are destroyed after."""
    started: list[str] = []

    def start(node: str, name: str) -> None:
        config = cluster.layout.san_dir / f"{name}.xml"
        config.write_text(domain_xml(name))
        cluster.check(node, [*VIRSH, "create", str(config)], hint=f"could not start guest {name}")
        started.append(name)

    yield start
    for node in cluster.running_nodes():
        for name in started:
            cluster.run(node, [*VIRSH, "destroy", name], 30.0)


def other_node(cluster: Cluster, *not_these: str) -> str:
    return next(node for node in cluster.running_nodes() if node not in not_these)


def guest_resource(cluster: Cluster, name: str) -> tuple[str, ...]:
    config = cluster.layout.san_dir / f"{name}.xml"
    config.write_text(domain_xml(name))
    # The tiny guest has no OS and ignores ACPI shutdown: destroy it at once on stop.
    return (
        f"config={config}",
        "hypervisor=qemu:///system",
        "force_stop=true",
        "op",
        "monitor",
        "interval=5s",
    )


def test_three_nodes_come_online(cluster: Cluster) -> None:
    views = {node: cluster.status(node) for node in cluster.layout.node_names}
    everyone = set(cluster.layout.node_names)
    for node, view in views.items():
        assert view.online_nodes() == everyone, f"{node} sees {view.online_nodes()}"
        assert view.with_quorum, f"{node} has no quorum"
    assert len({view.dc for view in views.values()}) == 1, f"nodes disagree on the DC: {views}"
    fence = views["node1"].resource("fence-xenha")
    assert fence is not None and fence.role == "Started", fence
    assert cluster.fence_records() == [], "a node was fenced while the cluster started"
    print(
        f"\n3 nodes online {cluster.online_after_s:.1f} s after the first node was started; "
        f"fence device started after {cluster.ready_after_s:.1f} s"
    )


def test_dummy_moves_with_crm_resource(cluster: Cluster, cleanup: Cleanup) -> None:
    cleanup("d-move")
    resources.create(cluster, "d-move", "ocf:heartbeat:Dummy", "op", "monitor", "interval=3s")
    source, _ = resources.wait_started(cluster, "d-move")
    target = other_node(cluster, source)
    moved_s = resources.move(cluster, "d-move", target)
    resources.clear(cluster, "d-move")
    time.sleep(1.0)  # without its constraint, stickiness must keep it where it is
    assert cluster.status(target).started_on("d-move") == (target,)
    print(f"\nDummy moved {source} -> {target}: Started there {moved_s:.2f} s after crm_resource --move")


def test_crashed_node_is_fenced_and_resource_recovers(cluster: Cluster, cleanup: Cleanup) -> None:
    cleanup("d-crash")
    resources.create(cluster, "d-crash", "ocf:heartbeat:Dummy", "op", "monitor", "interval=3s")
    victim, _ = resources.wait_started(cluster, "d-crash")
    survivor = other_node(cluster, victim)
    dc = cluster.status(survivor).dc
    watch = Stopwatch()
    crash_wall = time.time()
    watch.mark("crash (cgroup.kill)")
    cluster.kill_node(victim)
    watch.mark("victim's processes gone")
    recovered_on, _ = resources.wait_started(cluster, "d-crash", not_on=(victim,), timeout_s=60)
    watch.mark(f"d-crash Started on {recovered_on} (crm_mon)")
    fenced = [r for r in cluster.fence_records() if r.target == victim and r.wall_time >= crash_wall]
    assert fenced and fenced[0].succeeded, f"{victim} was not fenced by fence_xenha_test: {fenced}"
    watch.mark(
        f"{victim} fenced by {fenced[0].fencer}",
        at=watch.marks["crash (cgroup.kill)"] + fenced[0].wall_time - crash_wall,
    )
    view = cluster.status(survivor)
    assert not view.node(victim).online and not view.node(victim).unclean
    print("\n" + watch.report(f"crash of {victim} (DC was {dc}), recovery of a Dummy resource:"))
    assert watch.between("crash (cgroup.kill)", f"d-crash Started on {recovered_on} (crm_mon)") < 30


def test_guest_starts_and_moves_without_double_run(
    cluster: Cluster, monitor: InvariantMonitor, cleanup: Cleanup
) -> None:
    cleanup("vm1")
    created = time.monotonic()
    resources.create(cluster, "vm1", "ocf:xenha:xen-guest", *guest_resource(cluster, "vm1"))
    source, started_s = resources.wait_started(cluster, "vm1")
    seen = monitor.wait_running("vm1", after=created, timeout_s=10)
    assert seen.nodes == {source}, f"libvirt shows vm1 on {sorted(seen.nodes)}, Pacemaker on {source}"
    target = other_node(cluster, source)
    asked = time.monotonic()
    moved_s = resources.move(cluster, "vm1", target)
    arrived = monitor.wait_running("vm1", after=asked, exclude=(source,), timeout_s=10)
    time.sleep(0.5)  # a few more sweeps after the move
    assert monitor.running_on("vm1") == {target}
    monitor.assert_no_double_run()
    gone_from_source = [p for p in monitor.placements("vm1") if p.since >= asked and not p.nodes]
    gap_s = arrived.since - gone_from_source[0].since if gone_from_source else 0.0
    print(
        f"\nvm1 started on {source} {started_s:.2f} s after pcs resource create; moved (stop/start) to "
        f"{target}: Started there {moved_s:.2f} s after crm_resource --move; not running anywhere for "
        f"~{gap_s:.2f} s; {monitor.sweeps} sweeps, no double run"
    )
    resources.clear(cluster, "vm1")


def test_crashed_guest_host_is_fenced_and_guest_restarts_elsewhere(
    cluster: Cluster, monitor: InvariantMonitor, cleanup: Cleanup
) -> None:
    cleanup("vm2")
    resources.create(cluster, "vm2", "ocf:xenha:xen-guest", *guest_resource(cluster, "vm2"))
    victim, _ = resources.wait_started(cluster, "vm2")
    monitor.wait_running("vm2", after=0.0, timeout_s=10)
    watch = Stopwatch()
    crash = watch.mark("crash (cgroup.kill)")
    crash_wall = time.time()
    cluster.kill_node(victim)
    placement = monitor.wait_running("vm2", after=crash, exclude=(victim,), timeout_s=60)
    watch.mark(f"vm2 running on {sorted(placement.nodes)[0]} (libvirt)", at=placement.since)
    fenced = [r for r in cluster.fence_records() if r.target == victim and r.wall_time >= crash_wall]
    assert fenced and fenced[0].succeeded, f"{victim} was not fenced: {fenced}"
    watch.mark(f"{victim} fenced by {fenced[0].fencer}", at=crash + fenced[0].wall_time - crash_wall)
    monitor.assert_no_double_run()
    print("\n" + watch.report(f"crash of {victim} running guest vm2:"))


@pytest.mark.parametrize("fault", ["freeze", "cut"])
def test_hung_or_cut_off_node_is_fenced(cluster: Cluster, cleanup: Cleanup, fault: str) -> None:
    resource = f"d-{fault}"
    cleanup(resource)
    resources.create(cluster, resource, "ocf:heartbeat:Dummy", "op", "monitor", "interval=3s")
    victim, _ = resources.wait_started(cluster, resource)
    watch = Stopwatch()
    fault_wall = time.time()
    watch.mark(f"{fault} {victim}")
    if fault == "freeze":
        cluster.freeze_node(victim)
    else:
        cluster.cut_network(victim)
    recovered_on, _ = resources.wait_started(cluster, resource, not_on=(victim,), timeout_s=60)
    watch.mark(f"{resource} Started on {recovered_on}")
    fenced = [r for r in cluster.fence_records() if r.target == victim and r.wall_time >= fault_wall]
    assert fenced and fenced[0].succeeded, f"{victim} was not fenced: {fenced}"
    assert cluster.init_pid(victim) is None, f"{victim} still has processes after it was fenced"
    print("\n" + watch.report(f"{fault} of {victim}:"))


def test_invariant_monitor_reports_a_guest_on_two_nodes(
    cluster: Cluster, monitor: InvariantMonitor, stray_guests: Callable[[str, str], None]
) -> None:
    stray_guests("node1", "twin")
    stray_guests("node2", "twin")
    time.sleep(4 * monitor.interval_s)
    found = monitor.double_runs
    assert [(run.guest, run.nodes) for run in found] == [("twin", ("node1", "node2"))], found
    assert found[0].sweeps >= 2
    print(f"\n{found[0].describe()}")


def test_live_migration_between_nodes_is_not_a_double_run(
    cluster: Cluster, monitor: InvariantMonitor, stray_guests: Callable[[str, str], None]
) -> None:
    """libvirt over TCP between nodes, distinct host UUIDs: what migrate_to will use."""
    stray_guests("node1", "mig")
    monitor.wait_running("mig", after=0.0, timeout_s=10)
    asked = time.monotonic()
    migrated = cluster.run("node1", [*VIRSH, "migrate", "--live", "mig", "qemu+tcp://node2/system"], 60.0)
    took_s = time.monotonic() - asked
    assert migrated.ok, migrated.explain()
    arrived = monitor.wait_running("mig", after=asked, exclude=("node1",), timeout_s=10)
    time.sleep(2 * monitor.interval_s)
    assert monitor.running_on("mig") == {"node2"}
    monitor.assert_no_double_run()
    print(
        f"\nlive migration node1 -> node2 took {took_s:.2f} s (virsh migrate); seen on node2 at "
        f"+{arrived.since - asked:.2f} s; no double run in {monitor.sweeps} sweeps"
    )
