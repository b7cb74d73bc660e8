"""After a failed move, the settle order through xen-guest's service seam (issue 12, findings 3-4; issue 11, 1 and 4).

The order (docs/decisions/time-budget-and-settling.md): the job has ended; the target holds
no copy (an incomplete one destroyed and verified gone); only then the source is resumed or
restored; what cannot be settled in time is reported and nothing after it is done. The
acceptance tests show it with QEMU on real libvirtd; these pin the driver-dependent
decisions that need Xen's libxl driver (which cannot abort a job, keeps an arriving domain
shut off, pauses for other reasons than QEMU and can leave a frozen source that libvirt
reports running), with fakes of the domain wrapper whose traits are libxl's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.unit.test_guest_agent import RUNNING, SHUTOFF, FakeDomain, FakeHypervisor, FakeLedger, FakeServices, Host
from xenha.deadline import Deadline
from xenha.libvirt import states, toolstack
from xenha.libvirt.domain import Domain, DomainStatus, JobFailed, JobStillActive
from xenha.libvirt.drivers import traits
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.libvirt.uri import MigrationTarget
from xenha.ocf import Context, OcfExit

PAUSED_BY_LIBXL = DomainStatus(states.PAUSED, states.PAUSED_UNKNOWN)  # not QEMU's "for a migration"
INCOMING = DomainStatus(states.PAUSED, states.PAUSED_MIGRATION)
PAUSED_BY_USER = DomainStatus(states.PAUSED, states.PAUSED_USER)  # what virDomainSuspend leaves
RESUMED_BY_LIBVIRT = DomainStatus(states.RUNNING, 3)  # VIR_DOMAIN_RUNNING_MIGRATION_CANCELED


class XenDomain(FakeDomain):
    """A domain as :class:`xenha.libvirt.domain.Domain` shows it; every change lands in ``events``."""

    def __init__(self, hypervisor: XenHypervisor, name: str, state: DomainStatus = RUNNING) -> None:
        super().__init__(hypervisor, name)
        self.xen = hypervisor
        self.state = state
        self.persistent = False
        self.job = False
        self.cpu_moves = True
        self.cpu_ns = 0
        self.on_migrate: Callable[[XenDomain], None] = lambda domain: None

    is_arriving = Domain.is_arriving  # the real rule, over this fake's state, persistence and job

    def is_persistent(self) -> bool:
        return self.persistent

    def job_active(self) -> bool:
        self.xen.fault("read the job")
        return self.job

    def cpu_time_ns(self) -> int:
        self.cpu_ns += 1000 if self.cpu_moves else 0
        return self.cpu_ns

    def resume(self) -> None:
        self.xen.events.append(f"resume on {self.xen.node}")
        self.state = RUNNING

    def suspend(self) -> None:
        self.xen.fault("suspend")
        self.xen.events.append(f"suspend on {self.xen.node}")
        self.state = PAUSED_BY_USER

    def status(self) -> DomainStatus | None:
        self.xen.fault("read the state")
        return self.state if self.xen.domains.get(self.name) is self else None  # transient: gone when stopped

    def destroy(self) -> None:
        self.xen.events.append(f"destroy on {self.xen.node}")
        self.xen.domains.pop(self.name, None)

    def limit_migration(self, speed_mib_s: int, downtime_ms: int, log: object) -> None:
        pass

    def job_progress(self) -> None:
        return None

    def migrate(self, target: object, abort_at: Deadline, ended_by: Deadline, log: object,
                on_progress: object, live: bool = True) -> None:  # fmt: skip
        self.xen.migrations.append("live" if live else "paused")
        self.on_migrate(self)

    def save(self, path: str, abort_at: Deadline, ended_by: Deadline, log: object) -> None:
        Path(path).write_text("saved")
        self.xen.domains.pop(self.name)


class XenHypervisor(FakeHypervisor):
    def __init__(self, node: str, events: list[str]) -> None:
        super().__init__(node)
        self.events = events
        self.restore_fault: HypervisorError | None = None
        self.down = False  # libvirtd does not listen: every call is refused
        self.frozen = False  # libvirtd listens but does not answer: every call times out
        self.refuses: set[str] = set()  # operations libvirtd answers with an error
        self.migrations: list[str] = []  # how each migration from here was made

    def fault(self, operation: str) -> None:
        if self.down:
            raise unreachable(self.node)
        if self.frozen:
            raise HypervisorError(ErrorKind.TIMEOUT, operation, "xen:///system", self.node, "did not answer in time")
        if operation in self.refuses:
            raise HypervisorError(ErrorKind.FAILED, operation, "xen:///system", self.node, "internal error")
        super().fault(operation)

    def connect_in_background(self) -> None:
        pass

    def reopened(self, deadline: Deadline | None = None) -> XenHypervisor:
        if deadline is not None:
            self.deadline = deadline
        return self

    def restore(self, path: str, name: str) -> None:
        self.events.append(f"restore on {self.node}")
        if self.restore_fault is not None:
            raise self.restore_fault
        self.domains[name] = XenDomain(self, name)


class FakeXl:
    """Xen's own list of domains on one host, as ``xl`` shows and destroys them: every active
    domain libvirt knows, and those Xen holds beside them (:meth:`hold`: one libvirt forgot, or
    one it shows shut off while its job receives it)."""

    def __init__(self, hypervisor: XenHypervisor, events: list[str]) -> None:
        self.command = "xl"
        self.node = hypervisor.node
        self.hypervisor = hypervisor
        self.events = events
        self.held: dict[int, toolstack.XenDomain] = {}
        self.destroyed: set[int] = set()  # libvirt's objects stay while its job holds them

    def hold(self, name: str, domain_id: int, state: str = "--p---", cpu_seconds: float = 0.0,
             uuid: str = "00000000-0000-4000-8000-000000000099") -> None:  # fmt: skip
        self.held[domain_id] = toolstack.XenDomain(name, domain_id, state, cpu_seconds, uuid)

    def listed(self) -> list[toolstack.XenDomain]:
        known = [
            toolstack.XenDomain(domain.name, domain.domain_id, "r-----", 12.5, domain.uuid())
            for domain in self.hypervisor.domains.values()
            if isinstance(domain, XenDomain) and domain.state != SHUTOFF
        ]
        return [held for held in (*known, *self.held.values()) if held.domain_id not in self.destroyed]

    def domain(self, identifier: str | int) -> toolstack.XenDomain | None:
        found = [held for held in self.listed() if identifier in (held.name, held.domain_id)]
        return found[0] if found else None

    def destroy(self, domain_id: int, name: str) -> None:
        self.events.append(f"xl destroy {name} on {self.node}")
        self.destroyed.add(domain_id)


class TwoNodeServices(FakeServices):
    def __init__(self, ctx: Context, nodes: dict[str, XenHypervisor], host: Host) -> None:
        super().__init__(ctx, nodes["node1"], host.ledger, host.cluster)
        self._nodes = nodes
        self._xl = host.xl if isinstance(host, TwoNodes) else None

    def toolstack(self, hypervisor: object) -> FakeXl | None:
        return self._xl

    def hypervisor(self, uri: str, node: str) -> XenHypervisor:
        hypervisor = self._nodes[node]
        hypervisor.deadline = self._ctx.deadline
        return hypervisor

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        time.sleep(0.005)  # the deadlines are real: polling until one passes must not spin


class TwoNodes(Host):
    """node1 (the source, this node) and node2 (the target), both on Xen's libxl driver."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.events: list[str] = []
        self.source = XenHypervisor("node1", self.events)
        self.target = XenHypervisor("node2", self.events)
        self.hypervisor = self.source
        self.ledger = FakeLedger("node2")
        self.guest = XenDomain(self.source, "web1")
        self.source.domains["web1"] = self.guest
        self.saves = tmp_path / "saves"
        self.saves.mkdir()
        self.xl: FakeXl | None = FakeXl(self.source, self.events)  # this node's (the source's); None: no xl

    def make_services(self, ctx: Context) -> FakeServices:
        services = TwoNodeServices(ctx, {"node1": self.source, "node2": self.target}, self)
        self.services.append(services)
        return services

    def migrate(self, **params: str) -> int:
        code = self.run(
            "migrate_to", CRM_meta_migrate_source="node1", CRM_meta_migrate_target="node2", CRM_meta_timeout="8000",
            **params,
        )  # fmt: skip
        assert "Traceback" not in self.log
        return code

    def save_restore(self) -> int:
        self.config.write_text(self.config.read_text().replace("<type>linux</type>", "<type>hvm</type>"))
        return self.migrate(hvm_migration="save-restore", save_dir=str(self.saves))

    def arrive(self, state: DomainStatus) -> XenDomain:
        """Put a copy of the guest on the target, in ``state``."""
        copy = XenDomain(self.target, "web1", state)
        self.target.domains["web1"] = copy
        return copy

    @property
    def released(self) -> bool:
        return bool(self.ledger.booked) and self.ledger.released == self.ledger.booked


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[TwoNodes]:
    yield TwoNodes(tmp_path)


