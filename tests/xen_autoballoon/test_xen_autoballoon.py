"""xen-host on a Xen host booted without ``dom0_mem=`` (issue 11 item 3, the autoballoon half).

Xen then gives Domain-0 all memory but its own, with no ceiling. What the lab showed
(docs/xen-lab-findings.md #3): libvirt 9.0's libxl driver does not balloon Domain-0 down
for a guest, so a guest start fails in libxc unless the host's small remainder holds it.
xen-host publishes that remainder (it is all guests can get) and turns health yellow naming
the fix; once the operator shrinks Domain-0 and sets host_memory_reserve, the host is green
and the guest libvirt could not start before starts (docs/decisions/xen-autoballoon.md).
Under load the steps are slow (TCG): each prints its elapsed time.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.support.cib import query
from tests.support.xenlab.guests import Dom0Agent, FaultNotArranged, domain_view, put_guest, pv_domain_xml, wait_for
from tests.support.xenlab.lab import Lab, XenHost

pytestmark = pytest.mark.xen

HEALTH = "//nvpair[@name='#health-xenha']"


def xl_info(host: XenHost) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in host.check("xl info").splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def domain0_mib(host: XenHost) -> int:
    return int(host.check("xl list Domain-0 | awk 'NR==2 {print $3}'"))


def published(lab: Lab) -> dict[str, int]:
    utilization = query(lab.san / "cib.xml", "//node[@uname='xenhost1']/utilization")
    return {name: int(value) for name, value in re.findall(r'name="([^"]+)" value="(\d+)"', utilization)}


def test_xen_host_without_dom0_mem_is_yellow_naming_the_fix(autoballoon_lab: Lab, cib: None) -> None:
    lab = autoballoon_lab
    host = lab.host("xenhost1")
    begun = time.monotonic()

    def step(what: str) -> None:
        print(f"[{time.monotonic() - begun:5.1f} s] {what}")

    info = xl_info(host)
    if "dom0_mem" in info["xen_commandline"]:
        raise FaultNotArranged(f"this host was booted with dom0_mem: {info['xen_commandline']}")
    total, free, dom0 = int(info["total_memory"]), int(info["free_memory"]), domain0_mib(host)
    print(f"no dom0_mem: total {total} MiB, Domain-0 {dom0}, Xen free {free}")
    assert dom0 > total * 3 // 4, "Domain-0 did not take the host's memory"

    agent = Dom0Agent("xen-host", "xen-host", {"hypervisor": "xen:///system"})
    started = agent.run(host, "start")
    print(started.stderr)
    assert started.code == 0, started
    capacity = published(lab)["hv_memory"]
    assert 0 < capacity <= free, f"hv_memory {capacity} MiB, Xen has {free} MiB free"  # what guests can get
    assert "#health-xenha=yellow: Domain-0 has no fixed size" in started.stderr
    held = re.search(rf"it holds (\d+) of {total} MiB", started.stderr)
    assert held is not None and abs(int(held.group(1)) - dom0) <= 1, started.stderr  # KiB rounded up vs down
    assert "set dom0_mem=<size>,max:<size>" in started.stderr and "host_memory_reserve" in started.stderr
    assert 'value="yellow"' in query(lab.san / "cib.xml", HEALTH)
    assert agent.run(host, "monitor").code == 0
    assert 'value="yellow"' in query(lab.san / "cib.xml", HEALTH)

    step("xen-host published the remainder, yellow")
    # Why the remainder is published and not more: libvirt does not balloon Domain-0 down.
    name = "pv-autoballoon"
    config = put_guest(lab, name, pv_domain_xml(name))
    bare = host.sh(f"virsh -c xen:///system create {config}", timeout=300)
    print(f"virsh create of a 128 MiB guest: {bare.returncode} {bare.stderr.strip()}; Domain-0 {domain0_mib(host)}")
    assert bare.returncode != 0, "libvirt started a guest bigger than Xen's free memory: it balloons; revisit"
    assert domain0_mib(host) == dom0
    step("libvirt could not start the guest")
    # The operator's fix without a reboot: shrink Domain-0, set host_memory_reserve.
    host.check("xl mem-set 0 1024m", timeout=120)
    wait_for("Domain-0 shrunk to 1024 MiB", lambda: domain0_mib(host) <= 1030, 120)
    fixed = agent.run(host, "reload-agent", overrides={"host_memory_reserve": "1100"})
    print(fixed.stderr)
    assert fixed.code == 0, fixed
    assert published(lab)["hv_memory"] == total - 1100
    assert 'value="green"' in query(lab.san / "cib.xml", HEALTH), fixed.stderr
    step("Domain-0 shrunk, host_memory_reserve set: green")
    try:  # the same guest now starts: the published capacity is real
        started_guest = host.sh(f"virsh -c xen:///system create {config}", timeout=300)
        assert started_guest.returncode == 0, started_guest.stderr
        assert domain_view(host, name).libvirt_state == "running"
        step("the guest runs")
    finally:
        host.sh(f"virsh -c xen:///system destroy {name}")
