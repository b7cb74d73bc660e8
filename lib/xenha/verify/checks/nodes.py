"""Node checks: capacity published, the xen-host clone that publishes it, utilization names."""

from __future__ import annotations

from collections.abc import Iterator

from xenha.booleans import is_true
from xenha.planner.model import CPU, DIMENSIONS, MEMORY
from xenha.verify import fixes
from xenha.verify.checks.cluster import node
from xenha.verify.facts import Facts
from xenha.verify.findings import Finding, Severity
from xenha.verify.model import ClusterConfig


def _guests_need(config: ClusterConfig, name: str, autoset: str) -> bool:
    """Whether some guest has (or will publish) a demand in utilization ``name``."""
    return any(name in guest.utilization or guest.flag(autoset, "true") for guest in config.guests)


def capacity(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """Every node may run guests (a symmetric cluster); one without capacity offers 0."""
    needed = [
        name
        for name, autoset in ((MEMORY, "autoset_utilization_hv_memory"), (CPU, "autoset_utilization_cpu"))
        if _guests_need(config, name, autoset)
    ]
    publisher = " (xen-host publishes it when it runs there)" if config.host_agents else ""
    for host in config.nodes:
        missing = [name for name in needed if name not in host.utilization]
        if not missing:
            continue
        placeholders = {MEMORY: "MIB", CPU: "VCPUS"}
        yield Finding(
            "node-capacity",
            Severity.CRITICAL,
            node(host.name),
            f"{host.name} has no {' and no '.join(missing)} capacity{publisher}",
            "a node missing a utilization attribute offers 0 of it: no guest can run there, and the guests "
            "of a failed host have one host fewer to go to",
            fixes.node_utilization(
                host.name, {name: placeholders[name] for name in missing}, [placeholders[name] for name in missing]
            ),
        )


def host_agent(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if not config.host_agents:
        yield Finding(
            "xen-host-clone",
            Severity.WARNING,
            "cluster",
            "no ocf:xenha:xen-host resource: nothing publishes the hosts' capacity and health",
            "capacity set by hand goes stale when a host's memory changes, and a host whose hypervisor "
            "stops answering is not noticed until its guests' monitors fail",
            fixes.host_agent_clone(),
        )
        return
    members = len(config.nodes)
    for agent in config.host_agents:
        subject = f"resource {agent.resource}"
        if agent.clone is None:
            yield Finding(
                "xen-host-clone",
                Severity.WARNING,
                subject,
                f"{agent.primitive} is not a clone: it runs on one node only",
                "the other hosts publish no capacity and no health",
                fixes.clone_existing(agent.primitive),
            )
            continue
        clone_max = agent.clone_meta.get("clone-max", "").strip()
        if clone_max.isdigit() and int(clone_max) < members:
            yield Finding(
                "xen-host-clone",
                Severity.WARNING,
                subject,
                f"clone-max={clone_max} on a cluster of {members} nodes: xen-host does not run on every node",
                "the nodes without it publish no capacity and no health",
                fixes.resource_meta(agent.clone, "clone-max", None),
            )
        for banned, constraint in agent.banned_from:
            yield Finding(
                "xen-host-clone",
                Severity.WARNING,
                subject,
                f"location constraint {constraint} bans {agent.resource} from {banned}",
                f"{banned} publishes no capacity and no health",
                fixes.delete(constraint, "constraint"),
            )
        if not is_true(agent.clone_meta.get("allow-unhealthy-nodes", "false")):
            yield Finding(
                "xen-host-clone",
                Severity.WARNING,
                subject,
                f"{agent.clone} lacks allow-unhealthy-nodes=true",
                "with a node-health strategy, a red host loses its xen-host too: nothing is left to see it "
                "recover and turn it green again",
                fixes.resource_meta(agent.clone, "allow-unhealthy-nodes", "true"),
            )


FOREIGN_NODE_WHY = (
    "xen-host publishes hv_memory and cpu; another name is a second, unchecked figure that guests asking "
    "for it are measured against"
)
FOREIGN_GUEST_WHY = (
    "the scheduler still requires it on the target, and a node without it offers 0: the guest may find no host at all"
)


def foreign_utilization(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """Utilization names other than hv_memory and cpu (VirtualDomain's, NodeUtilization's...)."""
    owners = [("node", host.name, host.utilization, FOREIGN_NODE_WHY) for host in config.nodes]
    owners += [("resource", guest.resource, guest.utilization, FOREIGN_GUEST_WHY) for guest in config.guests]
    for kind, name, utilization, why in owners:
        others = sorted(set(utilization) - set(DIMENSIONS))
        if not others:
            continue
        change = fixes.node_utilization if kind == "node" else fixes.resource_utilization
        yield Finding(
            "foreign-utilization",
            Severity.WARNING,
            f"{kind} {name}",
            f"{name} has utilization {', '.join(others)}, which xenha does not read",
            why,
            change(name, dict.fromkeys(others)),
        )
