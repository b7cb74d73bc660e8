"""Guest checks from the CIB alone: live migration allowed, operation timeouts, monitoring."""

from __future__ import annotations

from collections.abc import Iterator

from xenha.libvirt.domxml import GuestType
from xenha.verify import fixes
from xenha.verify.facts import Facts
from xenha.verify.findings import Finding, Severity
from xenha.verify.model import ClusterConfig, GuestConfig
from xenha.verify.timing import (
    copy_seconds,
    copy_window_s,
    graceful_window_s,
    migrate_timeout_needed_s,
    stop_timeout_needed_s,
)

MONITOR_INTERVAL = "10s"  # the agent's advertised default
MONITOR_TIMEOUT = "30s"


def resource(guest: GuestConfig) -> str:
    return f"resource {guest.resource}"


def allow_migrate(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    for guest in config.guests:
        if not guest.allows_migration:
            yield Finding(
                "allow-migrate",
                Severity.WARNING,
                resource(guest),
                f"allow-migrate is {guest.meta.get('allow-migrate', 'unset')}",
                "Pacemaker stops the guest and starts it on the other host for every move (a drain, a health "
                "move, a rebalance): an outage where a live migration would do",
                fixes.resource_meta(guest.resource, "allow-migrate", "true"),
            )


def _timeout_origin(guest: GuestConfig, name: str) -> str:
    operation = guest.operation(name)
    if operation is not None and operation.timeout_set:
        return ""
    return " (op_defaults)" if guest.default_timeout_ms != 20000 else " (Pacemaker's default: no timeout set)"


def _memory_mib(guest: GuestConfig, facts: Facts) -> tuple[int, str] | None:
    """The memory a migration copies: the domain XML's when read, else the hv_memory demand."""
    domain = facts.domains.get(guest.resource) if facts.domains is not None else None
    if domain is not None and domain.spec is not None:
        return domain.spec.memory_mib, "MiB of memory"
    if guest.guest.has_utilization and guest.guest.demand.memory_mib > 0:
        return guest.guest.demand.memory_mib, "MiB (its hv_memory)"
    return None


def _never_live(guest: GuestConfig, facts: Facts) -> bool:
    """An HVM guest under hvm_migration=refuse does not migrate: its migrate_to fails at once."""
    domain = facts.domains.get(guest.resource) if facts.domains is not None else None
    return (
        domain is not None
        and domain.spec is not None
        and domain.spec.guest_type is GuestType.HVM
        and guest.params.get("hvm_migration", "refuse").strip() == "refuse"
    )


def migrate_timeout(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    for guest in config.guests:
        if not guest.allows_migration or _never_live(guest, facts):
            continue
        memory = _memory_mib(guest, facts)
        if memory is None:
            continue
        memory_mib, what = memory
        speed = guest.params.get("migration_speed", "0").strip()
        if speed.isdigit() and int(speed) > 0:
            bandwidth, source = int(speed), "its migration_speed"
        else:
            bandwidth = facts.bandwidth_mib_s
            source = "stated with --bandwidth" if facts.bandwidth_stated else "assumed; --bandwidth states it"
        timeout_s = guest.timeout_ms("migrate_to") / 1000
        needed = copy_seconds(memory_mib, bandwidth)
        window = copy_window_s(timeout_s)
        if window >= needed:
            continue
        suggested = migrate_timeout_needed_s(memory_mib, bandwidth)
        yield Finding(
            "migrate-timeout",
            Severity.WARNING,
            resource(guest),
            f"migrate_to timeout {timeout_s:g} s{_timeout_origin(guest, 'migrate_to')} leaves {window:g} s to copy "
            f"{memory_mib} {what}, which needs {needed:.0f} s at {bandwidth} MiB/s ({source}) with the margin; "
            f"a timeout of {suggested} s is enough",
            "a live migration that runs out of time is aborted, and Pacemaker then stops the guest and starts "
            "it on the target: the outage the migration was meant to avoid",
            fixes.operation(
                guest.resource, "migrate_to", {"timeout": f"{suggested}s"}, guest.operation("migrate_to") is not None
            ),
        )


def stop_timeout(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    for guest in config.guests:
        text = guest.params.get("shutdown_timeout", "").strip()
        if not text.isdigit() or guest.flag("force_stop", "false"):
            continue  # unset: two thirds of stop's timeout, by design
        shutdown_s = int(text)
        timeout_s = guest.timeout_ms("stop") / 1000
        window = graceful_window_s(timeout_s)
        if window >= shutdown_s:
            continue
        suggested = stop_timeout_needed_s(shutdown_s)
        yield Finding(
            "stop-timeout",
            Severity.WARNING,
            resource(guest),
            f"stop timeout {timeout_s:g} s{_timeout_origin(guest, 'stop')} allows {window:g} s of graceful shutdown "
            f"(a third is kept for destroying), shutdown_timeout asks {shutdown_s} s; a stop timeout of "
            f"{suggested} s allows it",
            "the guest is destroyed (powered off) before the shutdown it was promised: its file systems "
            "are not cleanly unmounted",
            fixes.operation(guest.resource, "stop", {"timeout": f"{suggested}s"}, guest.operation("stop") is not None),
        )


def monitor(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    for guest in config.guests:
        if guest.recurring_monitors():
            continue
        yield Finding(
            "monitor",
            Severity.CRITICAL,
            resource(guest),
            f"{guest.resource} has no recurring monitor operation",
            "Pacemaker never looks at the guest again after starting it: a crashed or destroyed guest is not restarted",
            fixes.operation(
                guest.resource, "monitor", {"interval": MONITOR_INTERVAL, "timeout": MONITOR_TIMEOUT}, exists=False
            ),
        )
