"""A sound proof that a failure scenario keeps every guest running, without the scheduler.

The question for a scenario (a set of failed hosts) is whether Pacemaker's scheduler,
recovering from it, leaves any guest stopped. Running the scheduler answers it exactly but
costs seconds on a large cluster. This module answers "no guest is left stopped" *only
when that holds whatever order and whatever node choices the scheduler makes*; when the
argument does not go through it answers "not proved", and the scenario goes to the
scheduler. It never answers "a guest is stopped": that verdict, and which guests, always
come from the scheduler.

Model of the scheduler (Pacemaker 2.1, ``placement-strategy`` utilization, balanced or
minimal). It assigns resources one at a time, in an order of its choosing (by priority,
then by the score on the current node, then by scores elsewhere; a guest displaced from
a failed host can come before guests still running: the proof does not depend on the
order). With utilization placement, before assigning a resource it bans every node whose
*remaining* capacity (capacity minus what the resources already assigned in this run
take) is below the resource's demand in some utilization attribute
(``pcmk__ban_insufficient_capacity``); it then picks the best remaining node with a score
of at least 0, or leaves the resource stopped if there is none. Given the preconditions
below, every surviving host has a score >= 0 for every guest, so a guest is left
unassigned only if *every* surviving host lacks room for it; and an assigned guest gets
its start (recovery starts wait only for the fencing of the failed hosts, which the
preconditions make possible).

Preconditions (:meth:`FastPath.blocker`; any failing one sends the scenario to the
scheduler): utilization placement; the CIB validates against its pacemaker-3.x schema; no
constraint names a guest (no bans, no colocations, no ordering); guests are top-level
primitives, managed, without failures, fail counts, pending operations or negative
stickiness; no other resource has utilization; utilization values are plain integers in
``hv_memory`` and ``cpu``; no rules in the sets that hold them; the symmetric-cluster
default; no node-health strategy; no unclean node; and when hosts fail, the survivors
keep quorum (or ``no-quorum-policy`` is ignore) and fencing can be scheduled
(``stonith-enabled=false`` or a fencing device).

Notation. S: the surviving hosts that are available (online, not in standby or
maintenance); c_h: their capacity; G: the guests meant to run; d_g: their demand;
T = sum of d_g over G; all per dimension (mem, cpu). For a demand d and a host h, the
*blocking costs* are a_h(d) = max(0, c_h,mem - d_mem + 1) when d_mem > 0 (infinite when
d_mem = 0) and b_h(d) likewise with cpu: what must be used on h before its remaining
capacity is below d. rho = min over G of d_mem / d_cpu (guests with d_cpu > 0; 0 if none)
and sigma = min over G of d_cpu / d_mem (guests with d_mem > 0; 0 if none): every guest
brings at least rho MiB per vCPU and sigma vCPUs per MiB.

Definition. d *may be blocked* if there is a partition S = A + B such that

    sum_A a_h(d) + rho * sum_B b_h(d)    <= T_mem - d_mem
    sum_B b_h(d) + sigma * sum_A a_h(d)  <= T_cpu - d_cpu

Theorem. If no guest's demand may be blocked, the scheduler assigns every guest.

Proof. Suppose guest g is left unassigned. When the scheduler reached it, every h in S
was banned: its remaining capacity r_h was below d_g in memory or in cpu. Put h in A if
r_h,mem < d_g,mem, in B otherwise (then r_h,cpu < d_g,cpu). A dimension with d = 0 cannot
ban (remaining capacity never goes below zero: a guest is only assigned where it fits),
hence the infinite costs. Let u_h = c_h - r_h be the capacity used on h, by guests
assigned before g. For h in A, u_h,mem >= c_h,mem - d_g,mem + 1 and u_h,mem >= 0, so
u_h,mem >= a_h(d_g); for h in B, u_h,cpu >= b_h(d_g). Every guest's memory is at least rho
times its vCPUs, so u_h,mem >= rho * u_h,cpu on every host, in particular
u_h,mem >= rho * b_h(d_g) on B; likewise u_h,cpu >= sigma * a_h(d_g) on A. The guests
assigned before g exclude g, so the memory used on all of S is at most T_mem - d_g,mem:
sum_A a_h + rho * sum_B b_h <= T_mem - d_g,mem; and the same in cpu. So d_g may be
blocked, contradicting the hypothesis.  QED

Deciding it. (1) The *simple test* drops the rho and sigma terms (weaker, still sound). It
is monotone: if d may be blocked so may any d' >= d componentwise (d' <= T): keep the
partition; on each side, sum_A a_h(x) + x is non-increasing in x while some host of A has
capacity >= x, and equals x once none has, so it stays <= max(its value at d, d') <= T.
Hence the simple test needs only the Pareto-maximal demands, and it is a 0/1 knapsack
(choose A within the memory budget to remove as much b as possible) whose fractional
relaxation, greedy by ratio b/a, removes at least as much: when even that leaves the cpu
side over budget, no partition exists. (2) When the simple test fails, the *refined test*
checks every distinct demand (no monotonicity is claimed for it) by the linear
relaxation x_h in [0, 1] of the partition: by Farkas' lemma it is infeasible exactly when
some (lambda, mu) >= 0 makes sum_h min(lambda*A_h,mem + mu*A_h,cpu, lambda*B_h,mem +
mu*B_h,cpu) exceed lambda*(T_mem - d_mem) + mu*(T_cpu - d_cpu), and the left side minus the
right is concave in mu/lambda, so checking the breakpoints and the end points is enough.
Every relaxation only enlarges what "may be blocked" admits: the tests can fail to prove,
never prove wrongly. They are checked against an exhaustive search of every order and
choice on small instances, and against crm_simulate itself (tests/unit/test_planner_fastpath.py).

With one dimension (guests without ``cpu``) the condition reads: filling every survivor to
within one largest guest of full takes more than all the other guests, i.e.
sum_S (c_h - d_max + 1) > T - d_max.

The baseline (no host failed) has a second argument, for clusters too full for the first.
With a positive stickiness and equal priorities, the scheduler assigns every running guest
before any guest that is not running (it sorts by priority, then by the score of the
current node, -INFINITY for a guest running nowhere), and each running guest to its
current node: that node's score is the stickiness, above every other node's 0, and it is
not banned, since by induction the guests assigned before it went to their own current
nodes and the current placement fits every host. (This does not hold once a host fails:
a guest running on a failed host ties with the running ones and may be assigned between
them, taking room a running guest needed.) What is left, the guests not running, meets
the theorem with each host's free capacity in place of its capacity.

Worked example (the 16 x 400 benchmark cluster, one host lost): 15 survivors of
114688 MiB and 96 vCPUs; largest guest 8192 MiB / 4 vCPUs; all guests 1,379,328 MiB and
930 vCPUs; every guest has at least 1024 MiB per vCPU (rho = 1024). Blocking a survivor
by memory takes 114688 - 8191 = 106,497 MiB; by vCPUs it takes 96 - 4 + 1 = 93 vCPUs,
which bring at least 93 x 1024 = 95,232 MiB. So every survivor takes at least 95,232 MiB
to block, and all 15 take 1,428,480 MiB > 1,379,328 - 8192 = 1,371,136 MiB: proved (the
refined test's certificate lambda=1, mu=0), and no scheduler run is needed. The simple
test alone does not prove it: without rho, twelve hosts blocked by memory and three by
vCPUs fit the budgets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from xenha.admission.resources import Resources, total
from xenha.planner.model import CibModel

PROVABLE_STRATEGIES = ("utilization", "balanced", "minimal")
# The refined test checks every distinct guest size (it has no monotonicity to lean on).
MAX_REFINED_DEMANDS = 256


@dataclass(frozen=True)
class Proof:
    """The fast path's answer for one scenario: proved safe, or why it could not say."""

    proved: bool
    reason: str


