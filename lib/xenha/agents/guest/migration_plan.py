"""Migration decisions, as pure functions: method, settings, when to give up, progress text.

How a guest moves is chosen per guest type by the operator's policy (``pv_migration`` for
PV and PVH guests, ``hvm_migration`` for HVM guests) and by what the sending host can do:
a live migration needs the hypervisor to track the guest's dirty memory, which Debian's Xen
cannot do for PV guests (no shadow paging). ``auto`` migrates live where the host can and
paused (non-live) where it cannot; a live migration the host cannot do is never attempted
(docs/decisions/migration-by-capability.md, docs/decisions/hvm-migration-policy.md).
"""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from xenha.libvirt.domain import JobProgress
from xenha.libvirt.domxml import GuestType
from xenha.libvirt.live_migration import LiveMigration
from xenha.ocf import ParameterValues

AUTO = "auto"
# The copy rate assumed for a paused migration before one was measured to the same target:
# a gigabit link's ~110 MiB/s, rounded down (docs/decisions/migration-by-capability.md).
ASSUMED_PAUSED_RATE_MIB_S = 100.0


class Method(enum.Enum):
    LIVE = "live"
    PAUSED = "paused"  # peer to peer without VIR_MIGRATE_LIVE: the guest stops for the copy
    SAVE_RESTORE = "save-restore"
    REFUSE = "refuse"


class Plan(NamedTuple):
    """How a guest moves and why (the why goes into the log and into a refusal)."""

    method: Method
    why: str


def policy_parameter(guest_type: GuestType) -> str:
    """The parameter whose policy a guest type follows: PVH has no device model, as PV.

    >>> policy_parameter(GuestType.PVH), policy_parameter(GuestType.HVM)
    ('pv_migration', 'hvm_migration')
    """
    return "hvm_migration" if guest_type is GuestType.HVM else "pv_migration"


def choose_method(guest_type: GuestType, policy: str, host: LiveMigration | None, here: str) -> Plan:
    """The method of a move under ``policy`` from a host that can live-migrate ``host.types``
    (None: unknown, which plans no live migration).

    >>> pv_only = LiveMigration(frozenset({GuestType.PV}), "shadow")
    >>> choose_method(GuestType.PV, "auto", pv_only, "n1").method
    <Method.LIVE: 'live'>
    >>> choose_method(GuestType.PVH, "auto", pv_only, "n1").method
    <Method.PAUSED: 'paused'>
    >>> choose_method(GuestType.HVM, "save-restore", None, "n1").method
    <Method.SAVE_RESTORE: 'save-restore'>
    """
    parameter = f"{policy_parameter(guest_type)}={policy}"
    kind = guest_type.label
    if policy == AUTO:
        if host is not None and host.can(guest_type):
            return Plan(Method.LIVE, f"{parameter}: {here} can live-migrate {kind} guests ({host.evidence})")
        return Plan(Method.PAUSED, f"{parameter}: {_cannot(here, kind, host)}")
    method = Method(policy)
    if method is Method.LIVE and (host is None or not host.can(guest_type)):
        return Plan(
            Method.REFUSE,
            f"{parameter}, but {_cannot(here, kind, host)} (set {policy_parameter(guest_type)}=auto or "
            "paused to move it paused)",
        )
    return Plan(method, parameter)


def _cannot(here: str, kind: str, host: LiveMigration | None) -> str:
    if host is None:
        return f"whether {here} can live-migrate {kind} guests is unknown (xl info did not answer)"
    return f"{here} cannot live-migrate {kind} guests ({host.evidence})"


class PausedEstimate(NamedTuple):
    """How long a paused migration stops the guest, from its memory and a copy rate."""

    memory_mib: int
    rate_mib_s: float
    measured: bool  # the rate was measured on an earlier paused move to the same target

    @property
    def seconds(self) -> float:
        """
        >>> PausedEstimate(4096, 100.0, False).seconds
        40.96
        """
        return self.memory_mib / self.rate_mib_s

    def describe(self) -> str:
        """
        >>> PausedEstimate(128, 6.4, True).describe()
        'about 20 s (128 MiB at 6.4 MiB/s, as measured on the last paused move there)'
        """
        how = "as measured on the last paused move there" if self.measured else "an assumed rate"
        return f"about {math.ceil(self.seconds)} s ({self.memory_mib} MiB at {self.rate_mib_s:.1f} MiB/s, {how})"


def paused_estimate(memory_mib: int, measured_rate_mib_s: float | None) -> PausedEstimate:
    """
    >>> paused_estimate(128, None).rate_mib_s, paused_estimate(128, 5.0).measured
    (100.0, True)
    """
    if measured_rate_mib_s is not None and measured_rate_mib_s > 0:
        return PausedEstimate(memory_mib, measured_rate_mib_s, True)
    return PausedEstimate(memory_mib, ASSUMED_PAUSED_RATE_MIB_S, False)


def timeout_needed_s(copy_s: float, spent_s: float) -> int:
    """The smallest migrate_to timeout, in whole tens of seconds, that leaves ``copy_s`` after
    ``spent_s`` and the abort reserve (:func:`abort_reserve_s`).

    >>> timeout_needed_s(100, 2), timeout_needed_s(10, 1)
    (130, 20)
    """
    needed = spent_s + copy_s
    timeout = max(needed / 0.8, needed + 6.0)
    timeout = min(timeout, needed + 60.0)
    return int(math.ceil(timeout / 10.0) * 10)


class MigrationSettings(NamedTuple):
    """The migration parameters of the resource."""

    remote_template: str | None
    data_template: str | None
    network_suffix: str
    speed_mib_s: int
    downtime_ms: int
    pv_policy: str
    hvm_policy: str
    save_dir: str | None

    def policy(self, guest_type: GuestType) -> str:
        return self.hvm_policy if guest_type is GuestType.HVM else self.pv_policy

    @classmethod
    def from_params(cls, params: ParameterValues) -> MigrationSettings:
        return cls(
            remote_template=params.string("remoteuri") or None,
            data_template=params.string("migrateuri") or None,
            network_suffix=params.string("migration_network_suffix") or "",
            speed_mib_s=params.integer("migration_speed") or 0,
            downtime_ms=params.integer("migration_downtime") or 0,
            pv_policy=params.choice("pv_migration"),
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
