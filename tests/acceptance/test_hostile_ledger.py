"""The reservation ledger under hostile conditions (issue 12, findings 6, 7, 9, 11, 12).

Each test runs xen-guest's start as separate processes, as Pacemaker's executor does, on a
real libvirtd (test driver), with the cluster played by a CIB file that Pacemaker's own
``cibadmin`` reads and writes. Faults are faults of the real tools: ``cibadmin`` replaced in
the agent's private mount namespace by a script that fails or hangs and leaves a marker
(tests/support/faults.py), ``faketime`` for a node whose clock runs ahead. A reservation
held by "another node" is made by a real agent whose start is frozen right after its
booking and then killed, as a crashed holder would leave it.

Every guest demands 134 MiB (128 MiB + Xen's overhead, 1 vCPU): a node with
``hv_memory=200`` has room for one, 300 for two, 420 for three.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from tests.support.cib import query, write_cib
from tests.support.faults import fail_first_call, hang_after_first_booking, shimmed
from tests.support.guests import domain_xml
from tests.support.libvirt_hosts import LibvirtHost
from tests.support.ocf import AGENTS, AgentCase, AgentRun, ocf_environment

NODE = "testhost"
SUCCESS = 0
ROOM_FOR_ONE, ROOM_FOR_TWO, ROOM_FOR_THREE = 200, 300, 420


class Node:
    """One node of a cluster played by a CIB file, its guests in ``local_host``'s test driver."""

    def __init__(self, host: LibvirtHost, tmp_path: Path, hv_memory: int) -> None:
        self.host = host
        self.tmp_path = tmp_path
        self.cib = write_cib(tmp_path / "cib.xml", {NODE: {"hv_memory": hv_memory, "cpu": 64}})
        self.names: list[str] = []

    def guest(self, resource: str, prefix: list[str] | None = None, rsctmp: str = "rsctmp") -> AgentCase:
        name = "h-" + "".join(c if c.isalnum() else "-" for c in resource) + f"-{os.getpid() % 10000}"
        config = self.tmp_path / f"{name}.xml"
        config.write_text(domain_xml(name, driver="test", memory_mib=128, vcpus=1))
        self.names.append(name)
        return AgentCase(
            "xen-guest", resource, {"config": str(config), "hypervisor": self.host.test_uri},
            str(self.tmp_path / rsctmp), prefix,
            {"CIB_file": str(self.cib), "OCF_RESKEY_CRM_meta_on_node": NODE},
        )  # fmt: skip

    def running(self, case: AgentCase) -> bool:
        name = Path(case.params["config"]).stem
        connection = libvirt.open(self.host.test_uri)
        try:
            return bool(connection.lookupByName(name).isActive())
        except libvirt.libvirtError:
            return False
        finally:
            connection.close()

    def ledger_text(self) -> str:
        crm_config = query(self.cib, "//crm_config")
        assert crm_config, f"cibadmin cannot read {self.cib}"
        return crm_config

    def cleanup(self) -> None:
        connection = libvirt.open(self.host.test_uri)
        try:
            for name in self.names:
                try:
                    connection.lookupByName(name).destroy()
                except libvirt.libvirtError:
                    pass
        finally:
            connection.close()


NodeFactory = Callable[..., Node]


@pytest.fixture
def node_factory(local_host: LibvirtHost, tmp_path: Path) -> Iterator[NodeFactory]:
    made: list[Node] = []

    def make(hv_memory: int, subdir: str = "") -> Node:
        directory = tmp_path / subdir if subdir else tmp_path
        directory.mkdir(exist_ok=True)
        node = Node(local_host, directory, hv_memory)
        made.append(node)
        return node

    yield make
    for node in made:
        node.cleanup()


