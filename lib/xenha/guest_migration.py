"""xen-guest's migrate_to and migrate_from: book room on the target, move, verify.

migrate_to, on the source node:
1. refuse at once an HVM guest under ``hvm_migration=refuse`` (Pacemaker then stops and
   starts it);
2. reserve room on the target (:func:`xenha.reservation.admit`): refused → the guest was
   not touched;
3. move it: live, peer to peer (progress logged every few seconds), or saved to shared
   storage and restored on the target;
4. give up before the timeout: abort the job, keep the time needed to settle;
5. verify: success only with the guest running on the target and gone from the source;
   after a failure, the guest runs on the source (resumed if needed) and any incomplete
   copy on the target is destroyed.
The reservation is released in every case.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from xenha import domstate
from xenha.deadline import Deadline
from xenha.domxml import DomainSpec
from xenha.hypervisor import ErrorKind, Hypervisor, HypervisorError, classify, libvirt_module
from xenha.libvirt_uri import mask, parse
from xenha.migration import (
    POLL_INTERVAL_S,
    PROGRESS_LOG_INTERVAL_S,
    JobProgress,
    Method,
    MigrationUris,
    abort_reserve_s,
    choose_method,
    migration_flags,
    migration_uris,
    progress_line,
)
from xenha.ocf import Context, OcfError, OcfExit

SAVE_SUFFIX = ".xenha-save"

# ``book(action, node, hypervisor)`` checks that ``node`` (reached through ``hypervisor``)
# has room for the guest and reserves it, or raises OcfError; it returns the release of the
# reservation, which never raises (xenha.guest.GuestAgent._book).
Book = Callable[[str, str, Hypervisor], Callable[[], None]]


class MigrationSettings(NamedTuple):
    remote_template: str | None
    data_template: str | None
    network_suffix: str
    speed_mib_s: int
    downtime_ms: int
    hvm_policy: str
    save_dir: str | None


class JobFailed(Exception):
    """The hypervisor job (migration, save) failed or was aborted; the text says how."""


def run_job(
    ctx: Context,
    hypervisor: Hypervisor,
    domain: Any,
    what: str,
    job: Callable[[], object],
    abort_at: Deadline,
    on_progress: Callable[[], None],
) -> None:
    """Run a long libvirt job in a worker; poll it; abort it when ``abort_at`` passes."""
    libvirt = libvirt_module()
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
    while thread.is_alive():
        thread.join(max(0.0, min(POLL_INTERVAL_S, abort_at.remaining())))
        if not thread.is_alive():
            break
        if abort_at.expired():
            ctx.log.warning(f"{what} did not finish in time: aborting it")
            try:
                hypervisor.call(f"abort {what}", domain.abortJob)
            except HypervisorError as error:
                ctx.log.error(f"could not abort {what}: {error.reason()}")
            thread.join(max(0.0, ctx.deadline.remaining() / 2))
            raise JobFailed("it did not finish in time and was aborted")
        if time.monotonic() - last_report >= PROGRESS_LOG_INTERVAL_S:
            last_report = time.monotonic()
            on_progress()
    failure = outcome[0] if outcome else None
    if failure is None:
        return
    if isinstance(failure, libvirt.libvirtError):
        raise JobFailed(classify(failure, what, hypervisor.uri, hypervisor.node, connecting=False).detail)
    raise failure


def migrate_to(
    ctx: Context,
    spec: DomainSpec,
    settings: MigrationSettings,
    source: Hypervisor,
    book: Book,
) -> OcfExit:
    """``book`` reserves the guest's room on the target (see :data:`Book`)."""
    here = ctx.env.node_name
    target = ctx.env.migrate_target
    if not target:
        raise OcfError(
            OcfExit.ERR_GENERIC,
            "migrate_to needs the target node in OCF_RESKEY_CRM_meta_migrate_target (Pacemaker sets it "
            "for resources with allow-migrate=true)",
        )
    method = choose_method(spec.guest_type, settings.hvm_policy)
    if method is Method.REFUSE:
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"{spec.name} is an HVM guest and hvm_migration=refuse: it is not migrated to {target}; "
            "Pacemaker recovers by stopping it here and starting it there",
        )
    uris = migration_uris(
        parse(source.uri), settings.remote_template, settings.data_template, target, settings.network_suffix
    )
    destination = Hypervisor(uris.remote, ctx.deadline, target)
    destination.connect_in_background()  # overlaps the checks on the source and the CIB read
    found = source.find(spec.name)
    if found is None or found.status.state == domstate.SHUTOFF:
        raise OcfError(OcfExit.ERR_GENERIC, f"guest {spec.name} is not running on {here}: nothing to migrate")
    domain = found.domain
    try:
        release_booking = book(f"migrate {spec.name} to {target}", target, destination)
    except OcfError:
        ctx.log.info(f"{spec.name} stays on {here}")
        raise
    except HypervisorError as error:
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"cannot check the room on {target}: {error.reason()}; {spec.name} stays on {here}",
        ) from None
    release = threading.Thread(target=release_booking, name="release the reservation")
    try:
        # Once the guest has moved, the reservation is released while the move is verified.
        return _move(ctx, spec, settings, method, source, destination, domain, uris, here, target, release.start)
    finally:
        if release.is_alive() or release.ident is not None:
            release.join(max(1.0, ctx.deadline.remaining()))
        else:
            release_booking()