def unreachable(node: str) -> HypervisorError:
    return HypervisorError(ErrorKind.UNREACHABLE, "connect", "xen:///system", node, "Connection refused")


def fails_after_final_suspend(nodes: TwoNodes, leaves: DomainStatus) -> Callable[[XenDomain], None]:
    """libxl's perform phase failing: an incomplete copy on the target, the source left as ``leaves``."""

    def migrate(domain: XenDomain) -> None:
        domain.state = leaves
        nodes.arrive(INCOMING)
        raise JobFailed("Failed to send migration data to destination host")

    return migrate


def test_the_target_copy_is_destroyed_before_the_source_is_resumed(nodes: TwoNodes) -> None:
    nodes.guest.on_migrate = fails_after_final_suspend(nodes, PAUSED_BY_LIBXL)
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == ["destroy on node2", "resume on node1"]
    assert "failed, it runs on node1 only: Failed to send migration data" in nodes.log
    # libxl's pause reason is not QEMU's "paused for migration": the move paused it, so it is resumed
    assert nodes.guest.state == RUNNING
    assert nodes.released


def test_a_guest_paused_before_the_move_is_not_resumed_by_it(nodes: TwoNodes) -> None:
    paused = DomainStatus(states.PAUSED, states.PAUSED_USER)
    nodes.guest.state = paused
    nodes.guest.on_migrate = fails_after_final_suspend(nodes, paused)
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == ["destroy on node2"]
    assert nodes.guest.state == paused


