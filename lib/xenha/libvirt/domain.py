"""One libvirt domain, wrapped: every call on it under the action's deadline, errors classified.

In the style of OpenStack nova's ``Guest``: callers say what they want done to the guest
(``migrate``, ``save``, ``resume``, ``destroy``...) and never see a ``virDomain``. Long jobs
(a migration, a save) run in a worker thread, are polled, and are aborted when their own
deadline passes — where the driver can abort them (:mod:`xenha.libvirt.drivers`); a job
that outlives its abort is reported as still running, never as ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from xenha.libvirt import owner as owner_metadata
from xenha.libvirt.errors import ErrorKind, HypervisorError, classify, libvirt_module
from xenha.libvirt.owner import METADATA_URI, Owner
from xenha.libvirt.states import SHUTOFF
from xenha.libvirt.uri import MigrationTarget

if TYPE_CHECKING:
    from xenha.deadline import Deadline
    from xenha.libvirt.connection import Hypervisor

# virDomainMigrateFlags (a stable ABI, repeated so that the flags can be computed without libvirt)
MIGRATE_LIVE = 1
MIGRATE_PEER2PEER = 2
MIGRATE_PERSIST_DEST = 8
MIGRATE_UNDEFINE_SOURCE = 16
JOB_NONE = 0  # virDomainJobType: no job

JOB_POLL_INTERVAL_S = 0.25
PROGRESS_INTERVAL_S = 2.0


class DomainStatus(NamedTuple):
    state: int
    reason: int


class JobFailed(Exception):
    """A long job (migration, save) failed or was aborted; the text says how."""


class JobStillActive(JobFailed):
    """A long job outlived its abort (or could not be aborted): it may still complete."""


class JobLog(Protocol):
    """Where a long job reports what it does (the agent's log)."""

    def warning(self, message: str) -> None: ...
    def error(self, message: str) -> None: ...


class JobProgress(NamedTuple):
    """A running job's progress; the data figures are None where the driver does not report them."""

    elapsed_ms: int
    data_total: int | None = None
    data_remaining: int | None = None
    memory_bps: int | None = None

    @classmethod
    def from_stats(cls, stats: Mapping[str, object], with_data: bool) -> JobProgress:
        """From ``virDomainGetJobStats``' dictionary.

        >>> JobProgress.from_stats({"time_elapsed": 1500, "memory_total": 4096, "memory_bps": 7}, True)
        JobProgress(elapsed_ms=1500, data_total=4096, data_remaining=0, memory_bps=7)
        >>> JobProgress.from_stats({"time_elapsed": 1500}, False)
        JobProgress(elapsed_ms=1500, data_total=None, data_remaining=None, memory_bps=None)
        """

        def number(key: str) -> int:
            value = stats.get(key, 0)
            return int(value) if isinstance(value, (int, float)) else 0

        if not with_data:
            return cls(number("time_elapsed"))
        return cls(
            elapsed_ms=number("time_elapsed"),
            data_total=number("data_total") or number("memory_total"),
            data_remaining=number("data_remaining") or number("memory_remaining"),
            memory_bps=number("memory_bps"),
        )


def migration_flags(persistent: bool, live: bool = True) -> int:
    """Peer-to-peer, live unless ``live`` is False (the guest paused for the copy); a
    persistent definition moves with the guest.

    The suite runs guests as transient domains, so usually nothing is persistent. An
    operator's persistent definition is moved rather than left behind, where its autostart
    could start a second copy.

    >>> migration_flags(False), migration_flags(True), migration_flags(False, live=False)
    (3, 27, 2)
    """
    flags = MIGRATE_PEER2PEER | (MIGRATE_LIVE if live else 0)
    if persistent:
        flags |= MIGRATE_PERSIST_DEST | MIGRATE_UNDEFINE_SOURCE
    return flags


class Domain:
    """A domain on one host, reached through that host's :class:`Hypervisor`."""

    def __init__(self, hypervisor: Hypervisor, handle: Any) -> None:
        self.hypervisor = hypervisor
        self._handle = handle  # libvirt.virDomain: never leaves this module
        self.name = str(handle.name())  # local to the binding: no RPC

    def _call(self, operation: str, function: Callable[[], Any]) -> Any:
        return self.hypervisor.call(operation, function)

    # ---- state ------------------------------------------------------------------------------
    def status(self) -> DomainStatus | None:
        """State and reason; None once the domain has disappeared (transient, stopped)."""
        try:
            state, reason = self._call(f"read the state of {self.name}", self._handle.state)
        except HypervisorError as error:
            if error.kind is ErrorKind.NO_DOMAIN:
                return None
            raise
        return DomainStatus(int(state), int(reason))

    def active(self) -> bool:
        status = self.status()
        return status is not None and status.state != SHUTOFF

    def is_arriving(self) -> bool:
        """True for a shut-off domain that a job holds: an incoming migration or a restart.

        libvirt's libxl driver adds an arriving domain in the migration's Prepare phase as an
        inactive object (SHUTOFF) holding a job until Finish (src/libxl/libxl_migration.c,
        ``libxlDomainMigrationDstPrepare``); a transient domain is never shut off otherwise,
        since it disappears when it stops. Such a domain may still start running here.
        """
        status = self.status()
        if status is None or status.state != SHUTOFF:
            return False
        return not self.is_persistent() or self.job_active()

    def job_active(self) -> bool:
        """True while libvirt runs a job (a migration, a save) on the domain."""
        try:
            info = self._call(f"read the job of {self.name}", self._handle.jobInfo)
        except HypervisorError as error:
            if error.kind in (ErrorKind.NO_DOMAIN, ErrorKind.INVALID_STATE):
                return False  # gone, or inactive with no job to report
            raise
        return int(info[0]) != JOB_NONE

    def cpu_time_ns(self) -> int:
        """The CPU time the guest has used so far (all its vCPUs)."""
        info = self._call(f"read the CPU time of {self.name}", self._handle.info)
        return int(info[4])

    def id(self) -> int:
        """The hypervisor's ID of the running domain (0: Xen's Domain-0); local to the binding."""
        return int(self._handle.ID())

    def uuid(self) -> str:
        """The domain's UUID; local to the binding (the lookup returned it)."""
        return str(self._handle.UUIDString())

    def info(self) -> tuple[int, int]:
        """Maximum memory (KiB) and vCPUs."""
        info = self._call(f"read {self.name}", self._handle.info)
        return int(info[1]), int(info[3])

    def memory_kib(self) -> tuple[int, int]:
        """The memory the domain holds now (below its maximum when ballooned down) and the most
        it may hold, in KiB, from one call."""
        info = self._call(f"read the memory of {self.name}", self._handle.info)
        return int(info[2]), int(info[1])

    def os_type(self) -> str:
        return str(self._call(f"read the OS type of {self.name}", self._handle.OSType))

    def is_persistent(self) -> bool:
        return bool(self._call(f"ask whether {self.name} is persistent", self._handle.isPersistent))

    def owner(self) -> Owner | None:
        """What the suite's metadata records (owner resource, size at start), or None."""
        libvirt = libvirt_module()
        try:
            text: str = self._call(
                f"read the metadata of {self.name}",
                lambda: self._handle.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_URI, 0),
            )
        except HypervisorError as error:
            if error.kind in (ErrorKind.NO_METADATA, ErrorKind.NO_DOMAIN):
                return None
            if error.kind is ErrorKind.INVALID_STATE:
                # A transient domain that is shut off has no definition the metadata call may read
                # ("transient domains do not have any persistent config"): libxl's restart of a
                # rebooting guest, an arriving one. Its XML still carries the metadata.
                return self._owner_from_xml()
            raise
        return owner_metadata.decode(text)

    def _owner_from_xml(self) -> Owner | None:
        try:
            text = self._call(f"read the definition of {self.name}", lambda: self._handle.XMLDesc(0))
        except HypervisorError as error:
            if error.kind is ErrorKind.NO_DOMAIN:
                return None
            raise
        return owner_metadata.from_domain_xml(str(text))

    def record_owner(self, owner: Owner) -> None:
        """Write the suite's metadata into the running domain (adopting it; the live definition only)."""
        libvirt = libvirt_module()
        element = owner_metadata.element(owner)
        self._call(
            f"record the owner of {self.name}",
            lambda: self._handle.setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT, element, owner_metadata.METADATA_PREFIX, METADATA_URI,
                libvirt.VIR_DOMAIN_AFFECT_LIVE,
            ),
        )  # fmt: skip

    # ---- lifecycle --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Ask the guest to shut down (ACPI / PV shutdown); returns at once."""
        self._call(f"shut down {self.name}", self._handle.shutdown)

    def destroy(self) -> None:
        self._call(f"destroy {self.name}", self._handle.destroy)

    def destroy_if_active(self) -> None:
        """Destroy the domain; one that has already shut off or gone needs nothing, and is no error."""
        try:
            self.destroy()
        except HypervisorError as error:
            if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN):
                raise

    def resume(self) -> None:
        self._call(f"resume {self.name}", self._handle.resume)

    def suspend(self) -> None:
        """Pause the guest's CPUs (it keeps its memory; destroy or resume ends the pause)."""
        self._call(f"suspend {self.name}", self._handle.suspend)

    # ---- migration and save -----------------------------------------------------------------
    def limit_migration(self, speed_mib_s: int, downtime_ms: int, log: JobLog) -> None:
        """Cap the next migration's bandwidth and downtime (0: no cap), where the driver can."""
        driver = self.hypervisor.driver
        limits = (
            (f"limit the migration of {self.name} to {speed_mib_s} MiB/s", speed_mib_s,
             driver.can_limit_migration_speed, lambda: self._handle.migrateSetMaxSpeed(speed_mib_s, 0)),
            (f"limit the downtime of {self.name} to {downtime_ms} ms", downtime_ms,
             driver.can_limit_migration_downtime, lambda: self._handle.migrateSetMaxDowntime(downtime_ms, 0)),
        )  # fmt: skip
        for what, value, supported, call in limits:
            if value <= 0:
                continue
            if not supported:
                log.warning(f"cannot {what}: the {driver.name} driver has no such limit; migrating without it")
                continue
            try:
                self._call(what, call)
            except HypervisorError as error:
                if error.kind is ErrorKind.TIMEOUT:
                    raise
                log.warning(f"cannot {what} on this hypervisor ({error.detail}); migrating without it")

    def migrate(self, target: MigrationTarget, abort_at: Deadline, ended_by: Deadline, log: JobLog,
                on_progress: Callable[[], None], live: bool = True) -> None:  # fmt: skip
        """Migrate peer to peer to ``target`` (live, or paused for the copy); JobFailed when it
        fails or is aborted.

        ``abort_at``: when the job is aborted; ``ended_by``: how long an aborted job may take to
        end before it is reported as :class:`JobStillActive`.
        """
        libvirt = libvirt_module()
        params: dict[str, object] = {}
        if target.data:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = target.data
        flags = migration_flags(self.is_persistent(), live)
        self._job(
            f"migration of {self.name} to {target.node}",
            lambda: self._handle.migrateToURI3(target.remote, params, flags),
            (abort_at, ended_by),
            log,
            on_progress,
        )

    def save(self, path: str, abort_at: Deadline, ended_by: Deadline, log: JobLog) -> None:
        """Save the guest's memory to ``path`` (the domain goes away); JobFailed when it fails."""
        what = f"save of {self.name} to {path}"
        self._job(what, lambda: self._handle.save(path), (abort_at, ended_by), log, lambda: None)

    def abort_job(self, what: str) -> None:
        if not self.hypervisor.driver.can_abort_job:
            raise HypervisorError(
                ErrorKind.UNSUPPORTED,
                f"abort {what}",
                self.hypervisor.uri,
                self.hypervisor.node,
                f"the {self.hypervisor.driver.name} driver cannot abort a job",
            )
        self._call(f"abort {what}", self._handle.abortJob)

    def job_progress(self) -> JobProgress | None:
        """The running job's progress; None when it cannot be read now."""
        try:
            stats = self._call(f"read the job progress of {self.name}", lambda: self._handle.jobStats(0))
        except HypervisorError:
            return None
        return JobProgress.from_stats(stats, self.hypervisor.driver.reports_job_data)

    def _job(self, what: str, job: Callable[[], object], limits: tuple[Deadline, Deadline], log: JobLog,
             on_progress: Callable[[], None]) -> None:  # fmt: skip
        """Run a long libvirt job in a worker; poll it; abort it when ``limits[0]`` passes.

        The job has ended only when libvirt's call has returned: after an abort this waits for
        that until ``limits[1]`` and raises :class:`JobStillActive` if it has not.
        """
        libvirt = libvirt_module()
        abort_at, ended_by = limits
        outcome: list[BaseException | None] = []

        def worker() -> None:
            try:
                job()
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - handed to the waiting thread
                outcome.append(error)

        thread = threading.Thread(target=worker, name=what, daemon=True)
        thread.start()
        last_report = time.monotonic()
        aborted: bool | None = None  # None: no abort was tried
        while thread.is_alive():
            thread.join(max(0.0, min(JOB_POLL_INTERVAL_S, abort_at.remaining())))
            if not thread.is_alive():
                break
            if abort_at.expired():
                aborted = self._abort(what, log)
                thread.join(ended_by.remaining())
                if thread.is_alive():
                    how = "was aborted" if aborted else "could not be aborted"
                    raise JobStillActive(f"it did not finish in time, {how} and is still running on "
                                         f"{self.hypervisor.node}")  # fmt: skip
                break
            if time.monotonic() - last_report >= PROGRESS_INTERVAL_S:
                last_report = time.monotonic()
                on_progress()
        failure = outcome[0] if outcome else None
        if failure is None:
            if aborted is not None:
                log.warning(f"{what} finished after all, while its abort was awaited")
            return
        if aborted is not None:
            raise JobFailed("it did not finish in time and was aborted" if aborted else
                            "it did not finish in time, could not be aborted, and failed")  # fmt: skip
        if isinstance(failure, libvirt.libvirtError):
            raise JobFailed(classify(failure, what, self.hypervisor.uri, self.hypervisor.node, False).detail)
        raise failure

    def _abort(self, what: str, log: JobLog) -> bool:
        """Ask libvirt to abort the job; True if it accepted (the job may still take time to end)."""
        log.warning(f"{what} did not finish in time: aborting it")
        try:
            self.abort_job(what)
        except HypervisorError as error:
            log.error(f"could not abort {what}: {error.reason()}; waiting for it to end")
            return False
        return True


class FoundDomain(NamedTuple):
    domain: Domain
    status: DomainStatus
