"""xen-guest's migrate_to and migrate_from: book room on the target, move, verify.

migrate_to, on the source node:
1. choose the method from the guest type's policy (``pv_migration``, ``hvm_migration``) and
   what this host can live-migrate (:mod:`.migration_plan`); refuse at once a move the policy
   refuses, a live one this host cannot make, and a paused one that could not end inside the
   timeout at the rate measured (or assumed) to that target (Pacemaker then stops and starts
   the guest);
2. reserve room on the target (:func:`xenha.agents.guest.booking.book`): refused → the guest
   was not touched;
3. move it: peer to peer, live or paused for the copy (progress logged every few seconds; a
   paused move's pause is measured, logged and kept as the rate to that target), or saved to
   shared storage and restored on the target;
4. give up before the timeout: abort the job (where the driver can), keep the time needed
   to settle;
5. verify: success only with the guest running on the target and gone from the source.
   After a failure, settle in a fixed order (docs/decisions/time-budget-and-settling.md):
   the job has ended; the target holds no copy (an incomplete one is destroyed); only then
   is the source resumed or restored. A step that cannot be completed in time is reported,
   and nothing after it is done: Pacemaker's stop on both nodes settles it. While the target
   may hold a copy, a source that runs (libvirt may resume it by itself) is paused first, so
   that the guest cannot run on both.
The reservation is released in every case, in time kept for it alone.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Callable

from xenha.agents.guest.action import GuestAction
from xenha.agents.guest.booking import book
from xenha.agents.guest.migration_plan import (
    Method,
    MigrationSettings,
    PausedEstimate,
    Plan,
    abort_reserve_s,
    choose_method,
    paused_estimate,
    progress_line,
    release_reserve_s,
    timeout_needed_s,
)
from xenha.deadline import Deadline
from xenha.libvirt import states
from xenha.libvirt.connection import Hypervisor
from xenha.libvirt.domain import Domain, DomainStatus, FoundDomain, JobFailed, JobStillActive
from xenha.libvirt.domxml import DomainSpec, GuestType
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.libvirt.uri import MigrationTarget, mask, migration_target, parse
from xenha.ocf import OcfError, OcfExit
from xenha.statefile import StateFile

SAVE_SUFFIX = ".xenha-save"
POLL_INTERVAL_S = 0.25
RECONNECT_S = 0.5
# How long the target's check may wait for a libvirtd that refuses connections, when the
# action's time allows: an init restarting it (systemd's Restart=on-failure) and its start.
RESTART_GRACE_S = 10.0
SETTLE_S = 10.0
# How long a guest that libvirt reports running must be seen using no CPU time to be called
# frozen (drivers that do not report a frozen source: xenha.libvirt.drivers).
FROZEN_SAMPLES = 12


class TargetCopy(enum.Enum):
    NONE = "none"  # verified: no copy on the target
    RUNNING = "running"  # the guest runs there: it arrived


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
        timeout_s = action.ctx.timeout_s
        # Every settle step ends here: what follows is the release's alone.
        self.release_by = action.ctx.deadline.minus(release_reserve_s(timeout_s))
        self.abort_at = action.ctx.deadline.minus(abort_reserve_s(timeout_s))
        # A settle step's share: the reserve's time before the release, in three.
        self.step_s = (abort_reserve_s(timeout_s) - release_reserve_s(timeout_s)) / 3
        self.paused_before = False
        self.rates = StateFile(action.ctx.env.rsctmp, "xen-guest", "paused-migration-rates")

    def plan(self) -> Plan:
        """How the guest moves; a refusal (the policy's, or a move that cannot work) as OcfError."""
        name, there, kind = self.spec.name, self.target.node, self.spec.guest_type
        policy = self.settings.policy(kind)
        # What this host can live-migrate matters only where the policy asks for it.
        host = self.action.services.live_migration(self.source) if policy in ("auto", "live") else None
        plan = choose_method(kind, policy, host, self.here)
        if plan.method is Method.REFUSE:
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"{name} is not migrated to {there}: it is {'an' if kind is GuestType.HVM else 'a'} {kind.label} "
                f"guest and {plan.why}; Pacemaker recovers by stopping it here and starting it there",
            )
        if plan.method is Method.PAUSED:
            self._fits_in_time(self._estimate(), plan)
        return plan

    def _estimate(self) -> PausedEstimate:
        measured = self.rates.load().get(self.target.node)
        return paused_estimate(self.spec.memory_mib, measured if isinstance(measured, (int, float)) else None)

    def _fits_in_time(self, estimate: PausedEstimate, plan: Plan) -> None:
        """Refuse a paused move that cannot end before migrate_to must give up: a driver that
        cannot abort it (libxl) would finish it after Pacemaker was told it failed."""
        available = self.abort_at.remaining()
        if estimate.seconds <= available:
            return
        spent = self.action.ctx.timeout_s - self.action.ctx.deadline.remaining()
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"{self.spec.name} would be paused for {estimate.describe()} to move to {self.target.node} "
            f"({plan.why}), but migrate_to has {available:.0f} s left before it must give up: not migrated; "
            f"raise migrate_to's timeout to at least {timeout_needed_s(estimate.seconds, spent)} s, or "
            "Pacemaker recovers by stopping it here and starting it there",
        )

    def run(self) -> OcfExit:
        """Book, move, verify; the reservation is released in every case."""
        name, there = self.spec.name, self.target.node
        plan = self.plan()
        method = plan.method
        if method is not Method.LIVE:
            self.log.info(f"moving {name} to {there} {method.value}: {plan.why}")
        self.destination.connect_in_background()  # overlaps the checks on the source and the CIB read
        found = self.source.find(name)
        if found is None or found.status.state == states.SHUTOFF:
            raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} is not running on {self.here}: nothing to migrate")
        self.paused_before = found.status.state == states.PAUSED
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
        # An aborted job gets three quarters of the settle time to end (QEMU's abort takes a
        # second or two to land under load); the target's check and the source's resume, a few
        # quick calls once the job has ended, share the rest.
        job_end_by = self.release_by.minus((self.release_by.expires_at - self.abort_at.expires_at) / 4)
        started = time.monotonic()
        try:
            if method is Method.LIVE:
                self._live(domain, job_end_by)
            elif method is Method.PAUSED:
                self._paused(domain, job_end_by)
            else:
                self._save_restore(domain, job_end_by)
        except JobStillActive as still:
            raise self._unsettled(None, str(still), "neither copy was touched") from None
        except (JobFailed, HypervisorError) as failure:
            detail = failure.reason() if isinstance(failure, HypervisorError) else str(failure)
            if self._settle(detail, target_may_hold_copy=not isinstance(failure, SaveFailed)):
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

    def _live(self, domain: Domain, job_end_by: Deadline) -> None:
        domain.limit_migration(self.settings.speed_mib_s, self.settings.downtime_ms, self.log)
        data = self.target.data
        self.log.info(
            f"live-migrating {self.spec.name} to {self.target.node} via {mask(self.target.remote)}"
            + (f", data over {data}" if data else "")
        )

        domain.migrate(self.target, self.abort_at, job_end_by, self.log, self._reporter(domain))

    def _reporter(self, domain: Domain) -> Callable[[], None]:
        def report() -> None:
            progress = domain.job_progress()
            if progress is not None:
                self.log.info(progress_line(self.spec.name, self.target.node, progress))

        return report

    def _paused(self, domain: Domain, job_end_by: Deadline) -> None:
        """Peer to peer without LIVE: the guest stops for the whole copy, so the copy's time is
        its pause; measured, logged, and kept as the rate of the next estimate to this target."""
        estimate = self._estimate()
        self.log.info(
            f"migrating {self.spec.name} to {self.target.node} paused via {mask(self.target.remote)}: "
            f"the guest stops for {estimate.describe()}"
        )

        started = time.monotonic()
        domain.migrate(self.target, self.abort_at, job_end_by, self.log, self._reporter(domain), live=False)
        paused_s = max(time.monotonic() - started, 0.001)
        rate = round(self.spec.memory_mib / paused_s, 1)  # as logged, and as the next estimate shows it
        self.log.info(
            f"{self.spec.name} was paused for {paused_s:.1f} s to move to {self.target.node} "
            f"({self.spec.memory_mib} MiB at {rate:.1f} MiB/s; estimated {estimate.seconds:.1f} s)"
        )
        self.rates.update(**{self.target.node: rate})

    def _save_restore(self, domain: Domain, job_end_by: Deadline) -> None:
        name, there = self.spec.name, self.target.node
        assert self.settings.save_dir is not None  # validation requires it for save-restore
        path = os.path.join(self.settings.save_dir, name + SAVE_SUFFIX)
        self.log.info(f"saving {name} to {path} to restore it on {there}")
        try:
            domain.save(path, self.abort_at, job_end_by, self.log)
        except JobStillActive:
            raise
        except JobFailed as failure:
            raise SaveFailed(str(failure)) from None
        try:
            self.destination.restore(path, name)
        except HypervisorError as error:
            self.log.error(f"restoring {name} on {there} failed ({error.reason()}): checking {there} for a copy")
            try:
                copy = self._clear_target()
            except TargetUnsettled as unsettled:
                # Nothing runs here: the saved state is only restored once the target is verified.
                kept = f"{name} stays saved in {path}, not restored on {self.here}"
                raise self._unsettled(error.detail, str(unsettled), kept) from None
            if copy is TargetCopy.RUNNING:
                self.log.warning(f"{name} arrived on {there} although the restore reported: {error.detail}")
                self._remove(path)
                return
            self._restore_here(path)
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"migration of {name} to {there} failed, it runs on {self.here} only: restore on {there} failed: "
                f"{error.detail}",
            ) from None
        self._remove(path)

    def _restore_here(self, path: str) -> None:
        """Restore the saved guest on this node, once the target is verified to hold no copy."""
        name, there = self.spec.name, self.target.node
        self.log.warning(f"{there} holds no copy of {name}: restoring it on {self.here}")
        try:
            self.source.reopened(self.release_by).restore(path, name)
        except HypervisorError as again:
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"{name} was saved to {path} but could be restored neither on {there} nor on {self.here} "
                f"({again.detail}); restore it by hand with: virsh restore {path}",
            ) from None
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

    # ---- after a failure: the job has ended, the target holds no copy, then the source --------
    def _settle(self, detail: str, target_may_hold_copy: bool) -> bool:
        """After a failed job: leave the guest running on the source only. True if it had in fact moved."""
        name, there = self.spec.name, self.target.node
        source = self.source.reopened(self._step(steps_after=2))  # fresh: the old one may be stuck
        status = self._job_ended(source, detail)
        if target_may_hold_copy:
            try:
                copy = self._clear_target()
            except TargetUnsettled as unsettled:
                raise self._unsettled(detail, str(unsettled), self._paused_here()) from None
            if copy is TargetCopy.RUNNING:
                if status is None or status.state == states.SHUTOFF:
                    return True
                raise OcfError(
                    OcfExit.ERR_GENERIC,
                    f"migration of {name} to {there} failed ({detail}) and could not be settled: {name} runs on "
                    f"{there}, and {self._paused_here()}; Pacemaker will stop {name} on both nodes",
                )
        self._source_runs(source.reopened(self.release_by), detail)
        return False

    def _job_ended(self, source: Hypervisor, detail: str) -> DomainStatus | None:
        """Wait (within the source's deadline) until no job runs on the guest; its state then."""
        name = self.spec.name
        try:
            domain = source.lookup(name)
            while domain is not None and domain.job_active():
                if source.deadline.remaining() < POLL_INTERVAL_S:
                    raise self._unsettled(detail, f"its job on {self.here} is still active", "neither copy was touched")
                self.action.services.sleep(POLL_INTERVAL_S)
            return domain.status() if domain is not None else None
        except HypervisorError as error:
            raise self._unsettled(detail, error.reason(), "neither copy was touched") from None

    def _clear_target(self) -> TargetCopy:
        """Make sure the target holds no copy of the guest (an incomplete one is destroyed).

        Verified only by libvirt's answer on a fresh connection; when that cannot be had in
        time, :class:`TargetUnsettled` says what is known of the target.
        """
        name, there = self.spec.name, self.target.node
        target = self.destination.reopened(self._step(steps_after=1, up_to_s=RESTART_GRACE_S))
        destroyed = False
        try:
            while True:
                found = self._look_up(target)
                if found is None:
                    return TargetCopy.NONE
                domain, status = found
                if states.running(status.state, status.reason):
                    self.destination = target  # the one that answers
                    return TargetCopy.RUNNING
                if status.state == states.SHUTOFF and not domain.is_arriving():
                    return TargetCopy.NONE  # a defined, inactive domain is no copy
                if status.state != states.SHUTOFF and not destroyed:
                    self.log.warning(
                        f"destroying the incomplete copy of {name} on {there} "
                        f"({states.describe(status.state, status.reason)})"
                    )
                    domain.destroy_if_active()
                    destroyed = True
                if target.deadline.remaining() < POLL_INTERVAL_S:
                    seen = states.describe(status.state, status.reason)
                    raise TargetUnsettled(f"a copy of {name} is still on {there} ({seen})")
                self.action.services.sleep(POLL_INTERVAL_S)
        except HypervisorError as error:
            raise TargetUnsettled(f"whether {there} holds a copy could not be verified ({error.reason()})") from None

    def _unsettled(self, detail: str | None, unsettled: str, held_here: str) -> OcfError:
        """Pacemaker's cue to stop the guest on both nodes: what could not be settled, what this node holds.

        ``detail`` is the failure the settling followed; None when the job itself is what
        could not be settled (it outlived its abort).
        """
        name = self.spec.name
        failed = f" failed ({detail}) and" if detail is not None else ""
        return OcfError(
            OcfExit.ERR_GENERIC,
            f"migration of {name} to {self.target.node}{failed} could not be settled: {unsettled}; "
            f"{held_here}: Pacemaker will stop {name} on both nodes",
        )

    def _paused_here(self) -> str:
        """While the target may run the guest, a copy that runs here is paused; what this node holds then.

        libvirt can resume the source by itself once its keepalive gives up on a silent target
        (reason "migration canceled"), and that target, once it answers again, finishes the
        incoming copy: pausing ours keeps the guest from running on both until Pacemaker's stops
        (docs/decisions/time-budget-and-settling.md). It runs in the source step's share.
        """
        name, here = self.spec.name, self.here
        try:
            found = self.source.reopened(self.release_by).find(name)
            if found is None or found.status.state == states.SHUTOFF:
                return f"{name} is gone from {here}"
            domain, status = found
            if status.state != states.PAUSED:  # running, or in a state that may run again
                self.log.warning(
                    f"{name} is {states.describe(status.state, status.reason)} on {here} while {self.target.node} "
                    "may hold a running copy: pausing it so that it cannot run twice"
                )
                domain.suspend()
                paused = domain.status()
                if paused is None or paused.state == states.SHUTOFF:
                    return f"{name} is gone from {here}"
                if paused.state != states.PAUSED:
                    seen = states.describe(paused.state, paused.reason)
                    return f"{name} is {seen} on {here} after it was paused: it may run on both nodes"
                return f"{name} is paused on {here} so that it cannot run twice"
            return f"{name} is left {states.describe(status.state, status.reason)} on {here}, not resumed"
        except HypervisorError as error:
            return f"{name} could not be paused on {here} ({error.reason()}): it may run on both nodes"

    def _look_up(self, target: Hypervisor) -> FoundDomain | None:
        """The guest on the target; a libvirtd that is not listening is asked again until the
        step's deadline (its init may be restarting it: failing now would get the node fenced)."""
        while True:
            try:
                return target.find(self.spec.name)
            except HypervisorError as error:
                if error.kind is not ErrorKind.UNREACHABLE or target.deadline.remaining() < RECONNECT_S:
                    raise
                self.log.warning(f"{error.reason()}: asking again for {target.deadline.remaining():.0f} s")
                self.action.services.sleep(RECONNECT_S)

    def _step(self, steps_after: int, up_to_s: float = 0.0) -> Deadline:
        """The deadline of a settle step: its share from now, leaving theirs to the ``steps_after``
        that follow; up to ``up_to_s`` when the time left covers that and their shares."""
        left = self.release_by.remaining()
        share = max(min(self.step_s, left / (steps_after + 1)), min(up_to_s, left - steps_after * self.step_s))
        return self.release_by.within(share)

    def _source_runs(self, source: Hypervisor, detail: str) -> None:
        """The target holds no copy: make sure the guest runs here (resumed if the move paused it)."""
        name, there = self.spec.name, self.target.node
        try:
            found = source.find(name)
            if found is None or found.status.state == states.SHUTOFF:
                raise OcfError(
                    OcfExit.ERR_GENERIC,
                    f"{name} runs neither on {self.here} nor on {there} after a failed migration ({detail}); "
                    "Pacemaker will start it",
                )
            domain, status = found
            if status.state == states.PAUSED and not self.paused_before:
                # Whatever the reason the driver gives (QEMU: migration; libxl: others), the
                # move paused it and no copy exists elsewhere: it is ours to resume.
                self.log.warning(
                    f"{name} was left {states.describe(status.state, status.reason)} on {self.here} by the failed "
                    "migration: resuming it"
                )
                domain.resume()
                resumed = domain.status()
                if resumed is None or not states.running(resumed.state, resumed.reason):
                    seen = "gone" if resumed is None else states.describe(resumed.state, resumed.reason)
                    raise OcfError(
                        OcfExit.ERR_GENERIC,
                        f"migration of {name} to {there} failed ({detail}); {there} holds no copy, and {name} is "
                        f"{seen} on {self.here} after it was resumed; Pacemaker will recover it",
                    )
            elif not source.driver.reports_frozen_source:
                self._not_frozen(domain, detail)
        except HypervisorError as error:
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"migration of {name} to {there} failed ({detail}); {there} holds no copy, but {name} could not be "
                f"checked on {self.here}: {error.reason()}",
            ) from None

    def _not_frozen(self, domain: Domain, detail: str) -> None:
        """Fail when the guest, which libvirt reports running, uses no CPU time: frozen by the move."""
        first = domain.cpu_time_ns()
        samples = 0
        while samples < FROZEN_SAMPLES and domain.hypervisor.deadline.remaining() > 2 * POLL_INTERVAL_S:
            self.action.services.sleep(POLL_INTERVAL_S)
            samples += 1
            if domain.cpu_time_ns() != first:
                return
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"migration of {self.spec.name} to {self.target.node} failed ({detail}) and left it frozen on "
            f"{self.here}: libvirt reports it running, but it used no CPU time in {samples * POLL_INTERVAL_S:.1f} s "
            f"(the {domain.hypervisor.driver.name} driver does not resume a guest after a failure past its final "
            "suspend); Pacemaker will stop and start it",
        )


class TargetUnsettled(Exception):
    """Whether the target holds a copy could not be settled in time: what is known of it."""


class SaveFailed(JobFailed):
    """The save failed: the guest never left the source, the target cannot hold a copy."""


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
