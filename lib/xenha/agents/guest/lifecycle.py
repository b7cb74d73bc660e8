"""xen-guest's start, stop and monitor: the guest's lifecycle on this node.

Truthfulness comes first. A probe or a stop never says "not running" unless the hypervisor
said so, after the guest was searched by every identity it has (:mod:`.identity`: the name
it was last seen running as, the configuration's name, its UUID, its owner metadata); and
none of them acts on a domain this resource does not own.
"""

from __future__ import annotations

import enum

from xenha.agents.guest.action import GuestAction
from xenha.agents.guest.booking import book
from xenha.agents.guest.identity import Located, forget, locate
from xenha.agents.guest.shutoff import dead_but_kept, monitor_shut_off
from xenha.agents.guest.utilization import publish_utilization
from xenha.deadline import Deadline
from xenha.libvirt import states
from xenha.libvirt.connection import Hypervisor
from xenha.libvirt.domain import Domain
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.libvirt.toolstack import Toolstack, Unknown, judge_unknown  # no subprocess until xl runs
from xenha.ocf import OcfError, OcfExit

POLL_INTERVAL_S = 0.2
# Part of stop's remaining time kept for destroy and verification after a graceful
# shutdown, and never less than DESTROY_MIN_S (time-budget-and-settling.md).
DESTROY_SHARE = 1.0 / 3.0
DESTROY_MIN_S = 5.0


def monitor(action: GuestAction) -> OcfExit:
    ctx = action.ctx
    located = locate(action, action.hypervisor())
    domain = located.domain
    status = domain.status() if domain is not None else None
    if domain is None or status is None:
        _refuse_intruder(action, located)
        return OcfExit.NOT_RUNNING
    verdict = states.judge(status.state, status.reason)
    if verdict.code == OcfExit.SUCCESS:
        if action.spec is not None and domain.name != action.spec.name:
            ctx.log.info(
                f"guest {domain.name} runs on {action.here}; its configuration now names it {action.spec.name}, "
                "which takes effect at its next start"
            )
        for problem in ctx.problems:
            ctx.log.warning(f"guest {domain.name} runs, but its configuration has a problem: {problem.reason}")
        if action.spec is not None and not ctx.problems:
            if action.config is not None:
                # the file changed since the last good read: remember what it says now
                action.remember(action.config, action.spec)
            publish_utilization(action, action.spec, force=False)
        return OcfExit.SUCCESS
    if verdict.code == OcfExit.NOT_RUNNING:
        return monitor_shut_off(action, domain)
    raise OcfError(verdict.code, f"guest {domain.name} is {verdict.description} on {action.here}")


def start(action: GuestAction) -> OcfExit:
    from xenha.admission.resources import demand_of  # noqa: PLC0415 - only start needs these (performance.md)
    from xenha.libvirt.owner import Owner, with_owner  # noqa: PLC0415 - only start needs these (performance.md)

    ctx = action.ctx
    config, spec = action.require_config()
    hypervisor = action.hypervisor()
    located = locate(action, hypervisor)
    if located.domain is None:
        _refuse_intruder(action, located)
    elif _accept_existing(action, located.domain):
        action.remember(config, spec)
        publish_utilization(action, spec, force=True)
        return OcfExit.SUCCESS
    owner = Owner(ctx.env.instance, spec.guest_type.value, spec.vcpus, spec.memory_mib, demand_of(spec).memory_mib)
    xml = with_owner(config.data, config.path, owner)
    here = action.here
    release = book(action, spec, f"start {spec.name} on {here}", hypervisor)
    try:
        ctx.log.info(
            f"starting guest {spec.name} ({spec.guest_type.label}, {spec.memory_mib} MiB, "
            f"{spec.vcpus} vCPUs) from {config.path} on {here}"
        )
        domain = hypervisor.create(xml, spec.name)
        _wait_running(action, domain)
    finally:
        release()  # from now on the running domain itself holds the room
    action.remember(config, spec, domain)
    publish_utilization(action, spec, force=True)
    ctx.log.info(f"guest {spec.name} is running on {here}")
    return OcfExit.SUCCESS


