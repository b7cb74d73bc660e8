"""The fault matrix: xen-guest and xen-host on a real 3-node cluster, one fault per scenario.

Every scenario runs with the invariant monitor sweeping every node's libvirtd, and ends
with :meth:`Scenario.assert_final` (tests/cluster/scenario.py): no guest ran on two hosts
at once; every guest is Started on exactly one node whose published capacity covers its
guests, or Stopped with a reason; no xenha action ran out of time; no reservation is left
behind by a living holder. Each scenario then gives the next one the same cluster back
(three online nodes, nothing configured but xen-host), except the last, which stops the
whole cluster. Failover times and each scenario's cost are printed at the end (-rP) and
written to build/fault-matrix.txt; docs/fault-matrix.md describes the scenarios.

The drift scenarios (a full host, ten moves into room for three) start a big guest by hand
on the target: the test configuration publishes a fixed ``memory_capacity``, so the
scheduler never learns about it and plans moves that only the agent's hypervisor view can
refuse - the window of stale numbers the reservation check exists for.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.cluster.scenario import InFlight, Report, Scenario
from tests.support.cluster import resources
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.invariants import InvariantMonitor
from tests.support.cluster.pacemaker_log import Execution, Line, executions, timeouts
from tests.support.cluster.xenha_config import configure_cluster, filler_image, guest_demand_mib, pcs

pytestmark = [pytest.mark.cluster, pytest.mark.qemu, pytest.mark.slow]

CAPACITY_MIB = 1000  # every node's published hv_memory: 14 tiny guests
TINY_MIB = 64
TINY_DEMAND = guest_demand_mib(TINY_MIB)  # 70 MiB
# A filler guest's 48 MiB of non-zero memory at 4 MiB/s: a live migration in flight for ~12 s
# (inside FAULT_OPS' migrate_to timeout of 20 s), of which the fault needs the first few.
SLOW_SPEED_MIB_S = 4
SLOW_MIGRATION = f"migration_speed={SLOW_SPEED_MIB_S}"

REPORT = Report()


@pytest.fixture(scope="module")
def xenha(cluster: Cluster) -> Iterator[Cluster]:
    """xen-host on every node; no throttling of parallel actions (the machine is shared and
    busy: Pacemaker would otherwise run the ten moves of one scenario a few at a time)."""
    configure_cluster(cluster, CAPACITY_MIB, cpu_overcommit=8)
    pcs(cluster, "property", "set", "batch-limit=30", "node-action-limit=12", "load-threshold=1000%")
    filler_image(cluster)
    yield cluster
    table = REPORT.table()
    print(table)
    (cluster.layout.repo / "build" / "fault-matrix.txt").write_text(table + "\n")


@pytest.fixture
def scenario(request: pytest.FixtureRequest, xenha: Cluster, monitor: InvariantMonitor) -> Iterator[Scenario]:
    name = request.node.name.removeprefix("test_").replace("_", " ")
    current = Scenario(xenha, monitor, name, REPORT)
    yield current
    run_s = time.monotonic() - current.started
    cleanup_s = 0.0 if current.cluster_left_down else current.restore()
    REPORT.scenarios.append((name, run_s, cleanup_s, current.note))
    monitor.assert_no_double_run()  # during the clean-up too


def move(cluster: Cluster, guest: str, target: str) -> None:
    cluster.check(resources.any_node(cluster), ["crm_resource", "--move", "-r", guest, "-N", target], 30.0)


def start_slow_migration(scenario: Scenario, guest: str, source: str, target: str) -> InFlight:
    """Move the filler guest ``guest`` (on ``source``, filled) to ``target``; returns once its
    migration sends memory with seconds of it surely left (scenario.InFlight)."""
    filled_s = scenario.wait_filled(source, guest)
    move(scenario.cluster, guest, target)
    scenario.wait_incoming(target, guest)
    flight = scenario.migration_in_flight(source, guest, SLOW_SPEED_MIB_S)
    assert scenario.still_incoming(target, guest), f"the migration ended before the fault: nothing tested ({flight})"
    scenario.note = f"filled +{filled_s:.1f} s; "
    return flight


def place(
    scenario: Scenario, prefix: str, node: str, guests: list[str], *extra: str, boot_image: str | None = None
) -> None:
    """Create ``guests`` on ``node``, then drop the constraint that put them there."""
    constraint = scenario.prefer(prefix, node)
    for guest in guests:
        scenario.guest(guest, TINY_MIB, *extra, boot_image=boot_image)
    placed = scenario.wait_started(guests)
    assert set(placed.values()) == {node}, placed
    scenario.drop(constraint)


# ---- configuration --------------------------------------------------------------------------
def test_red_host_keeps_its_xen_host(xenha: Cluster) -> None:
    """xen-host must keep running where it reports red: stopped there by the health ban, its
    stop would withdraw the red and the scheduler would send guests back (found by the
    libvirtd-frozen scenario; fixed by allow-unhealthy-nodes on the clone)."""
    node = resources.any_node(xenha)
    script = (  # on a copy of the live CIB, in the node's private /run
        "cibadmin --query > /run/fm-cib.xml && "
        "CIB_file=/run/fm-cib.xml crm_attribute --node node3 --name '#health-xenha' --update red --lifetime reboot && "
        "crm_simulate --xml-file /run/fm-cib.xml --simulate; rm -f /run/fm-cib.xml"
    )
    planned = xenha.check(node, ["sh", "-c", script]).stdout
    summary = planned.split("Transition Summary:", 1)[1].split("Executing", 1)[0]
    assert "xen-host" not in summary, f"a red node3 would lose its xen-host:\n{summary}"


# ---- migrations under fire ------------------------------------------------------------------
def test_target_libvirtd_killed_during_migration(scenario: Scenario) -> None:
    cluster = scenario.cluster
    place(scenario, "kill", "node1", ["kill1"], SLOW_MIGRATION, boot_image=filler_image(cluster))
    flight = start_slow_migration(scenario, "kill1", "node1", "node2")
    killed_at = time.monotonic()
    cluster.kill_libvirtd("node2")
    left_s = flight.assert_struck(time.monotonic())  # the kill has been sent by now
    status = scenario.assert_final()
    attempts = scenario.results("kill1", "migrate_to")
    assert [attempt.result for attempt in attempts] == ["error"], attempts
    assert "migration of kill1 to node2 failed, it runs on node1 only" in attempts[0].reason, attempts[0]
    restarted = [at for at, event in cluster.events("node2") if event.startswith("restarting libvirtd")]
    assert [at for at in restarted if at >= scenario.started_wall], "libvirtd on node2 was not restarted"
    ended_on = status.started_on("kill1")[0]
    others = [node for node in cluster.layout.node_names if node != ended_on]
    arrived = scenario.monitor.first_running("kill1", after=killed_at, exclude=others)
    scenario.note += (
        f"killed with >= {left_s:.1f} s of sending left; "
        f"migrate_to failed ({attempts[0].reason.split(': ', 1)[1][:40]}); kill1 restarted on {ended_on}"
        + (f" +{arrived.since - killed_at:.1f} s" if arrived else "")
    )


def test_source_node_crashes_during_migration(scenario: Scenario) -> None:
    cluster = scenario.cluster
    place(scenario, "crash", "node1", ["crash1"], SLOW_MIGRATION, boot_image=filler_image(cluster))
    flight = start_slow_migration(scenario, "crash1", "node1", "node2")
    fault_wall, fault_at = time.time(), time.monotonic()
    cluster.kill_node("node1")
    left_s = flight.assert_struck(time.monotonic())  # the node is dead by now
    (row,) = scenario.failover("source crashed mid-migration", "node1", ["crash1"], fault_at, fault_wall)
    scenario.assert_final(holders_died_on=("node1",))
    scenario.note += f"crashed with >= {left_s:.1f} s of sending left; incoming copy discarded; crash1 restarted on {row.running_on} after fencing"


def test_network_cut_node_is_fenced(scenario: Scenario) -> None:
    cluster = scenario.cluster
    place(scenario, "cut", "node3", ["cut1", "cut2"])
    fault_wall, fault_at = time.time(), time.monotonic()
    cluster.cut_network("node3")
    rows = scenario.failover("cable cut", "node3", ["cut1", "cut2"], fault_at, fault_wall)
    scenario.assert_final(holders_died_on=("node3",))
    scenario.note = f"node3 fenced +{rows[0].fenced_after_s:.1f} s"


def test_libvirtd_frozen_node_is_fenced(scenario: Scenario) -> None:
    """Every action on the node with the hung libvirtd answers inside its timeout (deadlines.md):
    the monitor fails with the reason, the stop fails, Pacemaker fences; a red health, once
    published, stays until then (the node is not offered back to the guests)."""
    cluster = scenario.cluster
    place(scenario, "hang", "node2", ["hang1"])
    fault_wall, fault_at = time.time(), time.monotonic()
    cluster.freeze_libvirtd("node2")
    (row,) = scenario.failover("libvirtd frozen (SIGSTOP)", "node2", ["hang1"], fault_at, fault_wall)
    scenario.assert_final(holders_died_on=("node2",))  # no timeout allowed, not even on node2
    failed = [result for result in scenario.results("hang1") if result.node == "node2" and result.result == "error"]
    assert failed and all("did not answer in time" in result.reason for result in failed), failed
    assert {result.op for result in failed} & {"monitor", "stop", "migrate_to"}, failed
    health = [
        line.text for line in scenario.window.lines() if line.node == "node2" and "#health-xenha[node2]" in line.text
    ]
    withdrawn = [text for text in health if re.search(r"red -> \(unset\)", text)]
    assert not withdrawn, f"node2's red health was withdrawn before it was fenced: {withdrawn}"
    scenario.note = (
        f"{'/'.join(sorted({r.op for r in failed}))} failed in time; node2 fenced +{row.fenced_after_s:.1f} s; "
        + ("red published and kept" if any("-> red" in text for text in health) else "fenced before red")
    )


# ---- drift: the numbers the scheduler uses are stale ------------------------------------------
def test_migration_into_full_host_is_refused(scenario: Scenario) -> None:
    cluster = scenario.cluster
    scenario.leave_room("node3", 0)
    place(scenario, "full", "node1", ["full1"])
    move(cluster, "full1", "node3")
    status = scenario.assert_final()
    (refusal,) = scenario.results("full1", "migrate_to")
    assert refusal.result == "error" and re.match(
        rf"cannot migrate full1 to node3: needs {TINY_DEMAND} MiB, node3 has [01] MiB free", refusal.reason
    ), refusal
    starts = [f for f in status.failures if f.op_key == "full1_start_0" and f.node == "node3"]
    assert starts and starts[0].exit_reason.startswith(f"cannot start full1 on node3: needs {TINY_DEMAND} MiB"), (
        status.failures
    )
    assert all("node3" not in placement.nodes for placement in scenario.monitor.placements("full1"))
    scenario.note = f"refused with the reason; full1 restarted on {status.started_on('full1')[0]}"


def test_ten_concurrent_migrations_into_room_for_three(scenario: Scenario) -> None:
    crowd = [f"crowd{index}" for index in range(10)]
    away = scenario.prefer("crowd", "node2", "-INFINITY")
    with ThreadPoolExecutor(5) as pool:  # pcs takes a second a call here: five at a time
        list(pool.map(lambda guest: scenario.guest(guest, TINY_MIB), crowd))
    scenario.wait_started(crowd)
    scenario.leave_room("node2", 3 * TINY_DEMAND + TINY_DEMAND // 2)
    scenario.cluster.wait_throttle_known()  # else a young (or rebooted) node runs them two by two
    scenario.rescore(away, "INFINITY")  # one CIB update: the ten moves are planned together
    status = scenario.assert_final()
    assert scenario.max_running_at_once(crowd, "node2") <= 3
    on_target = [guest for guest in crowd if status.started_on(guest) == ("node2",)]
    assert 1 <= len(on_target) <= 3, on_target
    attempts = scenario.results(op="migrate_to")
    refused = [attempt for attempt in attempts if attempt.resource in crowd and attempt.result == "error"]
    admitted = [attempt for attempt in attempts if attempt.resource in crowd and attempt.result == "ok"]
    assert len(admitted) <= 3 and len(admitted) + len(refused) == len(crowd), attempts
    for attempt in refused:
        assert re.match(
            rf"cannot migrate {attempt.resource} to node2: needs {TINY_DEMAND} MiB, node2 has \d+ MiB free",
            attempt.reason,
        ), attempt
    runs = [run for run in executions(scenario.window.lines()) if run.op == "migrate_to" and run.resource in crowd]
    in_flight = max_overlap(runs)
    assert in_flight >= 5, f"the migrations were not concurrent (at most {in_flight} at once)"
    scenario.note = (
        f"{in_flight} migrate_to in flight at once; {len(admitted)} admitted, {len(refused)} refused; "
        f"{len(on_target)} end on node2"
    )


def max_overlap(runs: Iterable[Execution]) -> int:
    """How many of ``runs`` (executor actions with start and duration) overlapped at most."""
    edges = []
    for run in runs:
        if run.started is None or run.seconds is None:
            continue
        edges.append((run.started, 1))
        edges.append((run.started + timedelta(seconds=run.seconds), -1))
    current = most = 0
    for _, change in sorted(edges, key=lambda edge: (edge[0], edge[1])):
        current += change
        most = max(most, current)
    return most


# ---- bad guest configuration ------------------------------------------------------------------
def test_config_unreadable_at_start(scenario: Scenario) -> None:
    """cfg1's file is missing on node2 only (shared storage not mounted there): it starts
    elsewhere. cfg2's file is missing everywhere: Stopped, with the reason from every node."""
    cluster = scenario.cluster
    san = str(cluster.layout.san_dir)
    cluster.check("node2", ["mount", "-t", "tmpfs", "-o", "size=1m,mode=755", "xenha-san-unmounted", san])
    scenario.undo.append(lambda: cluster.run("node2", ["umount", san]))
    scenario.prefer("cfg", "node2", "100")
    scenario.guest("cfg1", TINY_MIB)
    scenario.guest("cfg2", TINY_MIB, meta=("target-role=Stopped",))
    (cluster.layout.san_dir / "cfg2.xml").unlink()
    pcs(cluster, "resource", "enable", "cfg2")
    status = scenario.assert_final(stopped={"cfg2": r"^cannot read \S*/cfg2\.xml: No such file or directory"})
    refused = [f for f in status.failures if f.op_key == "cfg1_start_0"]
    assert [(f.node, f.exit_status) for f in refused] == [("node2", "not installed")], status.failures
    assert re.match(r"cannot read \S*/cfg1\.xml: No such file or directory on node2", refused[0].exit_reason)
    assert status.started_on("cfg1") != ("node2",)
    cfg2_nodes = sorted(f.node for f in status.failures if f.op_key == "cfg2_start_0")
    assert cfg2_nodes == list(cluster.layout.node_names), status.failures
    assert not scenario.monitor.placements("cfg2"), "cfg2 ran somewhere"
    scenario.note = f"cfg1 started on {status.started_on('cfg1')[0]}; cfg2 refused on {len(cfg2_nodes)} nodes"