def hold_booking(node: Node, resource: str, timeout_ms: int = 60000, clock: list[str] | None = None) -> None:
    """A real start of ``resource`` that books its room in the CIB and is then killed before it
    does anything else, as a holder that crashed mid-admission leaves its reservation: live
    until it expires (the action's timeout + 60 s today)."""
    marks = node.tmp_path / f"hold-{resource.replace(':', '_')}"
    case = node.guest(resource, shimmed("cibadmin", hang_after_first_booking(600), marks))
    env = ocf_environment(case.instance, case.params, {"timeout": str(timeout_ms)}, case.rsctmp)
    env.update(case.extra_env)
    os.makedirs(case.rsctmp, exist_ok=True)
    holder = subprocess.Popen(
        [*(clock or []), *(case.prefix or []), str(AGENTS / "xen-guest"), "start"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (marks / "booked").exists():
            if holder.poll() is not None or time.monotonic() > deadline:
                _, stderr = holder.communicate(timeout=5) if holder.poll() is not None else ("", "")
                raise AssertionError(f"the holder {resource} never booked (rc {holder.poll()}):\n{stderr}")
            time.sleep(0.05)
        assert (marks / "booked").read_text().strip() == "0", "the holder's booking was not written"
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
    assert resource in node.ledger_text(), "the holder's reservation is not in the CIB"


# ---- finding 6 -------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 6: a reservation whose nvpair id ends in -version is read as the ledger's "
    "version; every compare-and-swap then fails ('kept changing') and the host takes no booking",
)
def test_a_resource_id_ending_in_version_does_not_block_the_host(node_factory: NodeFactory) -> None:
    node = node_factory(ROOM_FOR_TWO)
    hold_booking(node, "app-version")
    guest = node.guest("web")
    start = guest.run("start", timeout_ms=20000)
    assert start.code == SUCCESS, f"a host with room for two refused the second guest: {start}"
    assert node.running(guest)
    # and the holder's booking still counts: a third guest does not fit
    third = node.guest("db")
    refused = third.run("start", timeout_ms=20000)
    assert refused.code != SUCCESS and not node.running(third), refused
    assert "needs 134 MiB" in (refused.reason or ""), refused


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 6: resource ids that clean to the same nvpair id (web:1 and web_1) share one "
    "reservation nvpair: the second booking overwrites the first and its release deletes it",
)
def test_ids_that_clean_alike_keep_separate_reservations(node_factory: NodeFactory) -> None:
    node = node_factory(ROOM_FOR_TWO)
    hold_booking(node, "web:1")  # a clone instance's name, as Pacemaker passes it
    second = node.guest("web_1")
    assert second.run("start", timeout_ms=20000).code == SUCCESS
    # web:1's booking and web_1's running guest fill the host: one more must be refused
    third = node.guest("db")
    refused = third.run("start", timeout_ms=20000)
    assert refused.code != SUCCESS and not node.running(third), (
        f"web:1's reservation was lost: a third guest was admitted into room for two\n{refused}"
    )


# ---- finding 7 -------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 7: one failed cibadmin call makes the agent decide there is no cluster; the "
    "local ledger ignores the CIB's capacity and another node's booking and admits into a full host",
)
@pytest.mark.parametrize("fault", ["exit-102-once", "cannot-be-started"])
def test_a_passing_cib_error_refuses_and_never_falls_back(node_factory: NodeFactory, fault: str) -> None:
    """``exit-102-once``: the CIB manager did not answer one call (cibadmin's "not connected").
    ``cannot-be-started``: cibadmin cannot be run during the action (what a fork failing with
    EAGAIN does; a file that cannot be executed stands in for it)."""
    node = node_factory(ROOM_FOR_ONE)
    hold_booking(node, "other")  # the node's room is booked by another admission
    marks = node.tmp_path / "transient"
    script = fail_first_call(102, "Could not connect to the CIB: Transport endpoint is not connected")
    guest = node.guest("web", shimmed("cibadmin", script, marks, executable=fault == "exit-102-once"))
    start = guest.run("start", timeout_ms=20000)
    proof = "failed" if fault == "exit-102-once" else "namespace-ready"
    assert (marks / proof).exists(), "the fault was never injected: nothing tested"
    assert start.code != SUCCESS and not node.running(guest), (
        f"admitted into a host whose only room another admission holds: {start}"
    )
    assert "internal error" not in (start.reason or ""), start


