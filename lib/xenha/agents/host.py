"""``xen-host``: publishes each host's capacity and health for Pacemaker's placement.

Run as a clone on every host. On start (not only at the first monitor) and on every
monitor it computes:

* ``hv_memory`` (node utilization, MiB) = hypervisor total memory - host reserve - what
  domains the cluster does not manage occupy (or a fixed ``memory_capacity``);
* ``cpu`` (node utilization) = physical CPUs x ``cpu_overcommit``;
* ``xenha-live-migration`` (transient node attribute) = the guest types this host's
  hypervisor can live-migrate (``pv,pvh,hvm``, or ``none``: they move paused), read once per
  boot (docs/decisions/migration-by-capability.md);
* ``#health-xenha`` (transient node attribute) = red when the hypervisor cannot be reached
  or answers nonsense, yellow when its free memory has drifted below what the cluster
  believes free on this host or when Xen's Domain-0 has no fixed size (no
  ``dom0_mem=<size>,max:<size>``, no ``host_memory_reserve``: docs/decisions/xen-autoballoon.md),
  green otherwise.

Values are written only when they differ from what the CIB already holds. With
``node-health-strategy=migrate-on-red``, guests leave a host whose hypervisor is sick.
The figures are the same the guest agent's reservation check uses (``xenha.admission``), so
capacity and demand always meet.
"""

from __future__ import annotations

from collections.abc import Mapping

from xenha.admission.ledger import LedgerState
from xenha.admission.load import (
    RED,
    Health,
    cpu_capacity,
    host_memory_capacity_mib,
    host_reserve_mib,
    hypervisor_own_mib,
    memory_health,
    occupant_of,
    unsized_domain0_health,
    worst_health,
)
from xenha.admission.stores import CibLedger, ReservationError
from xenha.agents.parameters import (
    HYPERVISOR,
    cpu_overcommit,
    cpu_overcommit_parameter,
    host_memory_reserve,
    hypervisor_problems,
    quantity_parameter,
)
from xenha.libvirt.connection import Domain0Memory, Hypervisor
from xenha.libvirt.errors import HypervisorError
from xenha.libvirt.live_migration import LIVE_MIGRATION_ATTRIBUTE, host_live_migration, state_file
from xenha.ocf import Action, Agent, AgentSpec, Context, Handler, OcfError, OcfExit
from xenha.ocf.metadata import COMMON_ACTIONS
from xenha.pacemaker.cibxml import RESERVE_ATTRIBUTE, NodeFigures
from xenha.pacemaker.cluster import ClusterCli, NotInCluster, PacemakerError
from xenha.runner import CommandRunner
from xenha.statefile import StateFile

AGENT_NAME = "xen-host"
HEALTH_ATTRIBUTE = "#health-xenha"
# Part of an action's time kept, after measuring the hypervisor, for writing to the CIB.
PUBLISH_RESERVE_SHARE = 0.4
PUBLISH_RESERVE_MAX_S = 10.0

PARAMETERS = (
    HYPERVISOR,
    host_memory_reserve(
        "Subtracted from the hypervisor's total memory before publishing hv_memory: Domain-0, "
        "the hypervisor's own heap, anything the host needs."
    ),
    quantity_parameter(
        "memory_capacity",
        "Fixed hv_memory to publish instead of the computed one, in MiB.",
        "When set, this node's hv_memory utilization is this value, whatever the hypervisor "
        "reports (health is still checked against it). Example: 65536",
        unit="MiB",
    ),
    cpu_overcommit_parameter(
        "vCPUs allowed per physical CPU.",
        "The node's cpu utilization is its physical CPUs times this ratio, rounded down.",
        "2",
    ),
    quantity_parameter(
        "memory_drift_tolerance",
        "MiB the hypervisor's free memory may fall short of the cluster's figure before yellow.",
        "Health turns yellow when the hypervisor's free memory is more than this below what the "
        "cluster believes free on the host (hv_memory minus its guests and reservations). "
        "Example: 512",
        unit="MiB",
        default="256",
    ),
)

