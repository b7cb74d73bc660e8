"""xen-guest's migrate_to and migrate_from: book room on the target, move, verify.

migrate_to, on the source node:
1. refuse at once an HVM guest under ``hvm_migration=refuse`` (Pacemaker then stops and
   starts it);
2. reserve room on the target (:func:`xenha.agents.guest.booking.book`): refused → the guest
   was not touched;
3. move it: live, peer to peer (progress logged every few seconds), or saved to shared
   storage and restored on the target;
4. give up before the timeout: abort the job (where the driver can), keep the time needed
   to settle;
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

from xenha.agents.guest.action import GuestAction
from xenha.agents.guest.booking import book
from xenha.agents.guest.migration_plan import Method, MigrationSettings, abort_reserve_s, choose_method, progress_line
from xenha.deadline import Deadline
from xenha.libvirt import states
from xenha.libvirt.connection import Hypervisor
from xenha.libvirt.domain import Domain, JobFailed
from xenha.libvirt.domxml import DomainSpec
from xenha.libvirt.errors import HypervisorError
from xenha.libvirt.uri import MigrationTarget, mask, migration_target, parse
from xenha.ocf import OcfError, OcfExit

SAVE_SUFFIX = ".xenha-save"
POLL_INTERVAL_S = 0.25
SETTLE_S = 10.0


class Migration:
    """One migrate_to of the guest from this node (``source``) to ``target``: what every step needs."""

    def __init__(self, action: GuestAction, spec: DomainSpec, settings: MigrationSettings, source: Hypervisor,
                 target: MigrationTarget) -> None:  # fmt: skip
        self.action = action
        self.log = action.ctx.log
        self.spec = spec
        self.settings = settings
        self.source = source
        self.target = target
        self.here = action.here
        self.destination = action.services.hypervisor(target.remote, target.node)

    def run(self) -> OcfExit:
        """Book, move, verify; the reservation is released in every case."""
        name, there = self.spec.name, self.target.node
        method = choose_method(self.spec.guest_type, self.settings.hvm_policy)
        if method is Method.REFUSE:
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"{name} is an HVM guest and hvm_migration=refuse: it is not migrated to {there}; "
                "Pacemaker recovers by stopping it here and starting it there",
            )
        self.destination.connect_in_background()  # overlaps the checks on the source and the CIB read
        found = self.source.find(name)
        if found is None or found.status.state == states.SHUTOFF:
            raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} is not running on {self.here}: nothing to migrate")
        try:
            release_booking = book(self.action, self.spec, f"migrate {name} to {there}", self.destination)
        except OcfError:
            self.log.info(f"{name} stays on {self.here}")
            raise
        except HypervisorError as error:
            raise OcfError(
                OcfExit.ERR_GENERIC, f"cannot check the room on {there}: {error.reason()}; {name} stays on {self.here}"
            ) from None
        release = threading.Thread(target=release_booking, name="release the reservation")
        try:
            # Once the guest has moved, the reservation is released while the move is verified.
            return self._move(method, found.domain, release.start)
        finally:
            if release.ident is not None:
                release.join(max(1.0, self.action.ctx.deadline.remaining()))
            else:
                release_booking()

    def _move(self, method: Method, domain: Domain, moved: Callable[[], None]) -> OcfExit:
        ctx = self.action.ctx
        abort_at = ctx.deadline.minus(abort_reserve_s(ctx.timeout_s))
        started = time.monotonic()
        try:
            if method is Method.LIVE:
                self._live(domain, abort_at)
            else:
                self._save_restore(domain, abort_at)
        except (JobFailed, HypervisorError) as failure:
            detail = failure.reason() if isinstance(failure, HypervisorError) else str(failure)
            if self._settle_after_failure():
                self.log.warning(f"{self.spec.name} arrived on {self.target.node} although the job reported: {detail}")
                return OcfExit.SUCCESS
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"migration of {self.spec.name} to {self.target.node} failed, it runs on {self.here} only: {detail}",
            ) from None
        moved()
        self._verify_moved()
        self.log.info(
            f"{self.spec.name} migrated to {self.target.node} ({method.value}) in {time.monotonic() - started:.2f} s"
        )
        return OcfExit.SUCCESS

    def _live(self, domain: Domain, abort_at: Deadline) -> None:
        domain.limit_migration(self.settings.speed_mib_s, self.settings.downtime_ms, self.log)
        data = self.target.data
        self.log.info(
            f"live-migrating {self.spec.name} to {self.target.node} via {mask(self.target.remote)}"
            + (f", data over {data}" if data else "")
        )

        def report() -> None:
            progress = domain.job_progress()
            if progress is not None:
                self.log.info(progress_line(self.spec.name, self.target.node, progress))

        domain.migrate(self.target, abort_at, self.log, report)

    def _save_restore(self, domain: Domain, abort_at: Deadline) -> None:
        name, there = self.spec.name, self.target.node
        assert self.settings.save_dir is not None  # validation requires it for save-restore
        path = os.path.join(self.settings.save_dir, name + SAVE_SUFFIX)
        self.log.info(f"saving {name} to {path} to restore it on {there}")
        domain.save(path, abort_at, self.log)
        try:
            self.destination.restore(path, name)
        except HypervisorError as error:
            self.log.error(f"restoring {name} on {there} failed ({error.reason()}): restoring it on {self.here}")
            try:
                self.source.restore(path, name)
            except HypervisorError as again:
                raise OcfError(
                    OcfExit.ERR_GENERIC,
                    f"{name} was saved to {path} but could be restored neither on {there} nor on {self.here} "
                    f"({again.detail}); restore it by hand with: virsh restore {path}",
                ) from None
            self._remove(path)
            raise JobFailed(f"restore on {there} failed: {error.detail}") from None
        self._remove(path)

    def _remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except OSError as error:
            self.log.warning(f"could not remove the saved state {path}: {error.strerror}")

    def _verify_moved(self) -> None:
        settle = self.action.ctx.deadline.within(SETTLE_S)
        arrived = _running(self.destination, self.spec.name)
        while arrived is False and not settle.expired():
            self.action.services.sleep(POLL_INTERVAL_S)
            arrived = _running(self.destination, self.spec.name)
        left = self.source.find(self.spec.name)
        still_here = left is not None and left.status.state != states.SHUTOFF
        if arrived and not still_here:
            return
        where = "running" if arrived else "not running" if arrived is False else "unverifiable"
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"libvirt reported the migration of {self.spec.name} done, but it is {where} on {self.target.node} and "
            f"{'still present' if still_here else 'gone'} on {self.here}",
        )

    def _settle_after_failure(self) -> bool:
        """After a failed job: leave the guest running on the source only. True if it had in fact moved."""
        name, there = self.spec.name, self.target.node
        found = self.source.reopened().find(name)  # a fresh connection: the old one may be stuck
        if found is None or found.status.state == states.SHUTOFF:
            if _running(self.destination, name):
                return True
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"{name} runs neither on {self.here} nor on {there} after a failed migration; Pacemaker will start it",
            )
        current, status = found
        if status.state == states.PAUSED and status.reason in (states.PAUSED_MIGRATION, states.PAUSED_POSTCOPY):
            self.log.warning(f"{name} was left paused on {self.here} by the failed migration: resuming it")
            current.resume()
        try:
            stale = self.destination.lookup(name)
            if stale is not None:
                self.log.warning(f"destroying the incomplete copy of {name} on {there}")
                stale.destroy()
        except HypervisorError as error:
            self.log.warning(f"could not check {there} for an incomplete copy of {name}: {error.reason()}")
        return False


def _running(hypervisor: Hypervisor, name: str) -> bool | None:
    """True when ``name`` runs there, False when it does not, None when that cannot be known."""
    try:
        found = hypervisor.find(name)
    except HypervisorError:
        return None
    return found is not None and states.running(found.status.state, found.status.reason)


def migrate_to(action: GuestAction) -> OcfExit:
    ctx = action.ctx
    target = ctx.env.migrate_target
    if not target:
        raise OcfError(
            OcfExit.ERR_GENERIC,
            "migrate_to needs the target node in OCF_RESKEY_CRM_meta_migrate_target (Pacemaker sets it "
            "for resources with allow-migrate=true)",
        )
    spec = action.require_spec()
    settings = MigrationSettings.from_params(ctx.params)
    source = action.hypervisor()
    uris = migration_target(
        parse(source.uri), settings.remote_template, settings.data_template, target, settings.network_suffix
    )
    return Migration(action, spec, settings, source, uris).run()


def migrate_from(action: GuestAction) -> OcfExit:
    """On the target: the guest must be running here; wait for it inside the timeout."""
    ctx = action.ctx
    here = action.here
    _config, spec = action.require_config()
    if not ctx.env.migrate_source:
        raise OcfError(
            OcfExit.ERR_GENERIC,
            "migrate_from needs the source node in OCF_RESKEY_CRM_meta_migrate_source (Pacemaker sets it "
            "for resources with allow-migrate=true)",
        )
    local = action.hypervisor()
    while True:
        found = local.find(spec.name)
        status = found.status if found is not None else None
        if status is not None and status.state in (states.RUNNING, states.BLOCKED):
            ctx.log.info(f"{spec.name} arrived from {ctx.env.migrate_source} and runs on {here}")
            return OcfExit.SUCCESS
        if ctx.deadline.remaining() < POLL_INTERVAL_S:
            seen = "is not here" if status is None else f"is {states.describe(status.state, status.reason)}"
            raise OcfError(OcfExit.ERR_GENERIC, f"{spec.name} did not arrive on {here}: it {seen}")
        action.services.sleep(POLL_INTERVAL_S)
