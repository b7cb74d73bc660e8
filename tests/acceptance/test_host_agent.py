"""xen-host publishes capacity and health from a real libvirtd into a CIB (held in a file)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import libvirt
import pytest

from tests.support.cib import query, write_cib
from tests.support.faults import hang_first_read, shimmed
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase

pytestmark = pytest.mark.qemu


def utilization(cib: Path, node: str) -> dict[str, int]:
    text = query(cib, f"//nodes/node[@uname='{node}']/utilization")
    return {name: int(value) for name, value in re.findall(r'name="([^"]+)" value="(\d+)"', text)}


def health(cib: Path, node: str) -> str | None:
    text = query(cib, f"//node_state[@uname='{node}']//nvpair[@name='#health-xenha']")
    match = re.search(r'value="(\w+)"', text)
    return match.group(1) if match else None


@pytest.fixture
def host_facts(local_host: LibvirtHost) -> tuple[int, int, int]:
    connection = libvirt.open(local_host.qemu_uri)
    try:
        info = connection.getInfo()
        return int(info[1]), int(info[2]), int(connection.getFreeMemory() // 2**20)
    finally:
        connection.close()


def reserve_of(case: AgentCase) -> int:
    return int(case.params["host_memory_reserve"])


@pytest.fixture
def host_agent(local_host: LibvirtHost, tmp_path: Path, host_facts: tuple[int, int, int]) -> AgentCase:
    """The agent, with a reserve that leaves 1 GiB less than what the host has free now.

    This test host is not a dedicated hypervisor: what its other processes use must be in
    the reserve, or health is (rightly) yellow.
    """
    total, _, free = host_facts
    cib = write_cib(tmp_path / "cib.xml", {"testhost": {}})
    return AgentCase(
        "xen-host",
        "xen-host",
        {"hypervisor": local_host.qemu_uri, "host_memory_reserve": str(total - free + 1024)},
        str(tmp_path / "rsctmp"),
        extra_env={"CIB_file": str(cib), "OCF_RESKEY_CRM_meta_on_node": "testhost"},
    )


def cib_of(case: AgentCase) -> Path:
    return Path(case.extra_env["CIB_file"])


def test_start_publishes_capacity_and_health(host_agent: AgentCase, host_facts: tuple[int, int, int]) -> None:
    total, cpus, _ = host_facts
    assert host_agent.probe().code == 7
    started = host_agent.run("start")
    assert started.code == 0, started
    expected = {"hv_memory": total - reserve_of(host_agent), "cpu": cpus * 4}
    assert utilization(cib_of(host_agent), "testhost") == expected
    assert health(cib_of(host_agent), "testhost") == "green"
    reserve = query(
        cib_of(host_agent), "//node[@uname='testhost']/instance_attributes/nvpair[@name='xenha-memory-reserve']"
    )
    assert f'value="{reserve_of(host_agent)}"' in reserve
    assert host_agent.monitor().code == 0
    assert host_agent.probe().code == 0


def test_monitor_with_nothing_changed_writes_nothing(host_agent: AgentCase) -> None:
    assert host_agent.run("start").code == 0
    before = cib_of(host_agent).read_bytes()
    # Rewriting a value it already has leaves the file's bytes as they were: only the time
    # of the last write tells whether the monitors wrote at all.
    written = cib_of(host_agent).stat().st_mtime_ns
    for _ in range(2):
        assert host_agent.monitor().code == 0
    assert cib_of(host_agent).read_bytes() == before
    assert cib_of(host_agent).stat().st_mtime_ns == written


def test_a_changed_figure_is_written_again(host_agent: AgentCase, host_facts: tuple[int, int, int]) -> None:
    total, cpus, _ = host_facts
    assert host_agent.run("start").code == 0
    assert host_agent.monitor(cpu_overcommit="1.5").code == 0
    assert utilization(cib_of(host_agent), "testhost") == {
        "hv_memory": total - reserve_of(host_agent),
        "cpu": int(cpus * 1.5),
    }


def test_unmanaged_domains_reduce_capacity_managed_ones_do_not(
    host_agent: AgentCase, local_host: LibvirtHost, host_facts: tuple[int, int, int], tmp_path: Path
) -> None:
    total, _, _ = host_facts
    assert host_agent.run("start").code == 0
    connection = libvirt.open(local_host.qemu_uri)
    config = tmp_path / "managed.xml"
    config.write_text(domain_xml("managed", driver="qemu", memory_mib=64))
    guest = AgentCase("xen-guest", "managed", {"config": str(config), "hypervisor": local_host.qemu_uri,
                                               "force_stop": "true"}, str(tmp_path / "grsctmp"))  # fmt: skip
    try:
        connection.createXML(domain_xml("by-hand", driver="qemu", memory_mib=64), 0)
        assert guest.run("start").code == 0
        assert host_agent.monitor().code == 0
        # 64 MiB HVM guest with 1 vCPU: 64 + 1 + 1 (shadow) + 2 + 1 = 69, rounded to 70
        assert utilization(cib_of(host_agent), "testhost")["hv_memory"] == total - reserve_of(host_agent) - 70
    finally:
        guest.run("stop")
        connection.lookupByName("by-hand").destroy()
        connection.close()
    assert host_agent.monitor().code == 0
    assert utilization(cib_of(host_agent), "testhost")["hv_memory"] == total - reserve_of(host_agent)


def test_fixed_capacity_override(host_agent: AgentCase) -> None:
    assert host_agent.run("start", memory_capacity="2048").code == 0
    assert utilization(cib_of(host_agent), "testhost")["hv_memory"] == 2048


def test_health_turns_red_when_the_hypervisor_is_unreachable_and_recovers(
    host_agent: AgentCase, tmp_path: Path
) -> None:
    assert host_agent.run("start").code == 0
    published = utilization(cib_of(host_agent), "testhost")
    unreachable = f"qemu+unix:///system?socket={tmp_path}/gone"
    red = host_agent.monitor(hypervisor=unreachable)
    assert red.code == 0, red  # the agent itself is fine: it reports the host
    assert health(cib_of(host_agent), "testhost") == "red"
    assert "cannot reach libvirt" in red.stderr
    assert utilization(cib_of(host_agent), "testhost") == published  # capacity is not zeroed
    assert host_agent.monitor().code == 0
    assert health(cib_of(host_agent), "testhost") == "green"


def test_health_turns_yellow_when_free_memory_drifts_below_the_cluster_figure(
    host_agent: AgentCase, host_facts: tuple[int, int, int]
) -> None:
    _, _, free = host_facts
    assert host_agent.run("start", memory_capacity=str(free + 4096)).code == 0
    assert health(cib_of(host_agent), "testhost") == "yellow"
    assert host_agent.monitor(memory_capacity=str(max(0, free - 1024))).code == 0
    assert health(cib_of(host_agent), "testhost") == "green"


def test_monitor_deletes_the_nodes_lapsed_reservations(host_agent: AgentCase) -> None:
    """A reservation whose holder died lapses on this node's clock, ``hold_s`` after this node
    first saw it, and xen-host's monitor deletes it; another node's live one stays (issue 12,
    findings 6 and 12: an expired entry can always be cleared, without trusting a timestamp)."""
    cib = cib_of(host_agent)
    ledger = "xenha-ledger-testhost"

    def reservation(resource: str, hold_s: int) -> str:
        value = f"xenha-reservation/2 resource={resource} memory_mib=134 vcpus=1 hold_s={hold_s} holder=node9:1:ab"
        return f'<nvpair id="{ledger}-{resource}" name="{ledger}-{resource}" value="{value}"/>'

    subprocess.run(
        ["cibadmin", "--create", "--scope", "crm_config", "--xml-text",
         f'<cluster_property_set id="{ledger}">{reservation("dead", 1)}{reservation("live", 600)}'
         "</cluster_property_set>"],
        env={"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin"}, check=True, capture_output=True,
    )  # fmt: skip
    assert host_agent.run("start").code == 0  # sees both for the first time: both count
    assert "resource=dead" in query(cib, f"//cluster_property_set[@id='{ledger}']")
    time.sleep(1.5)
    monitored = host_agent.monitor()
    assert monitored.code == 0, monitored
    left = query(cib, f"//cluster_property_set[@id='{ledger}']")
    assert "resource=dead" not in left and "resource=live" in left, left
    assert "deleted lapsed reservations into testhost" in monitored.stderr


def with_busy_cib(case: AgentCase, marks: Path) -> AgentCase:
    """``case`` with a cibadmin whose first read hangs past its call's time (a busy CIB)."""
    prefix = shimmed("cibadmin", hang_first_read(600), marks)
    return AgentCase(case.agent, case.instance, case.params, case.rsctmp, prefix, case.extra_env)