SPEC = AgentSpec(
    name=AGENT_NAME,
    shortdesc="Publishes a Xen host's capacity and health to Pacemaker",
    longdesc=(
        "Run as a clone on every host. Publishes the node's hv_memory (MiB) and cpu "
        "utilization from the hypervisor's own figures - total memory minus the host reserve "
        "minus domains the cluster does not manage, physical CPUs times an overcommit ratio - "
        "on start and on every monitor, writing only what changed. Sets the node attribute "
        "#health-xenha to red when the hypervisor does not answer correctly and yellow when its "
        "free memory has drifted below what the cluster has booked on the host, or when Xen's "
        "Domain-0 has no fixed size (booted without dom0_mem=<size>,max:<size>) and "
        "host_memory_reserve is not set; use "
        "node-health-strategy=migrate-on-red to move guests off a sick host."
    ),
    parameters=PARAMETERS,
    actions=(
        Action("start", 30),
        Action("stop", 30),
        Action("monitor", 30, interval_s=30),
        *COMMON_ACTIONS,
    ),
).check()


class HostAgent(Agent):
    spec = SPEC

    def validate(self, ctx: Context) -> list[OcfError]:
        return [*ctx.params.problems(), *hypervisor_problems(ctx.params)]

    def handlers(self) -> Mapping[str, Handler]:
        return {
            "start": self.start,
            "stop": self.stop,
            "monitor": self.monitor,
            "status": self.monitor,
            "validate-all": lambda ctx: OcfExit.SUCCESS,
            "reload-agent": self.reload_agent,
        }

    def start(self, ctx: Context) -> OcfExit:
        _state(ctx).save({"started": True})
        self._refresh(ctx, force=True)
        return OcfExit.SUCCESS

    def stop(self, ctx: Context) -> OcfExit:
        """Withdraw the health attribute; keep the capacity (it is still the host's size).

        Removing hv_memory would make the node offer 0 and evacuate every guest just because
        the clone was stopped, e.g. for maintenance of this agent.
        """
        state = _state(ctx)
        if state.load().get("started"):
            try:
                _cluster(ctx).delete_transient_attribute(ctx.env.node_name, HEALTH_ATTRIBUTE)
            except NotInCluster:
                pass
            except PacemakerError as error:
                raise OcfError(OcfExit.ERR_GENERIC, f"cannot withdraw {HEALTH_ATTRIBUTE}: {error}") from None
        state.remove()
        return OcfExit.SUCCESS

    def monitor(self, ctx: Context) -> OcfExit:
        if not _state(ctx).load().get("started"):
            return OcfExit.NOT_RUNNING
        if not ctx.problems:
            self._refresh(ctx, force=False)
        return OcfExit.SUCCESS

    def reload_agent(self, ctx: Context) -> OcfExit:
        if _state(ctx).load().get("started"):
            self._refresh(ctx, force=True)
        return OcfExit.SUCCESS

    def _refresh(self, ctx: Context, force: bool) -> None:
        node = ctx.env.node_name
        cluster = _cluster(ctx)
        # One query reads the node's figures and its reservation ledger, whose lapsed entries
        # (a holder that died) this monitor deletes: they can always be cleared.
        ledger = CibLedger(cluster, ctx.env.rsctmp, node)
        try:
            seen: LedgerState | None = ledger.observe(ctx.deadline)
        except NotInCluster:
            seen = None
        except PacemakerError as error:
            raise OcfError(OcfExit.ERR_GENERIC, f"cannot read {node}'s utilization from the CIB: {error}") from None
        health, published, reserve = self._measure(ctx)
        if seen is None:
            ctx.log.info(f"no cluster: would publish {published} and {HEALTH_ATTRIBUTE}={health.colour}")
            return
        figures = NodeFigures(seen.utilization, seen.memory_reserve_mib)
        _clear_lapsed(ctx, ledger, seen)
        try:
            for name, value in published.items():
                if figures.utilization.get(name) != value:
                    cluster.set_node_utilization(node, name, value)
                    ctx.log.info(f"{node}: utilization {name}={value} (was {figures.utilization.get(name, 'unset')})")
            if reserve is not None and figures.memory_reserve_mib != reserve:
                cluster.set_node_attribute(node, RESERVE_ATTRIBUTE, str(reserve))
                ctx.log.info(f"{node}: {RESERVE_ATTRIBUTE}={reserve} (the host reserve guests' admission uses)")
            state = _state(ctx)
            if force or state.load().get("health") != health.colour:
                cluster.set_transient_attribute(node, HEALTH_ATTRIBUTE, health.colour)
                log = ctx.log.info if health.colour == "green" else ctx.log.warning
                log(f"{node}: {HEALTH_ATTRIBUTE}={health.colour}: {health.reason}")
                state.update(health=health.colour)
            _publish_live_migration(ctx, cluster, force)
        except PacemakerError as error:
            raise OcfError(OcfExit.ERR_GENERIC, f"cannot publish {node}'s capacity: {error}") from None

    def _measure(self, ctx: Context) -> tuple[Health, dict[str, int], int | None]:
        """The host's health, the utilization to publish ({} when it cannot be known), the reserve."""
        node = ctx.env.node_name
        # A hung libvirtd must not eat the time needed to publish that the host is red.
        measuring = ctx.deadline.minus(min(PUBLISH_RESERVE_MAX_S, PUBLISH_RESERVE_SHARE * ctx.timeout_s))
        hypervisor = Hypervisor(ctx.params.string("hypervisor") or "", measuring, node)
        try:
            facts = hypervisor.node_facts()
            free_memory_mib = hypervisor.free_memory_mib()
            domains = [occupant_of(domain) for domain in hypervisor.active_domains()]
            guests_mib = sum(domain.demand.memory_mib for domain in domains)
            configured_reserve = ctx.params.integer("host_memory_reserve")
            # Domain-0 is read only when the reserve is not configured: it sizes the default
            # reserve, and says whether Domain-0 has a fixed size (xen-autoballoon.md).
            domain0 = _domain0(ctx, hypervisor) if configured_reserve is None else None
            reserve = host_reserve_mib(
                configured_reserve,
                lambda: _domain0_reserve_mib(ctx, domain0, facts.memory_mib, free_memory_mib, guests_mib),
            )
        except HypervisorError as error:
            return Health(RED, error.reason()), {}, None
        if facts.memory_mib <= 0 or facts.cpus <= 0:
            return (
                Health(RED, f"the hypervisor on {node} reports {facts.memory_mib} MiB and {facts.cpus} CPUs"),
                {},
                None,
            )
        unmanaged = sum(domain.demand.memory_mib for domain in domains if domain.resource is None)
        managed = [domain for domain in domains if domain.resource is not None]
        capacity = ctx.params.integer("memory_capacity")
        if capacity is None:
            capacity = host_memory_capacity_mib(facts.memory_mib, reserve, unmanaged)
        ratio = cpu_overcommit(ctx.params)
        # Reservations for arrivals would count on both sides (booked by the cluster, about to
        # leave the hypervisor's free memory): the comparison is the same without them.
        booked = sum(domain.demand.memory_mib for domain in managed)
        tolerance = ctx.params.integer("memory_drift_tolerance") or 0
        health = memory_health(free_memory_mib, capacity, booked, tolerance)
        if domain0 is not None:
            sizing = unsized_domain0_health(domain0.current_mib, domain0.max_mib, facts.memory_mib, capacity)
            health = worst_health(health, sizing)
        return health, {"hv_memory": capacity, "cpu": cpu_capacity(facts.cpus, ratio)}, reserve


