"""xen-guest's decisions through its service seam: fake hypervisors, ledgers and cluster.

The acceptance tests run these paths against real daemons; here each decision is pinned
down on its own, with the fault injected exactly where it matters: a guest that ignores
its shutdown request, a libvirtd that drops the connection mid-action, a booking that
loses its compare-and-swap to another node. Fakes live only here (the agent gets them
through ``GuestAgent(services=...)``, as the planner's tests use ``PlanEnvironment``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from xenha.admission.ledger import LedgerState, Reservation
from xenha.admission.stores import ReservationError
from xenha.agents.guest.agent import GuestAgent
from xenha.libvirt import states
from xenha.libvirt.connection import NodeFacts
from xenha.libvirt.domain import Domain, DomainStatus, FoundDomain
from xenha.libvirt.drivers import traits
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.libvirt.live_migration import ALL_TYPES, LiveMigration
from xenha.libvirt.owner import Owner
from xenha.ocf import Context, OcfExit, run_agent

RUNNING = DomainStatus(states.RUNNING, 1)
SHUTOFF = DomainStatus(states.SHUTOFF, 1)


class FakeDomain:
    """A running domain; ``owner`` is the resource its metadata names (None: started by hand)."""

    def __init__(
        self, hypervisor: FakeHypervisor, name: str, obeys_shutdown: bool = True, owner: str | None = "web1",
        uuid: str = "",
    ) -> None:  # fmt: skip
        self.hypervisor = hypervisor
        self.name = name
        self.obeys_shutdown = obeys_shutdown
        self.state = RUNNING
        self.calls: list[str] = []
        self.owner_resource = owner
        self.owner_reads = 0
        self.drop_at: float | None = None  # when (monotonic) libvirtd drops the connection, once
        self.drop_after_shutdown_s: float | None = None
        hypervisor.next_id += 1
        self.domain_id = hypervisor.next_id
        self._uuid = uuid or f"00000000-0000-4000-8000-{self.domain_id:012d}"
        self.kept_dead = False  # shut off but still held by the hypervisor (on_*=preserve)
        self.restart_reads: int | None = None  # libxl's restart: shut off, a job held, for this many reads
        self.restart_ends_at_job_read = False  # libxl's restart ends right before the job is read

    def uuid(self) -> str:
        return self._uuid


    def id(self) -> int:
        return self.domain_id if self.state != SHUTOFF or self.kept_dead else -1

    def job_active(self) -> bool:
        if self.restart_ends_at_job_read:  # libvirt re-created it between the caller's reads
            self.restart_ends_at_job_read, self.state = False, RUNNING
            self.hypervisor.next_id += 1
            self.domain_id = self.hypervisor.next_id
        return self.restart_reads is not None

    def status(self) -> DomainStatus | None:
        self.hypervisor.fault("read the state")
        if self.drop_at is not None and time.monotonic() >= self.drop_at:
            self.drop_at = None
            raise lost(f"read the state of {self.name}")
        if self.restart_reads is not None:
            self.restart_reads -= 1
            if self.restart_reads < 0:  # libvirt created it again
                self.restart_reads = None
                self.state = RUNNING
        return self.state

    def active(self) -> bool:
        status = self.status()
        return status is not None and status.state != states.SHUTOFF

    def is_arriving(self) -> bool:
        return False  # never the target of an incoming migration (test_guest_migration_settle has those)

    def owner(self) -> Owner | None:
        self.owner_reads += 1
        return Owner(self.owner_resource) if self.owner_resource is not None else None

    def record_owner(self, owner: Owner) -> None:
        self.calls.append("record_owner")
        self.owner_resource = owner.resource

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        if self.drop_after_shutdown_s is not None:
            self.drop_at = time.monotonic() + self.drop_after_shutdown_s
            self.drop_after_shutdown_s = None
        if self.obeys_shutdown:
            self.state = SHUTOFF

    def destroy(self) -> None:
        self.calls.append("destroy")
        self.state = SHUTOFF
        if self.kept_dead:  # a transient domain, now gone
            self.kept_dead = False
            del self.hypervisor.domains[self.name]

    destroy_if_active = Domain.destroy_if_active  # the real rule, over this fake's destroy


class FakeHypervisor:
    """One host's libvirtd; ``faults`` are raised, in order, by the next calls."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.uri = "xen:///system"
        self.driver = traits("xen")
        self.deadline: object = None
        self.domains: dict[str, FakeDomain] = {}
        self.faults: list[HypervisorError] = []
        self.memory_mib = 16384
        self.next_id = 0
        self.scans = 0

    def fault(self, operation: str) -> None:
        if self.faults:
            raise self.faults.pop(0)

    def lookup(self, name: str) -> FakeDomain | None:
        self.fault(f"look up domain {name}")
        return self.domains.get(name)

    def lookup_uuid(self, uuid: str) -> FakeDomain | None:
        return next((domain for domain in self.domains.values() if domain.uuid() == uuid), None)

    def find_owned_by(self, resource: str) -> FakeDomain | None:
        self.scans += 1
        running = [domain for domain in self.domains.values() if domain.active()]
        return next((domain for domain in running if domain.owner_resource == resource), None)

    def find(self, name: str) -> FoundDomain | None:
        domain = self.lookup(name)
        status = domain.status() if domain is not None else None
        return None if domain is None or status is None else FoundDomain(domain, status)  # type: ignore[arg-type]

    def create(self, xml: str, name: str) -> FakeDomain:
        self.domains[name] = FakeDomain(self, name)
        return self.domains[name]

    def active_domains(self) -> list[object]:
        return []

    def node_facts(self) -> NodeFacts:
        return NodeFacts(self.memory_mib, 8)

    def domain0_memory_mib(self) -> int | None:
        return 1024