def test_an_unverifiable_target_leaves_the_source_paused(nodes: TwoNodes) -> None:
    def migrate(domain: XenDomain) -> None:
        domain.state = PAUSED_BY_LIBXL
        nodes.target.down = True
        raise JobFailed("Failed to send migration data to destination host")

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == []  # neither resumed nor destroyed
    assert nodes.guest.state == PAUSED_BY_LIBXL
    assert "whether node2 holds a copy could not be verified" in nodes.log
    assert "web1 is left paused for an unknown reason on node1, not resumed" in nodes.log
    assert "Pacemaker will stop web1 on both nodes" in nodes.log
    assert nodes.released


def test_a_target_libvirtd_that_comes_back_is_asked_again(nodes: TwoNodes) -> None:
    def migrate(domain: XenDomain) -> None:
        domain.state = PAUSED_BY_LIBXL
        nodes.target.down = True  # killed; its init restarts it
        threading.Timer(0.3, lambda: setattr(nodes.target, "down", False)).start()
        raise JobFailed("Failed to send migration data to destination host")

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert "asking again" in nodes.log
    assert nodes.events == ["resume on node1"]
    assert "failed, it runs on node1 only" in nodes.log


def libvirt_resumes_the_source_and_the_target_freezes(nodes: TwoNodes) -> Callable[[XenDomain], None]:
    """QEMU's source libvirtd giving up on a frozen target by its keepalive: the job fails and
    the source runs again ("migration canceled"), while the target holds the incoming copy
    and, once it answers again, would finish it."""

    def migrate(domain: XenDomain) -> None:
        domain.state = RESUMED_BY_LIBVIRT
        nodes.arrive(INCOMING)
        nodes.target.frozen = True
        raise JobFailed("operation failed: migration out job: canceled by client")

    return migrate


def test_a_source_running_while_the_target_is_unverifiable_is_paused(nodes: TwoNodes) -> None:
    nodes.guest.on_migrate = libvirt_resumes_the_source_and_the_target_freezes(nodes)
    started = time.monotonic()
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert time.monotonic() - started < 8  # inside migrate_to's timeout
    assert nodes.events == ["suspend on node1"]  # nothing on the target: it could not be verified
    assert nodes.guest.state == PAUSED_BY_USER
    assert "whether node2 holds a copy could not be verified" in nodes.log
    assert "web1 is paused on node1 so that it cannot run twice: Pacemaker will stop web1 on both nodes" in nodes.log
    assert "runs on node1" not in nodes.log
    assert nodes.released