def test_corrupted_guest_xml(scenario: Scenario) -> None:
    """A running guest whose file gets corrupted keeps running (no needless restart); when it
    then dies, the cluster cannot start it again and says why."""
    cluster = scenario.cluster
    scenario.guest("bad1", TINY_MIB)
    node = scenario.wait_started(["bad1"])["bad1"]
    config = cluster.layout.san_dir / "bad1.xml"
    config.write_text(config.read_text()[:200])
    corrupted = time.monotonic()
    time.sleep(11.0)  # two monitors
    status = cluster.status(node)
    assert status.started_on("bad1") == (node,) and not [f for f in status.failures if f.op_key.startswith("bad1_")]
    assert [p.nodes for p in scenario.monitor.placements("bad1") if p.since >= corrupted] == []  # never moved
    warned = [line for line in scenario.window.lines() if "bad1 runs, but its configuration has a problem" in line.text]
    assert len(warned) >= 2, "the monitor did not warn about the broken file"
    cluster.check(node, ["virsh", "-c", "qemu:///system", "destroy", "bad1"])  # the guest dies
    cluster.wait_for("Pacemaker to notice", lambda status: not status.started_on("bad1"), timeout_s=30)
    scenario.assert_final(stopped={"bad1": r"bad1\.xml is not well-formed XML"})
    scenario.note = f"kept running on {node} for {len(warned)} monitors; after its crash: Stopped, not configured"


