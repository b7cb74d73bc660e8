"""The checks: each a pure function of the configuration and the facts, yielding findings.

:data:`CHECKS` lists them in the order of the report; each module groups the checks of
one object (the cluster, its nodes, its guests, the guests' domain XML, capacity).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from xenha.verify.checks import capacity, cluster, domains, guests, nodes
from xenha.verify.facts import Facts
from xenha.verify.findings import Finding
from xenha.verify.model import ClusterConfig

Check = Callable[[ClusterConfig, Facts], Iterable[Finding]]

CHECKS: tuple[tuple[str, Check], ...] = (
    ("fencing", cluster.fencing),
    ("quorum", cluster.quorum),
    ("placement-strategy", cluster.placement_strategy),
    ("node-capacity", nodes.capacity),
    ("xen-host-clone", nodes.host_agent),
    ("node-health", cluster.node_health),
    ("guest-too-large", capacity.guest_too_large),
    ("config-file", domains.config_file),
    ("duplicate-domain", domains.duplicate_domain),
    ("shared-disk", domains.shared_disk),
    ("allow-migrate", guests.allow_migrate),
    ("migrate-timeout", guests.migrate_timeout),
    ("stop-timeout", guests.stop_timeout),
    ("monitor", guests.monitor),
    ("stickiness", cluster.stickiness),
    ("migration-limit", cluster.migration_limit),
    ("utilization-mismatch", domains.utilization_mismatch),
    ("foreign-utilization", nodes.foreign_utilization),
    ("hvm-live-migration", domains.hvm_live_migration),
    ("n-plus-one", capacity.n_plus_one),
)


def run_checks(config: ClusterConfig, facts: Facts) -> tuple[Finding, ...]:
    return tuple(finding for _, check in CHECKS for finding in check(config, facts))
