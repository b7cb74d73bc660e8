"""The plan: which hosts fail together, the quorum they keep, and each scenario's verdict.

Scenarios are the baseline (no host failed) and every set of up to K hosts among those
that are up. Each one is answered by the fast path's proof when it goes through
(:mod:`xenha.planner.fastpath`) and otherwise by Pacemaker's scheduler
(:mod:`xenha.planner.scheduler`), several runs at a time on a multi-core machine. A
scenario proved safe keeps every guest running by the theorem; one sent to the scheduler
gets exactly the scheduler's verdict, with the placement it computed.

Quorum. ``crm_simulate --node-fail`` keeps the CIB's ``have-quorum``. A real cluster
that loses hosts keeps quorum only if the survivors hold a majority of the votes
(corosync votequorum, one vote per node); a two-node cluster is assumed to run with
``two_node: 1`` (what ``pcs cluster setup`` configures), so it keeps quorum with one
node. Scenarios that lose quorum are run with ``--quorum=false``, and the scheduler then
applies ``no-quorum-policy`` (by default: stop everything).
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from xenha.admission.load import HostLoad
from xenha.admission.resources import Resources, total
from xenha.planner.cibedit import add_guest
from xenha.planner.cibsource import CibSnapshot, write_private
from xenha.planner.fastpath import FastPath, Proof
from xenha.planner.model import CibError, CibModel, Guest
from xenha.planner.preparation import SCHEMA_DIR, Prepared, prepare
from xenha.planner.scheduler import (
    ProgressCallback,
    SchedulerError,
    SimulationRequest,
    SimulationResult,
    run_simulations,
    scheduler_environment,
)
from xenha.runner import CommandRunner


@dataclass(frozen=True)
class PlanEnvironment:
    """Everything the plan needs from the outside world, passed in."""

    runner: CommandRunner
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    clock: Callable[[], float] = time.monotonic
    schema_dir: str = SCHEMA_DIR
    progress: ProgressCallback | None = None

    @classmethod
    def default(cls, progress: ProgressCallback | None = None) -> PlanEnvironment:
        return cls(runner=CommandRunner(scheduler_environment(os.environ)), progress=progress)


@dataclass(frozen=True)
class Scenario:
    failed: tuple[str, ...]
    quorum: bool  # whether the survivors keep quorum

    @property
    def label(self) -> str:
        return ", ".join(self.failed) if self.failed else "(none)"


def keeps_quorum(votes: int, surviving: int) -> bool:
    """Majority of the nodes; a two-node cluster keeps quorum with one (``two_node: 1``).

    >>> keeps_quorum(5, 3), keeps_quorum(4, 2), keeps_quorum(2, 1), keeps_quorum(3, 1)
    (True, False, True, False)
    """
    if votes == 2:
        return surviving >= 1
    return surviving * 2 > votes


def enumerate_scenarios(model: CibModel, failures: int) -> tuple[Scenario, ...]:
    """The baseline, then every set of 1..``failures`` hosts that are up, in name order.

    The baseline keeps the quorum the CIB reports (a plan refuses a CIB without it, and the
    cluster may keep quorum with fewer than a majority up, e.g. ``last_man_standing``);
    failure scenarios keep it while the survivors hold a majority of all the nodes.
    """
    up = sorted(host.name for host in model.hosts if host.online)
    votes = len(model.hosts)
    scenarios = [Scenario((), True)]
    for size in range(1, min(failures, len(up)) + 1):
        for failed in itertools.combinations(up, size):
            scenarios.append(Scenario(failed, keeps_quorum(votes, len(up) - size)))
    return tuple(scenarios)


@dataclass(frozen=True)
class StoppedGuest:
    resource: str
    demand: Resources
    was_on: tuple[str, ...]
    # Hosts with room for it once recovery is done: when not empty, capacity is not why it
    # is stopped (a constraint, a failure or an ordering keeps it off them).
    room_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    method: str  # "proof" or "scheduler"
    stopped: tuple[StoppedGuest, ...]
    displaced: tuple[str, ...]  # guests that ran on the failed hosts
    survivors_capacity: Resources
    hosts_after: tuple[HostLoad, ...] | None  # None when proved: no placement was computed
    shortfall: Resources
    reason: str
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.stopped

    @property
    def stopped_demand(self) -> Resources:
        return total(guest.demand for guest in self.stopped)


@dataclass(frozen=True)
class Plan:
    source: str
    model: CibModel
    failures: int
    results: tuple[ScenarioResult, ...]
    seconds: float
    validated: bool
    extra: Resources | None = None  # check-add: the new guest's demand
    extra_resource: str | None = None

    @property
    def command(self) -> str:
        """The command that asked: ``check-add`` (a new guest was added) or ``plan``."""
        return "plan" if self.extra is None else "check-add"

    @property
    def scheduler_runs(self) -> int:
        return sum(1 for result in self.results if result.method == "scheduler")

    @property
    def proved(self) -> int:
        return sum(1 for result in self.results if result.method == "proof")

    @property
    def tolerated(self) -> int | None:
        """Largest k <= K such that every scenario of at most k failed hosts keeps every guest.

        None when a guest is left stopped even with every host up.
        """
        worst_ok: int | None = None
        for k in range(self.failures + 1):
            if all(result.ok for result in self.results if len(result.scenario.failed) == k):
                worst_ok = k
            else:
                break
        return worst_ok

    @property
    def failing(self) -> tuple[ScenarioResult, ...]:
        """Scenarios that leave a guest stopped, worst first (fewest failed hosts, most memory)."""
        bad = [result for result in self.results if not result.ok]
        bad.sort(
            key=lambda result: (
                len(result.scenario.failed),
                -result.stopped_demand.memory_mib,
                -len(result.stopped),
                result.scenario.failed,
            )
        )
        return tuple(bad)

    @property
    def tightest(self) -> ScenarioResult | None:
        """The scenario of the most failed hosts with the least spare capacity, for reports."""
        demand = total(guest.demand for guest in self.model.running_guests)
        scored = [
            ((result.survivors_capacity - demand).memory_mib, result)
            for result in self.results
            if result.scenario.failed and result.ok
        ]
        if not scored:
            return None
        return min(scored, key=lambda item: (item[0], item[1].scenario.failed))[1]


def _displaced(guests: Sequence[Guest], failed: Sequence[str]) -> tuple[str, ...]:
    lost = set(failed)
    return tuple(guest.resource for guest in guests if lost.intersection(guest.active_on))


def _survivors_capacity(model: CibModel, failed: Sequence[str]) -> Resources:
    return total(host.capacity for host in model.survivors(failed))


def proved_result(model: CibModel, scenario: Scenario, proof: Proof) -> ScenarioResult:
    return ScenarioResult(
        scenario=scenario,
        method="proof",
        stopped=(),
        displaced=_displaced(model.running_guests, scenario.failed),
        survivors_capacity=_survivors_capacity(model, scenario.failed),
        hosts_after=None,
        shortfall=Resources(),
        reason=proof.reason,
    )


def scheduler_result(model: CibModel, scenario: Scenario, simulation: SimulationResult) -> ScenarioResult:
    """The scheduler's verdict: guests without a node once the transition is done."""
    lost = set(scenario.failed)
    placement = simulation.placement
    before = simulation.output.active_before
    stopped_guests = [
        guest
        for guest in model.running_guests
        if not [node for node in placement.get(guest.resource, ()) if node not in lost]
    ]
    loads: dict[str, Resources] = {}
    demands = {guest.resource: guest.demand for guest in model.guests}
    demands.update({consumer.resource: consumer.demand for consumer in model.consumers})
    for resource, demand in demands.items():
        for node in placement.get(resource, ()):
            loads[node] = loads.get(node, Resources()) + demand
    hosts_after = tuple(
        HostLoad(host.name, host.capacity, loads.get(host.name, Resources()))
        for host in model.hosts
        if host.online and host.name not in lost
    )
    available = {host.name for host in model.hosts if host.available}
    stopped = tuple(
        StoppedGuest(
            guest.resource,
            guest.demand,
            tuple(before.get(guest.resource, ())),
            tuple(host.node for host in hosts_after if host.node in available and guest.demand.fits_in(host.free)),
        )
        for guest in stopped_guests
    )
    free = total(host.free.clipped() for host in hosts_after if host.node in available)
    stopped_demand = total(guest.demand for guest in stopped)
    shortfall = (stopped_demand - free).clipped() if stopped else Resources()
    if not stopped:
        reason = "the scheduler places every guest"
    elif not scenario.quorum and model.options.no_quorum_policy != "ignore":
        reason = f"the survivors lose quorum (no-quorum-policy={model.options.no_quorum_policy})"
        shortfall = Resources()  # not a matter of capacity
    elif scenario.failed and model.options.stonith_enabled and not model.fencing_devices:
        reason = "no fencing device: the failed hosts cannot be fenced, so nothing is recovered"
        shortfall = Resources()
    elif all(guest.room_on for guest in stopped):
        reason = "not for lack of room: constraints, failures or orderings keep them stopped"
    else:
        reason = "the scheduler finds no host with room"
    return ScenarioResult(
        scenario=scenario,
        method="scheduler",
        stopped=stopped,
        displaced=_displaced(model.running_guests, scenario.failed),
        survivors_capacity=_survivors_capacity(model, scenario.failed),
        hosts_after=hosts_after,
        shortfall=shortfall,
        reason=reason,
        seconds=simulation.seconds,
    )