def _publish_live_migration(ctx: Context, cluster: ClusterCli, force: bool) -> None:
    """Publish what this host can live-migrate, when it changed (a cache: the CIB's copy is
    for the planner and operators; migrate_to reads its own host)."""
    node = ctx.env.node_name
    hypervisor = Hypervisor(ctx.params.string("hypervisor") or "", ctx.deadline, node)
    found = host_live_migration(hypervisor.driver, ctx.deadline, state_file(ctx.env.rsctmp))
    if found is None:
        ctx.log.warning(f"{node}: cannot tell which guest types can live-migrate (xl info did not answer)")
        return
    state = _state(ctx)
    if force or state.load().get("live_migration") != found.attribute:
        cluster.set_transient_attribute(node, LIVE_MIGRATION_ATTRIBUTE, found.attribute)
        ctx.log.info(f"{node}: {LIVE_MIGRATION_ATTRIBUTE}={found.attribute} ({found.evidence})")
        state.update(live_migration=found.attribute)


def _clear_lapsed(ctx: Context, ledger: CibLedger, seen: LedgerState) -> None:
    """Delete the reservations into this node whose hold ran out on this node's clock."""
    lapsed = seen.lapsed()
    if not lapsed:
        return
    try:
        ledger.release(None, lapsed, ctx.deadline)
    except ReservationError as error:
        ctx.log.warning(f"could not delete lapsed reservations into {seen.node}: {error}")
        return
    ctx.log.info(
        f"deleted lapsed reservations into {seen.node} (holder gone): "
        + ", ".join(f"{old.resource} (holder {old.holder})" for old in lapsed)
    )