def held_read(marks: Path) -> tuple[str, int]:
    """The read the busy CIB held, and how many times it was asked."""
    assert (marks / "held").exists(), "no read reached cibadmin: nothing tested"
    held = (marks / "held").read_text().strip()
    return held, (marks / "calls").read_text().splitlines().count(held)


def test_a_cib_read_outlasting_its_call_is_asked_again_within_the_start(
    host_agent: AgentCase, host_facts: tuple[int, int, int], tmp_path: Path
) -> None:
    """A 60 s start gives each CIB call 15 s (CALL_SHARE of 60, at least 15): its first read
    hangs past that and is killed, then asked again with ~40 s left, and the start publishes
    (the Xen cluster lab's xen-host start failed on one slow read with 70 of its 120 s left)."""
    marks = tmp_path / "busy-read"
    started = with_busy_cib(host_agent, marks).run("start", timeout_ms=60000, timeout=90)
    held, asked = held_read(marks)
    assert started.code == 0, f"the start did not outlast one slow read: {started}"
    assert asked == 2, f"the timed-out read ({held}) was asked {asked} times, not twice"
    assert started.seconds >= 15, f"the read was not held for its call's time: {started}"
    assert utilization(cib_of(host_agent), "testhost")["hv_memory"] == host_facts[0] - reserve_of(host_agent)


