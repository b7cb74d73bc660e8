"""One fault scenario on the xenha test cluster: its guests, what it measures, the invariants
it must end with, and the clean-up that gives the next scenario the same cluster again.

    with Scenario(cluster, monitor, "network cut") as scenario:   # (a pytest fixture does this)
        scenario.prefer("cut", "node3")
        scenario.guest("cut1")
        ...fault...
        scenario.failover("cable cut", "node3", ["cut1"], fault_at, fault_wall)
        scenario.assert_final()

The invariants (:meth:`Scenario.assert_final`), checked with the invariant monitor that
sweeps every node's libvirtd for the whole scenario, and with Pacemaker's own records:

* no guest ever ran on two hosts at once (a live migration's paused incoming copy excepted);
* every guest ends Started on exactly one node, libvirt agrees, and the node's published
  ``hv_memory`` covers the demand of the guests Pacemaker placed there; or it ends Stopped
  with a reason one can show (a failed action's exit reason in ``crm_mon``, or the
  scheduler's "cannot run anywhere");
* every agent action ended inside its timeout: Pacemaker logged no timeout for any xenha
  resource (except, where a scenario says so, on a node that was frozen and fenced);
* no reservation is left in the CIB, except one whose holder died with its node.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from tests.support.cluster import resources
from tests.support.cluster.cluster import Cluster
from tests.support.cluster.crm_mon import ClusterStatus
from tests.support.cluster.fencing import FenceRecord
from tests.support.cluster.invariants import PAUSED, PAUSED_MIGRATION, PAUSED_STARTING_UP, InvariantMonitor
from tests.support.cluster.pacemaker_log import LOG, LogWindow, cannot_run_anywhere, executions, timeouts
from tests.support.cluster.xenha_config import create_guest, guest_demand_mib, node_utilization
from tests.support.guests import FILLED_LAST_WORD, FILLED_MIB, FILLED_PATTERN, domain_xml

# Short operation timeouts, so that a hung libvirtd costs seconds, not minutes: the agent
# answers within each (deadlines.md), and Pacemaker's reaction to a failure comes sooner.
FAULT_OPS = ("monitor", "interval=5s", "timeout=10s", "migrate_to", "timeout=20s", "stop", "timeout=15s")
HOST_AGENT = "xen-host"
# Every nvpair of a ledger set is a reservation (the set holds nothing else since issue 12).
RESERVATIONS = "//cluster_property_set[starts-with(@id, 'xenha-ledger-')]/nvpair"
LEDGERS = "//cluster_property_set[starts-with(@id, 'xenha-ledger-')]"
VIRSH = ("virsh", "-q", "-c", "qemu:///system")


@dataclass(frozen=True)
class Failover:
    """Node fault -> one of its guests running elsewhere (invariant monitor), fencing between."""

    scenario: str
    fault: str
    victim: str
    victim_was_dc: bool  # the cluster then also elects a new DC before it can recover
    guest: str
    fenced_after_s: float | None
    running_after_s: float
    running_on: str


@dataclass(frozen=True)
class InFlight:
    """A filler guest's live migration, as its job on the source showed it at ``read_at``.

    The proof that a fault struck mid-migration, on a machine of any speed: of the memory
    still to send, at most ``memory_total - FILLED_MIB`` can be cheap (zero) pages; the rest
    is the filler's pattern, which the bandwidth cap lets through at ``speed_mib_s`` at most.
    So the job cannot end before ``read_at + surely_left_s``.
    """

    guest: str
    source: str
    read_at: float  # monotonic
    memory_total: int  # bytes
    memory_remaining: int  # bytes
    speed_mib_s: int

    @classmethod
    def from_stats(cls, guest: str, source: str, stats: Mapping[str, Any], read_at: float, speed: int) -> InFlight:
        return cls(guest, source, read_at, int(stats["memory_total"]), int(stats["memory_remaining"]), speed)

    @property
    def surely_left_s(self) -> float:
        """Seconds the job needs at least to send what is left (the cap is an upper bound).

        >>> InFlight("g", "n", 0.0, 64 * 2**20, 40 * 2**20, 4).surely_left_s
        6.0
        >>> InFlight("g", "n", 0.0, 64 * 2**20, 10 * 2**20, 4).surely_left_s
        0.0
        """
        cheap = self.memory_total - FILLED_MIB * 2**20
        return max(0, self.memory_remaining - cheap) / (self.speed_mib_s * 2**20)

    def assert_struck(self, fault_at: float) -> float:
        """Check that a fault at ``fault_at`` (monotonic) came before the job could end;
        returns how many seconds of sending were surely left then."""
        left = self.surely_left_s - (fault_at - self.read_at)
        assert left > 0, f"the fault came {fault_at - self.read_at:.1f} s after {self}: the migration may have ended"
        return left

    def __str__(self) -> str:
        return (
            f"the migration of {self.guest} from {self.source} had {self.memory_remaining / 2**20:.1f} of "
            f"{self.memory_total / 2**20:.1f} MiB left (>= {self.surely_left_s:.1f} s at {self.speed_mib_s} MiB/s)"
        )


@dataclass
class Report:
    """What the module prints at its end: failover times and each scenario's cost."""

    failovers: list[Failover] = field(default_factory=list)
    scenarios: list[tuple[str, float, float, str]] = field(default_factory=list)  # name, run s, clean-up s, note

    def table(self) -> str:
        lines = ["", "fault matrix: failover times (fault -> guest running elsewhere, from libvirt)"]
        lines.append(f"  {'scenario':<46} {'fault':<28} {'victim':<10} {'guest':<8} {'fenced':>8} {'running':>8}  on")
        for row in self.failovers:
            fenced = f"+{row.fenced_after_s:.2f}s" if row.fenced_after_s is not None else "-"
            victim = row.victim + (" (DC)" if row.victim_was_dc else "")
            lines.append(
                f"  {row.scenario:<46} {row.fault:<28} {victim:<10} {row.guest:<8} {fenced:>8} "
                f"{'+' + format(row.running_after_s, '.2f') + 's':>8}  {row.running_on}"
            )
        if self.failovers:
            times = sorted(row.running_after_s for row in self.failovers)
            lines.append(
                f"  failover: min {times[0]:.2f} s, median {times[len(times) // 2]:.2f} s, max {times[-1]:.2f} s"
            )
        lines.append("fault matrix: scenarios (run = fault to settled, with checks; clean-up = back to 3 clean nodes)")
        for name, run_s, cleanup_s, note in self.scenarios:
            lines.append(f"  {name:<46} run {run_s:5.1f} s  clean-up {cleanup_s:4.1f} s  {note}")
        total = sum(run_s + cleanup_s for _, run_s, cleanup_s, _ in self.scenarios)
        lines.append(f"  total {total:.1f} s")
        return "\n".join(lines)