# ---- nodes ------------------------------------------------------------------------------------
def test_crashed_node_rejoins(scenario: Scenario) -> None:
    cluster = scenario.cluster
    place(scenario, "rejoin", "node1", ["rejoin1", "rejoin2"])
    fault_wall, fault_at = time.time(), time.monotonic()
    cluster.kill_node("node1")
    scenario.failover("node crash (power cut)", "node1", ["rejoin1", "rejoin2"], fault_at, fault_wall)
    booted_wall, booted = time.time(), time.monotonic()
    cluster.start_node("node1")
    online_s = time.monotonic() - booted
    cluster.wait_for(
        "xen-host on node1",
        lambda status: "node1" in [n for r in status.resources if r.id == "xen-host" for n in r.nodes],
    )
    ready_s = time.monotonic() - booted
    scenario.assert_final(holders_died_on=("node1",))
    health = cluster.check(
        "node1", ["crm_attribute", "--lifetime", "reboot", "--node", "node1", "--name", "#health-xenha", "--query",
                  "--quiet"],
    ).stdout.strip()  # fmt: skip
    assert health == "green", health
    assert not scenario.fenced("node1", booted_wall), "node1 was fenced again when it rejoined"
    scenario.note = f"node1 online {online_s:.1f} s after boot, xen-host started +{ready_s:.1f} s, health green"


