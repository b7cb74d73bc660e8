"""A frozen libvirtd (SIGSTOP) must never hang the agent: every call has a deadline."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from tests.harness.guests import AgentCase
from tests.harness.libvirt_hosts import LibvirtHost

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
    assert result.exit_reason is not None and "did not answer in time" in result.exit_reason
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
