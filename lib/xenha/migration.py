"""Migration decisions, as pure functions: method, URIs, flags, when to give up, progress text.

Paravirtualized guests (PV, PVH) migrate live: the guest cooperates, the hypervisor only
copies memory. Fully virtualized (HVM) guests carry emulated device state in QEMU and are
where live migration goes wrong in practice; what happens to them is the operator's
choice, ``hvm_migration`` (docs/decisions/hvm-migration-policy.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import NamedTuple

from xenha.domxml import GuestType
from xenha.libvirt_uri import LibvirtUri, default_remote, for_node

# virDomainMigrateFlags (a stable ABI, repeated so that this module needs no libvirt)
MIGRATE_LIVE = 1
MIGRATE_PEER2PEER = 2
MIGRATE_PERSIST_DEST = 8
MIGRATE_UNDEFINE_SOURCE = 16

PROGRESS_LOG_INTERVAL_S = 2.0
POLL_INTERVAL_S = 0.25


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


def with_network_suffix(node: str, suffix: str) -> str:
    """The node's name on the migration network, as VirtualDomain forms it.

    The suffix goes after the first label, so FQDNs keep their domain.

    >>> with_network_suffix("node2.example.com", "-mig")
    'node2-mig.example.com'
    >>> with_network_suffix("node2", "")
    'node2'
    """
    if not suffix:
        return node
    first, dot, rest = node.partition(".")
    return f"{first}{suffix}{dot}{rest}"


class MigrationUris(NamedTuple):
    remote: str  # libvirt URI of the target's hypervisor
    data: str | None  # data channel (VIR_MIGRATE_PARAM_URI), None: let libvirt choose


def migration_uris(
    hypervisor: LibvirtUri,
    remote_template: str | None,
    data_template: str | None,
    target: str,
    suffix: str,
) -> MigrationUris:
    """The target's control and data URIs, with ``%n`` replaced.

    ``remoteuri`` gets the node name as Pacemaker knows it; the derived default and
    ``migrateuri`` use the name on the migration network (with the suffix).

    >>> from xenha.libvirt_uri import parse
    >>> migration_uris(parse("xen:///system"), None, None, "node2", "-mig")
    MigrationUris(remote='xen+ssh://node2-mig/system', data='tcp://node2-mig')
    >>> migration_uris(parse("qemu:///system"), "qemu+tcp://%n/system", None, "node2", "")
    MigrationUris(remote='qemu+tcp://node2/system', data=None)
    """
    network_name = with_network_suffix(target, suffix)
    if remote_template:
        remote = for_node(remote_template, target)
    else:
        remote = for_node(default_remote(hypervisor), network_name)
    if data_template:
        data: str | None = for_node(data_template, network_name)
    elif suffix:
        data = f"tcp://{network_name}"
    else:
        data = None
    return MigrationUris(remote, data)


def migration_flags(persistent: bool) -> int:
    """Live and peer-to-peer; a persistent definition moves with the guest.

    The suite runs guests as transient domains, so usually nothing is persistent. An
    operator's persistent definition is moved rather than left behind, where its autostart
    could start a second copy.
    """
    flags = MIGRATE_LIVE | MIGRATE_PEER2PEER
    if persistent:
        flags |= MIGRATE_PERSIST_DEST | MIGRATE_UNDEFINE_SOURCE
    return flags


def abort_reserve_s(timeout_s: float) -> float:
    """Time kept, at the end of migrate_to, to abort the job, verify and clean up.

    >>> abort_reserve_s(120)
    18.0
    >>> abort_reserve_s(20)
    5.0
    """
    return min(60.0, max(5.0, 0.15 * timeout_s))


class JobProgress(NamedTuple):
    data_total: int
    data_remaining: int
    memory_bps: int
    elapsed_ms: int

    @classmethod
    def from_stats(cls, stats: Mapping[str, object]) -> JobProgress:
        def number(key: str) -> int:
            value = stats.get(key, 0)
            return int(value) if isinstance(value, (int, float)) else 0

        return cls(
            data_total=number("data_total") or number("memory_total"),
            data_remaining=number("data_remaining") or number("memory_remaining"),
            memory_bps=number("memory_bps"),
            elapsed_ms=number("time_elapsed"),
        )


def progress_line(guest: str, target: str, progress: JobProgress) -> str:
    """One log line of a running migration.

    >>> progress_line("web1", "node2", JobProgress(4 << 30, 1 << 30, 110 << 20, 27000))
    'migrating web1 to node2: 1024 of 4096 MiB remaining, 110 MiB/s, 27.0 s elapsed'
    """
    mib = 1 << 20
    return (
        f"migrating {guest} to {target}: {progress.data_remaining // mib} of {progress.data_total // mib} MiB "
        f"remaining, {progress.memory_bps // mib} MiB/s, {progress.elapsed_ms / 1000:.1f} s elapsed"
    )