def test_a_source_that_cannot_be_paused_is_reported_as_possibly_running_twice(nodes: TwoNodes) -> None:
    nodes.guest.on_migrate = libvirt_resumes_the_source_and_the_target_freezes(nodes)
    nodes.source.refuses.add("suspend")
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == []
    assert "web1 could not be paused on node1" in nodes.log
    assert "it may run on both nodes: Pacemaker will stop web1 on both nodes" in nodes.log
    assert "Traceback" not in nodes.log
    assert nodes.released


@pytest.mark.parametrize(
    ("source_left", "failure", "settled", "reported"),
    [
        pytest.param(
            RESUMED_BY_LIBVIRT, "operation failed: migration out job: canceled by client", ["suspend on node1"],
            "web1 runs on node2, and web1 is paused on node1 so that it cannot run twice",
            id="a_source_running_while_the_target_runs_too_is_paused",
        ),
        pytest.param(
            PAUSED_BY_LIBXL, "Failed to send migration data to destination host", [],
            "web1 runs on node2, and web1 is left paused for an unknown reason on node1",
            id="a_source_paused_for_an_unknown_reason_is_not_guessed",
        ),
    ],
)  # fmt: skip
def test_a_copy_running_on_the_target_after_the_failure(
    nodes: TwoNodes, source_left: DomainStatus, failure: str, settled: list[str], reported: str
) -> None:
    """The target runs its copy: the source is paused where libvirt resumed it (it must not
    run twice), and left as it is where it was paused for a reason the agent cannot tell."""

    def migrate(domain: XenDomain) -> None:
        domain.state = source_left
        nodes.arrive(RUNNING)
        raise JobFailed(failure)

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == settled
    assert reported in nodes.log


def test_a_job_still_active_after_the_failure_touches_neither_copy(nodes: TwoNodes) -> None:
    def migrate(domain: XenDomain) -> None:
        domain.state = PAUSED_BY_LIBXL
        domain.job = True  # libvirt's call returned, but its job goes on (e.g. a dropped client)
        nodes.arrive(INCOMING)
        raise JobFailed("End of file while reading data")

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == []
    assert "its job on node1 is still active; neither copy was touched" in nodes.log
    assert nodes.released


def test_a_job_that_outlives_its_abort_is_reported_unsettled(nodes: TwoNodes) -> None:
    def migrate(domain: XenDomain) -> None:
        nodes.arrive(DomainStatus(states.SHUTOFF, 0))
        raise JobStillActive("it did not finish in time, could not be aborted and is still running on node1")

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == []
    assert "could not be settled: it did not finish in time, could not be aborted" in nodes.log
    assert nodes.released


def test_an_arriving_libxl_domain_is_waited_for_not_destroyed(nodes: TwoNodes) -> None:
    def migrate(domain: XenDomain) -> None:
        domain.state = PAUSED_BY_LIBXL
        arriving = nodes.arrive(SHUTOFF)  # libxl: inactive until its restore finishes
        arriving.job = True

        def finish_phase_cancels() -> None:
            time.sleep(0.3)
            nodes.target.domains.pop("web1")

        threading.Thread(target=finish_phase_cancels).start()
        raise JobFailed("Failed to send migration data to destination host")

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert nodes.events == ["resume on node1"]
    assert "it runs on node1 only" in nodes.log


def test_a_frozen_source_that_libvirt_reports_running_is_not_called_running(nodes: TwoNodes) -> None:
    def migrate(domain: XenDomain) -> None:
        domain.cpu_moves = False  # suspended by libxl_domain_suspend, never resumed; state still RUNNING
        raise JobFailed("Failed to send migration data to destination host")

    nodes.guest.on_migrate = migrate
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert "left it frozen on node1: libvirt reports it running, but it used no CPU time" in nodes.log
    assert "runs on node1 only" not in nodes.log


def test_a_source_that_uses_cpu_after_the_failure_runs_there(nodes: TwoNodes) -> None:
    nodes.guest.on_migrate = fails_after_final_suspend(nodes, RUNNING)
    assert nodes.migrate() == OcfExit.ERR_GENERIC
    assert "failed, it runs on node1 only" in nodes.log


