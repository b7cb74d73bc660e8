"""Moves of PV guests that go wrong on real Xen (issue 11 item 2), and save-restore.

libxl cannot abort a migration, and a PV guest on Debian's Xen moves suspended: every fault
below strikes while the source is stopped for the copy (checked before the fault is
arranged). What each test holds the agent to is the invariant, not a particular path: the
guest never runs on two hosts, migrate_to never claims a move it did not verify, it returns
inside its own timeout, and Pacemaker's stops on both hosts that follow a failed move
leave no domain behind anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.ocf import AgentRun
from tests.support.xenlab.guests import (
    Dom0Agent,
    DomainView,
    FaultNotArranged,
    domain_view,
    reservations,
    started_on,
    stopped_for_copy,
    wait_for,
)
from tests.support.xenlab.lab import Lab, XenHost

pytestmark = pytest.mark.xen

LAB_NIC = "ip -o link | awk -F': ' '/52:54:00:99:/ {print $2}'"  # the NIC on the lab network


def running_copies(lab: Lab, name: str) -> dict[str, str]:
    """The hosts where Xen itself runs the guest (not paused, not suspended): host -> xl flags."""
    views = {host.name: domain_view(host, name) for host in lab.hosts}
    return {
        host: view.xl_flags
        for host, view in views.items()
        if view.xl_flags is not None and not stopped_for_copy(view) and "d" not in view.xl_flags
    }


def cpu_seconds(host: XenHost, name: str) -> float | None:
    fields = host.sh(f"xl list {name} 2>/dev/null | tail -n +2").stdout.split()
    return float(fields[5]) if len(fields) >= 6 else None


def not_frozen(host: XenHost, name: str) -> bool:
    """Whether the guest uses CPU time (a running busybox guest does, a frozen one does not)."""
    first = cpu_seconds(host, name)
    time.sleep(8)
    later = cpu_seconds(host, name)
    return first is not None and later is not None and later > first


@pytest.fixture
def in_background() -> Iterator[Callable[[Callable[[], AgentRun]], Future[AgentRun]]]:
    with ThreadPoolExecutor(1) as pool:
        yield pool.submit


def copy_under_way(lab: Lab, source: XenHost, name: str, move: Future[AgentRun]) -> DomainView:
    """Wait until the source is stopped for the copy while migrate_to still runs; that view."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not move.done():
        view = domain_view(source, name)
        if stopped_for_copy(view):
            return view
        time.sleep(0.3)
    raise FaultNotArranged(f"never saw {name} stopped for the copy on {source.name} while migrate_to ran")


def stop_on_both(agent: Dom0Agent, lab: Lab, name: str) -> dict[str, AgentRun]:
    """What Pacemaker does after a failed migrate_to: stop on the target, then on the source."""
    stops = {host.name: agent.run(host, "stop", timeout_ms=120000) for host in reversed(lab.hosts)}
    for host in lab.hosts:
        assert stops[host.name].code == 0, (host.name, stops[host.name])
        assert domain_view(host, name).xl_id is None, f"{name} left on {host.name} after its stop"
    return stops


def test_save_dir_where_xen_cannot_save_is_refused_by_validation(lab: Lab, cib: Path, guest_name: str) -> None:
    """Xen cannot save a guest onto the lab's 9p shared storage: libxc writes the guest's pages
    from its foreign mappings, which virtio-9p cannot pin (EFAULT), and the failed save leaves
    the guest suspended while libvirt calls it running. Shown first with a bare save; then
    save-restore with such a save_dir is refused by validation (6: no node can do it), and
    migrate_to never tries it: the guest runs on, untouched."""
    source, target = lab.host("xenhost1"), lab.host("xenhost2")
    (lab.san / "saves").mkdir(exist_ok=True)
    agent = started_on(lab, source, guest_name)
    bare = source.sh(f"virsh -c xen:///system save {guest_name} /srv/san/saves/{guest_name}.bare")
    libxc = source.sh("grep -h 'Failed to write page data' /var/log/libvirt/libxl/*.log | tail -1").stdout.strip()
    left = domain_view(source, guest_name)
    print(f"bare save onto 9p -> {bare.returncode}: {bare.stderr.strip()}; libxc: {libxc}; the guest then: {left}")
    assert bare.returncode != 0 and "Bad address" in libxc, "Xen saved onto 9p: the refusal has lost its reason"
    assert stopped_for_copy(left) and left.libvirt_state == "running", left  # the frozen source, as libvirt hides it
    source.check(f"virsh -c xen:///system destroy {guest_name}")
    agent = started_on(lab, source, guest_name)
    first_id = domain_view(source, guest_name).xl_id
    save_restore = {"pv_migration": "save-restore", "save_dir": "/srv/san/saves"}
    validated = agent.run(source, "validate-all", overrides=save_restore)
    print(f"validate-all -> {validated.code}: {validated.reason}")
    assert validated.code == 6, validated
    assert "save_dir /srv/san/saves is on a 9p filesystem, where libvirt's xen driver cannot save" in (
        validated.reason or ""
    )
    refused = agent.migrate(source, target, pv_migration="save-restore", save_dir="/srv/san/saves")
    assert refused.code == 6, refused
    view = domain_view(source, guest_name)
    assert view.xl_id == first_id and not stopped_for_copy(view), view
    assert domain_view(target, guest_name).xl_id is None
    assert reservations(lab) == ""


@pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="defect seen in the lab, not fixed yet: the restarted libvirtd does not know the half-received "
    "domain (Xen holds it paused); stop there answers 'stopped' and leaves it (docs/xen-lab-findings.md #4)",
)
def test_target_libvirtd_killed_during_a_paused_move(
    lab: Lab,
    cib: Path,
    guest_name: str,
    in_background: Callable[[Callable[[], AgentRun]], Future[AgentRun]],
) -> None:
    """The target's libvirtd dies (kill -9) while the PV guest is suspended for the copy. libxl
    does not resume a source after a failure past its suspend: the guest must not be left
    frozen while reported running, nor run on both hosts."""
    source, target = lab.host("xenhost1"), lab.host("xenhost2")
    agent = started_on(lab, source, guest_name)
    timeout_ms = 180000
    try:
        move = in_background(lambda: agent.migrate(source, target, timeout_ms=timeout_ms))
        during = copy_under_way(lab, source, guest_name, move)
        killed = target.sh("pkill -9 -x libvirtd && sleep 1 && ! pgrep -x libvirtd")
        if killed.returncode != 0 or move.done():
            raise FaultNotArranged(f"libvirtd on {target.name} was not killed during the copy: {killed}")
        result = move.result()
        at_return = running_copies(lab, guest_name)
        print(f"source during the copy: {during}; migrate_to -> {result.code} in {result.seconds:.1f} s: "
              f"{result.reason}; running copies at its return: {at_return}\n{result.stderr}")  # fmt: skip
        assert result.seconds < timeout_ms / 1000, "migrate_to outlived its timeout"
        assert len(at_return) <= 1, f"{guest_name} runs on two hosts: {at_return}"
        if result.code == 0:  # only a verified arrival may be claimed
            assert list(at_return) == [target.name], at_return
        elif source.name in at_return:  # reported as left running on the source: it must really run
            assert not_frozen(source, guest_name), f"{guest_name} frozen on {source.name} after: {result.reason}"
    finally:
        target.sh("pgrep -x libvirtd || (/usr/sbin/libvirtd --listen >>/var/log/libvirtd.out 2>&1 &)")
        wait_for(f"libvirtd on {target.name}", lambda: target.sh("virsh -c xen:///system version").returncode == 0, 120)
    if result.code != 0:
        stop_on_both(agent, lab, guest_name)
    assert len(running_copies(lab, guest_name)) <= 1


@pytest.mark.xfail(
    raises=AssertionError,
    strict=True,
    reason="defect seen in the lab, not fixed yet: migrate_to answers in time and touches neither copy, but "
    "the stop on the source then fails (libxl's migration job, which cannot be aborted, holds the domain's "
    "lock): Pacemaker would fence the source (docs/xen-lab-findings.md #1)",
)
@pytest.mark.leaves_debris
def test_network_cut_during_a_paused_move_hits_the_timeout(
    lab: Lab,
    cib: Path,
    guest_name: str,
    in_background: Callable[[Callable[[], AgentRun]], Future[AgentRun]],
) -> None:
    """The lab network to the target goes down while the guest is suspended for the copy: the
    copy can neither finish nor (on libxl) be aborted. migrate_to must answer inside its
    timeout without claiming the move; after the stops on both hosts and the network's
    return, the guest runs nowhere — no late arrival on the target."""
    source, target = lab.host("xenhost1"), lab.host("xenhost2")
    agent = started_on(lab, source, guest_name)
    nic = target.check(LAB_NIC).strip()
    assert nic, f"no lab NIC found on {target.name}"
    timeout_ms = 90000
    try:
        move = in_background(lambda: agent.migrate(source, target, timeout_ms=timeout_ms))
        copy_under_way(lab, source, guest_name, move)
        target.check(f"ip link set {nic} down")
        cut = source.sh(f"ping -c 2 -W 2 {target.address}")
        if cut.returncode == 0 or move.done():
            raise FaultNotArranged(f"the network to {target.name} was not cut during the copy: {cut.stdout}")
        result = move.result()
        at_return = running_copies(lab, guest_name)
        print(f"migrate_to -> {result.code} in {result.seconds:.1f} s: {result.reason}; "
              f"running copies at its return: {at_return}\n{result.stderr}")  # fmt: skip
        assert result.code != 0, "migrate_to claimed a move the target could not have confirmed"
        assert result.seconds < timeout_ms / 1000, "migrate_to outlived its timeout"
        assert len(at_return) <= 1, f"{guest_name} runs on two hosts: {at_return}"
        if source.name in at_return:
            assert not_frozen(source, guest_name), f"{guest_name} frozen on {source.name} after: {result.reason}"
        stops = stop_on_both(agent, lab, guest_name)
        print("stops: " + "; ".join(f"{host}: {run.code} in {run.seconds:.1f} s" for host, run in stops.items()))
    finally:
        target.sh(f"ip link set {nic} up")
    wait_for(f"{target.address} back", lambda: source.sh(f"ping -c 1 -W 2 {target.address}").returncode == 0, 60)
    time.sleep(20)  # a copy the network held back would land now
    for host in lab.hosts:
        assert domain_view(host, guest_name).xl_id is None, f"{guest_name} appeared on {host.name} afterwards"
