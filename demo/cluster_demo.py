"""``make demo``: xenha on a real 3-node cluster, narrated for a person.

Three nodes, each corosync + pacemakerd + libvirtd in its own namespaces, five tiny QEMU
guests. Configured with pcs as an operator would; then: per-host capacity, the failover
plan, ``xenha verify`` catching a setting and fixing it with the command it prints, a
capacity-checked live migration, a migration refused because a host filled up
behind the cluster's back, a node crash with fencing and recovery where there is room,
and the node's return. Every step shows the real commands and their output, and how long
it took. ``KEEP=1`` leaves the cluster running and prints how to reach it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from demo.narration import Narrator
from demo.verify_step import verify_step
from tests.support.cluster.claim import PrefixClaim
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.invariants import InvariantMonitor
from tests.support.cluster.layout import ClusterLayout
from tests.support.cluster.xenha_config import (
    configure_cluster,
    create_guest,
    guest_demand_mib,
    node_utilization,
    pcs,
    placements,
)

REPO = Path(__file__).resolve().parents[1]
XENHA = str(REPO / "bin" / "xenha")
CAPACITY_MIB = 256  # what each host offers guests (xen-host's memory_capacity)
# name -> (memory MiB, the node it prefers): two hosts end up full, one has room
GUESTS = {
    "db1": (128, "node1"),
    "web1": (64, "node1"),
    "db2": (128, "node2"),
    "web2": (64, "node2"),
    "app1": (96, "node3"),
}
PREFIX = os.environ.get("XENHA_DEMO_PREFIX", "xhd")


def agent_lines(cluster: Cluster, node: str, resource: str, needle: str, since: float) -> list[str]:
    """xen-guest's log lines for ``resource`` on ``node`` containing ``needle``, newest last."""
    log = cluster.node_log(node, "log/pacemaker/pacemaker.log")
    lines = [line for line in log.read_text(errors="replace").splitlines() if f"xen-guest({resource})" in line]
    return [line for line in lines if needle in line][-3:] if since else lines


def capacity_table(narrator: Narrator, cluster: Cluster) -> None:
    where = placements(cluster, list(GUESTS))
    published = node_utilization(cluster)
    narrator.say(f"{'host':6} {'hv_memory':>9} {'used':>5} {'free':>5}  guests (demand MiB)")
    for node in cluster.layout.node_names:
        if node not in published or node not in cluster.running_nodes():
            continue
        mine = [guest for guest, host in where.items() if host == node]
        used = sum(guest_demand_mib(GUESTS[guest][0]) for guest in mine)
        capacity = published[node].get("hv_memory", 0)
        listing = ", ".join(f"{guest} ({guest_demand_mib(GUESTS[guest][0])})" for guest in mine)
        narrator.say(f"{node:6} {capacity:>9} {used:>5} {capacity - used:>5}  {listing}")
    stopped = [guest for guest, host in where.items() if host is None]
    if stopped:
        narrator.say(f"stopped: {', '.join(stopped)}")


def wait_placed(cluster: Cluster, expected: dict[str, str], timeout_s: float = 90.0) -> None:
    cluster.wait_for(
        f"guests placed as {expected}",
        lambda status: all(status.started_on(guest) == (node,) for guest, node in expected.items()),
        timeout_s=timeout_s,
    )


