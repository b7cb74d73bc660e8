"""migrate_to/migrate_from between two real libvirtd hosts with tiny QEMU guests.

The agent runs inside the source host's namespaces, as Pacemaker would run it there. The
cluster is played by a CIB file (``CIB_file``), which gives the nodes their capacity and
holds the reservation ledger (tests/support/migration.py).
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.cib import query, write_cib
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import HostSet, LibvirtHost
from tests.support.migration import Move, destroy_everywhere
from tests.support.ocf import AgentCase

pytestmark = pytest.mark.qemu


@pytest.fixture
def move(qemu_hosts: HostSet, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Move]:
    name = "mig-" + request.node.name.split("[")[0].removeprefix("test_")[:30].replace("_", "-")
    config = tmp_path / f"{name}.xml"
    config.write_text(domain_xml(name, driver="qemu", memory_mib=64))
    cib = write_cib(tmp_path / "cib.xml", {"hostA": {"hv_memory": 1024, "cpu": 8}, "hostB": {"hv_memory": 1024, "cpu": 8}},
                    guests={name: {"config": str(config)}})  # fmt: skip
    base = AgentCase(
        "xen-guest",
        instance=name,
        params={
            "config": str(config),
            "hypervisor": "qemu:///system",
            "remoteuri": "qemu+tcp://%n/system",
            "hvm_migration": "live",
            "force_stop": "true",
        },
        rsctmp=str(tmp_path / "rsctmp"),
        extra_env={"CIB_file": str(cib)},
    )
    yield Move(qemu_hosts, name, cib, base)
    destroy_everywhere(qemu_hosts, name)


def test_live_migration(move: Move) -> None:
    assert move.at("hostA").run("start").code == 0
    moved = move.migrate("hostA", "hostB")
    assert moved.code == 0, moved
    assert move.state("hostB") == libvirt.VIR_DOMAIN_RUNNING
    assert move.state("hostA") is None
    arrived = move.arrive("hostA", "hostB")
    assert arrived.code == 0, arrived
    assert move.at("hostA").run("stop").code == 0  # Pacemaker's stop on the source after migrate_from
    assert move.state("hostB") == libvirt.VIR_DOMAIN_RUNNING
    # the reservation was checked, logged, and released
    assert f"reservation: {move.name} fits on hostB" in moved.stderr
    assert move.reservations() == ""
    # and back, with the guest's utilization published in the CIB
    assert move.migrate("hostB", "hostA").code == 0
    assert move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING and move.state("hostB") is None
    assert 'name="hv_memory" value="70"' in query(move.cib, f"//primitive[@id='{move.name}']/utilization")


def test_definition_stays_transient_on_the_target(move: Move, qemu_hosts: HostSet) -> None:
    assert move.at("hostA").run("start").code == 0
    assert move.migrate("hostA", "hostB").code == 0
    connection = libvirt.open(qemu_hosts.hosts["hostB"].qemu_uri)
    try:
        assert not connection.lookupByName(move.name).isPersistent()
    finally:
        connection.close()
    connection = libvirt.open(qemu_hosts.hosts["hostA"].qemu_uri)
    try:
        assert move.name not in connection.listDefinedDomains()
    finally:
        connection.close()


def test_target_without_room_is_refused_and_the_guest_stays(move: Move) -> None:
    write_cib(move.cib, {"hostA": {"hv_memory": 1024}, "hostB": {"hv_memory": 60}})
    assert move.at("hostA").run("start").code == 0
    started = time.monotonic()
    refused = move.migrate("hostA", "hostB")
    assert refused.code == 1, refused
    assert refused.exit_reason is not None
    assert (
        f"cannot migrate {move.name} to hostB: needs 70 MiB, hostB has 60 MiB free (capacity 60, used 0, reserved 0"
        in refused.reason
    )
    assert f"{move.name} stays on hostA" in refused.stderr
    assert time.monotonic() - started < 5
    assert move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING
    assert move.state("hostB") is None
    assert move.reservations() == ""


def test_reservations_held_by_others_count(move: Move) -> None:
    """Room booked by a migration in flight is not room."""
    assert move.at("hostA").run("start").code == 0
    book_by_hand(move, "other", hold_s=600)
    refused = move.migrate("hostA", "hostB")
    assert refused.code == 1, refused
    assert "hostB has 24 MiB free (capacity 1024, used 0, reserved 1000" in (refused.reason or "")
    assert move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING


def book_by_hand(move: Move, resource: str, hold_s: int) -> None:
    """A reservation in hostB's ledger, as another node's admission leaves it (format 2); its id
    is not the one xenha would give it: a reservation is recognised by its set and value."""
    value = f"xenha-reservation/2 resource={resource} memory_mib=1000 vcpus=1 hold_s={hold_s} holder=elsewhere:1:ab"
    subprocess.run(
        ["cibadmin", "--create", "--scope", "crm_config", "--xml-text",
         '<cluster_property_set id="xenha-ledger-hostB">'
         f'<nvpair id="hand-{resource}" name="hand-{resource}" value="{value}"/>'
         "</cluster_property_set>"],
        env={"CIB_file": str(move.cib), "PATH": "/usr/sbin:/usr/bin"}, check=True, capture_output=True,
    )  # fmt: skip


def test_expired_reservations_do_not_count_and_are_cleaned_up(move: Move) -> None:
    """A reservation lapses ``hold_s`` after this node first saw it, on this node's clock; then it
    no longer counts, and the admission that found it lapsed deletes it."""
    assert move.at("hostA").run("start").code == 0
    book_by_hand(move, "dead", hold_s=2)
    seen = move.migrate("hostA", "hostB")  # first sight: the 2 s start now, and it still counts
    assert seen.code == 1 and "reserved 1000" in (seen.reason or ""), seen
    time.sleep(2.5)
    assert move.migrate("hostA", "hostB").code == 0
    assert move.reservations() == ""


def test_unreachable_target_is_refused_quickly(move: Move) -> None:
    assert move.at("hostA").run("start").code == 0
    started = time.monotonic()
    refused = move.migrate("hostA", "hostC")  # no such host on the network
    assert refused.code == 1, refused
    assert "cannot check the room on hostC" in (refused.reason or "")
    assert time.monotonic() - started < 10
    assert move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING


def test_hvm_guest_under_refuse_policy_fails_fast(move: Move) -> None:
    assert move.at("hostA").run("start").code == 0
    refused = move.migrate("hostA", "hostB", hvm_migration="refuse")
    assert refused.code == 1, refused
    assert "HVM guest and hvm_migration=refuse" in (refused.reason or "")
    assert refused.seconds < 2
    assert move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING and move.state("hostB") is None


def test_save_restore_between_hosts_sharing_a_directory(move: Move, tmp_path: Path) -> None:
    shared = tmp_path / "save"
    shared.mkdir()
    assert move.at("hostA").run("start").code == 0
    moved = move.migrate("hostA", "hostB", hvm_migration="save-restore", save_dir=str(shared))
    assert moved.code == 0, moved
    assert move.state("hostB") == libvirt.VIR_DOMAIN_RUNNING and move.state("hostA") is None
    assert "saving" in moved.stderr and "(save-restore)" in moved.stderr
    assert list(shared.iterdir()) == []  # the saved state is removed once restored
    assert move.reservations() == ""


def test_save_restore_needs_a_shared_directory(move: Move) -> None:
    result = move.at("hostA").run("validate-all", hvm_migration="save-restore")
    assert result.code == 6 and "needs save_dir" in (result.reason or "")


def test_migrate_from_waits_for_the_guest_inside_its_timeout(move: Move) -> None:
    started = time.monotonic()
    missing = move.arrive("hostA", "hostB", timeout_ms="3000")  # type: ignore[arg-type]
    assert missing.code == 1 and "did not arrive on hostB" in (missing.reason or "")
    assert 1.5 < time.monotonic() - started < 4


def test_start_is_refused_on_a_full_host(move: Move) -> None:
    write_cib(move.cib, {"hostA": {"hv_memory": 50}})
    refused = move.at("hostA").run("start")
    assert refused.code == 1, refused
    assert f"cannot start {move.name} on hostA: needs 70 MiB, hostA has 50 MiB free" in (refused.reason or "")
    assert move.state("hostA") is None


def test_unmanaged_domain_on_the_target_counts_in_the_hypervisor_view(move: Move, qemu_hosts: HostSet) -> None:
    """Drift the CIB does not know: a guest started by hand on the target."""
    host_b: LibvirtHost = qemu_hosts.hosts["hostB"]
    connection = libvirt.open(host_b.qemu_uri)
    try:
        total = connection.getInfo()[1]
        connection.createXML(domain_xml("by-hand", driver="qemu", memory_mib=64), 0)
        assert move.at("hostA").run("start").code == 0
        # hostB's hypervisor view: total minus reserve leaves room for exactly one 70 MiB guest
        reserve = str(total - 100)
        refused = move.migrate("hostA", "hostB", host_memory_reserve=reserve)
        assert refused.code == 1, refused
        assert "used 70" in (refused.reason or "") and "host reserve" in refused.stderr
        assert move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING
    finally:
        connection.lookupByName("by-hand").destroy()
        connection.close()


def test_the_reserve_xen_host_publishes_is_the_one_admission_uses(move: Move, qemu_hosts: HostSet) -> None:
    """A reserve configured once, on xen-host, binds every guest's check on that node."""
    connection = libvirt.open(qemu_hosts.hosts["hostB"].qemu_uri)
    try:
        total = int(connection.getInfo()[1])
    finally:
        connection.close()
    assert move.at("hostA").run("start").code == 0
    subprocess.run(
        ["crm_attribute", "--type", "nodes", "--node", "hostB", "--name", "xenha-memory-reserve",
         "--update", str(total - 50)],
        env={"CIB_file": str(move.cib), "PATH": "/usr/sbin:/usr/bin"}, check=True, capture_output=True,
    )  # fmt: skip
    refused = move.migrate("hostA", "hostB")  # the guest itself says nothing about reserves
    assert refused.code == 1, refused
    assert "hostB has 50 MiB free" in (refused.reason or "")
    assert f"minus {total - 50} MiB host reserve" in refused.stderr


