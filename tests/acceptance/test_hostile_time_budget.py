"""Every wait is carved from the action's own remaining time (issue 12, finding 5).

The guest's configuration lives on shared storage that hangs (a FUSE mount whose server
never answers: tests/support/storage.py), as a dead NFS server makes it. A stop that runs
past its timeout gets the node fenced; a monitor that does gets the guest recovered. Both
must answer inside their timeouts, from the hypervisor, which still answers.

Real libvirtd: a tiny QEMU/TCG guest (SeaBIOS ignores ACPI shutdown, so a graceful stop
waits until it gives up and destroys) and the test driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.domains import active, destroy
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase
from tests.support.storage import hung_storage

SUCCESS = 0


def shared_guest(tmp_path: Path, name: str, uri: str, driver: str) -> AgentCase:
    share = tmp_path / "san"
    share.mkdir()
    config = share / f"{name}.xml"
    config.write_text(domain_xml(name, driver=driver, memory_mib=64))
    return AgentCase("xen-guest", name, {"config": str(config), "hypervisor": uri}, str(tmp_path / "rsctmp"))


@pytest.fixture
def qemu_guest(local_host: LibvirtHost, tmp_path: Path) -> Iterator[AgentCase]:
    guest = shared_guest(tmp_path, "budget-stop", local_host.qemu_uri, "qemu")
    assert guest.run("start").code == SUCCESS
    yield guest
    destroy(local_host.qemu_uri, "budget-stop")


def test_stop_on_hung_storage_destroys_the_guest_inside_its_timeout(
    qemu_guest: AgentCase, local_host: LibvirtHost
) -> None:
    share = Path(qemu_guest.params["config"]).parent
    with hung_storage(share):
        stop = qemu_guest.run("stop", timeout_ms=45000, timeout=120)
    assert stop.seconds < 45, f"stop overran its 45 s timeout (Pacemaker would fence the node): {stop}"
    assert stop.code == SUCCESS, stop
    assert not active(local_host.qemu_uri, "budget-stop"), "stop returned with the guest still running"


def test_short_stop_on_hung_storage_still_keeps_time_to_destroy(
    qemu_guest: AgentCase, local_host: LibvirtHost
) -> None:
    share = Path(qemu_guest.params["config"]).parent
    with hung_storage(share):
        stop = qemu_guest.run("stop", timeout_ms=20000, timeout=120)
    assert stop.seconds < 20 and stop.code == SUCCESS, stop
    assert not active(local_host.qemu_uri, "budget-stop")


@pytest.mark.parametrize("interval_ms", [0, 10000], ids=["probe", "recurring"])
def test_monitor_on_hung_storage_answers_from_the_hypervisor_inside_its_timeout(
    local_host: LibvirtHost, tmp_path: Path, interval_ms: int
) -> None:
    guest = shared_guest(tmp_path, "budget-monitor", local_host.test_uri, "test")
    assert guest.run("start").code == SUCCESS
    try:
        with hung_storage(Path(guest.params["config"]).parent):
            monitor = guest.run("monitor", interval_ms=interval_ms, timeout_ms=20000, timeout=120)
        # Pacemaker's default operation timeout; its executor needs some of it too: an answer at
        # 19.9 s is a timeout in practice.
        assert monitor.seconds < 18, f"a 20 s monitor answered after {monitor.seconds:.1f} s: {monitor}"
        assert monitor.code == SUCCESS, f"the hypervisor says the guest runs: {monitor}"
    finally:
        destroy(local_host.test_uri, "budget-monitor")
