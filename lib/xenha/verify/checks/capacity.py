"""Capacity checks: a guest that fits nowhere, and the planner's N+1 answer."""

from __future__ import annotations

from collections.abc import Iterator

from xenha.verify import fixes
from xenha.verify.facts import Facts
from xenha.verify.findings import Finding, Severity
from xenha.verify.model import ClusterConfig


def guest_too_large(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    hosts = [host for host in config.planner.hosts if host.has_capacity]
    if not hosts:
        return  # node-capacity reports it
    largest = max(hosts, key=lambda host: (host.capacity.memory_mib, host.capacity.vcpus, host.name))
    for guest in config.planner.guests:
        demand = guest.demand
        if not guest.has_utilization or any(demand.fits_in(host.capacity) for host in hosts):
            continue
        capacity = largest.capacity
        yield Finding(
            "guest-too-large",
            Severity.CRITICAL,
            f"resource {guest.resource}",
            f"{guest.resource} needs {demand.memory_mib} MiB and {demand.vcpus} vCPUs; the largest host, "
            f"{largest.name}, has {capacity.memory_mib} MiB and {capacity.vcpus} vCPUs",
            "no host can ever run it: it stays stopped. Raise the capacity below only if the host really has "
            "that much for guests; otherwise give the guest less memory or fewer vCPUs in its domain XML",
            fixes.node_utilization(
                largest.name,
                {
                    "hv_memory": str(max(demand.memory_mib, capacity.memory_mib)),
                    "cpu": str(max(demand.vcpus, capacity.vcpus)),
                },
            ),
        )


def n_plus_one(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    answer = facts.nplus1
    if not answer.checked:
        if answer.detail:
            yield Finding(
                "n-plus-one",
                Severity.INFO,
                "cluster",
                f"N+1 not checked: {answer.detail}",
                "whether the other hosts can carry a failed host's guests is unknown",
                fixes.run_command("xenha", "plan"),
            )
        return
    if answer.tolerated is not None and answer.tolerated >= 1:
        return
    if answer.tolerated is None:
        severity = Severity.CRITICAL
        why = (
            "the scheduler leaves a guest stopped now, with every host up; the other findings often say why "
            "('xenha plan' shows where each guest would go)"
        )
    else:
        severity = Severity.WARNING
        why = (
            "when a host fails, some of its guests stay stopped until it comes back: add capacity, or fewer "
            "or smaller guests ('xenha plan' shows every scenario and the hosts after recovery)"
        )
    yield Finding("n-plus-one", severity, "cluster", answer.headline, why, fixes.run_command("xenha", "plan"))