def test_monitor_restores_utilization_wiped_by_a_stale_configuration_replace(move: Move) -> None:
    """pcs replaces the configuration from a copy read moments before: a value written
    meanwhile is lost (seen on the test cluster). The monitor puts it back."""
    import json

    assert move.at("hostA").run("start").code == 0
    subprocess.run(
        ["crm_resource", "--resource", move.name, "--utilization", "--delete-parameter", "hv_memory"],
        env={"CIB_file": str(move.cib), "PATH": "/usr/sbin:/usr/bin"}, check=True, capture_output=True,
    )  # fmt: skip
    # the monitor compares with the CIB every few minutes: make the last comparison old
    state_file = next(Path(move.at("hostA").rsctmp).glob("xenha-xen-guest-*.json"))
    state = json.loads(state_file.read_text())
    state["published_checked_at"] -= 3600
    state_file.write_text(json.dumps(state))
    monitor = move.at("hostA").monitor()
    assert monitor.code == 0, monitor
    assert "utilization hv_memory" in monitor.stderr and "set it again" in monitor.stderr
    assert 'name="hv_memory" value="70"' in query(move.cib, f"//primitive[@id='{move.name}']/utilization")
    # checked just now: no CIB call, nothing logged. The next monitor is pointed at a CIB
    # that cannot be read, so that a call it should not make shows as a warning.
    unreadable = move.cib.with_name("unreadable-cib.xml")
    unreadable.write_text("not a CIB")
    here = move.at("hostA")
    quiet = dataclasses.replace(here, extra_env={**here.extra_env, "CIB_file": str(unreadable)}).monitor()
    assert quiet.code == 0 and quiet.stderr == "", quiet
