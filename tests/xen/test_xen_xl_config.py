"""An xl configuration file as xen-guest's config= (issue 11 item 5), on real Xen.

The file sits on the shared storage, named without `.cfg` (it is told by its content), as
users of resource-agents' `Xen` agent keep them; libvirt's libxl driver converts it in each
dom0, and start, monitor, validate-all, a paused migration and stop work on the result.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.xenlab.guests import SAN_IN_DOM0, domain_view, guest_agent, reservations
from tests.support.xenlab.lab import Lab

pytestmark = pytest.mark.xen


def xl_config(name: str, memory_mib: int = 128) -> str:
    """The lab's PV guest (tests.support.xenlab.guests.pv_domain_xml) as an xl configuration."""
    return (
        "# a PV guest, as resource-agents' Xen agent ran it with xl create\n"
        f'name = "{name}"\n'
        f"memory = {memory_mib}\n"
        "vcpus = 1\n"
        f'kernel = "{SAN_IN_DOM0}/vmlinuz"\n'
        f'ramdisk = "{SAN_IN_DOM0}/guest-initrd.gz"\n'
        'extra = "console=hvc0 quiet"\n'
        'on_poweroff = "destroy"\n'
        'on_reboot = "restart"\n'
        'on_crash = "destroy"\n'
    )


def test_an_xl_configuration_starts_monitors_migrates_and_stops(lab: Lab, cib: Path, guest_name: str) -> None:
    source, target = lab.host("xenhost1"), lab.host("xenhost2")
    (lab.san / "guests" / f"xl-{guest_name}").write_text(xl_config(guest_name))
    agent = guest_agent(f"{SAN_IN_DOM0}/guests/xl-{guest_name}", guest_name, force_stop="true")
    validated = agent.run(source, "validate-all")
    assert validated.code == 0, validated
    assert "is an xl configuration: libvirt converts and checks it at start" in validated.stderr
    started = agent.run(source, "start")
    print(f"start -> {started.code}\n{started.stderr}")
    assert started.code == 0, started
    assert "(PV, 128 MiB" in started.stderr  # the demand and guest type from the converted XML
    view = domain_view(source, guest_name)
    assert view.libvirt_state == "running", view
    owner = source.check(f"virsh -c xen:///system metadata {guest_name} --uri urn:xenha:guest:1 || true")
    print(f"owner metadata: {owner}")
    assert guest_name in owner  # the agent's owner metadata on the converted domain
    assert agent.run(source, "monitor").code == 0
    assert agent.run(target, "monitor").code == 7  # the probe on the other node converts too
    moved = agent.migrate(source, target)
    print(f"migrate_to -> {moved.code}\n{moved.stderr}")
    assert moved.code == 0, moved
    assert re.search(r"was paused for [0-9.]+ s to move to xenhost2", moved.stderr), moved.stderr
    assert agent.arrive(source, target).code == 0
    assert agent.run(source, "stop").code == 0
    assert agent.run(target, "monitor").code == 0
    assert domain_view(source, guest_name).xl_id is None
    assert reservations(lab) == ""
    stopped = agent.run(target, "stop")
    assert stopped.code == 0, stopped
    assert domain_view(target, guest_name).xl_id is None
