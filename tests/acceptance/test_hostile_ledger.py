"""The reservation ledger under hostile conditions (issue 12, findings 6-9, 11-13).

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

import pytest

from tests.support.cib import query, write_cib
from tests.support.domains import active, destroy
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
        return active(self.host.test_uri, Path(case.params["config"]).stem)

    def ledger_text(self) -> str:
        return self.ledger_text_of(self.cib)

    @staticmethod
    def ledger_text_of(cib: Path) -> str:
        crm_config = query(cib, "//crm_config")
        assert crm_config, f"cibadmin cannot read {cib}"
        return crm_config

    def cleanup(self) -> None:
        destroy(self.host.test_uri, *self.names)


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


# ---- finding 8 -------------------------------------------------------------------------------


def test_a_booking_decided_before_a_stale_replace_does_not_commit(tmp_path: Path) -> None:
    """The forced interleaving of tests/cluster/test_stale_cib_replace.py on a CIB file, through
    the ledger's own code and Pacemaker's cibadmin: A reads; B books; a stale copy of the
    configuration (read before B) is pushed back as pcs does, so the ledger is again exactly
    what A read; A's compare-and-swap must still fail, because the epoch moved on."""
    from xenha.admission.ledger import Reservation
    from xenha.admission.stores import CibLedger
    from xenha.deadline import Deadline
    from xenha.pacemaker.cluster import ClusterCli
    from xenha.runner import CommandRunner

    cib = write_cib(tmp_path / "cib.xml", {NODE: {"hv_memory": ROOM_FOR_ONE, "cpu": 64}})
    environ = {"CIB_file": str(cib), "PATH": "/usr/sbin:/usr/bin"}

    def ledger() -> CibLedger:
        return CibLedger(ClusterCli(CommandRunner(environ), Deadline.after(30)), str(tmp_path / "rsctmp"), NODE)

    def booking(resource: str) -> Reservation:
        return Reservation(NODE, resource, 134, 1, 120, f"{NODE}:1:{resource}")

    stale = subprocess.run(["cibadmin", "--query", "--scope", "configuration"], env=environ,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    a = ledger()
    seen_by_a = a.read(Deadline.after(10))
    a.abandon()  # A decides; B books meanwhile (in a cluster nothing orders them but the CAS)
    b = ledger()
    assert b.book(b.read(Deadline.after(10)), booking("b"), Deadline.after(10)), "B's booking failed"
    subprocess.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-text", stale], env=environ,
                   capture_output=True, text=True, check=True)  # fmt: skip
    reader = ledger()
    after_replace = reader.read(Deadline.after(10))
    reader.abandon()
    assert after_replace.reservations == seen_by_a.reservations == (), "the replace did not bring back A's ledger"
    assert after_replace.epoch != seen_by_a.epoch, f"a replace brought an epoch back: {after_replace.epoch}"
    assert not a.book(seen_by_a, booking("a"), Deadline.after(10)), (
        "A's booking, decided before B's, committed after a stale replace"
    )
    assert "resource=a " not in Node.ledger_text_of(cib)


# ---- finding 9 -------------------------------------------------------------------------------


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


# ---- finding 13: the local ledger's release ------------------------------------------------


@pytest.fixture
def frozen_far_host(tmp_path: Path) -> Iterator[LibvirtHost]:
    """A second libvirtd, frozen (SIGSTOP): a migration target that never answers."""
    from tests.acceptance.conftest import QEMU_CAPS_SEED, REPO, unique_prefix
    from tests.support.libvirt_hosts import HostSet

    prefix = unique_prefix("z")
    hosts = HostSet(prefix, REPO / "build" / "hosts" / prefix, networked=False)
    try:
        hosts.start(["far"], qemu_caps_seed=QEMU_CAPS_SEED)
        hosts.freeze_libvirtd("far")
        yield hosts.hosts["far"]
    finally:
        hosts.thaw_libvirtd("far")
        hosts.teardown()


def test_local_ledger_release_keeps_to_the_actions_timeout(
    local_host: LibvirtHost, frozen_far_host: LibvirtHost, tmp_path: Path
) -> None:
    """No cluster (no CIB_file, no CIB manager): the ledger of node "far" is a file under the
    shared HA_RSCTMP, and its lock serialises the agents of this host.

    A (a start on "far", a real QEMU guest) has booked and is creating its guest when it is
    descheduled (SIGSTOP, as a loaded host does); meanwhile B, a migration into "far" whose
    libvirtd is frozen, takes the ledger's lock and holds it while it waits for that libvirtd;
    C proves the lock is held. A resumes: its release meets the held lock with 3-4 s of its
    8 s left. It must still return inside its 8 s."""
    rsctmp = str(tmp_path / "rsctmp")
    no_cluster = {"OCF_RESKEY_CRM_meta_on_node": "far"}

    def case(name: str, driver: str, uri: str, **params: str) -> AgentCase:
        config = tmp_path / f"{name}.xml"
        config.write_text(domain_xml(name, driver=driver, memory_mib=64))
        return AgentCase("xen-guest", name, {"config": str(config), "hypervisor": uri, **params}, rsctmp,
                         extra_env=dict(no_cluster))  # fmt: skip

    a = case("ledger-a", "qemu", local_host.qemu_uri)
    b = case("ledger-b", "test", local_host.test_uri, remoteuri=frozen_far_host.test_uri, hvm_migration="live")
    c = case("ledger-c", "test", local_host.test_uri)
    b_here = AgentCase(b.agent, b.instance, b.params, b.rsctmp, extra_env={"OCF_RESKEY_CRM_meta_on_node": "near"})
    assert b_here.run("start").code == SUCCESS  # B's guest runs here, on "near"
    env = ocf_environment(a.instance, a.params, {"timeout": "8000"}, rsctmp)
    env.update(a.extra_env)
    os.makedirs(rsctmp, exist_ok=True)
    started = time.monotonic()
    holder = subprocess.Popen([str(AGENTS / "xen-guest"), "start"], env=env, stderr=subprocess.PIPE, text=True)
    migrating: threading.Thread | None = None
    try:
        assert holder.stderr is not None
        for line in holder.stderr:
            if "booked until" in line:
                holder.send_signal(signal.SIGSTOP)  # booked, not yet released: its guest is being created
                break
        else:
            raise AssertionError("A never booked: nothing tested")
        meta = {"migrate_source": "near", "migrate_target": "far"}
        migrating = threading.Thread(target=lambda: b_here.run("migrate_to", meta=meta, timeout_ms=25000))
        migrating.start()
        time.sleep(2)
        blocked = c.run("start", timeout_ms=3000)
        assert blocked.code != SUCCESS and "stayed busy" in (blocked.reason or ""), (
            f"B does not hold the ledger's lock: nothing tested\n{blocked}"
        )
        holder.send_signal(signal.SIGCONT)
        rest = holder.stderr.read()
        holder.wait(60)
        elapsed = time.monotonic() - started
        assert elapsed < 8.5, f"A's start (timeout 8 s) returned after {elapsed:.1f} s:\n{rest}"
    finally:
        holder.kill()
        holder.wait(10)
        if migrating is not None:
            migrating.join(90)
        destroy(local_host.qemu_uri, "ledger-a")
        destroy(local_host.test_uri, "ledger-b")