def pareto_maximal(demands: Iterable[Resources]) -> tuple[Resources, ...]:
    """Demand vectors not dominated by another (componentwise >=).

    >>> pareto_maximal([Resources(1024, 4), Resources(8192, 2), Resources(4096, 2)])
    (Resources(memory_mib=8192, vcpus=2), Resources(memory_mib=1024, vcpus=4))
    """
    front: list[Resources] = []
    for demand in sorted(set(demands), key=lambda d: (-d.memory_mib, -d.vcpus)):
        if all(demand.vcpus > kept.vcpus for kept in front):
            front.append(demand)
    return tuple(front)


def blocking_cost(capacity: int, demand: int) -> int | None:
    """What must be used on a host before its remaining capacity is below ``demand``.

    None (infinite) when ``demand`` is 0: that dimension never bans a node.

    >>> blocking_cost(16384, 4096), blocking_cost(2048, 4096), blocking_cost(16384, 0)
    (12289, 0, None)
    """
    if demand <= 0:
        return None
    return max(0, capacity - demand + 1)


def may_be_blocked(demand: Resources, capacities: Sequence[Resources], demand_total: Resources) -> bool:
    """The relaxed test of the theorem: True unless no partition can block ``demand``.

    >>> hosts = [Resources(16384, 8)] * 3
    >>> may_be_blocked(Resources(4096, 0), hosts, Resources(40962, 0))   # 3 x 12289 > 40962 - 4096
    False
    >>> may_be_blocked(Resources(4096, 0), hosts, Resources(40963, 0))   # 36867 <= 40963 - 4096
    True
    """
    memory_budget = demand_total.memory_mib - demand.memory_mib
    cpu_budget = demand_total.vcpus - demand.vcpus
    free: list[tuple[int, int]] = []  # hosts that may go either way: (a, b)
    for capacity in capacities:
        a = blocking_cost(capacity.memory_mib, demand.memory_mib)
        b = blocking_cost(capacity.vcpus, demand.vcpus)
        if a is None and b is None:
            return False  # this host always has room for the guest
        if b is None:
            memory_budget -= a or 0
        elif a is None:
            cpu_budget -= b
        else:
            free.append((a, b))
    if memory_budget < 0 or cpu_budget < 0:
        return False
    # Fractional knapsack: move hosts into A (blocked by memory) by best b/a ratio, to
    # remove as much cpu cost as the memory budget allows. An upper bound on what an
    # integral choice can remove.
    remaining_b = float(sum(b for _, b in free))
    budget = memory_budget
    for a, b in sorted(free, key=lambda item: (item[0] > 0, -(item[1] / item[0]) if item[0] else 0.0)):
        if a <= budget:
            budget -= a
            remaining_b -= b
        else:
            remaining_b -= b * budget / a
            break
    return remaining_b <= cpu_budget + 1e-9