class Scenario:
    def __init__(self, cluster: Cluster, monitor: InvariantMonitor, name: str, report: Report) -> None:
        self.cluster = cluster
        self.monitor = monitor
        self.name = name
        self.report = report
        nodes = cluster.layout.node_names
        self.window = LogWindow({node: cluster.node_log(node, LOG) for node in nodes})
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.guests: dict[str, int] = {}  # resource (= domain) name -> memory MiB
        self.by_hand: list[str] = []  # domains started behind the cluster's back
        self.constraints: list[str] = []
        self.undo: list[Callable[[], object]] = []
        self.note = ""
        self.cluster_left_down = False  # the scenario stopped the cluster on purpose
        self.dc = cluster.status(resources.any_node(cluster)).dc  # at the start, before any fault

    # ---- building the scenario ---------------------------------------------------------------
    def guest(
        self,
        name: str,
        memory_mib: int = 64,
        *extra: str,
        boot_image: str | None = None,
        ops: Sequence[str] = FAULT_OPS,
        meta: Sequence[str] = (),
    ) -> str:
        self.guests[name] = memory_mib
        create_guest(self.cluster, name, memory_mib, *extra, boot_image=boot_image, ops=ops, meta=meta)
        return name

    def prefer(self, prefix: str, node: str, score: str = "INFINITY") -> str:
        """A location constraint for every resource named ``<prefix><digits>``; returns its id."""
        constraint = f"fm-{prefix}-{node}"
        xml = f'<rsc_location id="{constraint}" rsc-pattern="^{prefix}[0-9]+$" node="{node}" score="{score}"/>'
        self._cib(["cibadmin", "--create", "--scope", "constraints", "--xml-text", xml])
        self.constraints.append(constraint)
        return constraint

    def rescore(self, constraint: str, score: str) -> None:
        """Change a constraint's score in one CIB update (one transition for all its resources)."""
        self._cib(["cibadmin", "--modify", "--xml-text", f'<rsc_location id="{constraint}" score="{score}"/>'])

    def drop(self, constraint: str) -> None:
        self._cib(["cibadmin", "--delete", "--xml-text", f'<rsc_location id="{constraint}"/>'])
        self.constraints.remove(constraint)

    def wait_started(self, guests: Iterable[str], timeout_s: float = 90.0) -> dict[str, str]:
        return {guest: resources.wait_started(self.cluster, guest, timeout_s=timeout_s)[0] for guest in guests}

    def start_by_hand(self, node: str, name: str, memory_mib: int) -> None:
        """A guest the cluster does not know, on ``node``: drift the scheduler cannot see.

        TCG allocates guest RAM lazily: a guest of several GiB costs a few MiB here.
        """
        path = self.cluster.layout.san_dir / f"{name}.xml"
        path.write_text(domain_xml(name, memory_mib=memory_mib))
        self.by_hand.append(name)
        self.cluster.check(node, [*VIRSH, "create", str(path)], hint=f"could not start {name} by hand")

    def leave_room(self, node: str, room_mib: int) -> int:
        """Start a guest by hand that leaves ``room_mib`` (+1) MiB in the hypervisor's view of
        ``node``: total memory minus the reserve xen-host publishes, minus every domain."""
        import libvirt

        with self.libvirt(node) as connection:
            total_mib = int(connection.getInfo()[1])
            assert not connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE), f"{node} is not empty"
        reserve = int(
            self.cluster.check(
                node,
                ["crm_attribute", "--type", "nodes", "--node", node, "--name", "xenha-memory-reserve", "--query",
                 "--quiet"],
            ).stdout.strip()
        )  # fmt: skip
        budget = total_mib - reserve - room_mib
        memory = budget
        while guest_demand_mib(memory) > budget:
            memory -= 1
        self.start_by_hand(node, f"byhand-{node}", memory)
        return memory

    # ---- a live migration in flight ----------------------------------------------------------
    @contextmanager
    def libvirt(self, node: str) -> Iterator[Any]:
        """A connection to ``node``'s libvirtd from the root namespaces."""
        import libvirt

        uri = self.cluster.libvirt_uri(node)
        assert uri is not None, f"{node} is down"
        connection = libvirt.open(uri)
        try:
            yield connection
        finally:
            connection.close()

    def wait_filled(self, node: str, guest: str, timeout_s: float = 60.0) -> float:
        """Wait until the filler guest ``guest`` on ``node`` has written all its memory
        (guests.py: the last word it writes holds the pattern); returns the seconds waited."""
        import libvirt

        started = time.monotonic()
        with self.libvirt(node) as connection:
            domain = connection.lookupByName(guest)
            while time.monotonic() - started < timeout_s:
                if domain.memoryPeek(FILLED_LAST_WORD, len(FILLED_PATTERN), libvirt.VIR_MEMORY_PHYSICAL) == (
                    FILLED_PATTERN
                ):
                    return time.monotonic() - started
                time.sleep(0.1)
        raise AssertionError(f"{guest} on {node} did not fill its memory within {timeout_s:.0f} s (is it a filler?)")

    def wait_incoming(self, node: str, guest: str, timeout_s: float = 30.0) -> None:
        """Wait until ``node`` holds the paused incoming copy of a live migration of ``guest``."""
        import libvirt

        with self.libvirt(node) as connection:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    state, reason = connection.lookupByName(guest).state()
                except libvirt.libvirtError:
                    time.sleep(0.02)
                    continue
                if state == PAUSED and reason in (PAUSED_MIGRATION, PAUSED_STARTING_UP):
                    return
                raise AssertionError(f"{guest} on {node} is in state {state}/{reason}, not an incoming migration")
            raise AssertionError(f"no incoming migration of {guest} on {node} within {timeout_s:.0f} s")

    def still_incoming(self, node: str, guest: str) -> bool:
        import libvirt

        if self.cluster.libvirt_uri(node) is None:
            return False
        with self.libvirt(node) as connection:
            try:
                state, reason = connection.lookupByName(guest).state()
            except libvirt.libvirtError:
                return False
        return bool(state == PAUSED and reason == PAUSED_MIGRATION)

    def migration_in_flight(
        self, source: str, guest: str, speed_mib_s: int, margin_s: float = 3.0, timeout_s: float = 30.0
    ) -> InFlight:
        """The live migration of the filler guest ``guest`` from ``source``, read from its job
        once it sends memory; fails unless at least ``margin_s`` of sending is surely left."""
        deadline = time.monotonic() + timeout_s
        with self.libvirt(source) as connection:
            domain = connection.lookupByName(guest)
            while time.monotonic() < deadline:
                stats = domain.jobStats(0)
                read_at = time.monotonic()
                if stats.get("memory_total", 0) > 0 and stats.get("memory_processed", 0) > 0:
                    flight = InFlight.from_stats(guest, source, stats, read_at, speed_mib_s)
                    assert flight.surely_left_s >= margin_s, f"the migration was nearly done before the fault: {flight}"
                    return flight
                time.sleep(0.05)
        raise AssertionError(f"no migration of {guest} sent memory from {source} within {timeout_s:.0f} s")

    # ---- observing ---------------------------------------------------------------------------
    def fenced(self, victim: str, since_wall: float | None = None) -> list[FenceRecord]:
        since = self.started_wall if since_wall is None else since_wall
        return [
            record
            for record in self.cluster.fence_records()
            if record.target == victim and record.action in ("reboot", "off") and record.wall_time >= since
        ]

    def failover(
        self, fault: str, victim: str, guests: Iterable[str], fault_at: float, fault_wall: float, fenced: bool = True
    ) -> list[Failover]:
        """Measure and record, per guest: fault -> running on another node. With ``fenced``,
        the victim must have been fenced before Pacemaker started the guest elsewhere."""
        rows = []
        for guest in guests:
            placement = self.monitor.wait_running(guest, after=fault_at, exclude=(victim,), timeout_s=120)
            records = self.fenced(victim, fault_wall)
            fenced_after = records[0].wall_time - fault_wall if records else None
            if fenced:
                assert records and records[0].succeeded, f"{victim} was not fenced after the {fault}: {records}"
                starts = [
                    run.started
                    for run in executions(self.window.lines())
                    if run.resource == guest and run.op in ("start", "migrate_from") and run.node != victim
                    and run.started is not None
                ]  # fmt: skip
                fence_time = datetime.fromtimestamp(records[0].wall_time).replace(year=2000)
                assert starts and min(starts) >= fence_time, (
                    f"{guest} was started elsewhere ({starts}) before {victim} was fenced ({fence_time})"
                )
            row = Failover(
                self.name,
                fault,
                victim,
                victim == self.dc,
                guest,
                fenced_after,
                placement.since - fault_at,
                sorted(placement.nodes)[0],
            )
            self.report.failovers.append(row)
            rows.append(row)
        return rows

    def max_running_at_once(self, guests: Iterable[str], node: str) -> int:
        """The most of ``guests`` libvirt showed running on ``node`` in one sweep (a sweep's
        changes are applied together: one guest leaving as another arrives is not two)."""
        changes: dict[float, list[tuple[str, bool]]] = {}
        for guest in guests:
            for placement in self.monitor.placements(guest):
                changes.setdefault(placement.since, []).append((guest, node in placement.nodes))
        running: set[str] = set()
        most = 0
        for since in sorted(changes):
            for guest, there in changes[since]:
                (running.add if there else running.discard)(guest)
            most = max(most, len(running))
        return most

    def results(self, resource: str | None = None, op: str | None = None) -> list[Any]:
        return self.window.results(resource, op)

    # ---- the invariants ----------------------------------------------------------------------
    def settle(self, timeout_s: float = 120.0) -> None:
        """Wait until Pacemaker has nothing left to do (``crm_resource --wait``)."""
        node = resources.any_node(self.cluster)
        self.cluster.check(node, ["crm_resource", "--wait", f"--timeout={int(timeout_s)}s"], timeout_s + 30)
        time.sleep(4 * self.monitor.interval_s)  # a few sweeps of libvirt after the last action

    def assert_final(
        self,
        *,
        stopped: Mapping[str, str] | None = None,
        timeouts_allowed_on: Sequence[str] = (),
        holders_died_on: Sequence[str] = (),
        settle: bool = True,
    ) -> ClusterStatus:
        """The scenario's end state satisfies the invariants (module docstring).

        ``stopped``: guests expected Stopped, with a regular expression their reason must
        match; ``timeouts_allowed_on``: nodes frozen (and fenced) on purpose;
        ``holders_died_on``: nodes whose death may have left a reservation behind.
        """
        stopped = dict(stopped or {})
        if settle:
            self.settle()
        status = self.cluster.status(resources.any_node(self.cluster))
        lines = self.window.lines()
        problems = []
        placed: dict[str, list[str]] = {}
        for guest in self.guests:
            resource = status.resource(guest)
            seen = set(self.monitor.running_on(guest))
            if resource is None:
                problems.append(f"{guest}: crm_mon does not list it")
                continue
            if guest in stopped:
                pattern = re.compile(stopped[guest])
                reasons = [f.exit_reason for f in status.failures if f.op_key.startswith(f"{guest}_")]
                if resource.role != "Stopped" or resource.active:
                    problems.append(f"{guest}: expected Stopped, is {resource.role} on {resource.nodes}")
                elif not any(pattern.search(reason) for reason in reasons) and not cannot_run_anywhere(lines, guest):
                    problems.append(f"{guest}: Stopped without a reason matching {pattern.pattern!r}: {reasons}")
                if seen:
                    problems.append(f"{guest}: Stopped for Pacemaker but libvirt runs it on {sorted(seen)}")
                continue
            nodes = status.started_on(guest)
            if len(nodes) != 1:
                problems.append(f"{guest}: expected Started on one node, is {resource.role} on {resource.nodes}")
                continue
            placed.setdefault(nodes[0], []).append(guest)
            if seen != {nodes[0]}:
                problems.append(f"{guest}: Started on {nodes[0]} for Pacemaker, running on {sorted(seen)} for libvirt")
        published = node_utilization(self.cluster)
        for node, guests in placed.items():
            demand = sum(guest_demand_mib(self.guests[guest]) for guest in guests)
            capacity = published.get(node, {}).get("hv_memory")
            if capacity is None or demand > capacity:
                problems.append(f"{node}: guests {guests} need {demand} MiB, its published hv_memory is {capacity}")
        late = [
            line
            for line in timeouts(lines, [*self.guests, HOST_AGENT])
            if line.node not in timeouts_allowed_on
            and not any(re.search(rf"\b{re.escape(node)}\b", line.text) for node in timeouts_allowed_on)
        ]
        problems += [f"an action ran out of time: {line.node}: {line.text}" for line in late]
        problems += [
            f"reservation left behind: {value}"
            for value in self.reservations()
            if not any(f"holder={node}:" in value for node in holders_died_on)
        ]
        for run in self.monitor.double_runs:
            problems.append(run.describe())
        assert not problems, f"scenario {self.name!r}:\n  " + "\n  ".join(problems)
        return status

    def reservations(self) -> list[str]:
        result = self.cluster.run(resources.any_node(self.cluster), ["cibadmin", "--query", "--xpath", RESERVATIONS])
        return re.findall(r'value="([^"]*)"', result.stdout) if result.ok else []

    def slowest_action(self) -> str:
        runs = [
            run
            for run in executions(self.window.lines())
            if run.seconds is not None and (run.resource in self.guests or run.resource == HOST_AGENT)
        ]
        if not runs:
            return ""
        slowest = max(runs, key=lambda run: run.seconds or 0.0)
        return f"slowest xenha action: {slowest.resource} {slowest.op} on {slowest.node} {slowest.seconds:.1f} s"

    # ---- clean-up ----------------------------------------------------------------------------
    def restore(self) -> float:
        """Back to three online nodes, no guest, no constraint, no failure, no reservation."""
        started = time.monotonic()
        errors: list[str] = []

        def step(what: str, action: Callable[[], object]) -> None:
            try:
                action()
            except Exception as error:  # every step runs; all failures are reported
                errors.append(f"{what}: {error}")

        for undo in reversed(self.undo):
            step("undo", undo)
        step("bring every node back", self.cluster.restore_all)
        for constraint in list(self.constraints):
            step(f"delete constraint {constraint}", partial(self.drop, constraint))
        step("delete the guests", lambda: resources.delete_all(self.cluster, list(self.guests)))
        for name in self.by_hand:
            for node in self.cluster.running_nodes():
                self.cluster.run(node, [*VIRSH, "destroy", name], 30.0)
        step(
            "forget the reservation ledgers",
            lambda: self._cib(["cibadmin", "--delete-all", "--force", "--xpath", LEDGERS]),
        )
        step("clean up failures", lambda: self._cib(["crm_resource", "--cleanup"]))
        step("wait for the fence device and xen-host everywhere", self._wait_ready)
        step("settle", lambda: self.settle(timeout_s=90))
        for node in self.cluster.running_nodes():
            left = self.cluster.run(node, [*VIRSH, "list", "--name"], 30.0).stdout.split()
            if left:
                errors.append(f"domains left on {node}: {left}")
        assert not errors, f"clean-up after {self.name!r} failed: " + "; ".join(errors)
        return time.monotonic() - started

    def _wait_ready(self) -> None:
        nodes = set(self.cluster.layout.node_names)
        self.cluster.wait_for(
            "the fence device and xen-host on every node",
            lambda status: (
                bool(status.started_on("fence-xenha"))
                and {n for r in status.resources if r.id == HOST_AGENT and r.role == "Started" for n in r.nodes}
                == nodes
            ),
            timeout_s=90,
        )

    def _cib(self, argv: Sequence[str]) -> None:
        self.cluster.check(resources.any_node(self.cluster), list(argv), 60.0)


__all__ = ["FAULT_OPS", "Failover", "Report", "Scenario"]
