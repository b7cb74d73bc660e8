"""Which guest types a host's hypervisor can live-migrate: read from the host, once per boot.

A live migration copies memory while the guest runs, so the sending host must track the
pages the guest dirties meanwhile (log-dirty). Xen does that through the paging mode the
guest runs under: PV guests need shadow paging; HVM and PVH guests hardware-assisted paging
(HAP: VT-x/EPT, AMD-V/NPT) or shadow paging. Which of these a host has depends on how Xen was
built (Debian 12's Xen 4.17 has no shadow paging: ``# CONFIG_SHADOW_PAGING is not set``) and
on its CPU. Xen reports them in its physinfo, as ``xl info``'s ``virt_caps`` line shows.

libvirt's libxl driver does not pass them on (its capabilities list the guest types Xen can
run, not their paging modes), nor does ``/sys/hypervisor``: so ``xl info`` is read, with a
deadline, and kept for the boot (docs/decisions/migration-by-capability.md). Drivers whose
guests all live-migrate (QEMU/KVM) are not asked (``DriverTraits.live_migrates_every_guest``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from xenha.deadline import Deadline
from xenha.libvirt.domxml import GuestType
from xenha.libvirt.drivers import DriverTraits
from xenha.runner import CommandRunner
from xenha.statefile import StateFile

# The node attribute xen-host publishes: the guest types this host can live-migrate.
LIVE_MIGRATION_ATTRIBUTE = "xenha-live-migration"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
XL_INFO_MAX_S = 10.0
ALL_TYPES = frozenset(GuestType)


class LiveMigration(NamedTuple):
    """The guest types a host can live-migrate, and how that is known (for logs and reasons)."""

    types: frozenset[GuestType]
    evidence: str

    def can(self, guest_type: GuestType) -> bool:
        return guest_type in self.types

    @property
    def attribute(self) -> str:
        """The value of :data:`LIVE_MIGRATION_ATTRIBUTE`.

        >>> LiveMigration(frozenset({GuestType.HVM, GuestType.PV}), "").attribute
        'pv,hvm'
        >>> LiveMigration(frozenset(), "").attribute
        'none'
        """
        return ",".join(kind.value for kind in GuestType if kind in self.types) or "none"


def live_types(virt_caps: Iterable[str]) -> frozenset[GuestType]:
    """The guest types whose dirty memory Xen can track with these physical capabilities.

    >>> sorted(kind.value for kind in live_types("pv gnttab-v1 gnttab-v2".split()))
    []
    >>> sorted(kind.value for kind in live_types("hvm pv hap gnttab-v1".split()))
    ['hvm', 'pvh']
    >>> sorted(kind.value for kind in live_types("hvm pv hap shadow".split()))
    ['hvm', 'pv', 'pvh']
    """
    words = set(virt_caps)
    types = set()
    if "shadow" in words:
        types |= {GuestType.PV, GuestType.HVM, GuestType.PVH}
    if "hap" in words:
        types |= {GuestType.HVM, GuestType.PVH}
    return frozenset(types)


def virt_caps(xl_info: str) -> list[str] | None:
    """The words of ``xl info``'s virt_caps line; None when there is none (not Xen's output).

    >>> virt_caps("host : x\\nvirt_caps              : pv gnttab-v1 gnttab-v2\\n")
    ['pv', 'gnttab-v1', 'gnttab-v2']
    >>> virt_caps("total_memory : 1535") is None
    True
    """
    for line in xl_info.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "virt_caps":
            return value.split()
    return None


def of_virt_caps(words: list[str]) -> LiveMigration:
    return LiveMigration(live_types(words), f"Xen's virt_caps: {' '.join(words) or 'none'}")


def state_file(rsctmp: str) -> StateFile:
    """Where the host's capabilities are kept for the boot (both agents read the same)."""
    return StateFile(rsctmp, "host", "live-migration")


def host_live_migration(driver: DriverTraits, deadline: Deadline, cache: StateFile,
                        runner: CommandRunner | None = None) -> LiveMigration | None:  # fmt: skip
    """What this host can live-migrate; None when that cannot be known now (the reason is not
    needed: a caller that does not know plans no live migration)."""
    if driver.live_migrates_every_guest:
        return LiveMigration(ALL_TYPES, f"the {driver.name} driver migrates every guest type live")
    boot = _boot_id()
    kept = cache.load()
    if boot and kept.get("boot") == boot and isinstance(kept.get("virt_caps"), list):
        return of_virt_caps([str(word) for word in kept["virt_caps"]])
    result = (runner or CommandRunner()).run(["xl", "info"], min(XL_INFO_MAX_S, deadline.remaining()))
    words = virt_caps(result.stdout) if result.ok else None
    if words is None:
        return None
    if boot:
        cache.save({"boot": boot, "virt_caps": words})
    return of_virt_caps(words)


def _boot_id() -> str | None:
    """This boot's identity (Domain-0's kernel boots with Xen): capabilities hold for the boot."""
    try:
        with open(BOOT_ID_PATH, encoding="ascii") as handle:
            return handle.read().strip() or None
    except OSError:
        return None
