"""A frozen libvirtd (SIGSTOP) must never hang the agent: every call has a deadline."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase

ERR_GENERIC = 1
TIMEOUT_MS = 4000


@pytest.fixture
def frozen(local_host: LibvirtHost) -> Iterator[None]:
    pid = local_host.libvirtd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize(
    ("action", "interval_ms"), [("monitor", 0), ("monitor", 10000), ("start", None), ("stop", None)]
)
def test_action_returns_within_its_timeout(
    test_guest: AgentCase, frozen: None, action: str, interval_ms: int | None
) -> None:
    result = test_guest.run(action, interval_ms=interval_ms, timeout_ms=TIMEOUT_MS, timeout=30)
    assert result.seconds < TIMEOUT_MS / 1000, result
    # not "not running", not "stopped": nothing could be verified
    assert result.code == ERR_GENERIC, result
    assert result.reason is not None and "did not answer in time" in result.reason
    assert "Traceback" not in result.stderr


def test_stop_of_a_running_guest_fails_truthfully_when_libvirtd_freezes(
    test_guest: AgentCase, local_host: LibvirtHost
) -> None:
    assert test_guest.run("start").code == 0
    pid = local_host.libvirtd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        stop = test_guest.run("stop", timeout_ms=TIMEOUT_MS, timeout=30)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert stop.code == ERR_GENERIC and stop.seconds < TIMEOUT_MS / 1000, stop
    assert test_guest.run("stop").code == 0


def test_libvirtd_restarted_during_stop(tmp_path: Path) -> None:
    """libvirtd restarts while stop waits for a graceful shutdown: the guest is still stopped."""
    from tests.acceptance.conftest import QEMU_CAPS_SEED, REPO, unique_prefix
    from tests.support.guests import domain_xml
    from tests.support.libvirt_hosts import HostSet

    hosts = HostSet(unique_prefix("r"), REPO / "build" / "hosts" / unique_prefix("r"), networked=False)
    try:
        hosts.start(["hostR"], qemu_caps_seed=QEMU_CAPS_SEED)
        host = hosts.hosts["hostR"]
        config = tmp_path / "restart.xml"
        config.write_text(domain_xml("restart", driver="qemu"))
        guest = AgentCase("xen-guest", "restart", {"config": str(config), "hypervisor": host.qemu_uri},
                          str(tmp_path / "rsctmp"))  # fmt: skip
        assert guest.run("start").code == 0
        results = []
        stopping = threading.Thread(target=lambda: results.append(guest.run("stop", shutdown_timeout="4")))
        stopping.start()
        time.sleep(1.0)  # stop is now waiting for the (ignored) ACPI shutdown
        hosts.restart_libvirtd("hostR")
        stopping.join(60)
        stop = results[0]
        assert stop.code == 0, stop
        assert "reconnecting once" in stop.stderr
        assert guest.probe().code == 7
    finally:
        hosts.teardown()


@pytest.mark.parametrize("action", ["validate-all", "reload-agent", "meta-data"])
def test_actions_that_do_not_need_the_hypervisor_answer_at_once(
    test_guest: AgentCase, frozen: None, action: str
) -> None:
    result = test_guest.run(action, timeout_ms=TIMEOUT_MS, timeout=30)
    assert result.code == 0 and result.seconds < 2, result


@pytest.mark.parametrize("action", ["start", "monitor", "stop"])
def test_xen_host_answers_within_its_timeout(local_host: LibvirtHost, tmp_path: Path, action: str) -> None:
    from tests.support.cib import write_cib

    cib = write_cib(tmp_path / "cib.xml", {"testhost": {}})
    agent = AgentCase("xen-host", "xen-host", {"hypervisor": local_host.test_uri}, str(tmp_path / "rsctmp"),
                      extra_env={"CIB_file": str(cib), "OCF_RESKEY_CRM_meta_on_node": "testhost"})  # fmt: skip
    if action != "start":
        assert agent.run("start").code == 0
    pid = local_host.libvirtd_pid()
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        result = agent.run(
            action, interval_ms=10000 if action == "monitor" else None, timeout_ms=TIMEOUT_MS, timeout=30
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.seconds < TIMEOUT_MS / 1000, result
    assert result.code == 0, result  # the agent works: it reports the host as red
    if action != "stop":
        assert "#health-xenha=red" in result.stderr and "did not answer in time" in result.stderr
