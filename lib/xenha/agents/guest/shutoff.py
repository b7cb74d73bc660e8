"""A shut-off domain that is not stopped: a restart under way, or a dead domain Xen still holds.

libvirt's libxl driver handles a guest's own reboot in a thread that holds a job on the domain
(``libxlDomainShutdownThread``, src/libxl/libxl_domain.c): it marks the domain SHUTOFF (reason
"shutdown"), destroys it, cleans it up (its ID becomes -1) and creates it again under a new ID
(``libxlDomainShutdownHandleRestart``). For ~15 s under emulation the guest reads "shut off"
while it is being brought back here. With ``on_poweroff``/``on_crash=preserve`` the same thread
marks the domain SHUTOFF and stops: the dead domain keeps its ID and its memory in Xen until it
is destroyed. Neither is "not running" (7): Pacemaker would start the guest elsewhere while it
comes back here, or leave its memory held. docs/decisions/monitor-states.md has the table.
"""

from __future__ import annotations

import enum

from xenha.agents.guest.action import GuestAction
from xenha.libvirt import states
from xenha.libvirt.domain import Domain
from xenha.ocf import OcfError, OcfExit

POLL_INTERVAL_S = 0.5
# How long a monitor waits for a restart to finish before answering: a share of its time.
RESTART_WAIT_SHARE = 0.5
RESTART_WAIT_MAX_S = 20.0


class ShutOff(enum.Enum):
    STOPPED = "stopped"  # verified: nothing of the guest is left in the hypervisor
    RESTARTING = "being restarted"  # a job of libvirt's holds it (a reboot or an arrival), or just ended one
    DEAD_KEPT = "dead but kept"  # no job, but it still has an ID: Xen holds its memory (preserve)


def meaning(has_id: bool, job_active: bool) -> ShutOff:
    """What a domain in libvirt's SHUTOFF state is.

    >>> meaning(has_id=False, job_active=False), meaning(True, True), meaning(True, False)
    (<ShutOff.STOPPED: 'stopped'>, <ShutOff.RESTARTING: 'being restarted'>, <ShutOff.DEAD_KEPT: 'dead but kept'>)
    """
    if job_active:
        return ShutOff.RESTARTING
    if has_id:
        return ShutOff.DEAD_KEPT
    return ShutOff.STOPPED


def classify(action: GuestAction, domain: Domain) -> ShutOff:
    """What the shut-off ``domain`` is. Asks for its job only where the driver restarts through
    SHUTOFF (libxl): elsewhere a probe of a stopped guest costs no extra call.

    The caller read "shut off" (and the lookup its ID) before the job is asked for: a restart
    that ended in between leaves no job and a domain running again, which those older answers
    would call stopped (no ID) or dead (the old ID). So a "no job" answer is confirmed by
    reading the domain again after it; one found running again is a restart that just ended.
    """
    hypervisor = action.hypervisor()
    if not hypervisor.driver.restarts_through_shutoff:
        return meaning(domain.id() >= 0, job_active=False)
    if domain.job_active():
        return ShutOff.RESTARTING
    current = hypervisor.lookup_uuid(domain.uuid())  # its ID now, read after the job's answer
    status = current.status() if current is not None else None
    if current is None or status is None:
        return ShutOff.STOPPED
    if status.state != states.SHUTOFF:
        return ShutOff.RESTARTING  # it has just ended: the caller's next read sees the domain back
    return meaning(current.id() >= 0, job_active=False)


def dead_but_kept(action: GuestAction, domain: Domain) -> bool:
    """True for a domain that is shut off but still exists in the hypervisor, holding memory."""
    status = domain.status()
    return status is not None and status.state == states.SHUTOFF and classify(action, domain) is ShutOff.DEAD_KEPT


def monitor_shut_off(action: GuestAction, domain: Domain) -> OcfExit:
    """The monitor's answer for a domain found shut off: 7 only once it is verified stopped.

    A restart under way is waited for within a share of the monitor's time, re-checked every
    half second: back to running is 0; gone, or shut off without a job and without an ID, is
    7. A restart that outlasts the wait (~15-40 s under emulation) is reported running (0, with
    a warning) when this host ran the guest under that UUID: libvirt is bringing it back here,
    and if it fails the job ends, the domain stays shut off without an ID and the next monitor
    says 7. A shut-off domain held by a job that never ran here (an arrival) is not called
    stopped either (1). A dead domain holding memory is a failure (1) with the reason:
    Pacemaker's recovery stops it (stop destroys it) before starting it again.
    """
    here = action.here
    hypervisor = action.hypervisor()
    found = classify(action, domain)
    if found is ShutOff.RESTARTING:
        wait = hypervisor.deadline.within(min(RESTART_WAIT_MAX_S, hypervisor.deadline.remaining() * RESTART_WAIT_SHARE))
        action.ctx.log.info(f"guest {domain.name} is shut off on {here} while libvirt restarts it: waiting")
        while found is ShutOff.RESTARTING and not wait.expired():
            action.services.sleep(POLL_INTERVAL_S)
            status = domain.status()
            if status is None:
                return OcfExit.NOT_RUNNING
            if status.state != states.SHUTOFF:
                verdict = states.judge(status.state, status.reason)
                if verdict.code == OcfExit.SUCCESS:
                    action.ctx.log.info(f"guest {domain.name} was restarted on {here} and is {verdict.description}")
                    return OcfExit.SUCCESS
                raise OcfError(verdict.code, f"guest {domain.name} is {verdict.description} on {here}")
            found = classify(action, domain)  # without a job, it reads the domain's new ID itself
    if found is ShutOff.STOPPED:
        return OcfExit.NOT_RUNNING
    if found is ShutOff.RESTARTING:
        running = action.memo.load().running
        if running is not None and running.uuid == domain.uuid():
            action.ctx.log.warning(
                f"guest {domain.name} is still being restarted by libvirt on {here} (it rebooted): reported running"
            )
            return OcfExit.SUCCESS
        raise OcfError(
            OcfExit.ERR_GENERIC,
            f"guest {domain.name} is shut off on {here} while a libvirt job holds it (an arrival?): not stopped",
        )
    raise OcfError(
        OcfExit.ERR_GENERIC,
        f"guest {domain.name} is dead on {here} but Xen still holds it and its memory "
        "(on_poweroff/on_crash=preserve): stop destroys it",
    )