def stop(action: GuestAction) -> OcfExit:
    """Stop every domain of this resource here; success only once none runs (and none was another's)."""
    ctx = action.ctx
    hypervisor = action.hypervisor()
    toolstack = action.services.toolstack(hypervisor)
    located = locate(action, hypervisor)
    stopped: list[str] = []
    # UUIDs destroyed through the toolstack while libvirt's job held them: libvirt keeps their
    # objects until that job fails, which is not this stop's to wait for
    gone_in_xen: set[str] = set()
    while located.domain is not None and located.domain.uuid() not in gone_in_xen:
        domain = located.domain
        held = _through_toolstack(action, toolstack, domain) if toolstack is not None else Held.BY_LIBVIRT
        if held is not Held.BY_LIBVIRT:
            gone_in_xen.add(domain.uuid())
        elif _to_be_stopped(action, hypervisor, domain):
            _stop_domain(action, hypervisor, domain)
        else:
            break
        if held is not Held.NOTHING_IN_XEN:
            stopped.append(domain.name)
        forget(action)
        located = locate(action, hypervisor)  # none may be left: search again, by every identity
    if toolstack is not None:
        stopped.extend(_stop_unknown_to_libvirt(action, hypervisor, toolstack))
    if located.intruder is not None:
        ctx.log.warning(f"{located.intruder.reason(ctx.env.instance, action.here)}; it is left running")
    if not stopped:
        ctx.log.info(f"guest {action.domain_name() or ctx.env.instance} is not running on {action.here}")
    else:
        ctx.log.info(f"guest {', '.join(stopped)} is stopped on {action.here}")
    forget(action)
    return OcfExit.SUCCESS


def _to_be_stopped(action: GuestAction, hypervisor: Hypervisor, domain: Domain) -> bool:
    """True for a domain that runs here, is dead but still held by the hypervisor (preserve), or
    is still being received (or restarted) and then would run."""
    return domain.active() or dead_but_kept(action, domain) or _wait_for_arrival(action, hypervisor, domain)


class Held(enum.Enum):
    """What stop made of one of libvirt's domains by asking Xen too."""

    BY_LIBVIRT = "by libvirt"  # libvirt's own path stops it (or waits for a restart under way)
    DESTROYED = "destroyed"  # a libvirt job held it; destroyed through the toolstack
    NOTHING_IN_XEN = "nothing in Xen"  # libvirt's record of a domain Xen no longer holds


def _through_toolstack(action: GuestAction, toolstack: Toolstack, domain: Domain) -> Held:
    """Stop, through the toolstack, what libvirt cannot (docs/decisions/stop-through-xl.md).

    libxl's migration job cannot be aborted: on the source it blocks libvirt's shutdown and
    destroy for as long as the copy hangs (minutes, the network cut); on the target the
    arriving domain stays shut off in libvirt and paused in Xen until then. Xen destroys
    the domain at once and the migration then fails: never a second copy (a copy that had
    already arrived is the target's to stop; Pacemaker stops it there first).

    libvirt can keep a record of a domain Xen no longer holds: a failed arrival's, under its
    job, for as long as libvirtd runs; and a destroyed domain's, when libvirt's death
    handler could not take the domain from a job within its 30 s (seen after the destroy
    above). Nothing of such a record can run; libvirt cannot destroy it either. A guest that
    ran here, shut off under a job with nothing in Xen, is being restarted by libvirt (between
    its destroy and its create): libvirt's own path waits for it.
    """
    job = domain.job_active()
    active = domain.active()
    if not job and not active:
        return Held.BY_LIBVIRT
    # By ID when libvirt's record has one; the ID the lookup returned is -1 for a record that
    # was shut off then (an arrival whose restore has since completed): by name then
    domain_id = domain.id()
    in_xen = toolstack.domain(domain_id if active and domain_id >= 0 else domain.name)
    if in_xen is not None and in_xen.uuid.lower() == domain.uuid().lower():
        if not job:
            return Held.BY_LIBVIRT
        what = "a migration or a save" if active else "an incoming migration or a restart"
        action.ctx.log.warning(
            f"guest {domain.name} on {action.here} is held by a libvirt job that cannot be aborted ({what}): "
            f"destroying it (ID {in_xen.domain_id}, {in_xen.state}) through {toolstack.command}"
        )
        toolstack.destroy(in_xen.domain_id, in_xen.name)
        return Held.DESTROYED
    remembered = action.memo.load().running
    if not active and remembered is not None and remembered.uuid == domain.uuid():
        return Held.BY_LIBVIRT
    record = f"libvirt's record of {domain.name} ({'running' if active else 'an arrival'})"
    action.ctx.log.warning(
        f"{record} on {action.here} names a domain Xen no longer holds: nothing of it can run here. libvirt keeps "
        f"that record until libvirtd restarts on {action.here}; until then {domain.name} cannot start on or move "
        f"to {action.here}, and admissions into it may refuse"
    )
    return Held.NOTHING_IN_XEN


