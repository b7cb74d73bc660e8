"""xen-guest publishes its demand as the resource's utilization (``hv_memory``, ``cpu``).

Only what differs is written. The last published values are in the memo, so an unchanged
monitor costs no cluster call. The CIB itself is compared with at start and reload
(``force``), when the node has no record (an arrival, usually: a guest's record goes when
it leaves a node), and every UTILIZATION_RECHECK_S: a tool that replaces the configuration
from a stale copy (pcs does: observed on the test cluster) can wipe a value written
meanwhile, and a lost figure would make the scheduler place guests where they do not fit.
"""

from __future__ import annotations

from collections.abc import Mapping

from xenha.agents.guest.action import GuestAction
from xenha.libvirt.domxml import DomainSpec
from xenha.ocf import OcfError

# How often a monitor compares the published utilization with the CIB (one query).
UTILIZATION_RECHECK_S = 300.0


def publish_utilization(action: GuestAction, spec: DomainSpec, force: bool) -> None:
    """Set the resource's hv_memory and cpu utilization to the guest's demand."""
    memo = action.memo.load()
    now = action.services.clock()
    checked_at = memo.published_checked_at
    compare_with_cib = force or checked_at is None or now - checked_at > UTILIZATION_RECHECK_S
    if not compare_with_cib and action.config is None:
        return  # the remembered spec is unchanged, so is its demand: nothing to do
    wanted = _wanted(action, spec)
    if wanted is None:
        return
    if not compare_with_cib and all(memo.published.get(name) == value for name, value in wanted.items()):
        return
    if _write(action, wanted, memo.published, compare_with_cib, force):
        action.update_memo(action.memo.load()._replace(published=wanted, published_checked_at=now))


def _wanted(action: GuestAction, spec: DomainSpec) -> dict[str, int] | None:
    from xenha.admission.resources import demand_of  # noqa: PLC0415 - only when something may be published (performance.md)

    wanted = {}
    demand = demand_of(spec)
    try:
        if action.ctx.params.boolean("autoset_utilization_hv_memory"):
            wanted["hv_memory"] = demand.memory_mib
        if action.ctx.params.boolean("autoset_utilization_cpu"):
            wanted["cpu"] = demand.vcpus
    except OcfError:
        return None
    return wanted


def _write(action: GuestAction, wanted: Mapping[str, int], published: Mapping[str, int], compare_with_cib: bool,
           force: bool) -> bool:  # fmt: skip
    """Write what differs; False when the cluster refused (tried again at the next monitor)."""
    from xenha.pacemaker.cluster import NotInCluster, PacemakerError  # noqa: PLC0415 - only when something may be published (performance.md)

    log = action.ctx.log
    cluster = action.services.cluster()
    resource = action.ctx.env.instance
    try:
        current = cluster.resource_utilizations(resource) if compare_with_cib else {}
        for name, value in wanted.items():
            if current.get(name) == value:
                continue
            cluster.set_resource_utilization(resource, name, value)
            if compare_with_cib and published.get(name) == value and not force:
                log.warning(
                    f"utilization {name} of {resource} was {current.get(name, 'missing')} in the CIB, "
                    f"not {value} as published (configuration replaced from a stale copy?): set it again"
                )
            else:
                log.info(f"set utilization {name}={value} for {resource}")
    except NotInCluster:
        log.debug("no cluster: utilization not published")  # recorded anyway: tried again at the next recheck
    except PacemakerError as error:
        log.warning(f"could not publish the utilization of {resource}: {error}")
        return False
    return True