def test_a_failed_restore_restores_here_only_once_the_target_holds_no_copy(nodes: TwoNodes) -> None:
    nodes.target.restore_fault = unreachable("node2")
    assert nodes.save_restore() == OcfExit.ERR_GENERIC
    assert nodes.events == ["restore on node2", "restore on node1"]
    assert "it runs on node1 only: restore on node2 failed" in nodes.log
    assert list(nodes.saves.iterdir()) == []


def test_a_restore_that_completed_although_it_failed_is_a_move(nodes: TwoNodes) -> None:
    def restored_then_dropped(path: str, name: str) -> None:
        nodes.events.append("restore on node2")
        nodes.arrive(RUNNING)
        raise HypervisorError(ErrorKind.UNREACHABLE, "restore", "xen:///system", "node2", "Cannot recv data")

    nodes.target.restore = restored_then_dropped  # type: ignore[method-assign]
    nodes.guest.hypervisor = nodes.source
    assert nodes.save_restore() == OcfExit.SUCCESS
    assert nodes.events == ["restore on node2"]  # never restored on node1
    assert "web1 arrived on node2 although the restore reported" in nodes.log


def test_a_failed_restore_with_the_target_unverifiable_keeps_the_saved_state(nodes: TwoNodes) -> None:
    nodes.target.restore_fault = unreachable("node2")

    def restore_then_vanish(path: str, name: str) -> None:
        nodes.events.append("restore on node2")
        nodes.target.down = True
        raise unreachable("node2")

    nodes.target.restore = restore_then_vanish  # type: ignore[method-assign]
    assert nodes.save_restore() == OcfExit.ERR_GENERIC
    assert nodes.events == ["restore on node2"]
    assert "could not be verified" in nodes.log
    assert "web1 stays saved in" in nodes.log
    assert [path.name for path in nodes.saves.iterdir()] == ["web1.xenha-save"]
    assert nodes.released


# ---- the target's stop: an arriving domain is not "stopped" ------------------------------------
# Through libvirt alone (a driver without a toolstack beside it): on Xen, xl sees the arrival.
def test_stop_does_not_call_an_arriving_domain_stopped(tmp_path: Path) -> None:
    host = TwoNodes(tmp_path)
    host.xl = None
    host.source.domains["web1"] = arriving = XenDomain(host.source, "web1", SHUTOFF)
    arriving.job = True
    assert host.run("stop", CRM_meta_timeout="3000") == OcfExit.ERR_GENERIC
    assert "still being received on node1" in host.log
    assert "is stopped" not in host.log


def test_stop_destroys_an_arriving_domain_once_it_runs(tmp_path: Path) -> None:
    host = TwoNodes(tmp_path)
    host.xl = None
    host.source.domains["web1"] = arriving = XenDomain(host.source, "web1", SHUTOFF)
    arriving.job = True

    def restore_completes() -> None:  # libvirt's Finish: running, and the job over
        time.sleep(0.3)
        arriving.state = RUNNING
        arriving.job = False

    threading.Thread(target=restore_completes).start()
    assert host.run("stop", CRM_meta_timeout="5000", force_stop="true") == OcfExit.SUCCESS
    assert host.events == ["destroy on node1"]


def test_stop_destroys_a_paused_guest_without_waiting_for_a_shutdown(tmp_path: Path) -> None:
    host = TwoNodes(tmp_path)
    host.guest.state = PAUSED_BY_USER  # as a failed migration's settle leaves it
    host.guest.obeys_shutdown = False  # a paused guest cannot act on the request
    started = time.monotonic()
    assert host.run("stop", CRM_meta_timeout="20000") == OcfExit.SUCCESS
    assert time.monotonic() - started < 5  # not 2/3 of the timeout spent on a graceful wait
    assert host.events == ["destroy on node1"]
    assert "shutdown" not in host.guest.calls
    assert "web1" not in host.source.domains


def test_stop_of_a_defined_inactive_domain_is_stopped_at_once(tmp_path: Path) -> None:
    host = TwoNodes(tmp_path)
    host.source.domains["web1"] = defined = XenDomain(host.source, "web1", SHUTOFF)
    defined.persistent = True
    assert host.run("stop") == OcfExit.SUCCESS
    assert host.events == []