def _move(
    ctx: Context,
    spec: DomainSpec,
    settings: MigrationSettings,
    method: Method,
    source: Hypervisor,
    destination: Hypervisor,
    domain: Any,
    uris: MigrationUris,
    here: str,
    target: str,
    moved: Callable[[], None],
) -> OcfExit:
    abort_at = ctx.deadline.minus(abort_reserve_s(ctx.timeout_s))
    started = time.monotonic()
    try:
        if method is Method.LIVE:
            _live(ctx, spec, settings, source, domain, uris, abort_at, target)
        else:
            _save_restore(ctx, spec, settings, source, destination, domain, abort_at, here, target)
    except (JobFailed, HypervisorError) as failure:
        detail = failure.reason() if isinstance(failure, HypervisorError) else str(failure)
        if _settle_after_failure(ctx, spec, source, destination, here, target):
            ctx.log.warning(f"{spec.name} arrived on {target} although the job reported: {detail}")
            return OcfExit.SUCCESS
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"migration of {spec.name} to {target} failed, it runs on {here} only: {detail}",
        ) from None
    moved()
    _verify_moved(ctx, spec, source, destination, here, target)
    ctx.log.info(f"{spec.name} migrated to {target} ({method.value}) in {time.monotonic() - started:.2f} s")
    return OcfExit.SUCCESS


def _live(
    ctx: Context,
    spec: DomainSpec,
    settings: MigrationSettings,
    source: Hypervisor,
    domain: Any,
    uris: MigrationUris,
    abort_at: Deadline,
    target: str,
) -> None:
    libvirt = libvirt_module()
    _optional_tuning(
        ctx,
        source,
        f"limit the migration of {spec.name} to {settings.speed_mib_s} MiB/s",
        settings.speed_mib_s,
        lambda: domain.migrateSetMaxSpeed(settings.speed_mib_s, 0),
    )
    _optional_tuning(
        ctx,
        source,
        f"limit the downtime of {spec.name} to {settings.downtime_ms} ms",
        settings.downtime_ms,
        lambda: domain.migrateSetMaxDowntime(settings.downtime_ms, 0),
    )
    persistent = bool(source.call(f"ask whether {spec.name} is persistent", domain.isPersistent))
    params: dict[str, object] = {}
    if uris.data:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = uris.data
    flags = migration_flags(persistent)
    ctx.log.info(
        f"live-migrating {spec.name} to {target} via {mask(uris.remote)}"
        + (f", data over {uris.data}" if uris.data else "")
    )

    def report() -> None:
        try:
            stats = source.call(f"read the migration progress of {spec.name}", lambda: domain.jobStats(0))
        except HypervisorError:
            return
        ctx.log.info(progress_line(spec.name, target, JobProgress.from_stats(stats)))

    run_job(
        ctx,
        source,
        domain,
        f"migration of {spec.name} to {target}",
        lambda: domain.migrateToURI3(uris.remote, params, flags),
        abort_at,
        report,
    )


def _optional_tuning(ctx: Context, source: Hypervisor, what: str, value: int, call: Callable[[], object]) -> None:
    if value <= 0:
        return
    try:
        source.call(what, call)
    except HypervisorError as error:
        if error.kind is ErrorKind.TIMEOUT:
            raise
        ctx.log.warning(f"cannot {what} on this hypervisor ({error.detail}); migrating without it")


