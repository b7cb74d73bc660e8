"""Cluster-wide checks: fencing, quorum, placement, health, stickiness, parallel migrations."""

from __future__ import annotations

import math
from collections.abc import Iterator

from xenha.planner.model import score_value
from xenha.verify import fixes
from xenha.verify.facts import Facts
from xenha.verify.findings import Finding, Severity
from xenha.verify.model import ClusterConfig, GuestConfig
from xenha.verify.timing import COPY_FACTOR, SETUP_S, copy_seconds, copy_window_s

CLUSTER = "cluster"
SUGGESTED_STICKINESS = "100"


def node(name: str) -> str:
    return f"node {name}"


def fencing(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    options = config.planner.options
    if not options.stonith_enabled:
        yield Finding(
            "fencing",
            Severity.CRITICAL,
            CLUSTER,
            "stonith-enabled=false: no host is ever fenced",
            "a host that stops answering is assumed dead and its guests are started elsewhere while they "
            "may still run there: two copies of a guest writing one disk",
            fixes.cluster_property("stonith-enabled", "true"),
        )
    dynamic = [device.resource for device in config.fence_devices if device.targets is None]
    if dynamic:
        return  # a device without a static list is asked at fencing time which hosts it can fence
    covered = {target for device in config.fence_devices for target in device.targets or ()}
    described = (
        "; ".join(f"{device.resource} covers {', '.join(device.targets or ())}" for device in config.fence_devices)
        or "no fence device is configured"
    )
    for host in config.nodes:
        if host.name not in covered:
            yield Finding(
                "fencing",
                Severity.CRITICAL,
                node(host.name),
                f"no fence device covers {host.name} ({described})",
                f"if {host.name} fails it cannot be fenced, so Pacemaker recovers none of its guests: they stay "
                "down until someone confirms by hand that the host is off",
                fixes.fence_device(host.name),
            )


def quorum(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    policy = config.planner.options.no_quorum_policy
    if policy == "ignore":
        yield Finding(
            "quorum",
            Severity.CRITICAL,
            CLUSTER,
            "no-quorum-policy=ignore: a partition without quorum keeps running and recovering",
            "when the cluster splits, both halves start each other's guests: the same guest runs twice",
            fixes.cluster_property("no-quorum-policy", "stop"),
        )
    if len(config.nodes) != 2:
        return
    if facts.two_node is False:
        yield Finding(
            "quorum",
            Severity.WARNING,
            CLUSTER,
            f"two nodes, and corosync's two_node is 0 ({facts.two_node_source})",
            "when one node fails the other holds 1 vote of 2, no majority: it loses quorum and stops every "
            f"guest (no-quorum-policy={policy}) instead of recovering them",
            fixes.corosync_two_node(),
        )
    elif facts.two_node is None:
        yield Finding(
            "quorum",
            Severity.INFO,
            CLUSTER,
            f"two nodes; corosync's two_node not checked ({facts.two_node_source})",
            "without two_node: 1 the survivor of a two-node cluster loses quorum and stops every guest",
            fixes.run_command("corosync-cmapctl", "-g", "runtime.votequorum.two_node"),
        )


def _carries_utilization(config: ClusterConfig) -> bool:
    return (
        any(host.utilization for host in config.nodes)
        or any(guest.utilization for guest in config.guests)
        or any(
            guest.flag("autoset_utilization_hv_memory", "true") or guest.flag("autoset_utilization_cpu", "true")
            for guest in config.guests
        )
    )


def placement_strategy(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if config.planner.options.placement_strategy != "default" or not _carries_utilization(config):
        return
    yield Finding(
        "placement-strategy",
        Severity.CRITICAL,
        CLUSTER,
        "placement-strategy=default while nodes or guests carry utilization (hv_memory, cpu)",
        "Pacemaker ignores utilization with the default strategy: any host takes any guest, hosts are "
        "overbooked and recovery after a failure may start guests where they do not fit",
        fixes.cluster_property("placement-strategy", "balanced"),
    )


def node_health(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if config.planner.options.node_health_strategy not in ("none", ""):
        return
    if config.health_published_on:
        where = f"on {', '.join(config.health_published_on)}"
    elif config.host_agents:
        where = f"by {config.host_agents[0].resource}"
    else:
        return
    yield Finding(
        "node-health",
        Severity.WARNING,
        CLUSTER,
        f"#health-xenha is published {where}, but node-health-strategy is none",
        "Pacemaker ignores health attributes without a strategy: guests stay on a host whose hypervisor "
        "no longer answers",
        fixes.cluster_property("node-health-strategy", "migrate-on-red"),
    )


def stickiness(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if config.planner.options.placement_strategy != "balanced":
        return
    restless = [guest for guest in config.guests if guest.guest.stickiness == 0]
    by_default = [guest.resource for guest in restless if "resource-stickiness" not in guest.own_meta]
    if by_default:
        shown = config.rsc_defaults.get("resource-stickiness", "unset")
        yield Finding(
            "stickiness",
            Severity.WARNING,
            CLUSTER,
            f"resource-stickiness is {shown} in the resource defaults with placement-strategy=balanced "
            f"({len(by_default)} guests take it)",
            "balanced placement moves guests to the host with the most free capacity on every change: each "
            "node joining or a guest starting can migrate running guests",
            fixes.resource_defaults("resource-stickiness", SUGGESTED_STICKINESS),
        )
    for guest in restless:
        if "resource-stickiness" in guest.own_meta and score_value(guest.own_meta["resource-stickiness"]) == 0:
            yield Finding(
                "stickiness",
                Severity.WARNING,
                f"resource {guest.resource}",
                "resource-stickiness=0 with placement-strategy=balanced",
                "balanced placement migrates it to the host with the most free capacity on every change",
                fixes.resource_meta(guest.resource, "resource-stickiness", SUGGESTED_STICKINESS),
            )


def migration_limit(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """A drained host migrates all its guests at once unless migration-limit caps them.

    The busiest host (by the guests active there; an even spread when none runs) sends
    its guests' memory over one network at ``facts.bandwidth_mib_s``; if that takes longer
    than the copy window of the shortest migrate_to timeout among them, migrations time out
    and fall back to stop and start.
    """
    limit = config.properties.get("migration-limit", "-1").strip()
    if limit not in ("-1", ""):
        return
    movers = [guest for guest in config.guests if guest.allows_migration]
    if not movers:
        return
    load: dict[str, list[GuestConfig]] = {}
    for guest in movers:
        for name in guest.guest.active_on:
            load.setdefault(name, []).append(guest)
    if not load:
        share = math.ceil(len(movers) / max(1, len(config.nodes)))
        load["one host (guests spread evenly)"] = sorted(movers, key=lambda guest: -guest.guest.demand.memory_mib)[
            :share
        ]
    bandwidth = facts.bandwidth_mib_s
    for busiest, drained in sorted(load.items(), key=lambda item: (-_memory(item[1]), item[0])):
        total_mib = _memory(drained)
        largest = max(guest.guest.demand.memory_mib for guest in drained)
        drain_s = copy_seconds(total_mib, bandwidth)
        window_s = min(copy_window_s(guest.timeout_ms("migrate_to") / 1000) for guest in drained)
        if len(drained) < 2 or drain_s <= window_s or copy_seconds(largest, bandwidth) > window_s:
            continue  # fits at once; or even one alone does not, which migrate-timeout reports
        yield _parallel_drain(busiest, drained, drain_s, window_s, bandwidth)
        return


def _parallel_drain(
    busiest: str, drained: list[GuestConfig], drain_s: float, window_s: float, bandwidth: int
) -> Finding:
    largest = max(guest.guest.demand.memory_mib for guest in drained)
    parallel = max(1, int((window_s - SETUP_S) * bandwidth // (COPY_FACTOR * largest)))
    count, total_mib = len(drained), _memory(drained)
    return Finding(
        "migration-limit",
        Severity.INFO,
        CLUSTER,
        f"migration-limit unset: draining {busiest} migrates {count} guests ({total_mib} MiB) at once, "
        f"{drain_s:.0f} s at {bandwidth} MiB/s shared, more than the {window_s:.0f} s the shortest migrate_to "
        "timeout leaves for copying",
        "parallel migrations share the network; those that time out fall back to a stop and a start",
        fixes.cluster_property("migration-limit", str(parallel)),
    )


def _memory(guests: list[GuestConfig]) -> int:
    return sum(guest.guest.demand.memory_mib for guest in guests)
