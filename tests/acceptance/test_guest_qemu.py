"""xen-guest with a real hypervisor: a tiny QEMU/TCG guest on the qemu driver."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase

pytestmark = pytest.mark.qemu


@pytest.fixture
def qemu_guest(local_host: LibvirtHost, tmp_path: Path) -> AgentCase:
    config = tmp_path / "tiny1.xml"
    config.write_text(domain_xml("tiny1", driver="qemu", memory_mib=64))
    (tmp_path / "rsctmp").mkdir()
    case = AgentCase(
        "xen-guest",
        "tiny1",
        {"config": str(config), "hypervisor": local_host.qemu_uri},
        str(tmp_path / "rsctmp"),
    )
    yield case
    case.run("stop", force_stop="true")


def test_real_guest_start_monitor_stop(qemu_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert qemu_guest.probe().code == 7
    start = qemu_guest.run("start")
    assert start.code == 0, start
    connection = libvirt.open(local_host.qemu_uri)
    try:
        domain = connection.lookupByName("tiny1")
        assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
        assert not domain.isPersistent()  # transient: no definition left behind on the host
        assert qemu_guest.monitor().code == 0
        # SeaBIOS ignores the ACPI request: stop must wait its graceful time, then destroy
        stop = qemu_guest.run("stop", shutdown_timeout="2")
        assert stop.code == 0, stop
        assert stop.seconds >= 2
        assert "destroying guest tiny1" in stop.stderr
        assert [d.name() for d in connection.listAllDomains()] == []
    finally:
        connection.close()
    assert qemu_guest.monitor().code == 7


def test_real_guest_paused_by_user_is_degraded(qemu_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert qemu_guest.run("start").code == 0
    connection = libvirt.open(local_host.qemu_uri)
    try:
        connection.lookupByName("tiny1").suspend()
        assert qemu_guest.monitor().code == 190
        connection.lookupByName("tiny1").resume()
        assert qemu_guest.monitor().code == 0
    finally:
        connection.close()


def test_real_guest_killed_behind_the_agents_back(qemu_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert qemu_guest.run("start").code == 0
    connection = libvirt.open(local_host.qemu_uri)
    try:
        connection.lookupByName("tiny1").destroy()
    finally:
        connection.close()
    assert qemu_guest.monitor().code == 7