class FakeLedger:
    """A ledger whose first ``conflicts`` bookings lose their compare-and-swap."""

    shared = True

    def __init__(self, node: str, conflicts: int = 0) -> None:
        self.node = node
        self.conflicts = conflicts
        self.failure: Exception | None = None  # raised by the next read (a CIB error)
        self.lapsed: list[Reservation] = []  # in the ledger, their hold run out on this node
        self.cleared: list[Reservation] = []
        self.epoch = (0, 3)
        self.booked: list[Reservation] = []
        self.released: list[Reservation] = []
        self.reads = 0

    def read(self, deadline: object) -> LedgerState:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        lapsed = tuple(self.lapsed)
        return LedgerState(self.node, self.epoch, (*self.booked, *lapsed), {}, expired=frozenset(r.key for r in lapsed))

    def book(self, state: LedgerState, reservation: Reservation, deadline: object) -> bool:
        if self.conflicts:
            self.conflicts -= 1
            self.epoch = (0, self.epoch[1] + 1)  # another node booked (or the configuration changed) in between
            return False
        assert state.epoch == self.epoch
        self.booked.append(reservation)
        return True

    def abandon(self) -> None:
        pass

    def release(self, reservation: Reservation | None, expired: Sequence[Reservation], deadline: object) -> None:
        if reservation is not None:
            self.released.append(reservation)
        self.cleared.extend(expired)


class FakeCluster:
    def __init__(self) -> None:
        self.utilization: dict[str, int] = {}

    def resource_utilizations(self, resource: str) -> dict[str, int]:
        return dict(self.utilization)

    def set_resource_utilization(self, resource: str, name: str, value: int) -> None:
        self.utilization[name] = value


class FakeServices:
    def __init__(self, ctx: Context, hypervisor: FakeHypervisor, ledger: FakeLedger, cluster: FakeCluster) -> None:
        self._ctx = ctx
        self._hypervisor = hypervisor
        self._ledger = ledger
        self._cluster = cluster
        self.clock: Callable[[], float] = lambda: 1_000_000.0
        self.slept: list[float] = []
        # What this node's hypervisor can live-migrate (None: unknown); every type by default.
        self.live: LiveMigration | None = LiveMigration(ALL_TYPES, "a fake host")
        self.asked_live_migration = 0

    def live_migration(self, hypervisor: object) -> LiveMigration | None:
        self.asked_live_migration += 1
        return self.live

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def toolstack(self, hypervisor: object) -> None:
        return None  # no hypervisor toolstack beside libvirt (Xen's xl: test_guest_migration_settle)

    def hypervisor(self, uri: str, node: str) -> FakeHypervisor:
        self._hypervisor.deadline = self._ctx.deadline
        return self._hypervisor

    def cluster(self) -> FakeCluster:
        return self._cluster

    def ledger(self, node: str) -> FakeLedger:
        return self._ledger


