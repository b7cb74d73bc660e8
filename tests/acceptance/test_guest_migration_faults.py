"""Migrations that go wrong half-way: the guest must end up running on the source only.

These tests break their hosts (a libvirtd is killed), so they get hosts of their own. The
source host's link is slowed down (tc tbf) so that a migration lasts long enough to be hit.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from tests.acceptance.conftest import pair_of_hosts
from tests.support.libvirt_hosts import HostSet
from tests.support.migration import Move, destroy_everywhere, guest_move, migrate_in_background

pytestmark = pytest.mark.qemu


@pytest.fixture
def fragile_hosts() -> Iterator[HostSet]:
    yield from pair_of_hosts("f")


@pytest.fixture
def slow_move(fragile_hosts: HostSet, tmp_path: Path) -> Iterator[Move]:
    move = guest_move(fragile_hosts, tmp_path, "slowmig", hvm_migration="live")
    assert move.at("hostA").run("start").code == 0
    fragile_hosts.shape("hostA", "1mbit")  # about 125 kB/s: the guest's few MiB take many seconds
    yield move
    fragile_hosts.shape("hostA", None)
    destroy_everywhere(fragile_hosts, move.name)


def wait_for_incoming(hosts: HostSet, name: str, timeout: float = 20) -> None:
    """Until the target holds the incoming (paused) copy: the migration is under way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(
            ["virsh", "-c", hosts.hosts["hostB"].qemu_uri, "list", "--name"], capture_output=True, text=True
        )
        if name in listing.stdout.split():
            return
        time.sleep(0.1)
    raise AssertionError("the migration never reached the target")


def test_target_libvirtd_killed_mid_migration(slow_move: Move, fragile_hosts: HostSet) -> None:
    thread, results = migrate_in_background(slow_move, timeout_ms=90000)
    wait_for_incoming(fragile_hosts, slow_move.name)
    time.sleep(0.5)
    fragile_hosts.kill_libvirtd("hostB")
    thread.join(120)
    failed = results[0]
    assert failed.code == 1, failed
    # hostB's libvirtd is gone, so whether hostB holds a copy cannot be verified: the reason says what
    # is known, never "only" (issue 12 finding 4: state that cannot be settled is reported, not guessed),
    # and the source, which libvirt left running, is paused so that the guest cannot run on both
    # (docs/decisions/time-budget-and-settling.md)
    assert failed.reason is not None and "is paused on hostA so that it cannot run twice" in failed.reason, failed
    assert "whether hostB holds a copy could not be verified" in failed.reason, failed
    assert slow_move.state("hostA") == libvirt.VIR_DOMAIN_PAUSED
    assert slow_move.reservations() == ""


def test_migration_is_aborted_before_the_timeout(slow_move: Move, fragile_hosts: HostSet) -> None:
    fragile_hosts.shape("hostA", "200kbit")  # the migration would need about half a minute
    # 20 s: the agent aborts at 20 - 2 (answer margin) - 6 (abort reserve) = 12 s, after several
    # progress lines (one every 2 s), well before the copy could end
    timeout_ms = 20000
    started = time.monotonic()
    thread, results = migrate_in_background(slow_move, timeout_ms=timeout_ms)
    thread.join(60)
    aborted = results[0]
    assert time.monotonic() - started < timeout_ms / 1000, aborted
    assert aborted.code == 1, aborted
    assert "did not finish in time and was aborted" in (aborted.reason or "")
    # progress was logged at a steady interval while it ran
    progress = [line for line in aborted.stderr.splitlines() if f"migrating {slow_move.name} to hostB:" in line]
    assert len(progress) >= 2, aborted.stderr
    assert "MiB remaining" in progress[0]
    # the guest runs on the source only; nothing is left on the target
    assert slow_move.state("hostA") == libvirt.VIR_DOMAIN_RUNNING
    assert slow_move.state("hostB") is None
    assert slow_move.reservations() == ""