def run_demo(cluster: Cluster, narrator: Narrator) -> None:
    node = "node1"
    narrator.step("1. A 3-node cluster: corosync + pacemakerd + libvirtd (qemu) per node")
    cluster.up()
    narrator.say(f"nodes online after {cluster.online_after_s:.1f} s")
    narrator.show(cluster, node, ["crm_mon", "-1"], keep=12)

    narrator.step("2. Configure it with pcs: fencing, placement by utilization, health, xen-host, guests")
    narrator.show(cluster, node, ["pcs", "stonith", "create", "fence-xenha", "fence_xenha_test",
                                  "pcmk_host_list=node1 node2 node3", "op", "monitor", "interval=60s"])  # fmt: skip
    cluster.wait_for("the fence device to start", lambda status: bool(status.started_on("fence-xenha")))

    def show(argv: Sequence[str]) -> None:
        narrator.say(f"{node}$ {shlex.join(argv)}")

    configure_cluster(cluster, CAPACITY_MIB, show=show)
    # Created stopped, placed, then started: a pcs edit replaces the whole configuration from
    # the copy it read, and would wipe what a starting agent writes meanwhile
    # (docs/decisions/concurrent-cib-edits.md).
    for guest, (memory, prefers) in GUESTS.items():
        shown = show if guest == "db1" else None
        create_guest(cluster, guest, memory, "--disabled", show=shown)
        pcs(cluster, "constraint", "location", guest, "prefers", f"{prefers}=50", show=shown)
    narrator.say("(and the same for web1, db2, web2, app1: 64, 128, 64 and 96 MiB)")
    pcs(cluster, "resource", "enable", *GUESTS, show=show)
    wait_placed(cluster, {guest: prefers for guest, (_, prefers) in GUESTS.items()})
    # The preferences only arrange the start; stickiness keeps the guests where they are.
    for guest, (_, prefers) in GUESTS.items():
        pcs(cluster, "constraint", "location", "remove", f"location-{guest}-{prefers}-50")
    narrator.took("configured, guests started")
    narrator.show(cluster, node, ["crm_mon", "-1", "-r"], keep=20)

    narrator.step("3. Capacity: published by xen-host and xen-guest, used by Pacemaker's scheduler")
    narrator.say("each guest's hv_memory = its maximum memory + Xen's per-guest overhead (64 MiB -> 70)")
    capacity_table(narrator, cluster)
    narrator.show(cluster, node, [XENHA, "status"], check=False)

    narrator.step("4. The failover plan: what Pacemaker's scheduler would do if a host failed")
    narrator.show(cluster, node, [XENHA, "plan"], check=False)
    verify_step(cluster, narrator, node, XENHA)

    narrator.step("5. pcs resource move web2 node3: a capacity-checked live migration")
    started = time.monotonic()
    narrator.show(cluster, node, ["crm_resource", "--move", "--resource", "web2", "--node", "node3"])
    wait_placed(cluster, {"web2": "node3"})
    narrator.say(f"web2 runs on node3 {time.monotonic() - started:.2f} s after the move was asked for")
    for line in agent_lines(cluster, "node2", "web2", "", since=started)[-4:]:
        narrator.say(f"node2 log: {line.split(':    ', 1)[-1]}")
    narrator.show(cluster, node, ["crm_resource", "--clear", "--resource", "web2"])
    wait_settled(cluster)
    capacity_table(narrator, cluster)

    narrator.step("6. A host fills up behind the cluster's back; a move into it is refused")
    narrator.say("someone starts a 5 GiB guest by hand on node2, outside the cluster; Pacemaker's figures")
    narrator.say("for node2 do not know it (memory_capacity is fixed), so the scheduler plans the move;")
    narrator.say("xen-guest's reservation checks node2's hypervisor and refuses")
    hog = cluster.layout.san_dir / "hog.xml"
    from tests.support.guests import domain_xml

    hog.write_text(domain_xml("hog", memory_mib=int(node_total_mib(cluster, "node2"))))
    narrator.show(cluster, "node2", ["virsh", "-q", "-c", "qemu:///system", "create", str(hog)])
    started = time.monotonic()
    narrator.show(cluster, node, ["crm_resource", "--move", "--resource", "web1", "--node", "node2"])
    cluster.wait_for("web1 to be running again", lambda status: bool(status.started_on("web1")), timeout_s=90)
    time.sleep(2)
    for line in agent_lines(cluster, "node1", "web1", "cannot migrate", since=started):
        narrator.say(f"node1 log: {line.split(':    ', 1)[-1]}")
    narrator.show(cluster, node, ["crm_mon", "-1", "-r"], keep=40)
    narrator.say("Pacemaker's answer to any failed migrate_to is to stop the guest and start it where the")
    narrator.say("scheduler finds room; node2 refused that start too, so web1 started on a host with room")
    narrator.show(cluster, "node2", ["virsh", "-q", "-c", "qemu:///system", "destroy", "hog"])
    narrator.show(cluster, node, ["crm_resource", "--clear", "--resource", "web1"])
    narrator.show(cluster, node, ["crm_resource", "--cleanup", "--resource", "web1"], keep=1)
    wait_settled(cluster)
    capacity_table(narrator, cluster)

    narrator.step("7. node1 crashes: fencing, then its guests restart where they fit")
    victim = next((host for guest, host in placements(cluster, ["db1"]).items() if host), "node1")
    on_victim = [guest for guest, host in placements(cluster, list(GUESTS)).items() if host == victim]
    narrator.say(f"{victim} runs {', '.join(on_victim)}; killing every process of {victim} (its guests too)")
    with InvariantMonitor(lambda: {host: cluster.libvirt_uri(host) for host in cluster.layout.node_names}) as monitor:
        crashed = time.monotonic()
        cluster.kill_node(victim)
        survivor = next(host for host in cluster.layout.node_names if host != victim)
        cluster.wait_for(f"{victim} to be fenced", lambda status: not status.node(victim).online, timeout_s=60)
        time.sleep(8)
        for guest in on_victim:
            placed = monitor.first_running(guest, after=crashed, exclude=(victim,))
            if placed is not None:
                where = ", ".join(sorted(placed.nodes))
                narrator.say(f"{guest} running again on {where} {placed.since - crashed:.1f} s after the crash")
            else:
                narrator.say(f"{guest} is not running anywhere")
        monitor.assert_no_double_run()
    records = cluster.fence_records()
    narrator.say(f"fence agent: {records[-1] if records else 'no record'}")
    narrator.show(cluster, survivor, ["crm_mon", "-1", "-r"], keep=25)
    capacity_table(narrator, cluster)
    stopped_now = [guest for guest, host in placements(cluster, list(GUESTS)).items() if host is None]
    for stuck in stuck_guests(cluster, stopped_now):
        narrator.say(f"scheduler (the DC's log): {stuck}")
    for guest, host in placements(cluster, list(GUESTS)).items():
        if host is None:
            needs = guest_demand_mib(GUESTS[guest][0])
            narrator.say(f"{guest} needs {needs} MiB: no surviving host has that much free (see the table)")
    narrator.show(cluster, survivor, [XENHA, "plan"], check=False)

    narrator.step(f"8. {victim} comes back: the stopped guest has room again")
    cluster.start_node(victim)
    cluster.wait_for(
        "every guest to run", lambda status: all(status.started_on(guest) for guest in GUESTS), timeout_s=120
    )
    narrator.took(f"{victim} rejoined, all guests running")
    capacity_table(narrator, cluster)


