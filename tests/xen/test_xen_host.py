"""xen-host on real Xen: the capacity it publishes, against what Xen itself reports.

The lab's hosts boot Xen with ``dom0_mem=768M,max:768M`` (libvirt's autoballoon off), 1.5
GiB of RAM. The agent runs in xenhost1's dom0 against the lab's CIB file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.cib import query
from tests.support.xenlab.guests import Dom0Agent
from tests.support.xenlab.lab import Lab, XenHost

pytestmark = pytest.mark.xen


def xl_info(host: XenHost) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in host.check("xl info").splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def published(lab: Lab, node: str) -> dict[str, int]:
    utilization = query(lab.san / "cib.xml", f"//node[@uname='{node}']/utilization")
    return {name: int(value) for name, value in re.findall(r'name="([^"]+)" value="(\d+)"', utilization)}


def test_xen_host_publishes_the_capacity_xen_reports(lab: Lab, cib: Path) -> None:
    host = lab.host("xenhost1")
    info = xl_info(host)
    dom0_mib = int(host.check("xl list Domain-0 | awk 'NR==2 {print $3}'"))
    agent = Dom0Agent("xen-host", "xen-host", {"hypervisor": "xen:///system"})
    started = agent.run(host, "start")
    assert started.code == 0, started
    capacity = published(lab, host.name)
    print(f"xl info: total {info['total_memory']} free {info['free_memory']} MiB, Domain-0 {dom0_mib} MiB, "
          f"{info['nr_cpus']} CPUs; published {capacity}\n{started.stderr}")  # fmt: skip
    assert dom0_mib == 768  # dom0_mem took effect: the reserve is dom0's fixed size plus Xen's own memory
    xen_own = int(info["total_memory"]) - int(info["free_memory"]) - dom0_mib  # no guest runs here
    assert 0 < xen_own < int(info["total_memory"]) // 20, xen_own
    assert capacity["hv_memory"] == int(info["total_memory"]) - dom0_mib - xen_own
    assert capacity["cpu"] == int(info["nr_cpus"]) * 4  # cpu_overcommit's default
    assert "green" in started.stderr or agent.run(host, "monitor").code == 0
    # issue 11 item 3: what this host can live-migrate, from Xen's virt_caps (no shadow, no hap)
    assert "xenha-live-migration=none (Xen's virt_caps: pv gnttab-v1 gnttab-v2)" in started.stderr
    attribute = query(lab.san / "cib.xml", "//nvpair[@name='xenha-live-migration']")
    assert 'value="none"' in attribute, attribute


def test_published_capacity_fits_in_what_xen_has_free(lab: Lab, cib: Path) -> None:
    """With no guest running, every MiB of hv_memory should be startable: capacity <= Xen's
    free memory (``xl info`` free_memory)."""
    host = lab.host("xenhost1")
    running = host.check("xl list | tail -n +3")
    assert running.strip() == "", f"this comparison needs a host without guests: {running}"
    agent = Dom0Agent("xen-host", "xen-host", {"hypervisor": "xen:///system"})
    assert agent.run(host, "start").code == 0
    free = int(xl_info(host)["free_memory"])
    capacity = published(lab, host.name)["hv_memory"]
    print(f"published hv_memory {capacity} MiB, Xen's free memory {free} MiB: {capacity - free} MiB overstated")
    assert capacity <= free, f"hv_memory {capacity} MiB but Xen has only {free} MiB free for guests"
