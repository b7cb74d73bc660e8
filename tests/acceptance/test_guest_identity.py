"""xen-guest finds its own domain by every identity it has, and never acts on another's.

Issue 12, findings 1, 2 and 13 (entity in ``<name>``): a stop that answers "stopped" while
the guest runs under another name lets Pacemaker start it a second time from the same
disks; a probe or stop that takes another resource's domain for its own shuts the wrong
guest down. Real libvirtd (test driver); each action a separate process, as Pacemaker runs it.
"""

from __future__ import annotations

from pathlib import Path

import libvirt

from tests.support.domains import create_by_hand, destroy, domain_state
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AgentCase

SUCCESS, ERR_CONFIGURED, NOT_RUNNING = 0, 6, 7


def guest_name(case: AgentCase) -> str:
    return Path(case.params["config"]).stem


def second_resource(case: AgentCase, tmp_path: Path) -> AgentCase:
    """Another resource whose configuration names the same domain."""
    config = tmp_path / "second.xml"
    config.write_text(Path(case.params["config"]).read_text())
    return AgentCase(
        case.agent,
        instance=case.instance + "-second",
        params={**case.params, "config": str(config)},
        rsctmp=str(tmp_path / "rsctmp-second"),
    )


def test_renamed_guest_is_still_found_by_monitor_and_stopped(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    old = guest_name(test_guest)
    assert test_guest.run("start").code == SUCCESS
    # The operator renames the guest in the shared XML (takes effect at the next start).
    Path(test_guest.params["config"]).write_text(domain_xml(old + "-renamed", driver="test", memory_mib=256, vcpus=2))
    try:
        monitor = test_guest.monitor()
        assert monitor.code == SUCCESS, monitor
        stop = test_guest.run("stop")
        assert stop.code == SUCCESS, stop
        assert domain_state(local_host.test_uri, old) is None, "stop claimed success while the guest still runs"
    finally:
        destroy(local_host.test_uri, old)


def test_renamed_guest_is_found_by_a_probe_without_state(test_guest: AgentCase, local_host: LibvirtHost, tmp_path: Path) -> None:
    """A probe on a node that remembers nothing (another node's HA_RSCTMP) still finds it."""
    old = guest_name(test_guest)
    assert test_guest.run("start").code == SUCCESS
    Path(test_guest.params["config"]).write_text(domain_xml(old + "-renamed", driver="test", memory_mib=256, vcpus=2))
    fresh = AgentCase(test_guest.agent, test_guest.instance, dict(test_guest.params), str(tmp_path / "fresh-rsctmp"))
    try:
        probe = fresh.probe()
        assert probe.code == SUCCESS, probe
        stop = fresh.run("stop")
        assert stop.code == SUCCESS, stop
        assert domain_state(local_host.test_uri, old) is None
    finally:
        destroy(local_host.test_uri, old)


def test_another_resources_domain_is_not_ours(test_guest: AgentCase, local_host: LibvirtHost, tmp_path: Path) -> None:
    name = guest_name(test_guest)
    assert test_guest.run("start").code == SUCCESS
    other = second_resource(test_guest, tmp_path)
    try:
        probe = other.probe()
        assert probe.code != SUCCESS, f"the second resource claims the first one's domain: {probe}"
        start = other.run("start")
        assert start.code == ERR_CONFIGURED, start
        assert test_guest.instance in (start.reason or ""), start
        stop = other.run("stop")
        assert stop.code == SUCCESS, stop
        assert domain_state(local_host.test_uri, name) == libvirt.VIR_DOMAIN_RUNNING, "stop shut down another resource's guest"
        assert test_guest.monitor().code == SUCCESS
    finally:
        test_guest.run("stop")


def test_domain_started_by_hand_under_the_guests_name_is_never_stopped(test_guest: AgentCase, local_host: LibvirtHost) -> None:
    name = guest_name(test_guest)
    create_by_hand(local_host.test_uri, domain_xml(name, driver="test", memory_mib=128))
    try:
        stop = test_guest.run("stop")
        assert stop.code == SUCCESS, stop
        assert domain_state(local_host.test_uri, name) == libvirt.VIR_DOMAIN_RUNNING, "stop destroyed a domain it does not own"
        probe = test_guest.probe()
        assert probe.code != SUCCESS, f"a domain started by hand is taken for the cluster's guest: {probe}"
    finally:
        destroy(local_host.test_uri, name)


def test_entity_in_the_name_is_refused(test_guest: AgentCase) -> None:
    """libvirt would name the domain differently from what the agent reads: refuse the XML.

    A guard, not a regression test: it passed before any fix (no defect was seen here), and
    keeps these two files refused: the DOCTYPE check on the parsed document, and lxml's
    error on an undeclared entity. The defect that was fixed, an entity silently dropped from
    the name, needed a file in an encoding where ``<!DOCTYPE`` is not ASCII bytes (UTF-16,
    UTF-32): its regression test is test_hostile_identity.py.
    """
    config = Path(test_guest.params["config"])
    text = domain_xml("web-undefined", driver="test")
    undeclared = text.replace("<name>web-undefined</name>", "<name>web&suffix;</name>")
    declared = '<!DOCTYPE domain [<!ENTITY suffix "1">]>\n' + undeclared
    # What each refusal says (the file's path holds this test's name, so "name" would prove nothing).
    for xml, refusal in ((declared, "declares a DOCTYPE or entities"), (undeclared, "is not well-formed XML")):
        config.write_text(xml)
        result = test_guest.run("validate-all")
        assert result.code == ERR_CONFIGURED, (xml, result)
        assert refusal in (result.reason or ""), result