def proved_results(
    prepared: Prepared, scenarios: Sequence[Scenario], use_fastpath: bool = True
) -> dict[Scenario, ScenarioResult]:
    """The scenarios the fast path proves safe: none when it is off or the schema was not checked."""
    if not (use_fastpath and prepared.validated):
        return {}
    fast = FastPath.for_model(prepared.model)
    results = {}
    for scenario in scenarios:
        proof = fast.prove(scenario.failed, scenario.quorum)
        if proof.proved:
            results[scenario] = proved_result(prepared.model, scenario, proof)
    return results


def plan_from_results(prepared: Prepared, failures: int, results: Sequence[ScenarioResult], seconds: float) -> Plan:
    return Plan(
        source=prepared.snapshot.label,
        model=prepared.model,
        failures=failures,
        results=tuple(results),
        seconds=seconds,
        validated=prepared.validated,
    )


def simulation_requests(prepared: Prepared, scenarios: Sequence[Scenario], directory: str) -> list[SimulationRequest]:
    """One scheduler run per scenario, its transition graph written into ``directory``.

    A scenario that loses quorum is run with ``--quorum=false`` (see the module's docstring).
    """
    return [
        SimulationRequest(
            cib_path=prepared.snapshot.path,
            failed=scenario.failed,
            quorum=None if scenario.quorum else False,
            graph_path=os.path.join(directory, f"graph-{index}.xml"),
        )
        for index, scenario in enumerate(scenarios)
    ]