@dataclass(frozen=True)
class Ratios:
    """Lower bounds on what guests bring along: MiB per vCPU (rho) and vCPUs per MiB (sigma).

    Every guest g has d_mem >= rho * d_cpu and d_cpu >= sigma * d_mem, so a host whose
    guests use u_cpu vCPUs uses at least rho * u_cpu MiB, and conversely.

    >>> Ratios.of([Resources(2048, 1), Resources(4096, 4)])
    Ratios(mib_per_vcpu=1024.0, vcpus_per_mib=0.00048828125)
    """

    mib_per_vcpu: float
    vcpus_per_mib: float

    @classmethod
    def of(cls, demands: Iterable[Resources]) -> Ratios:
        rho = sigma = float("inf")
        for demand in demands:
            if demand.vcpus > 0:
                rho = min(rho, demand.memory_mib / demand.vcpus)
            if demand.memory_mib > 0:
                sigma = min(sigma, demand.vcpus / demand.memory_mib)
        return cls(0.0 if rho == float("inf") else rho, 0.0 if sigma == float("inf") else sigma)


def may_be_blocked_refined(
    demand: Resources, capacities: Sequence[Resources], demand_total: Resources, ratios: Ratios
) -> bool:
    """The refined test: hosts blocked by cpu also hold memory, and conversely.

    A host blocked by memory has used at least a_h MiB and sigma * a_h vCPUs; one blocked
    by cpu at least b_h vCPUs and rho * b_h MiB. Blocking is possible only if some x in
    [0,1]^S (x_h = 1: h blocked by memory) keeps both totals within the budgets. That
    linear program is infeasible exactly when some (lambda, mu) >= 0 gives
    sum_h min(lambda*A_h,mem + mu*A_h,cpu, lambda*B_h,mem + mu*B_h,cpu) > lambda*Bm + mu*Bc
    (Farkas); the function searches (1, t) at every breakpoint t and (0, 1), which is
    where the concave left side minus the right side peaks. True unless infeasible.

    >>> hosts = [Resources(65536, 96)] * 7
    >>> may_be_blocked(Resources(8192, 4), hosts, Resources(388096, 240))
    True
    >>> may_be_blocked_refined(Resources(8192, 4), hosts, Resources(388096, 240), Ratios(1024.0, 1 / 2048))
    False
    """
    memory_budget = demand_total.memory_mib - demand.memory_mib
    cpu_budget = demand_total.vcpus - demand.vcpus
    choices: list[tuple[tuple[float, float] | None, tuple[float, float] | None]] = []
    for capacity in capacities:
        a = blocking_cost(capacity.memory_mib, demand.memory_mib)
        b = blocking_cost(capacity.vcpus, demand.vcpus)
        if a is None and b is None:
            return False
        by_memory = None if a is None else (float(a), ratios.vcpus_per_mib * a)
        by_cpu = None if b is None else (ratios.mib_per_vcpu * b, float(b))
        choices.append((by_memory, by_cpu))

    def certificate(weight_memory: float, weight_cpu: float) -> bool:
        left = 0.0
        for by_memory, by_cpu in choices:
            options = [
                weight_memory * cost[0] + weight_cpu * cost[1] for cost in (by_memory, by_cpu) if cost is not None
            ]
            left += min(options)
        return left > weight_memory * memory_budget + weight_cpu * cpu_budget + 1e-6

    candidates = {0.0}
    for by_memory, by_cpu in choices:
        if by_memory is not None and by_cpu is not None and by_memory[1] != by_cpu[1]:
            t = (by_cpu[0] - by_memory[0]) / (by_memory[1] - by_cpu[1])
            if t > 0:
                candidates.add(t)
    if certificate(0.0, 1.0):
        return False
    return not any(certificate(1.0, t) for t in sorted(candidates))