def test_hung_node_is_fenced(scenario: Scenario) -> None:
    cluster = scenario.cluster
    place(scenario, "hung", "node3", ["hung1", "hung2"])
    fault_wall, fault_at = time.time(), time.monotonic()
    cluster.freeze_node("node3")
    rows = scenario.failover("node frozen (cgroup.freeze)", "node3", ["hung1", "hung2"], fault_at, fault_wall)
    assert cluster.init_pid("node3") is None, "node3 still has processes after it was fenced"
    scenario.assert_final(timeouts_allowed_on=("node3",), holders_died_on=("node3",))
    scenario.note = f"node3 fenced +{rows[0].fenced_after_s:.1f} s"


def test_quorum_loss_starts_nothing(scenario: Scenario) -> None:
    """Two of three nodes die: the survivor has no quorum, so it fences nobody, stops its own
    guest (no-quorum-policy=stop) and starts none of the others'."""
    cluster = scenario.cluster
    guests = {"node1": "qa1", "node2": "qb1", "node3": "qc1"}
    for node, guest in guests.items():
        place(scenario, guest[:2], node, [guest])
    fault_wall, fault_at = time.time(), time.monotonic()
    cluster.kill_node("node2")
    cluster.kill_node("node3")
    lost_s = cluster.wait_for("node1 to lose quorum", lambda status: not status.with_quorum, node="node1")
    deadline = time.monotonic() + 30
    while scenario.monitor.running_on("qa1") and time.monotonic() < deadline:
        time.sleep(0.2)
    own_stopped_s = time.monotonic() - fault_at
    assert not scenario.monitor.running_on("qa1"), "node1 kept its guest without quorum"
    time.sleep(10.0)  # scheduler runs and monitors: nothing may start
    for guest in guests.values():
        ran = [sorted(p.nodes) for p in scenario.monitor.placements(guest) if p.since > fault_at + 0.5 and p.nodes]
        assert not ran, f"{guest} ran on {ran} without quorum"
    assert not [r for r in cluster.fence_records() if r.wall_time >= fault_wall], "fencing without quorum"
    status = cluster.status("node1")
    assert not status.with_quorum and status.started_on("qa1") == (), status
    cluster.restore_all()
    scenario.assert_final(holders_died_on=("node2", "node3"))
    scenario.note = (
        f"no quorum +{lost_s:.1f} s; qa1 stopped by +{own_stopped_s:.1f} s; nothing started for 10 s; "
        "after two reboots all three run again"
    )


