"""xen-guest's start, monitor, probe and stop against a real libvirtd (test driver).

Each action runs as a separate process with the OCF environment, as Pacemaker runs it.
The test driver's state lives in the libvirtd of the ``local_host`` fixture, so what one
action does is seen by the next.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import libvirt

from tests.support.domains import domain_state
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase

SUCCESS, ERR_GENERIC, ERR_INSTALLED, ERR_CONFIGURED, NOT_RUNNING, DEGRADED = 0, 1, 5, 6, 7, 190


def guest_name(case: AgentCase) -> str:
    return Path(case.params["config"]).stem


def test_probe_start_monitor_stop_cycle(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    name = guest_name(test_guest)
    assert test_guest.probe().code == NOT_RUNNING

    start = test_guest.run("start")
    assert start.code == SUCCESS, start
    assert domain_state(local_host.test_uri, name) == libvirt.VIR_DOMAIN_RUNNING

    assert test_guest.monitor().code == SUCCESS
    assert test_guest.probe().code == SUCCESS

    stop = test_guest.run("stop")
    assert stop.code == SUCCESS, stop
    assert domain_state(local_host.test_uri, name) is None
    assert test_guest.monitor().code == NOT_RUNNING


def test_start_and_stop_are_idempotent(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert test_guest.run("start").code == SUCCESS
    again = test_guest.run("start")
    assert again.code == SUCCESS, again
    assert "already running" in again.stderr
    assert test_guest.run("stop").code == SUCCESS
    assert test_guest.run("stop").code == SUCCESS
    assert domain_state(local_host.test_uri, guest_name(test_guest)) is None


def test_started_domain_records_its_owner_and_demand(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert test_guest.run("start").code == SUCCESS
    connection = libvirt.open(local_host.test_uri)
    try:
        domain = connection.lookupByName(guest_name(test_guest))
        metadata = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "urn:xenha:guest:1", 0)
    finally:
        connection.close()
    assert f'resource="{test_guest.instance}"' in metadata
    assert 'memory-mib="256"' in metadata and 'vcpus="2"' in metadata and 'guest-type="hvm"' in metadata
    test_guest.run("stop")


def test_state_file_is_private(test_guest: AgentCase) -> None:
    assert test_guest.run("start").code == SUCCESS
    files = list(Path(test_guest.rsctmp).iterdir())
    assert files and all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    state = next(path for path in files if path.name.startswith("xenha-xen-guest-"))
    assert json.loads(state.read_text())["domain"] == guest_name(test_guest)
    test_guest.run("stop")


def test_probe_with_unreadable_config_still_sees_the_running_guest(
    test_guest: AgentCase, local_host: LibvirtHost
) -> None:
    """Shared storage away: a probe must not say "not running" while the guest runs."""
    assert test_guest.run("start").code == SUCCESS
    config = Path(test_guest.params["config"])
    hidden = config.with_suffix(".away")
    config.rename(hidden)
    try:
        # with the name remembered under HA_RSCTMP
        remembered = test_guest.probe()
        assert remembered.code == SUCCESS, remembered
        # without it (e.g. another node since boot): found through the domain's own metadata
        for state_file in Path(test_guest.rsctmp).iterdir():
            state_file.unlink()
        by_metadata = test_guest.probe()
        assert by_metadata.code == SUCCESS, by_metadata
        assert "by its metadata" in by_metadata.stderr
        # a stop in that state really stops the guest
        stop = test_guest.run("stop")
        assert stop.code == SUCCESS, stop
        assert domain_state(local_host.test_uri, guest_name(test_guest)) is None
        assert test_guest.probe().code == NOT_RUNNING
    finally:
        hidden.rename(config)


def test_start_with_unreadable_config_fails_and_does_nothing(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    config = Path(test_guest.params["config"])
    hidden = config.with_suffix(".away")
    config.rename(hidden)
    try:
        start = test_guest.run("start")
    finally:
        hidden.rename(config)
    assert start.code == ERR_INSTALLED, start
    assert start.reason is not None and "cannot read" in start.reason
    assert str(config) in start.reason
    assert domain_state(local_host.test_uri, guest_name(test_guest)) is None


def test_user_paused_guest_is_degraded_not_failed(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert test_guest.run("start").code == SUCCESS
    connection = libvirt.open(local_host.test_uri)
    try:
        connection.lookupByName(guest_name(test_guest)).suspend()
        monitor = test_guest.monitor()
        assert monitor.code == DEGRADED, monitor
        assert monitor.reason is not None and "paused by an administrator" in monitor.reason
        # start resumes it (Pacemaker only starts a guest it believes stopped)
        assert test_guest.run("start").code == SUCCESS
        assert connection.lookupByName(guest_name(test_guest)).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    finally:
        connection.close()
    test_guest.run("stop")


def test_domain_of_another_resource_is_not_adopted(test_guest: AgentCase) -> None:
    assert test_guest.run("start").code == SUCCESS
    impostor = AgentCase(test_guest.agent, "someone-else", dict(test_guest.params), test_guest.rsctmp + "2")
    os.makedirs(impostor.rsctmp, exist_ok=True)
    start = impostor.run("start")
    assert start.code == ERR_CONFIGURED, start
    assert start.exit_reason is not None and f"belongs to cluster resource {test_guest.instance}" in start.reason
    test_guest.run("stop")


def test_stop_force_destroys_at_once(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    assert test_guest.run("start").code == SUCCESS
    stop = test_guest.run("stop", force_stop="true")
    assert stop.code == SUCCESS, stop
    assert "destroying guest" in stop.stderr and "shutting down" not in stop.stderr
    assert domain_state(local_host.test_uri, guest_name(test_guest)) is None