def _memory_margin(demand: Resources, capacities: Sequence[Resources], demand_total: Resources) -> int:
    """Memory-only slack of the theorem for ``demand`` (how far from blocked, in MiB)."""
    need = sum(blocking_cost(capacity.memory_mib, demand.memory_mib) or 0 for capacity in capacities)
    return need - (demand_total.memory_mib - demand.memory_mib) - 1


@dataclass(frozen=True)
class DemandProfile:
    """What the proof needs to know about the guests, computed once per CIB."""

    total: Resources
    front: tuple[Resources, ...]  # Pareto-maximal demands (the simple test)
    distinct: tuple[Resources, ...]  # every distinct demand (the refined test)
    ratios: Ratios

    @classmethod
    def of(cls, demands: Iterable[Resources]) -> DemandProfile:
        listed = list(demands)
        return cls(
            total=total(listed),
            front=pareto_maximal(listed),
            distinct=tuple(sorted(set(listed), key=lambda d: (d.memory_mib, d.vcpus))),
            ratios=Ratios.of(listed),
        )


def proves_every_guest_fits(capacities: Sequence[Resources], profile: DemandProfile) -> Proof:
    """The theorem's test on the survivors' capacities (pure arithmetic, no preconditions).

    First the simple test on the Pareto front (enough, by monotonicity); if it fails, the
    refined test on every distinct demand (no monotonicity needed).
    """
    if not profile.front:
        return Proof(True, "no guest is meant to run")
    if not any(may_be_blocked(demand, capacities, profile.total) for demand in profile.front):
        # Named in the reason: the demand the argument holds with the least memory to spare.
        demand = min(profile.front, key=lambda demand: _memory_margin(demand, capacities, profile.total))
        return Proof(
            True,
            f"proved: every guest finds room in any placement order "
            f"(largest {demand.memory_mib} MiB / {demand.vcpus} vCPUs)",
        )
    if len(profile.distinct) > MAX_REFINED_DEMANDS:
        return Proof(False, f"not proved: {len(profile.distinct)} distinct guest sizes, too many to check one by one")
    for demand in profile.distinct:
        if may_be_blocked_refined(demand, capacities, profile.total, profile.ratios):
            return Proof(
                False,
                f"not proved: guests of {demand.memory_mib} MiB and {demand.vcpus} vCPUs "
                f"could find every survivor full in some placement order",
            )
    return Proof(True, "proved: every guest finds room in any placement order (memory and vCPUs together)")


