"""Checks of the guests' domain XML as this node reads it: readable, distinct, demand as declared.

They run only when the files were read (:attr:`Facts.domains`); the configuration-only part
of duplicate detection (two resources with the same ``config``) runs always.
"""

from __future__ import annotations

from collections.abc import Iterator

from xenha.capacity import demand_of
from xenha.domxml import GuestType
from xenha.planner.cibmodel import CPU, MEMORY
from xenha.verify import fixes
from xenha.verify.facts import Facts
from xenha.verify.findings import Finding, Severity
from xenha.verify.model import ClusterConfig

PATH_PLACEHOLDER = "PATH-TO-DOMAIN-XML"
SAVE_DIR_PLACEHOLDER = "SHARED-DIR"
_DOUBLE_RUN = (
    "Pacemaker treats them as two guests and may run both at once, on two hosts: one domain started "
    "twice, its disk written by two kernels"
)


def config_file(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if facts.domains is None:
        return
    for guest in config.guests:
        domain = facts.domains.get(guest.resource)
        if domain is None or domain.error is None:
            continue
        yield Finding(
            "config-file",
            Severity.CRITICAL,
            f"resource {guest.resource}",
            domain.error,
            "the guest cannot start on this node, nor be recovered here when its host fails",
            fixes.resource_params(guest.resource, {"config": PATH_PLACEHOLDER}, [PATH_PLACEHOLDER]),
        )


def duplicate_domain(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """Two resources for one guest: the same config file, domain name or UUID."""
    first_by_key: dict[tuple[str, str], str] = {}
    for guest in config.guests:
        keys = []
        path = guest.params.get("config", "").strip()
        if path:
            keys.append(("config file", path))
        domain = facts.domains.get(guest.resource) if facts.domains is not None else None
        if domain is not None and domain.spec is not None:
            keys.append(("domain", domain.spec.name))
            if domain.spec.uuid:
                keys.append(("domain UUID", domain.spec.uuid))
        for key in keys:
            first = first_by_key.setdefault(key, guest.resource)
            if first != guest.resource:
                yield Finding(
                    "duplicate-domain",
                    Severity.CRITICAL,
                    f"resource {guest.resource}",
                    f"{guest.resource} and {first} name the same {key[0]}, {key[1]}",
                    _DOUBLE_RUN + f". Keep one of them (or give {guest.resource} its own domain XML)",
                    fixes.delete(guest.resource),
                )
                break


def shared_disk(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if facts.domains is None:
        return
    owner: dict[str, str] = {}
    for guest in config.guests:
        domain = facts.domains.get(guest.resource)
        if domain is None:
            continue
        for disk in domain.writable_disks:
            first = owner.setdefault(disk, guest.resource)
            if first != guest.resource:
                yield Finding(
                    "shared-disk",
                    Severity.CRITICAL,
                    f"resource {guest.resource}",
                    f"{guest.resource} and {first} both write {disk} (neither <readonly/> nor <shareable/>)",
                    "both guests may run at once and write the same disk: its file system is destroyed. Give "
                    f"{guest.resource} its own disk, or mark it <shareable/> if a cluster file system is meant "
                    "to share it; the command below removes the second resource",
                    fixes.delete(guest.resource),
                )
                break


def utilization_mismatch(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """Utilization set by hand (autoset off) that differs from what the domain XML asks for."""
    if facts.domains is None:
        return
    for guest in config.guests:
        domain = facts.domains.get(guest.resource)
        if domain is None or domain.spec is None:
            continue
        demand = demand_of(domain.spec)
        wrong: dict[str, str | None] = {}
        figures = []
        for name, autoset, wanted in (
            (MEMORY, "autoset_utilization_hv_memory", demand.memory_mib),
            (CPU, "autoset_utilization_cpu", demand.vcpus),
        ):
            if guest.flag(autoset, "true") or name not in guest.utilization:
                continue
            if guest.utilization[name].strip() != str(wanted):
                wrong[name] = str(wanted)
                figures.append(f"{name}={guest.utilization[name]}, its domain XML needs {wanted}")
        if wrong:
            yield Finding(
                "utilization-mismatch",
                Severity.WARNING,
                f"resource {guest.resource}",
                f"{'; '.join(figures)} (autoset off)",
                "the scheduler places the guest by the figure in the CIB: too low overbooks a host (the "
                "start or migration is then refused), too high wastes room the cluster plans with",
                fixes.resource_utilization(guest.resource, wrong),
            )


def hvm_live_migration(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    if facts.domains is None:
        return
    for guest in config.guests:
        domain = facts.domains.get(guest.resource)
        if domain is None or domain.spec is None or domain.spec.guest_type is not GuestType.HVM:
            continue
        if guest.params.get("hvm_migration", "refuse").strip() != "live":
            continue
        yield Finding(
            "hvm-live-migration",
            Severity.INFO,
            f"resource {guest.resource}",
            f"{guest.resource} is an HVM guest with hvm_migration=live",
            "live migration of HVM guests (emulated devices, QEMU device model state) is less proven on Xen "
            "than PV's; keep it only if this guest's migrations were tested, else save-restore moves it "
            "with a pause",
            fixes.resource_params(
                guest.resource,
                {"hvm_migration": "save-restore", "save_dir": SAVE_DIR_PLACEHOLDER},
                [SAVE_DIR_PLACEHOLDER],
            ),
        )
