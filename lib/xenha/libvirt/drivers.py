"""What a libvirt driver cannot do, as data: the one place a driver difference is written.

Callers ask (``hypervisor.driver.can_abort_job``) instead of trying a call and reading the
error. A new difference between drivers is a new field here, set for the drivers it
concerns; nothing else in the suite names a driver.
"""

from __future__ import annotations

from typing import NamedTuple


class DriverTraits(NamedTuple):
    name: str
    can_abort_job: bool = True  # virDomainAbortJob on a running migration or save
    can_limit_migration_speed: bool = True  # virDomainMigrateSetMaxSpeed
    can_limit_migration_downtime: bool = True  # virDomainMigrateSetMaxDowntime
    reports_job_data: bool = True  # virDomainGetJobStats has data totals, not only elapsed time
    # After a failed migration the source's state in libvirt says whether the guest runs
    # (QEMU: it is running, or paused for the migration until resumed).
    reports_frozen_source: bool = True
    # Every guest type the driver runs can live-migrate (QEMU/KVM always tracks dirty pages).
    # False: what the host can live-migrate depends on the hypervisor's build and CPU and is
    # read from the host (xenha.libvirt.live_migration).
    live_migrates_every_guest: bool = True
    # The format libvirt's connectDomainXMLFromNative converts on this driver (an xl
    # configuration file on Xen); None: the driver converts nothing the suite accepts.
    native_config_format: str | None = None
    # A guest's own reboot (or an on_crash/on_poweroff=restart) shows as SHUTOFF while a job of
    # libvirt's destroys and re-creates the domain: shut off is not yet stopped (monitor-states.md).
    restarts_through_shutoff: bool = False
    # What the driver refuses at start, so that validation refuses it first (6 on every node,
    # not 1 on each node in turn): <maxMemory>, domain types other than its own (None: any).
    takes_max_memory: bool = True
    domain_types: frozenset[str] | None = None
    # Filesystem types (as /proc/self/mounts names them) a save cannot be written to
    # (xenha.libvirt.savedir): validation refuses a save_dir there.
    save_fails_on: frozenset[str] = frozenset()
    # The hypervisor's own toolstack, reached when libvirt has lost a domain the hypervisor still
    # holds, or cannot act on one its unabortable job holds (xenha.libvirt.toolstack); None: none.
    toolstack: str | None = None


# libvirt's libxl driver (src/libxl/libxl_driver.c) implements none of these: its jobs cannot
# be aborted or tuned, and its job statistics carry the elapsed time only. When a migration's
# perform phase fails, libxlDoMigrateSrcP2P skips the confirm phase and nothing resumes the
# guest that libxl_domain_suspend may have suspended, while its libvirt state stays RUNNING
# (src/libxl/libxl_migration.c): a frozen source looks like a running one. Whether a guest
# can live-migrate depends on Xen's paging modes (docs/decisions/migration-by-capability.md);
# libxl converts xl configuration files (libxlConnectDomainXMLFromNative, "xen-xl").
# A guest that reboots itself is marked SHUTOFF, destroyed and created again by
# libxlDomainShutdownThread under a job (libxlDomainShutdownHandleRestart, src/libxl/libxl_domain.c).
_TRAITS = {
    "xen": DriverTraits(
        "xen",
        can_abort_job=False,
        can_limit_migration_speed=False,
        can_limit_migration_downtime=False,
        reports_job_data=False,
        reports_frozen_source=False,
        live_migrates_every_guest=False,
        native_config_format="xen-xl",
        restarts_through_shutoff=True,
        # libxlDomainDefValidate: "memory hotplug tunables <maxMemory> are not supported by this
        # hypervisor driver" (seen in the lab); virDomainDefParse refuses another <domain type>.
        takes_max_memory=False,
        domain_types=frozenset({"xen"}),
        # libxc writes the guest's pages from its foreign mappings: virtio-9p's zero-copy
        # write cannot pin them ("Failed to write page data to stream (14 = Bad address)",
        # seen in the lab), and the guest stays suspended (docs/decisions/save-dir-filesystems.md).
        save_fails_on=frozenset({"9p"}),
        # A libvirtd restarted during an arrival forgets the half-received domain Xen keeps; a
        # migration job libxl cannot abort blocks destroy for minutes (both seen in the lab):
        # stop reaches such domains through xl (docs/decisions/stop-through-xl.md).
        toolstack="xl",
    ),
}


def traits(driver: str) -> DriverTraits:
    """The traits of the driver named in a URI's scheme (``xen``, ``qemu``, ``test``).

    >>> traits("xen").can_abort_job, traits("qemu").can_abort_job
    (False, True)
    """
    return _TRAITS.get(driver, DriverTraits(driver))


def config_refusals(driver: DriverTraits, domain_type: str, has_max_memory: bool) -> list[str]:
    """What the driver would refuse at start in a domain XML, as the fix to make (pure).

    >>> config_refusals(traits("xen"), "kvm", False)
    ["<domain type='kvm'> cannot run on a xen:// hypervisor: use type='xen'"]
    >>> config_refusals(traits("qemu"), "kvm", True)
    []
    """
    refusals = []
    if driver.domain_types is not None and domain_type not in driver.domain_types:
        wanted = " or ".join(f"type='{name}'" for name in sorted(driver.domain_types))
        refusals.append(f"<domain type='{domain_type}'> cannot run on a {driver.name}:// hypervisor: use {wanted}")
    if has_max_memory and not driver.takes_max_memory:
        refusals.append(
            f"libvirt's {driver.name} driver does not support <maxMemory> (memory hotplug): remove it, size the "
            "guest with <memory>"
        )
    return refusals
