"""xenha on a real Pacemaker cluster of two Xen 4.17 hosts, fenced by SBD (issue 11 item 6).

Each host offers 748 MiB to guests (1536 MiB, dom0_mem=768M, Xen's own share: xen-host
publishes it as hv_memory); a 128 MiB PV guest needs 132 MiB of it. The four guests of
``POOL`` are created once for the three tests that need guests (a round of guest starts
costs minutes under TCG), where the crash test wants them, and each test first puts them
where it needs them (``arrange``: nothing to do when they are there already). The tests
run after the lab's other tests (conftest.py) and in the order written: the two that kill a
host come last (the second brings the first's victim back through the ``two_hosts``
fixture), so a fault never leaves the earlier tests a one-host cluster.

`make test` runs the crash test only (node-crash failover during a migration in flight):
the others are marked ``beyond_budget`` and run with `make xen-cluster-test` — with them the
Xen part of the suite outgrows `make test`'s 45 minutes (docs/decisions/xen-cluster.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.support.xenlab.cluster import (
    FAILOVER_RECORD,
    FENCE_DEVICE,
    SBD_MSGWAIT_S,
    XenCluster,
    arrange,
    crash_and_recover,
    create_guests,
    delete_guests,
    pin,
    unpin,
    xl_copies,
)
from tests.support.xenlab.guests import FaultNotArranged, domain_view, pv_demand_mib
from xenha.planner.scheduler import parse_simulate_output

pytestmark = pytest.mark.xen

# name -> (memory MiB, the host it is created on): where the crash test needs them, so that
# `make test`, which runs that test alone, moves none before it (two waves of starts, not three)
# pv-ballast stays pinned to xenhost1
POOL = {"pv-ballast": (384, "xenhost1"), "pv-moving": (128, "xenhost1"), "pv-fits": (128, "xenhost2"),
        "pv-too-big": (256, "xenhost2")}  # fmt: skip
PRIORITIES = {"pv-moving": 20, "pv-fits": 10}  # who restarts first on a survivor short of room


def demand(guest: str) -> int:
    """hv_memory a guest of POOL needs (xen-guest publishes it; one vCPU, PV): 128 MiB -> 132."""
    return pv_demand_mib(POOL[guest][0])


@pytest.fixture(scope="module")
def pool(xen_cluster: XenCluster) -> Iterator[list[str]]:
    """POOL's guests running where POOL says; removed at the end (the crash test removes them
    before the fencing test, whose rejoin would otherwise start the stopped one)."""
    xen_cluster.wait_online(xen_cluster.nodes)
    started = time.monotonic()
    try:
        create_guests(xen_cluster, POOL, PRIORITIES, pinned=["pv-ballast"])
        print(f"{', '.join(POOL)} created and started in {time.monotonic() - started:.0f} s")
        yield list(POOL)
    finally:
        if xen_cluster.up_hosts():
            delete_guests(xen_cluster, list(POOL))


def pacemaker_log(cluster: XenCluster, node: str, needle: str, since: float = 0.0) -> list[str]:
    """Lines of ``node``'s pacemaker.log holding ``needle``, logged at or after ``since`` (epoch
    seconds; the second of a line is its resolution)."""
    found = cluster.host(node).sh(f"grep -F {needle!r} /var/log/pacemaker/pacemaker.log", 60).stdout
    return [line for line in found.splitlines() if log_epoch(line) >= int(since)]


def log_epoch(line: str) -> float:
    """The time of a pacemaker.log line ("Dec 03 11:28:47 ..."; the dom0s run in UTC)."""
    stamp = datetime.strptime(f"{datetime.now(UTC).year} {line[:15]}", "%Y %b %d %H:%M:%S")
    return stamp.replace(tzinfo=UTC).timestamp()


def reservations(cluster: XenCluster, guest: str) -> list[str]:
    """xen-guest's reservations for ``guest`` left in the CIB (crm_config's ledger)."""
    crm_config = cluster.check(cluster.any_node(), ["cibadmin", "--query", "--scope", "crm_config"])
    return [part for part in crm_config.split('"') if "-rsv-" in part and guest in part]


@pytest.mark.beyond_budget
def test_move_through_pacemaker_is_capacity_checked_and_paused(two_hosts: XenCluster, pool: list[str]) -> None:
    """``pcs resource move`` of a running PV guest: Pacemaker migrates it (migrate_to on the
    source, migrate_from on the target) by the method the host supports (paused: Debian's
    Xen cannot live-migrate PV), Pacemaker then reports it on the target, Xen holds exactly
    one copy, and no reservation is left. pv-fits moves from xenhost2 to xenhost1, into
    the room pv-ballast and pv-moving leave it (390 + 132 + 132 of 748 MiB)."""
    cluster, guest, source, target = two_hosts, "pv-fits", "xenhost2", "xenhost1"
    arrange(cluster, {guest: source})
    assert list(xl_copies(cluster, guest)) == [source]
    since = cluster.dom0_clock(source)
    started = time.monotonic()
    # pcs 0.11: the move's constraint, a wait for the cluster to apply it, the constraint removed
    cluster.pcs("resource", "move", guest, target, timeout_s=600)
    cluster.wait_started(guest, target, 300)
    print(f"{guest} started on {target} {time.monotonic() - started:.1f} s after pcs resource move")
    copies = xl_copies(cluster, guest)
    assert list(copies) == [target] and "p" not in copies[target], copies
    moved = pacemaker_log(cluster, source, f"xen-guest({guest})", since)
    print("\n".join(line.split(": ", 1)[-1] for line in moved[-6:]))
    assert any(f"paused: pv_migration=auto: {source} cannot live-migrate PV guests" in line for line in moved)
    pause = [m for line in moved if (m := re.search(f"was paused for ([0-9.]+) s to move to {target}", line))]
    assert pause, "xen-guest logged no measured pause"
    assert pacemaker_log(cluster, source, f"Result of migrate_to operation for {guest} on {source}: ok", since)
    assert pacemaker_log(cluster, target, f"Result of migrate_from operation for {guest} on {target}: ok", since)
    assert not pacemaker_log(cluster, target, f"Result of start operation for {guest} on {target}", since)
    assert reservations(cluster, guest) == []
    assert cluster.status().failures == ()


@pytest.mark.beyond_budget
def test_move_into_a_host_without_room_is_refused_by_the_scheduler(two_hosts: XenCluster, pool: list[str]) -> None:
    """pv-too-big (256 MiB: 262 of hv_memory) is asked to move to xenhost1, which runs
    pv-ballast (384), pv-moving (128) and pv-fits (128) when the test before moved it there:
    390 + 132 (+ 132) of its 748 MiB, no room for 262 (the
    guests boot ballooned down to 128 MiB, but xenha counts their maximum). The guests on
    xenhost1 are pinned there by location constraints for this test: unpinned, the scheduler
    makes room by a swap (it migrates pv-moving to xenhost2 while pv-too-big moves in — seen
    on the first run, with another pair, where xen-guest's admission then refused the swap's
    migrate_to and Pacemaker stopped the guest to recover). The layer that refuses is
    Pacemaker's scheduler (placement-strategy=balanced and the utilization xen-host and
    xen-guest publish): the move's constraint is there (its INFINITY is the allocation score
    on xenhost1: Pacemaker 2.1.5 checks utilization after scoring, and a refusal does not
    show as a score), yet the scheduler, asked with the live CIB, assigns the guest to
    xenhost2, plans no action for it, and leaves xenhost1 less room than it needs; no
    migrate_to is ever run, so the guest keeps running on xenhost2 untouched (same Xen
    domain). xen-guest's admission, the layer behind it, is never asked (tests/xen shows it
    refusing on its own)."""
    cluster, guest = two_hosts, "pv-too-big"
    arrange(cluster, {"pv-moving": "xenhost1", guest: "xenhost2"})
    on_full = [name for name, node in cluster.placements(pool).items() if node == "xenhost1"]
    blockers = [name for name in on_full if name != "pv-ballast"]  # pv-ballast is pinned for good
    pin(cluster, blockers, "xenhost1")
    try:
        since = cluster.dom0_clock("xenhost2")
        before = domain_view(cluster.host("xenhost2"), guest)
        room = cluster.node_utilization()["xenhost1"]["hv_memory"] - sum(demand(name) for name in on_full)
        assert room < demand(guest), f"xenhost1 has room for {guest} ({room} MiB): the refusal would prove nothing"
        # crm_resource --move: what `pcs resource move-with-constraint` runs (pcs is shown by the test above)
        cluster.check(cluster.any_node(), ["crm_resource", "--move", "--resource", guest, "--node", "xenhost1"])
        cluster.run(cluster.any_node(), ["crm_resource", "--wait", "--timeout=120s"], 180)
        constraints = cluster.check(cluster.any_node(), ["cibadmin", "--query", "--scope", "constraints"])
        assert re.search(f'rsc="{guest}"[^>]*node="xenhost1"', constraints), constraints  # the move was asked
        # the scheduler's answer with the live CIB, read by the planner's own parser
        plan = parse_simulate_output(cluster.check(cluster.any_node(), [
            "crm_simulate", "--live-check", "--run", "--show-utilization", "--output-as=xml"]))  # fmt: skip
        planned = [action for action in plan.summary if f"resource={guest}" in action.split()]
        left = plan.remaining.get("xenhost1")
        print(f"{guest} assigned to {plan.assignments.get(guest)}; planned for it: {planned or 'nothing'}; "
              f"xenhost1 left with {left} for a demand of {demand(guest)} MiB")  # fmt: skip
        assert plan.assignments.get(guest) == "xenhost2", plan
        assert planned == [], plan.summary
        assert left is not None and left.memory_mib < demand(guest), plan.remaining
        assert cluster.status().started_on(guest) == ("xenhost2",)
        after = domain_view(cluster.host("xenhost2"), guest)
        assert after.xl_id == before.xl_id and after.libvirt_state == "running", (before, after)
        assert not pacemaker_log(cluster, "xenhost2", f"migrate_to operation for {guest}", since)
        assert list(xl_copies(cluster, guest)) == ["xenhost2"]
    finally:
        cluster.run(cluster.any_node(), ["crm_resource", "--clear", "--resource", guest], 60)
        unpin(cluster, blockers)


def test_host_crash_during_a_migration_fences_it_and_restarts_guests_where_they_fit(
    two_hosts: XenCluster, pool: list[str]
) -> None:
    """Node-crash failover and migration under fire, one crash.

    xenhost1 runs pv-ballast (384 MiB) and ``pv-moving``; xenhost2 runs ``pv-fits`` (128 MiB)
    and ``pv-too-big`` (256 MiB). ``pv-moving`` is asked to move to xenhost2, and while its
    paused copy is in flight (seen: the arriving domain on xenhost2), xenhost2's QEMU is
    killed. Then: Pacemaker fences xenhost2 through sbd-fence, not before SBD's msgwait;
    pv-moving runs exactly once, on xenhost1; pv-fits restarts on xenhost1 after the
    fencing; pv-too-big does not fit beside them (390 + 132 + 132 + 262 > 748) and stays
    stopped. Never two copies. The guests are removed at the end (xenhost2 still down).
    """
    cluster = two_hosts
    source, target = cluster.host("xenhost1"), cluster.host("xenhost2")
    guests = pool
    try:
        before = {name: host for name, (_, host) in POOL.items()}  # where POOL makes them
        arrange(cluster, before)  # after the other tests' moves; nothing to do when this test runs alone
        asked = cluster.dom0_clock(source.name)
        # crm_resource --move: what pcs resource move-with-constraint runs, without pcs's minute
        cluster.check(source.name, ["crm_resource", "--move", "--resource", "pv-moving", "--node", "xenhost2"])
        # In flight: the arriving domain exists on the target (paused while it is restored)
        # and migrate_to has not returned on the source. One ssh call per look, and the kill
        # right after it: the copy of a 128 MiB guest lasts 20-90 s here.
        deadline = time.monotonic() + 240
        in_flight = None
        while in_flight is None and time.monotonic() < deadline:
            arriving = domain_view(target, "pv-moving")
            if arriving.xl_id is not None and "p" in (arriving.xl_flags or ""):
                in_flight = f"arriving on xenhost2 as domain {arriving.xl_id} ({arriving.xl_flags})"
            else:
                time.sleep(0.5)
        if in_flight is None:
            raise FaultNotArranged(f"never saw pv-moving arriving on xenhost2: {xl_copies(cluster, 'pv-moving')}")
        failover = crash_and_recover(cluster, target, before, ["pv-moving", "pv-fits"])
        print(f"in flight: {in_flight}")
        print("\n".join(failover.lines()))
        crashed = (failover.fenced.completed or 0.0) - failover.fenced_after_s
        done = [line for line in pacemaker_log(cluster, source.name, "pv-moving migrated to xenhost2", asked)
                if log_epoch(line) < crashed]  # fmt: skip
        if done:  # the copy ended before the kill reached xenhost2: not a migration under fire
            raise FaultNotArranged(f"the migration had completed before xenhost2 was killed: {done[-1]}")
        assert failover.fenced.target == "xenhost2" and failover.fenced.delegate == "xenhost1", failover.fenced
        history = cluster.check(source.name, ["stonith_admin", "--history", "xenhost2", "--verbose"])
        print(history.strip())
        assert FENCE_DEVICE in history or "success" in history, history
        assert failover.fenced_after_s >= SBD_MSGWAIT_S, failover
        assert not target.qemu_running()
        assert failover.placements == {
            "pv-ballast": "xenhost1", "pv-moving": "xenhost1", "pv-fits": "xenhost1", "pv-too-big": None,
        }  # fmt: skip
        for guest in ("pv-moving", "pv-fits"):
            copies = xl_copies(cluster, guest)
            assert list(copies) == ["xenhost1"] and "p" not in copies["xenhost1"], (guest, copies)
        assert xl_copies(cluster, "pv-too-big") == {}
        started_fits = cluster.check(source.name, ["sh", "-c", "cibadmin --query --scope status | grep -o "
                                                   "'id=\"pv-fits_last_0\"[^>]*last-rc-change=\"[0-9]*\"'"])  # fmt: skip
        rc_change = int(started_fits.rsplit('"', 2)[-2])
        assert failover.fenced.completed is not None and rc_change >= int(failover.fenced.completed), (
            "pv-fits started on xenhost1 before xenhost2 was fenced",
            rc_change,
            failover.fenced,
        )
        failover.record(FAILOVER_RECORD, f"pv-moving's paused migration to xenhost2 in flight ({in_flight})")
    finally:
        delete_guests(cluster, guests)


@pytest.mark.beyond_budget
def test_fencing_a_live_host_powers_it_off(two_hosts: XenCluster) -> None:
    """``stonith_admin --reboot xenhost2`` (what ``pcs stonith fence xenhost2`` asks the
    fencer, without pcs's half-minute start): fence_sbd writes the poison pill into
    xenhost2's slot of the shared disk; xenhost2's sbd reads it and resets the host (Xen:
    "Hardware Dom0 shutdown: rebooting machine"), and its QEMU (``-no-reboot``) exits — well
    inside msgwait, after which the fencer calls it done."""
    cluster = two_hosts
    victim = cluster.host("xenhost2")
    since = cluster.dom0_clock("xenhost1")
    asked = time.monotonic()
    cluster.host("xenhost1").sh("setsid stonith_admin --reboot xenhost2 </dev/null >/run/fence.out 2>&1 &", 60)
    cluster.wait_powered_off(victim, SBD_MSGWAIT_S + 60)
    off_after = time.monotonic() - asked
    # the fencer's log, not only its history: 2.1.5's history showed a repeated fencing of one
    # host only as its first (docs/xen-lab-findings.md). Its final word on a fencing, as 2.1.5
    # writes it: "Operation 'reboot' targeting xenhost2 by xenhost1 for pacemaker-controld.341@
    # xenhost1: OK (complete)" (the agent's own line has its pid: "Operation 'reboot' [1336] ...")
    # Only lines logged since the request: the crash test before this one fenced xenhost2 by
    # xenhost1 too, and its line ended the wait at once (the fifth session's first green crash).
    needle = "Operation 'reboot' targeting xenhost2 by xenhost1 for "
    wait_for_log = time.monotonic() + 180
    while not (done := [line for line in pacemaker_log(cluster, "xenhost1", needle, since - 1) if "OK (complete)" in line]) \
            and time.monotonic() < wait_for_log:  # fmt: skip
        time.sleep(3)
    assert done, f"xenhost1's fencer logged no completed reboot of xenhost2 since {since:.0f}"
    # its log line, not stonith_admin's history: 2.1.5's history of a host fenced twice keeps
    # showing the first fencing (the crash test's, when it ran before: a figure of -226.7 s)
    print(f"xenhost2's QEMU exited {off_after:.1f} s after stonith_admin --reboot; xenhost1's fencer "
          f"logged the reboot done {log_epoch(done[-1]) - since:.0f} s after")  # fmt: skip
    console = victim.console_log.read_text(errors="replace")
    assert "Hardware Dom0 shutdown" in console, console[-2000:]
    assert off_after < SBD_MSGWAIT_S + 30
