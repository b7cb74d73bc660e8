"""After a migration fails, the guest runs on one host only (issue 12, findings 3 and 4).

The source may be restored or resumed only once the target is verified to hold no copy;
when that cannot be verified in time, migrate_to fails without starting the source copy
(Pacemaker's stop on both sides then settles it). Two real libvirtd hosts (qemu driver,
tiny TCG guests) in network namespaces; the agent runs inside the source host. Each test
gets hosts of its own: it breaks them.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.acceptance.conftest import pair_of_hosts
from tests.acceptance.test_guest_migration import Move, destroy_everywhere
from tests.support.cib import write_cib
from tests.support.cluster.invariants import counts_as_running
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import HostSet
from tests.support.ocf import AgentCase, AgentRun

pytestmark = pytest.mark.qemu


@pytest.fixture
def hosts() -> Iterator[HostSet]:
    yield from pair_of_hosts("s")


def guest_move(hosts: HostSet, tmp_path: Path, name: str, **params: str) -> Move:
    config = tmp_path / f"{name}.xml"
    config.write_text(domain_xml(name, driver="qemu", memory_mib=64))
    cib = write_cib(tmp_path / "cib.xml", {"hostA": {"hv_memory": 1024}, "hostB": {"hv_memory": 1024}})
    base = AgentCase(
        "xen-guest", name,
        {"config": str(config), "hypervisor": "qemu:///system", "remoteuri": "qemu+tcp://%n/system",
         "force_stop": "true", **params},
        str(tmp_path / "rsctmp"), extra_env={"CIB_file": str(cib)},
    )  # fmt: skip
    return Move(hosts, name, cib, base)


def migrate_in_background(move: Move, timeout_ms: int) -> tuple[threading.Thread, list[AgentRun]]:
    results: list[AgentRun] = []

    def run() -> None:
        meta = {"migrate_source": "hostA", "migrate_target": "hostB"}
        results.append(move.at("hostA").run("migrate_to", meta=meta, timeout_ms=timeout_ms, timeout=180))

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def live_on(move: Move) -> list[str]:
    """Hosts where a copy of the guest is live: running, or paused after it ran (an incoming
    copy paused by the migration has not run guest code: tests/cluster/invariants.py)."""
    live = []
    for host in ("hostA", "hostB"):
        connection = libvirt.open(move.hosts.hosts[host].qemu_uri)
        try:
            state, reason = connection.lookupByName(move.name).state()
        except libvirt.libvirtError:
            continue
        finally:
            connection.close()
        if counts_as_running(state, reason):
            live.append(host)
    return live


def netns_run(hosts: HostSet, host: str, *argv: str) -> None:
    netns = hosts.hosts[host].netns
    assert netns is not None
    subprocess.run(["ip", "netns", "exec", netns, *argv], check=True, capture_output=True, text=True)


def test_failed_restore_on_the_target_never_restores_the_source_while_the_target_may_hold_a_copy(
    hosts: HostSet, tmp_path: Path
) -> None:
    saves = tmp_path / "saves"
    saves.mkdir()
    move = guest_move(hosts, tmp_path, "saverest", hvm_migration="save-restore", save_dir=str(saves))
    target = hosts.hosts["hostB"]
    assert target.address is not None
    try:
        assert move.at("hostA").run("start").code == 0
        thread, results = migrate_in_background(move, timeout_ms=60000)
        # The restore has begun on the target: its request has arrived. From now on the target's
        # link is down, so its reply cannot leave; the test watches it through its socket.
        wait_until(lambda: move.state("hostB") is not None, 30, "the restore never began on the target")
        netns_run(hosts, "hostB", "ip", "link", "set", "eth0", "down")
        try:
            wait_until(lambda: move.state("hostB") == libvirt.VIR_DOMAIN_RUNNING, 30,
                       "the target never completed the restore")  # fmt: skip
            # The guest runs on the target; the source's connection to it drops now (aborted),
            # as a network blip or a restarted libvirtd would drop it.
            netns_run(hosts, "hostA", "ss", "-K", "dst", target.address, "dport", "=", ":16509")
            time.sleep(1)
        finally:
            netns_run(hosts, "hostB", "ip", "link", "set", "eth0", "up")
        thread.join(120)
        result = results[0]
        assert result.code != 0 or "arrived" in result.stderr, f"the fault came too late: nothing tested\n{result}"
        time.sleep(2)
        assert live_on(move) != ["hostA", "hostB"], (
            f"the guest runs on both hosts after the failed restore:\n{result}"
        )
    finally:
        destroy_everywhere(hosts, move.name)


def test_failed_live_migration_never_resumes_the_source_while_the_target_may_hold_a_copy(
    hosts: HostSet, tmp_path: Path
) -> None:
    move = guest_move(hosts, tmp_path, "livesettle", hvm_migration="live")
    try:
        assert move.at("hostA").run("start").code == 0
        hosts.shape("hostA", "1mbit")  # the guest's few MiB take many seconds
        thread, results = migrate_in_background(move, timeout_ms=30000)
        wait_until(lambda: move.state("hostB") is not None, 30, "the migration never reached the target")
        time.sleep(0.5)
        assert move.state("hostB") == libvirt.VIR_DOMAIN_PAUSED, "the migration ended before the fault: nothing tested"
        hosts.freeze_libvirtd("hostB")
        try:
            thread.join(120)
        finally:
            hosts.thaw_libvirtd("hostB")
            hosts.shape("hostA", None)
        result = results[0]
        assert result.code != 0, f"migrate_to claimed success with the target's libvirtd frozen: {result}"
        # Whatever the target does once it answers again, the guest must not run on both.
        seen: list[list[str]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen.append(live_on(move))
            time.sleep(0.5)
        assert ["hostA", "hostB"] not in seen, f"the guest ran on both hosts after the failed migration:\n{result}"
        # The settle step may not spend the time the release of the booking needs.
        assert move.reservations() == "", f"the booking on hostB outlived the action:\n{result}"
    finally:
        destroy_everywhere(hosts, move.name)