# ---- stop through xl: what libvirt lost, or cannot act on while its job holds it -----------------
def test_stop_destroys_through_xl_a_guest_an_unabortable_migration_holds(tmp_path: Path) -> None:
    """libxl's migration job (the network to the target cut) blocks libvirt's shutdown and destroy
    for minutes: stop destroys the domain through xl, at once, and ends although libvirt's
    object (held by its job) still looks active."""
    host = TwoNodes(tmp_path)
    host.guest.job = True
    host.guest.obeys_shutdown = False
    started = time.monotonic()
    assert host.run("stop", CRM_meta_timeout="20000") == OcfExit.SUCCESS
    assert time.monotonic() - started < 5
    assert host.events == ["xl destroy web1 on node1"]
    assert "shutdown" not in host.guest.calls
    assert "held by a libvirt job that cannot be aborted" in host.log
    assert host.xl.listed() == []


def test_stop_destroys_through_xl_an_arrival_held_by_an_unabortable_migration(tmp_path: Path) -> None:
    """On the target of a migration whose copy hangs, libvirt shows the arriving domain shut off
    under its job (for minutes) while Xen holds it paused: stop destroys it through xl instead
    of waiting for a job that will not end in its time."""
    host = TwoNodes(tmp_path)
    host.source.domains["web1"] = arriving = XenDomain(host.source, "web1", SHUTOFF)
    arriving.job = True
    host.xl.hold("web1", 9, uuid=arriving.uuid())
    started = time.monotonic()
    assert host.run("stop", CRM_meta_timeout="20000") == OcfExit.SUCCESS
    assert time.monotonic() - started < 5
    assert host.events == ["xl destroy web1 on node1"]
    assert "an incoming migration or a restart" in host.log
    assert host.xl.listed() == []


def test_stop_finds_in_xen_by_name_an_arrival_looked_up_before_its_restore_completed(tmp_path: Path) -> None:
    """libvirt's handle keeps the ID of the lookup: -1 for an arrival found shut off, even once
    its restore has completed and it runs (still under the migration's job; seen in the lab,
    where asking xl for domain -1 failed the stop). Xen is then asked by name."""
    host = TwoNodes(tmp_path)
    host.source.domains["web1"] = arrived = XenDomain(host.source, "web1", RUNNING)
    arrived.job = True
    arrived.id = lambda: -1  # type: ignore[method-assign]
    assert host.run("stop", CRM_meta_timeout="20000") == OcfExit.SUCCESS
    assert host.events == ["xl destroy web1 on node1"]


def test_stop_calls_stopped_a_failed_arrival_xen_holds_nothing_of(tmp_path: Path) -> None:
    """libvirt keeps the object of an arrival whose restore failed under its job (seen for
    minutes in the lab); Xen holds nothing of it: nothing can run, the guest is stopped."""
    host = TwoNodes(tmp_path)
    host.source.domains["web1"] = arriving = XenDomain(host.source, "web1", SHUTOFF)
    arriving.job = True
    assert host.run("stop", CRM_meta_timeout="20000") == OcfExit.SUCCESS
    assert host.events == []
    assert "libvirt's record of web1 (an arrival) on node1 names a domain Xen no longer holds" in host.log
    assert "until libvirtd restarts on node1" in host.log


def test_stop_calls_stopped_a_running_record_xen_no_longer_holds(tmp_path: Path) -> None:
    """A domain destroyed through xl while libvirt's job held it can stay "running" in libvirt
    (its death handler gave up waiting for the job; seen in the lab): libvirt cannot destroy
    it, Xen holds nothing of it; stop says so, names the remedy, and succeeds."""
    host = TwoNodes(tmp_path)
    host.xl.destroyed.add(host.guest.domain_id)
    host.guest.obeys_shutdown = False
    assert host.run("stop", CRM_meta_timeout="20000") == OcfExit.SUCCESS
    assert host.events == []
    assert "shutdown" not in host.guest.calls
    assert "libvirt's record of web1 (running) on node1 names a domain Xen no longer holds" in host.log


def test_stop_waits_for_libvirts_restart_of_a_guest_that_ran_here(tmp_path: Path) -> None:
    """A guest that ran here, shut off under libvirt's job while Xen holds nothing of it, is
    between the destroy and the create of libvirt's restart: it is not called stopped."""
    host = TwoNodes(tmp_path)
    assert host.run("monitor") == OcfExit.SUCCESS  # remembered as running here
    host.guest.state = SHUTOFF
    host.guest.job = True
    assert host.run("stop", CRM_meta_timeout="3000") == OcfExit.ERR_GENERIC
    assert host.events == []
    assert "is stopped" not in host.log