class Host:
    """One node as the agent sees it: its hypervisor, its ledger, the cluster, a config file."""

    def __init__(self, tmp_path: Path) -> None:
        self.hypervisor = FakeHypervisor("node1")
        self.ledger = FakeLedger("node1")
        self.cluster = FakeCluster()
        self.config = tmp_path / "web1.xml"
        self.config.write_text(
            "<domain type='xen'><name>web1</name><memory unit='MiB'>1024</memory><vcpu>2</vcpu>"
            "<os><type>linux</type></os></domain>"
        )
        self.rsctmp = tmp_path / "rsctmp"
        self.stderr = io.StringIO()  # no log destination configured: the log goes here
        self.services: list[FakeServices] = []

    def make_services(self, ctx: Context) -> FakeServices:
        services = FakeServices(ctx, self.hypervisor, self.ledger, self.cluster)
        self.services.append(services)
        return services

    def run(self, action: str, **params: str) -> int:
        environ = {
            "OCF_ROOT": "/usr/lib/ocf",
            "OCF_RESOURCE_INSTANCE": "web1",
            "HA_RSCTMP": str(self.rsctmp),
            "HA_LOGFACILITY": "none",
            "OCF_RESKEY_CRM_meta_timeout": "20000",
            "OCF_RESKEY_CRM_meta_on_node": "node1",
            "OCF_RESKEY_config": str(self.config),
            "OCF_RESKEY_hypervisor": "xen:///system",
            **{f"OCF_RESKEY_{name}": value for name, value in params.items()},
        }
        agent = GuestAgent(services=self.make_services)  # type: ignore[arg-type]
        return run_agent(agent, ["xen-guest", action], environ, stdout=io.StringIO(), stderr=self.stderr)

    @property
    def log(self) -> str:
        return self.stderr.getvalue()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    yield Host(tmp_path)


def test_stop_destroys_a_guest_that_ignores_its_shutdown(host: Host) -> None:
    domain = FakeDomain(host.hypervisor, "web1", obeys_shutdown=False)
    host.hypervisor.domains["web1"] = domain
    assert host.run("stop", shutdown_timeout="1") == OcfExit.SUCCESS
    assert domain.calls == ["shutdown", "destroy"]
    assert "destroying guest web1" in host.log


def test_stop_ends_with_the_shutdown_when_the_guest_obeys(host: Host) -> None:
    domain = FakeDomain(host.hypervisor, "web1")
    host.hypervisor.domains["web1"] = domain
    assert host.run("stop", shutdown_timeout="30") == OcfExit.SUCCESS
    assert domain.calls == ["shutdown"]


def test_force_stop_destroys_without_asking(host: Host) -> None:
    domain = FakeDomain(host.hypervisor, "web1")
    host.hypervisor.domains["web1"] = domain
    assert host.run("stop", force_stop="true") == OcfExit.SUCCESS
    assert domain.calls == ["destroy"]


def lost(operation: str) -> HypervisorError:
    return HypervisorError(ErrorKind.UNREACHABLE, operation, "xen:///system", "node1", "End of file while reading data")


def test_monitor_reconnects_once_when_libvirtd_drops_the_connection(host: Host) -> None:
    host.hypervisor.domains["web1"] = FakeDomain(host.hypervisor, "web1")
    # The connection drops mid-action; the first reconnection finds libvirtd not listening yet.
    host.hypervisor.faults = [lost("read the state of web1"), lost("connect")]
    assert host.run("monitor") == OcfExit.SUCCESS
    assert "reconnecting once" in host.log
    assert host.services[0].slept  # it waited for libvirtd to listen again


def test_monitor_does_not_retry_a_failed_connect(host: Host) -> None:
    host.hypervisor.faults = [lost("connect")]
    assert host.run("monitor") == OcfExit.ERR_GENERIC
    assert "reconnecting" not in host.log
    assert "cannot reach libvirtd on node1" in host.log


def test_a_hung_libvirtd_is_not_retried(host: Host) -> None:
    host.hypervisor.domains["web1"] = FakeDomain(host.hypervisor, "web1")
    timeout = HypervisorError(ErrorKind.TIMEOUT, "read the state of web1", "xen:///system", "node1", "no answer")
    host.hypervisor.faults = [timeout]
    assert host.run("monitor") == OcfExit.ERR_GENERIC
    assert "reconnecting" not in host.log


def test_start_books_again_after_losing_the_compare_and_swap(host: Host) -> None:
    host.ledger.conflicts = 2
    assert host.run("start") == OcfExit.SUCCESS
    assert host.ledger.reads == 3
    assert [reservation.resource for reservation in host.ledger.booked] == ["web1"]
    assert host.ledger.released == host.ledger.booked  # the running domain holds the room now
    assert "after 3 attempts" in host.log
    assert host.cluster.utilization == {"hv_memory": 1036, "cpu": 2}