def test_a_cib_read_without_room_for_another_call_fails_the_start_naming_the_cib(
    host_agent: AgentCase, tmp_path: Path
) -> None:
    """A 20 s start: the held read uses its call's 15 s and what is left has no room for
    another whole call, so the start fails before its timeout, saying the CIB did not answer."""
    marks = tmp_path / "busy-read-short"
    started = with_busy_cib(host_agent, marks).run("start", timeout_ms=20000, timeout=60)
    held, asked = held_read(marks)
    assert asked == 1, f"the read ({held}) was asked again without room for it"
    assert started.code != 0 and started.seconds < 20, started
    assert "did not answer in time" in (started.reason or ""), f"the reason does not name the CIB: {started}"
    assert utilization(cib_of(host_agent), "testhost") == {}


def test_stop_withdraws_health_and_keeps_capacity(host_agent: AgentCase) -> None:
    assert host_agent.run("start").code == 0
    assert host_agent.run("stop").code == 0
    assert health(cib_of(host_agent), "testhost") is None
    assert "hv_memory" in utilization(cib_of(host_agent), "testhost")
    assert host_agent.monitor().code == 7
    assert host_agent.run("stop").code == 0


@pytest.mark.parametrize(
    ("parameter", "value", "fragment"),
    [
        ("cpu_overcommit", "lots", "is not a decimal number"),
        ("cpu_overcommit", "0", "must be greater than 0"),
        ("memory_capacity", "-5", "below the minimum"),
        ("hypervisor", "vmware:///x", "driver 'vmware'"),
    ],
)
def test_bad_input(host_agent: AgentCase, parameter: str, value: str, fragment: str) -> None:
    result = host_agent.run("validate-all", **{parameter: value})
    assert result.code == 6, result
    assert fragment in (result.reason or "")
    assert "Traceback" not in result.stderr


def test_ocf_tester_passes_for_xen_host(local_host: LibvirtHost, tmp_path: Path) -> None:
    import os
    import subprocess

    from tests.support.ocf import AGENTS

    env = {key: value for key, value in os.environ.items() if not key.startswith(("OCF_", "HA_", "CIB_"))}
    env["HA_RSCTMP"] = str(tmp_path)
    tested = subprocess.run(
        ["ocf-tester", "-v", "-n", "xen-host", "-o", f"hypervisor={local_host.qemu_uri}", str(AGENTS / "xen-host")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