def stuck_guests(cluster: Cluster, guests: Sequence[str]) -> list[str]:
    """The scheduler's latest "cannot run anywhere" line for each of ``guests``, from the logs."""
    found: dict[str, str] = {}
    for host in cluster.running_nodes():
        log = cluster.node_log(host, "log/pacemaker/pacemaker.log").read_text(errors="replace")
        for line in log.splitlines():
            for guest in guests:
                if f"Resource {guest} cannot run anywhere" in line:
                    found[guest] = line.split(") ", 1)[-1].strip()
    return list(found.values())


def wait_settled(cluster: Cluster, timeout_s: float = 60.0) -> None:
    """Until every guest is Started on exactly one node (no transition in flight)."""
    cluster.wait_for(
        "the guests to settle",
        lambda status: all(len(status.started_on(guest)) == 1 for guest in GUESTS),
        timeout_s=timeout_s,
    )


def node_total_mib(cluster: Cluster, node: str) -> int:
    info = cluster.check(node, ["virsh", "-q", "-c", "qemu:///system", "nodeinfo"]).stdout
    for line in info.splitlines():
        if line.startswith("Memory size:"):
            return int(line.split()[2]) // 1024
    raise SystemExit(f"demo: no memory size in virsh nodeinfo on {node}")


def main() -> int:
    keep = os.environ.get("KEEP", "") not in ("", "0")
    narrator = Narrator()
    print("xenha demo: Xen-style guests (tiny QEMU guests here) on a real 3-node Pacemaker cluster")
    claim = PrefixClaim(PREFIX).acquire()
    cluster = Cluster(ClusterLayout(PREFIX), say=lambda text: None, seed_fence_device=False)
    failed = True
    try:
        run_demo(cluster, narrator)
        failed = False
    finally:
        narrator.step("Done")
        if keep and not failed:
            print(f"    the cluster keeps running (prefix {PREFIX}). Reach a node with:")
            print(f"      XENHA_CLUSTER_PREFIX={PREFIX} tools/test-cluster ssh node1 crm_mon -1")
            print(f"      XENHA_CLUSTER_PREFIX={PREFIX} tools/test-cluster ssh node2   # a shell")
            print(f"    and stop it with: XENHA_CLUSTER_PREFIX={PREFIX} tools/test-cluster down --purge")
        else:
            cluster.teardown()
            print("    cluster torn down: no namespaces, cgroups, processes or guests left")
        claim.release()
        print(f"    total: {time.monotonic() - narrator.started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