def test_a_ledger_error_fails_the_start_with_its_reason_and_never_falls_back(host: Host) -> None:
    """Issue 12, finding 7: inside a cluster a CIB error while reading the ledger is the
    admission's failure, named; the agent does not book elsewhere or start the guest."""
    host.ledger.failure = ReservationError(
        "cibadmin exited with status 102: Could not connect to the CIB; nothing was booked: check that Pacemaker "
        "runs on this node"
    )
    assert host.run("start") == OcfExit.ERR_GENERIC
    assert "cannot reserve room on node1: cibadmin exited with status 102" in host.log
    assert host.ledger.reads == 1 and host.ledger.booked == []
    assert "web1" not in host.hypervisor.domains


def test_a_refused_admission_still_deletes_the_reservations_that_lapsed(host: Host) -> None:
    """Issue 12, finding 6: an expired entry can always be cleared, even when no booking into
    that node succeeds; and a lapsed reservation does not count against the guest."""
    dead = Reservation("node1", "dead", 400, 1, 60, "node3:7:ab")
    host.ledger.lapsed = [dead]
    host.hypervisor.memory_mib = 1500  # minus Domain-0's 1024 MiB: less than the guest's 1036
    assert host.run("start") == OcfExit.ERR_GENERIC
    assert "reserved 0" in host.log  # the lapsed 400 MiB are not counted
    assert host.ledger.cleared == [dead]
    assert "deleted expired reservations on node1: dead" in host.log


def test_start_is_refused_on_a_host_without_room(host: Host) -> None:
    host.hypervisor.memory_mib = 1500  # minus Domain-0's 1024 MiB: less than the guest's 1036
    assert host.run("start") == OcfExit.ERR_GENERIC
    assert "cannot start web1 on node1: needs 1036 MiB" in host.log
    assert host.ledger.booked == []
    assert "web1" not in host.hypervisor.domains


# ---- identity: the guest is found by every identity it has, and only its own is touched -----
def test_usual_monitor_reads_no_metadata_and_scans_nothing(host: Host) -> None:
    assert host.run("start") == OcfExit.SUCCESS
    domain = host.hypervisor.domains["web1"]
    host.hypervisor.scans = 0
    assert host.run("monitor") == OcfExit.SUCCESS
    assert domain.owner_reads == 0  # recognised by its remembered name, UUID and ID
    assert host.hypervisor.scans == 0


def test_monitor_finds_a_renamed_guest_by_its_owner_metadata_without_memo(host: Host) -> None:
    host.hypervisor.domains["web1-old"] = FakeDomain(host.hypervisor, "web1-old")
    assert host.run("monitor", CRM_meta_interval="0") == OcfExit.SUCCESS
    assert host.hypervisor.scans == 1
    assert host.run("stop") == OcfExit.SUCCESS
    assert host.hypervisor.domains["web1-old"].state == SHUTOFF


def test_another_resources_domain_is_a_configuration_error_and_never_stopped(host: Host) -> None:
    other = FakeDomain(host.hypervisor, "web1", owner="web2")
    host.hypervisor.domains["web1"] = other
    assert host.run("monitor", CRM_meta_interval="0") == OcfExit.ERR_CONFIGURED
    assert "belongs to cluster resource web2, not to web1: domain web1 on node1" in host.log
    assert host.run("stop") == OcfExit.SUCCESS
    assert host.run("start") == OcfExit.ERR_CONFIGURED
    assert other.calls.count("shutdown") == other.calls.count("destroy") == 0
    assert host.ledger.booked == []


def test_a_domain_started_by_hand_is_not_adopted_without_the_configured_uuid(host: Host) -> None:
    by_hand = FakeDomain(host.hypervisor, "web1", owner=None)
    host.hypervisor.domains["web1"] = by_hand
    assert host.run("monitor", CRM_meta_interval="0") == OcfExit.ERR_CONFIGURED
    assert "not started by the cluster" in host.log
    assert host.run("stop") == OcfExit.SUCCESS
    assert by_hand.state == RUNNING and "record_owner" not in by_hand.calls


def test_a_domain_with_the_configured_uuid_and_no_owner_is_adopted(host: Host) -> None:
    uuid = "6b1e5c3a-1111-4000-8000-000000000001"
    host.config.write_text(host.config.read_text().replace("<name>web1</name>", f"<name>web1</name><uuid>{uuid}</uuid>"))
    by_hand = FakeDomain(host.hypervisor, "web1", owner=None, uuid=uuid)
    host.hypervisor.domains["web1"] = by_hand
    assert host.run("monitor", CRM_meta_interval="0") == OcfExit.SUCCESS
    assert by_hand.owner_resource == "web1"
    assert "adopting domain web1" in host.log