def _stop_unknown_to_libvirt(action: GuestAction, hypervisor: Hypervisor, toolstack: Toolstack) -> list[str]:
    """Stop what Xen holds under the guest's name that libvirt does not know (a libvirtd
    restarted during an arrival forgets the half-received domain); the names destroyed.

    Only a paused domain that never ran is destroyed (:func:`judge_unknown`); beside one that
    ran, the guest cannot be called stopped; one whose UUID says it is another guest is left.
    """
    ctx = action.ctx
    remembered = action.memo.load().running
    names = dict.fromkeys(name for name in (action.domain_name(), remembered.name if remembered else None) if name)
    config_uuid = action.spec.uuid if action.spec is not None else None
    destroyed = []
    for name in names:
        held = toolstack.domain(name)
        if held is None or hypervisor.lookup(name) is not None:
            continue  # not there, or libvirt knows it: the search by every identity judged it
        verdict = judge_unknown(held, config_uuid)
        if verdict is Unknown.NOT_OURS:
            ctx.log.warning(
                f"Xen on {action.here} holds a domain {name} (ID {held.domain_id}, UUID {held.uuid}) that libvirt "
                f"does not know and whose UUID is not {config_uuid}: not {ctx.env.instance}'s, left as it is"
            )
            continue
        if verdict is Unknown.UNVERIFIED:
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"Xen on {action.here} runs a domain {name} (ID {held.domain_id}, {held.state}) that libvirt does "
                f"not know: it may be this guest, so it is not stopped; destroy it (xl destroy {name}) or rename it",
            )
        ctx.log.warning(
            f"Xen on {action.here} holds {name} (ID {held.domain_id}) paused and never run, unknown to libvirt: "
            f"an arrival libvirtd lost; destroying it through {toolstack.command}"
        )
        toolstack.destroy(held.domain_id, name)
        destroyed.append(name)
    return destroyed


def _stop_domain(action: GuestAction, hypervisor: Hypervisor, domain: Domain) -> None:
    """Shut ``domain`` down within the graceful wait, then destroy it if it is still there.

    A dead domain the hypervisor keeps (shut off, with an ID: on_poweroff/on_crash=preserve)
    has nothing to shut down: it is destroyed at once, which frees its memory.
    """
    destroy = True
    graceful = _graceful_deadline(action)
    if _paused(domain):
        # A paused guest cannot act on a shutdown request (a failed migration's settle may
        # have paused it so that it cannot run twice): the graceful wait would only delay destroy.
        action.ctx.log.info(f"guest {domain.name} is paused: it cannot shut down, it is destroyed")
    elif domain.active() and not graceful.expired():
        destroy = _shut_down(action, domain, graceful)
    if destroy:
        _destroy(action, hypervisor, domain)


def _paused(domain: Domain) -> bool:
    status = domain.status()
    return status is not None and status.state == states.PAUSED


def _refuse_intruder(action: GuestAction, located: Located) -> None:
    """A running domain under our name that is not ours: a configuration error, never ours to use."""
    if located.intruder is not None:
        raise OcfError(OcfExit.ERR_CONFIGURED, located.intruder.reason(action.ctx.env.instance, action.here))


def _wait_for_arrival(action: GuestAction, hypervisor: Hypervisor, domain: Domain) -> bool:
    """A shut-off domain still being received here is not stopped: wait for it to settle.

    libxl keeps an arriving domain inactive (SHUTOFF) until its restore finishes, and it
    cannot be destroyed while the migration's job holds it; if the migration then completes,
    the guest runs here. Wait, leaving destroy its share of the time, until it is gone or
    active (True: destroy it); fail if it is still arriving then.
    """
    if not domain.is_arriving():
        return False
    action.ctx.log.warning(f"guest {domain.name} is being received on {action.here}: waiting for it to settle")
    settle = hypervisor.deadline.within(hypervisor.deadline.remaining() * (1.0 - DESTROY_SHARE))
    while not settle.expired():
        action.services.sleep(POLL_INTERVAL_S)
        if domain.active():
            return True
        if not domain.is_arriving():
            return False
    raise OcfError(
        OcfExit.ERR_GENERIC,
        f"guest {domain.name} is still being received on {action.here} (an incoming migration holds it, shut off "
        "until it completes, when it would run here): it is not stopped; the node needs fencing if this persists",
    )