def test_stop_destroys_through_xl_a_half_received_domain_libvirt_lost(tmp_path: Path) -> None:
    """A libvirtd restarted during an arrival forgets the domain Xen keeps paused: stop finds it
    in Xen's list and destroys it instead of calling the guest stopped."""
    host = TwoNodes(tmp_path)
    del host.source.domains["web1"]
    host.xl.hold("web1", 8)
    assert host.run("stop") == OcfExit.SUCCESS
    assert host.events == ["xl destroy web1 on node1"]
    assert "paused and never run, unknown to libvirt" in host.log
    assert "web1 is stopped on node1" in host.log


@pytest.mark.parametrize(
    ("state", "cpu_seconds", "uuid", "code", "events", "said"),
    [
        ("-b----", 31.0, "00000000-0000-4000-8000-000000000099", OcfExit.ERR_GENERIC, [], "xl destroy web1"),
        ("--p---", 4.0, "00000000-0000-4000-8000-000000000099", OcfExit.ERR_GENERIC, [], "it may be this guest"),
        ("--p---", 0.0, "11111111-0000-4000-8000-000000000001", OcfExit.SUCCESS, [], "not web1's, left as it is"),
    ],
    ids=["running-unknown", "paused-but-ran", "another-uuid"],
)
def test_stop_never_destroys_through_xl_a_domain_it_cannot_tell_is_an_arrival(
    tmp_path: Path, state: str, cpu_seconds: float, uuid: str, code: int, events: list[str], said: str
) -> None:
    """A domain only Xen knows under the guest's name that has run (hand-started with xl, or the
    guest itself) is never destroyed, and the guest is not called stopped beside it (1); one
    whose UUID differs from the configuration's is another guest: left, and stop succeeds."""
    host = TwoNodes(tmp_path)
    host.config.write_text(host.config.read_text().replace(
        "<name>web1</name>", "<name>web1</name><uuid>00000000-0000-4000-8000-000000000099</uuid>"))  # fmt: skip
    del host.source.domains["web1"]
    host.xl.hold("web1", 8, state, cpu_seconds, uuid)
    assert host.run("stop") == code
    assert host.events == events
    assert said in host.log
    assert [held.domain_id for held in host.xl.listed()] == [8]


# ---- the job of a driver that cannot abort (libvirt/domain.py) ---------------------------------
class BlockingHandle:
    """A virDomain whose migration ends when ``finish`` is set (or never)."""

    def __init__(self) -> None:
        self.finish = threading.Event()
        self.aborted = False

    def name(self) -> str:
        return "web1"

    def migrateToURI3(self, uri: str, params: object, flags: int) -> None:
        self.finish.wait(10)

    def isPersistent(self) -> int:
        return 0

    def abortJob(self) -> None:
        self.aborted = True


class XenConnection:
    uri = "xen:///system"
    node = "node1"
    driver = traits("xen")

    def __init__(self) -> None:
        self.deadline = Deadline.after(30)

    def call(self, operation: str, function: Callable[[], object]) -> object:
        return function()


class JobLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, message: str) -> None:
        self.lines.append(message)

    def error(self, message: str) -> None:
        self.lines.append(message)


def migrate_with_xen(handle: BlockingHandle, log: JobLog, ended_by_s: float) -> None:
    domain = Domain(XenConnection(), handle)  # type: ignore[arg-type]
    domain.migrate(MigrationTarget("node2", "xen+ssh://node2/system", None), Deadline.after(0.1),
                   Deadline.after(0.1 + ended_by_s), log, lambda: None)  # fmt: skip


def test_a_job_the_driver_cannot_abort_is_still_running_when_its_time_is_up() -> None:
    handle, log = BlockingHandle(), JobLog()
    with pytest.raises(JobStillActive, match="could not be aborted and is still running on node1"):
        migrate_with_xen(handle, log, ended_by_s=0.3)
    handle.finish.set()
    assert not handle.aborted  # libxl has no abortJob: it is never called
    assert any("cannot abort a job" in line for line in log.lines)


def test_a_job_that_completes_while_its_end_is_awaited_is_a_success() -> None:
    handle, log = BlockingHandle(), JobLog()
    threading.Timer(0.3, handle.finish.set).start()
    migrate_with_xen(handle, log, ended_by_s=5)
    assert any("finished after all" in line for line in log.lines)