def test_a_reconnect_continues_stops_graceful_wait_instead_of_starting_it_again(host: Host) -> None:
    domain = FakeDomain(host.hypervisor, "web1", obeys_shutdown=False)
    domain.drop_after_shutdown_s = 1.0  # libvirtd drops the connection halfway through the wait
    host.hypervisor.domains["web1"] = domain
    assert host.run("stop", shutdown_timeout="2") == OcfExit.SUCCESS
    assert "reconnecting once" in host.log
    waits = [line.rpartition("(waiting up to ")[2] for line in host.log.splitlines() if "shutting down" in line]
    assert waits == ["2 s)", "1 s)"], waits  # the second attempt waits what was left, not 2 s more
    assert domain.calls == ["shutdown", "shutdown", "destroy"]


def started_then_shut_off(host: Host, kept_dead: bool = False, restart_reads: int | None = None) -> FakeDomain:
    """web1 started by the agent, then shut off as libvirt reports it: dead but kept by Xen
    (``kept_dead``: on_poweroff/on_crash=preserve), or being re-created by a job of libvirt's
    for ``restart_reads`` reads of its state (libxl's reboot)."""
    assert host.run("start") == OcfExit.SUCCESS
    domain = host.hypervisor.domains["web1"]
    domain.state, domain.kept_dead, domain.restart_reads = SHUTOFF, kept_dead, restart_reads
    return domain


def test_a_guest_rebooting_through_libxls_shutoff_is_running(host: Host) -> None:
    """Issue 11 item 2 through the seam: shut off while a job of libvirt's re-creates it."""
    started_then_shut_off(host, restart_reads=5)
    assert host.run("monitor") == OcfExit.SUCCESS
    assert "while libvirt restarts it: waiting" in host.log and "was restarted on node1" in host.log


def test_a_restart_ending_between_the_state_and_the_job_read_is_not_stopped(host: Host) -> None:
    """The monitor reads "shut off", then asks for the job: a restart that ended in between
    leaves no job and no old ID, which alone would read as stopped (7, a false failure: seen
    once in the lab under load). The domain read again after the job's answer is running."""
    domain = started_then_shut_off(host)
    domain.restart_ends_at_job_read = True
    assert host.run("monitor") == OcfExit.SUCCESS
    assert "was restarted on node1" in host.log


def test_a_shut_off_guest_without_a_job_or_an_id_is_stopped(host: Host) -> None:
    """The guard beside it: a real stop is still 7, at once (no wait without a job)."""
    started_then_shut_off(host)
    assert host.run("monitor") == OcfExit.NOT_RUNNING
    assert "waiting" not in host.log


def test_a_preserved_dead_guest_is_not_not_running_and_stop_destroys_it(host: Host) -> None:
    """Issue 11 item 8: on_poweroff/on_crash=preserve keeps a dead domain holding memory."""
    domain = started_then_shut_off(host, kept_dead=True)
    assert host.run("monitor") == OcfExit.ERR_GENERIC
    assert "Xen still holds it and its memory" in host.log
    assert host.run("stop") == OcfExit.SUCCESS
    assert domain.calls[-1] == "destroy" and "shutdown" not in domain.calls  # nothing to shut down
    assert "web1" not in host.hypervisor.domains
    assert host.run("start") == OcfExit.SUCCESS
    assert host.run("monitor") == OcfExit.SUCCESS


def test_start_destroys_a_preserved_dead_guest_before_starting_it(host: Host) -> None:
    domain = started_then_shut_off(host, kept_dead=True)
    assert host.run("start") == OcfExit.SUCCESS
    assert "dead but still held on node1: destroying it" in host.log
    assert host.hypervisor.domains["web1"] is not domain and host.run("monitor") == OcfExit.SUCCESS


def test_a_restart_outlasting_the_wait_is_running_only_where_the_guest_ran(host: Host) -> None:
    started_then_shut_off(host, restart_reads=10**9)  # libvirt's job outlasts the monitor's wait
    assert host.run("monitor", CRM_meta_timeout="4000") == OcfExit.SUCCESS
    assert "still being restarted by libvirt on node1 (it rebooted): reported running" in host.log
    (host.rsctmp.parent / "other").mkdir()
    other = Host(host.rsctmp.parent / "other")  # a node where it never ran: an arrival, not ours yet
    other.hypervisor.domains["web1"] = arriving = FakeDomain(other.hypervisor, "web1")
    arriving.state, arriving.restart_reads = SHUTOFF, 10**9
    assert other.run("monitor", CRM_meta_timeout="4000") == OcfExit.ERR_GENERIC
    assert "while a libvirt job holds it (an arrival?): not stopped" in other.log