def test_whole_cluster_stops_cleanly(scenario: Scenario) -> None:
    """Last: node3 leaves (its guest migrates live), then node1 and node2 together (their
    guests stop). Nothing runs anywhere afterwards, nobody was fenced, nothing ran twice."""
    cluster = scenario.cluster
    guests = {"node1": "sa1", "node2": "sb1", "node3": "sc1"}
    for node, guest in guests.items():
        place(scenario, guest[:2], node, [guest])
    scenario.cluster_left_down = True
    left_s = cluster.stop_node("node3")
    migrated = scenario.results("sc1", "migrate_to")
    assert [m.result for m in migrated] == ["ok"], migrated
    assert scenario.monitor.running_on("sc1") in ({"node1"}, {"node2"}), scenario.monitor.placements("sc1")
    took: dict[str, float] = {}

    def stop(node: str) -> None:
        took[node] = cluster.stop_node(node)

    stoppers = [threading.Thread(target=stop, args=(node,)) for node in ("node1", "node2")]
    for stopper in stoppers:
        stopper.start()
    for stopper in stoppers:
        stopper.join(300)
    assert cluster.running_nodes(include_frozen=True) == [], "a node did not stop"
    time.sleep(2 * scenario.monitor.interval_s)
    for guest in guests.values():
        assert not scenario.monitor.running_on(guest), f"{guest} still runs"
    destroyed = [
        event for node in cluster.layout.node_names for stamp, event in cluster.events(node)
        if stamp >= scenario.started_wall and event.startswith("destroyed guest")
    ]  # fmt: skip
    assert not destroyed, f"Pacemaker left guests for the node's init to destroy: {destroyed}"
    assert not [r for r in cluster.fence_records() if r.wall_time >= scenario.started_wall], "a node was fenced"
    late: list[Line] = timeouts(scenario.window.lines(), [*guests.values(), "xen-host"])
    assert not late, late
    scenario.monitor.assert_no_double_run()
    scenario.note = (
        f"node3 left in {left_s:.1f} s (sc1 migrated live), node1+node2 in "
        f"{max(took.values()):.1f} s; no guest left, nobody fenced"
    )