def run_plan(
    prepared: Prepared,
    failures: int,
    environment: PlanEnvironment,
    use_fastpath: bool = True,
) -> Plan:
    """Answer every scenario; raises SchedulerError when a scheduler run fails."""
    started = environment.clock()
    scenarios = enumerate_scenarios(prepared.model, failures)
    results = proved_results(prepared, scenarios, use_fastpath)
    pending = [scenario for scenario in scenarios if scenario not in results]
    if pending:
        with tempfile.TemporaryDirectory(prefix="xenha-plan-") as directory:
            simulations = run_simulations(
                simulation_requests(prepared, pending, directory),
                environment.runner,
                environment.workers,
                environment.clock,
                environment.progress,
            )
        for scenario, simulation in zip(pending, simulations):
            results[scenario] = scheduler_result(prepared.model, scenario, simulation)
    seconds = environment.clock() - started
    return plan_from_results(prepared, failures, [results[scenario] for scenario in scenarios], seconds)


def plan_new_guest(
    prepared: Prepared,
    demand: Resources,
    failures: int,
    environment: PlanEnvironment,
    use_fastpath: bool = True,
) -> Plan:
    """Plan as if a new guest of ``demand`` had been added and started where the scheduler puts it.

    The new guest is first added not yet running. If the proof covers every scenario (it
    does not depend on where guests run), that is the answer, without the scheduler.
    Otherwise the scheduler decides where the guest would start with every host up (if it
    finds no room, that baseline is the answer); the guest is then recorded as running
    there, and that CIB is planned scenario by scenario.
    """

    snapshot = prepared.snapshot
    started = environment.clock()
    with tempfile.TemporaryDirectory(prefix="xenha-check-add-") as directory:
        data, resource = add_guest(snapshot.data, demand, running_on=None)
        added = prepare(
            CibSnapshot(data, write_private(directory, "new-guest.xml", data), snapshot.label),
            environment.schema_dir,
        )
        added = replace(added, validated=prepared.validated and added.validated)
        scenarios = enumerate_scenarios(added.model, failures)
        proved = proved_results(added, scenarios, use_fastpath)
        if len(proved) == len(scenarios):
            plan = plan_from_results(added, failures, [proved[scenario] for scenario in scenarios], 0.0)
        else:
            request = SimulationRequest(added.snapshot.path, (), None, os.path.join(directory, "baseline.xml"))
            (simulation,) = run_simulations([request], environment.runner, 1, environment.clock)
            placed = simulation.placement.get(resource, ())
            if not placed:
                plan = plan_from_results(
                    added, failures, [scheduler_result(added.model, scenarios[0], simulation)], 0.0
                )
            else:
                data, resource = add_guest(snapshot.data, demand, running_on=placed[0])
                path = write_private(directory, "new-guest-running.xml", data)
                running = prepare(CibSnapshot(data, path, snapshot.label), environment.schema_dir)
                plan = run_plan(replace(running, validated=added.validated), failures, environment, use_fastpath)
    return replace(plan, seconds=environment.clock() - started, extra=demand, extra_resource=resource)


__all__ = [
    "CibError",
    "Plan",
    "PlanEnvironment",
    "Scenario",
    "ScenarioResult",
    "SchedulerError",
    "enumerate_scenarios",
    "keeps_quorum",
    "plan_new_guest",
    "run_plan",
]