def _domain0_reserve_mib(
    ctx: Context, domain0: Domain0Memory | None, total_mib: int, free_mib: int, guests_mib: int
) -> int | None:
    """The default host reserve where there is a Domain-0: its memory plus the hypervisor's own.

    ``getInfo``'s total counts Xen's heap too (frame table etc., ~1.2 % of the lab's hosts):
    without it the published capacity exceeds what Xen can give guests (issue 11 item 3). It
    is measured while no guest runs and remembered; with guests running and nothing
    remembered, it is estimated from their demand (docs/decisions/xen-host-capacity.md).

    A reading higher than the one remembered is not taken: a domain being built or arriving
    holds memory while libvirt lists no guest, and counting it as Xen's stuck for as long as
    guests ran (the cluster lab: 128 MiB of capacity lost, a later start refused).
    """
    if domain0 is None:
        return None
    state = _state(ctx)
    measured = hypervisor_own_mib(total_mib, free_mib, domain0.current_mib, guests_mib)
    remembered = state.load().get("hypervisor_own_mib")
    if guests_mib == 0:  # exact, but for a domain being built: the lowest reading stands
        own = measured if not isinstance(remembered, int) else min(remembered, measured)
        if own != remembered:
            state.update(hypervisor_own_mib=own)
    else:  # what was measured idle, else estimated from the guests' demand
        own = remembered if isinstance(remembered, int) else measured
    return domain0.current_mib + own


def _domain0(ctx: Context, hypervisor: Hypervisor) -> Domain0Memory | None:
    """Domain-0's memory (None: there is none). After the hypervisor answered the other calls, an
    error here is passing (libxl's "cannot acquire state change lock"): the last value measured
    stands, or, with none, the action fails with the reason. Taking it for "no Domain-0" would
    shrink the reserve to the default and publish an inflated capacity (issue 12, finding 10)."""
    state = _state(ctx)
    try:
        found = hypervisor.domain0_memory()
    except HypervisorError as error:
        kept = state.load()
        last, last_max = kept.get("domain0_mib"), kept.get("domain0_max_mib")
        if isinstance(last, int):
            ctx.log.warning(f"{error.reason()}; the host reserve keeps Domain-0's last known {last} MiB")
            # a state file from before the maximum was kept: taken as sized (no new warning)
            return Domain0Memory(last, last_max if isinstance(last_max, int) else last)
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"cannot size the host reserve: {error.reason()}; retry, or set host_memory_reserve",
        ) from None
    kept = state.load()
    if found is not None and (kept.get("domain0_mib"), kept.get("domain0_max_mib")) != found:
        state.update(domain0_mib=found.current_mib, domain0_max_mib=found.max_mib)
    return found


def _cluster(ctx: Context) -> ClusterCli:
    return ClusterCli(CommandRunner(), ctx.deadline)


def _state(ctx: Context) -> StateFile:
    return StateFile(ctx.env.rsctmp, AGENT_NAME, ctx.env.instance)


def main() -> None:
    from xenha.ocf.entry import exec_agent  # noqa: PLC0415 - only the executable needs it

    exec_agent(HostAgent())