def _save_restore(
    ctx: Context,
    spec: DomainSpec,
    settings: MigrationSettings,
    source: Hypervisor,
    destination: Hypervisor,
    domain: Any,
    abort_at: Deadline,
    here: str,
    target: str,
) -> None:
    assert settings.save_dir is not None  # validation requires it for save-restore
    path = os.path.join(settings.save_dir, spec.name + SAVE_SUFFIX)
    ctx.log.info(f"saving {spec.name} to {path} to restore it on {target}")
    run_job(
        ctx,
        source,
        domain,
        f"save of {spec.name} to {path}",
        lambda: domain.save(path),
        abort_at,
        lambda: None,
    )
    try:
        connection = destination.connection()
        destination.call(f"restore {spec.name} on {target} from {path}", lambda: connection.restore(path))
    except HypervisorError as error:
        ctx.log.error(f"restoring {spec.name} on {target} failed ({error.reason()}): restoring it on {here}")
        local = source.connection()
        try:
            source.call(f"restore {spec.name} on {here} from {path}", lambda: local.restore(path))
        except HypervisorError as again:
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"{spec.name} was saved to {path} but could be restored neither on {target} nor on {here} "
                f"({again.detail}); restore it by hand with: virsh restore {path}",
            ) from None
        _remove(ctx, path)
        raise JobFailed(f"restore on {target} failed: {error.detail}") from None
    _remove(ctx, path)


def _remove(ctx: Context, path: str) -> None:
    try:
        os.unlink(path)
    except OSError as error:
        ctx.log.warning(f"could not remove the saved state {path}: {error.strerror}")


def _running(hypervisor: Hypervisor, name: str) -> bool | None:
    """True when ``name`` runs there, False when it does not, None when that cannot be known."""
    try:
        found = hypervisor.find(name)
    except HypervisorError:
        return None
    return found is not None and domstate.running(found.status.state, found.status.reason)


def _verify_moved(
    ctx: Context, spec: DomainSpec, source: Hypervisor, destination: Hypervisor, here: str, target: str
) -> None:
    settle = ctx.deadline.within(10.0)
    arrived = _running(destination, spec.name)
    while arrived is False and not settle.expired():
        time.sleep(POLL_INTERVAL_S)
        arrived = _running(destination, spec.name)
    left = source.find(spec.name)
    still_here = left is not None and left.status.state != domstate.SHUTOFF
    if arrived and not still_here:
        return
    raise OcfError(
        OcfExit.ERR_GENERIC,
        f"libvirt reported the migration of {spec.name} done, but it is "
        f"{'running' if arrived else 'not running' if arrived is False else 'unverifiable'} on {target} and "
        f"{'still present' if still_here else 'gone'} on {here}",
    )


def _settle_after_failure(
    ctx: Context,
    spec: DomainSpec,
    source: Hypervisor,
    destination: Hypervisor,
    here: str,
    target: str,
) -> bool:
    """After a failed job: leave the guest running on the source only. True if it had in fact moved."""
    recovery = Hypervisor(source.uri, ctx.deadline, source.node)  # a fresh connection: the old one may be stuck
    found = recovery.find(spec.name)
    if found is None or found.status.state == domstate.SHUTOFF:
        if _running(destination, spec.name):
            return True
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"{spec.name} runs neither on {here} nor on {target} after a failed migration; Pacemaker will start it",
        )
    current, status = found
    if status.state == domstate.PAUSED and status.reason in (
        domstate.PAUSED_MIGRATION,
        domstate.PAUSED_POSTCOPY,
    ):
        ctx.log.warning(f"{spec.name} was left paused on {here} by the failed migration: resuming it")
        recovery.call(f"resume {spec.name}", current.resume)
    try:
        stale = destination.lookup(spec.name)
        if stale is not None:
            ctx.log.warning(f"destroying the incomplete copy of {spec.name} on {target}")
            destination.destroy(stale)
    except HypervisorError as error:
        ctx.log.warning(f"could not check {target} for an incomplete copy of {spec.name}: {error.reason()}")
    return False


def migrate_from(ctx: Context, spec: DomainSpec, local: Hypervisor) -> OcfExit:
    """On the target: the guest must be running here; wait for it inside the timeout."""
    here = ctx.env.node_name
    if not ctx.env.migrate_source:
        raise OcfError(
            OcfExit.ERR_GENERIC,
            "migrate_from needs the source node in OCF_RESKEY_CRM_meta_migrate_source (Pacemaker sets it "
            "for resources with allow-migrate=true)",
        )
    while True:
        found = local.find(spec.name)
        status = found.status if found is not None else None
        if status is not None and status.state in (domstate.RUNNING, domstate.BLOCKED):
            ctx.log.info(f"{spec.name} arrived from {ctx.env.migrate_source} and runs on {here}")
            return OcfExit.SUCCESS
        if ctx.deadline.remaining() < POLL_INTERVAL_S:
            seen = "is not here" if status is None else f"is {domstate.describe(status.state, status.reason)}"
            raise OcfError(OcfExit.ERR_GENERIC, f"{spec.name} did not arrive on {here}: it {seen}")
        time.sleep(POLL_INTERVAL_S)