def _shut_down(action: GuestAction, domain: Domain, graceful: Deadline) -> bool:
    """Ask the guest to shut down and wait until ``graceful``; True while it is still active."""
    log = action.ctx.log
    log.info(f"shutting down guest {domain.name} (waiting up to {graceful.remaining():.0f} s)")
    try:
        domain.shutdown()
    except HypervisorError as error:
        if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN, ErrorKind.FAILED):
            raise
        log.warning(f"graceful shutdown of {domain.name} not possible: {error.detail}")
    active = domain.active()
    while active and not graceful.expired():
        action.services.sleep(min(0.5, max(0.05, graceful.remaining())))
        active = domain.active()
    return active


def _destroy(action: GuestAction, hypervisor: Hypervisor, domain: Domain) -> None:
    action.ctx.log.info(f"destroying guest {domain.name}")
    domain.destroy_if_active()
    while domain.active():
        if hypervisor.deadline.expired():
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"guest {domain.name} is still active on {action.here} after destroy; the node needs fencing",
            )
        action.services.sleep(POLL_INTERVAL_S)


def _accept_existing(action: GuestAction, domain: Domain) -> bool:
    """True when this resource's existing domain already is the running guest."""
    ctx = action.ctx
    status = domain.status()
    if status is not None and status.state == states.SHUTOFF and dead_but_kept(action, domain):
        ctx.log.warning(f"guest {domain.name} is dead but still held on {action.here}: destroying it to start it")
        _destroy(action, action.hypervisor(), domain)
        forget(action)
        return False
    if status is None or status.state == states.SHUTOFF:
        return False
    name = domain.name
    verdict = states.judge(status.state, status.reason)
    if verdict.code == OcfExit.SUCCESS:
        ctx.log.info(f"guest {name} is already running on {action.here}")
        return True
    if status.state == states.PAUSED and verdict.code == OcfExit.DEGRADED:
        ctx.log.info(f"guest {name} is {verdict.description}: resuming it")
        domain.resume()
        _wait_running(action, domain)
        return True
    ctx.log.warning(f"guest {name} is {verdict.description}: destroying it to start it afresh")
    domain.destroy()
    forget(action)
    return False


def _wait_running(action: GuestAction, domain: Domain) -> None:
    name = domain.name
    while True:
        status = domain.status()
        if status is None:
            raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} disappeared right after it started on {action.here}")
        if states.running(status.state, status.reason):
            return
        verdict = states.judge(status.state, status.reason)
        if verdict.code in (OcfExit.ERR_GENERIC, OcfExit.NOT_RUNNING):
            raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} is {verdict.description} right after it started")
        if domain.hypervisor.deadline.expired():
            raise OcfError(OcfExit.ERR_GENERIC, f"guest {name} is still {verdict.description}, not running")
        action.services.sleep(POLL_INTERVAL_S)


def _graceful_deadline(action: GuestAction) -> Deadline:
    """When stop's graceful wait ends: set once per action, from the time left when it starts.

    A retry after a reconnect continues the same wait (it is a deadline, not a duration).
    """
    if action.graceful_until is None:
        ctx = action.ctx
        try:
            configured = 0.0 if ctx.params.boolean("force_stop") else ctx.params.integer("shutdown_timeout")
        except OcfError:
            configured = None  # a broken value must not keep stop from stopping
        action.graceful_until = ctx.deadline.within(graceful_seconds(ctx.deadline.remaining(), configured))
    return action.graceful_until


def graceful_seconds(remaining_s: float, configured_s: float | None) -> float:
    """How long stop waits for a graceful shutdown, with ``remaining_s`` left in the action.

    ``shutdown_timeout`` when set, but destroy always keeps ``max(DESTROY_MIN_S, a third)``
    of the time left (time-budget-and-settling.md).

    >>> graceful_seconds(30.0, None), graceful_seconds(30.0, 5), graceful_seconds(12.0, None)
    (20.0, 5.0, 7.0)
    >>> graceful_seconds(4.0, None), graceful_seconds(30.0, 0)
    (0.0, 0.0)
    """
    graceful_s = remaining_s - max(DESTROY_MIN_S, remaining_s * DESTROY_SHARE)
    if configured_s is not None:
        graceful_s = min(float(configured_s), graceful_s)
    return max(0.0, graceful_s)