# ---- finding 9 -------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 9: with CIB_file the compare-and-swap is not atomic (cibadmin rewrites the "
    "file without a lock): concurrent admissions into room for one admit several",
)
def test_concurrent_admissions_against_a_cib_file_admit_exactly_one(node_factory: NodeFactory) -> None:
    """Decision (docs/decisions/cib-file-serialisation.md): against a CIB file the agent
    serialises read-decide-write with a lock beside the file, so CIB_file keeps its promise."""
    rounds = []
    not_refusals = []
    for round_number in range(5):
        node = node_factory(ROOM_FOR_ONE, subdir=f"round{round_number}")
        guests = [node.guest(f"race{round_number}-{index}") for index in range(6)]
        results = start_all_at_once(guests)
        admitted = [guest.instance for guest in guests if results[guest.instance].code == SUCCESS]
        running = [guest.instance for guest in guests if node.running(guest)]
        rounds.append((round_number, admitted, running))
        not_refusals += [
            f"round {round_number}: {results[guest.instance].reason}"
            for guest in guests
            if results[guest.instance].code != SUCCESS and "needs 134 MiB" not in (results[guest.instance].reason or "")
        ]
        node.cleanup()
    overbooked = [(number, admitted, running) for number, admitted, running in rounds if len(running) != 1]
    assert not overbooked, f"6 admissions into room for one: (round, admitted, running) {rounds}"
    # a reader meeting the file half-rewritten by another cibadmin fails instead of deciding
    assert not not_refusals, "admissions failed instead of being refused:\n" + "\n".join(not_refusals)


def start_all_at_once(guests: list[AgentCase]) -> dict[str, AgentRun]:
    results: dict[str, AgentRun] = {}

    def start(guest: AgentCase) -> None:
        results[guest.instance] = guest.run("start", timeout_ms=30000)

    threads = [threading.Thread(target=start, args=(guest,)) for guest in guests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return results


# ---- finding 11 ------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 11: cibadmin timing out while booking ends in 'internal error ... please "
    "report it', and the booking it committed stays in the CIB until it expires",
)
def test_cibadmin_timing_out_while_booking_leaves_no_booking(node_factory: NodeFactory) -> None:
    node = node_factory(ROOM_FOR_TWO)
    marks = node.tmp_path / "hung-booking"
    guest = node.guest("web", shimmed("cibadmin", hang_after_first_booking(600), marks))
    start = guest.run("start", timeout_ms=20000, timeout=60)
    assert (marks / "booked").exists(), "the booking never reached cibadmin: nothing tested"
    assert start.code != SUCCESS, start
    assert start.seconds < 20, f"the start overran its 20 s timeout: {start}"
    reason = start.reason or ""
    assert "internal error" not in reason and "report it" not in reason, f"no clear reason: {start}"
    assert "cibadmin" in reason or "CIB" in reason, f"the reason does not say the CIB did not answer: {start}"
    assert "web" not in node.ledger_text(), (
        f"the booking that committed before cibadmin was killed is still in the CIB:\n{node.ledger_text()}"
    )


# ---- finding 12 ------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="issue 12 finding 12: expiry compares another node's wall-clock timestamp with ours: a node "
    "whose clock runs 3 minutes ahead takes a live reservation for expired and overbooks the host",
)
def test_a_node_whose_clock_runs_ahead_still_counts_live_reservations(node_factory: NodeFactory) -> None:
    node = node_factory(ROOM_FOR_ONE)
    hold_booking(node, "other", timeout_ms=60000)  # live for about two minutes on a clock in sync
    ahead = ["faketime", "-f", "+180"]  # this node's clock runs 3 minutes ahead
    probe = subprocess.run([*ahead, "date", "+%s"], capture_output=True, text=True, check=True)
    assert int(probe.stdout) - time.time() > 170, "faketime did not move the clock: nothing tested"
    guest = node.guest("web")
    skewed = AgentCase(guest.agent, guest.instance, guest.params, guest.rsctmp, ahead, guest.extra_env)
    start = skewed.run("start", timeout_ms=20000)
    assert start.code != SUCCESS and not node.running(guest), (
        f"a live reservation was taken for expired by a node 3 minutes ahead: {start}"
    )
    assert "other" in node.ledger_text(), "the live reservation of another node was deleted"
