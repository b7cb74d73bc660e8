"""Checks of the guests' domain XML as this node reads it: readable, distinct, demand as declared.

They run only when the files were read (:attr:`Facts.domains`); the configuration-only part
of duplicate detection (two resources with the same ``config``) runs always.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from xenha.admission.resources import demand_of
from xenha.libvirt.domxml import DomainSpec, GuestType
from xenha.planner.model import CPU, MEMORY
from xenha.verify import fixes
from xenha.verify.facts import DomainFile, Facts
from xenha.verify.findings import Finding, Severity
from xenha.verify.model import ClusterConfig, GuestConfig

PATH_PLACEHOLDER = "PATH-TO-DOMAIN-XML"
SAVE_DIR_PLACEHOLDER = "SHARED-DIR"
_DOUBLE_RUN = (
    "Pacemaker treats them as two guests and may run both at once, on two hosts: one domain started "
    "twice, its disk written by two kernels"
)


def _read(config: ClusterConfig, facts: Facts) -> Iterator[tuple[GuestConfig, DomainFile]]:
    """Each guest with its domain XML as read on this node (nothing when the files were not read)."""
    for guest in config.guests:
        domain = None if facts.domains is None else facts.domains.get(guest.resource)
        if domain is not None:
            yield guest, domain


def _specs(config: ClusterConfig, facts: Facts) -> Iterator[tuple[GuestConfig, DomainSpec]]:
    """Each guest whose domain XML was read and understood, with its spec."""
    for guest, domain in _read(config, facts):
        if domain.spec is not None:
            yield guest, domain.spec


def config_file(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    for guest, domain in _read(config, facts):
        if domain.error is None:
            continue
        yield Finding(
            "config-file",
            Severity.CRITICAL,
            f"resource {guest.resource}",
            domain.error,
            "the guest cannot start on this node, nor be recovered here when its host fails",
            fixes.resource_params(guest.resource, {"config": PATH_PLACEHOLDER}, [PATH_PLACEHOLDER]),
        )


def _clashes(claims: Iterable[tuple[str, tuple[str, ...]]]) -> Iterator[tuple[str, str, str]]:
    """(resource, the resource that claimed it first, what) for each resource's first clash.

    ``claims`` gives each resource with the things it claims, in configuration order.
    """
    first_claim: dict[str, str] = {}
    for resource, things in claims:
        for thing in things:
            first = first_claim.setdefault(thing, resource)
            if first != resource:
                yield resource, first, thing
                break


def _identities(guest: GuestConfig, spec: DomainSpec | None) -> tuple[str, ...]:
    """What makes a guest one domain: its config file, its domain name and UUID when known."""
    path = guest.params.get("config", "").strip()
    found = [f"config file {path}"] if path else []
    if spec is not None:
        found.append(f"domain {spec.name}")
        if spec.uuid:
            found.append(f"domain UUID {spec.uuid}")
    return tuple(found)


def duplicate_domain(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """Two resources for one guest: the same config file, domain name or UUID."""
    specs = {guest.resource: spec for guest, spec in _specs(config, facts)}
    claims = ((guest.resource, _identities(guest, specs.get(guest.resource))) for guest in config.guests)
    for resource, first, identity in _clashes(claims):
        yield Finding(
            "duplicate-domain",
            Severity.CRITICAL,
            f"resource {resource}",
            f"{resource} and {first} name the same {identity}",
            _DOUBLE_RUN + f". Keep one of them (or give {resource} its own domain XML)",
            fixes.delete(resource),
        )


def shared_disk(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    claims = ((guest.resource, domain.writable_disks) for guest, domain in _read(config, facts))
    for resource, first, disk in _clashes(claims):
        yield Finding(
            "shared-disk",
            Severity.CRITICAL,
            f"resource {resource}",
            f"{resource} and {first} both write {disk} (neither <readonly/> nor <shareable/>)",
            "both guests may run at once and write the same disk: its file system is destroyed. Give "
            f"{resource} its own disk, or mark it <shareable/> if a cluster file system is meant to share it; "
            "the command below removes the second resource",
            fixes.delete(resource),
        )


def utilization_mismatch(config: ClusterConfig, facts: Facts) -> Iterator[Finding]:
    """Utilization set by hand (autoset off) that differs from what the domain XML asks for."""
    for guest, spec in _specs(config, facts):
        demand = demand_of(spec)
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
    for guest, spec in _specs(config, facts):
        policy = guest.params.get("hvm_migration", "refuse").strip()
        if spec.guest_type is not GuestType.HVM or policy not in ("live", "auto"):  # auto: live where HAP is
            continue
        yield Finding(
            "hvm-live-migration",
            Severity.INFO,
            f"resource {guest.resource}",
            f"{guest.resource} is an HVM guest with hvm_migration={policy}",
            "live migration of HVM guests (emulated devices, QEMU device model state) is less proven on Xen "
            "than PV's; keep it only if this guest's migrations were tested, else save-restore moves it "
            "with a pause",
            fixes.resource_params(
                guest.resource,
                {"hvm_migration": "save-restore", "save_dir": SAVE_DIR_PLACEHOLDER},
                [SAVE_DIR_PLACEHOLDER],
            ),
        )
