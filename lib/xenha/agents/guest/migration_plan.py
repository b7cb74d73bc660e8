"""Migration decisions, as pure functions: method, settings, when to give up, progress text.

Paravirtualized guests (PV, PVH) migrate live: the guest cooperates, the hypervisor only
copies memory. Fully virtualized (HVM) guests carry emulated device state in QEMU and are
where live migration goes wrong in practice; what happens to them is the operator's
choice, ``hvm_migration`` (docs/decisions/hvm-migration-policy.md).
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from xenha.libvirt.domain import JobProgress
from xenha.libvirt.domxml import GuestType
from xenha.ocf import ParameterValues


class Method(enum.Enum):
    LIVE = "live"
    SAVE_RESTORE = "save-restore"
    REFUSE = "refuse"


def choose_method(guest_type: GuestType, hvm_policy: str) -> Method:
    """PV and PVH guests migrate live; HVM guests follow the policy.

    >>> choose_method(GuestType.PV, "refuse")
    <Method.LIVE: 'live'>
    >>> choose_method(GuestType.HVM, "save-restore")
    <Method.SAVE_RESTORE: 'save-restore'>
    """
    if guest_type is GuestType.HVM:
        return Method(hvm_policy)
    return Method.LIVE


class MigrationSettings(NamedTuple):
    """The migration parameters of the resource."""

    remote_template: str | None
    data_template: str | None
    network_suffix: str
    speed_mib_s: int
    downtime_ms: int
    hvm_policy: str
    save_dir: str | None

    @classmethod
    def from_params(cls, params: ParameterValues) -> MigrationSettings:
        return cls(
            remote_template=params.string("remoteuri") or None,
            data_template=params.string("migrateuri") or None,
            network_suffix=params.string("migration_network_suffix") or "",
            speed_mib_s=params.integer("migration_speed") or 0,
            downtime_ms=params.integer("migration_downtime") or 0,
            hvm_policy=params.choice("hvm_migration"),
            save_dir=params.string("save_dir") or None,
        )


def abort_reserve_s(timeout_s: float) -> float:
    """Time kept, at the end of migrate_to, to abort the job, settle both hosts and release the booking.

    The settle steps share it in order (docs/decisions/time-budget-and-settling.md); the
    release's own part (:func:`release_reserve_s`) is never theirs.

    >>> abort_reserve_s(120)
    24.0
    >>> abort_reserve_s(20)
    6.0
    """
    return min(60.0, max(6.0, 0.2 * timeout_s))


def release_reserve_s(timeout_s: float) -> float:
    """The part of :func:`abort_reserve_s` that only the release of the booking may use.

    >>> release_reserve_s(120), release_reserve_s(20)
    (6.0, 2.0)
    """
    return max(2.0, 0.05 * timeout_s)


def progress_line(guest: str, target: str, progress: JobProgress) -> str:
    """One log line of a running migration (the data figures where the driver reports them).

    >>> progress_line("web1", "node2", JobProgress(27000, 4 << 30, 1 << 30, 110 << 20))
    'migrating web1 to node2: 1024 of 4096 MiB remaining, 110 MiB/s, 27.0 s elapsed'
    >>> progress_line("web1", "node2", JobProgress(27000))
    'migrating web1 to node2: 27.0 s elapsed'
    """
    mib = 1 << 20
    data = ""
    if progress.data_total is not None and progress.data_remaining is not None:
        data = f"{progress.data_remaining // mib} of {progress.data_total // mib} MiB remaining, "
        data += f"{(progress.memory_bps or 0) // mib} MiB/s, "
    return f"migrating {guest} to {target}: {data}{progress.elapsed_ms / 1000:.1f} s elapsed"