@dataclass(frozen=True)
class FastPath:
    """The proof for one CIB: its preconditions, checked per scenario, and the demand profile."""

    model: CibModel
    profile: DemandProfile
    global_blocker: str | None

    @classmethod
    def for_model(cls, model: CibModel) -> FastPath:
        blocker: str | None = None
        if model.options.placement_strategy not in PROVABLE_STRATEGIES:
            blocker = f"placement-strategy={model.options.placement_strategy}"
        elif model.blockers:
            blocker = model.blockers[0]
        else:
            for guest in model.guests:
                if guest.blockers:
                    blocker = guest.blockers[0]
                    break
        return cls(
            model=model,
            profile=DemandProfile.of(guest.demand for guest in model.running_guests),
            global_blocker=blocker,
        )

    def blocker(self, failed: Sequence[str], quorum: bool) -> str | None:
        """Why the proof does not apply to this scenario, or None when it does."""
        if self.global_blocker is not None:
            return self.global_blocker
        options = self.model.options
        if not quorum and options.no_quorum_policy != "ignore":
            return f"the survivors lose quorum (no-quorum-policy={options.no_quorum_policy})"
        if failed and options.stonith_enabled and not self.model.fencing_devices:
            return "stonith-enabled=true but no fencing device is configured"
        if not self.model.survivors(failed):
            return "no host survives"
        return None

    def prove(self, failed: Sequence[str], quorum: bool) -> Proof:
        blocker = self.blocker(failed, quorum)
        if blocker is not None:
            return Proof(False, f"not applicable: {blocker}")
        proof = proves_every_guest_fits([host.capacity for host in self.model.survivors(failed)], self.profile)
        if proof.proved or failed:
            return proof
        settled = self.prove_settled()
        return settled if settled.proved else proof

    def prove_settled(self) -> Proof:
        """The baseline's second argument: running guests stay, the others fit in any order."""
        guests = self.model.running_guests
        if any(guest.stickiness < 1 for guest in guests):
            return Proof(False, "not proved: some guest has no positive resource-stickiness")
        if len({guest.priority for guest in guests}) > 1:
            return Proof(False, "not proved: guests have different priorities")
        available = {host.name: host for host in self.model.hosts if host.available}
        load = {name: Resources() for name in available}
        for guest in self.model.guests:
            for node in guest.active_on:
                if node not in available:
                    return Proof(False, f"not proved: {guest.resource} runs on {node}, which cannot keep it")
                load[node] = load[node] + guest.demand
        for name, host in available.items():
            if not load[name].fits_in(host.capacity):
                return Proof(False, f"not proved: {name} runs more than its capacity")
        waiting = DemandProfile.of(guest.demand for guest in guests if not guest.active_on)
        free = [host.capacity - load[name] for name, host in available.items()]
        proof = proves_every_guest_fits(free, waiting)
        if not proof.proved:
            return proof
        return Proof(True, "proved: every running guest stays where it runs, and the others find room")
