"""xen-guest's start, stop and monitor: the guest's lifecycle on this node.

Truthfulness comes first. A probe or a stop never says "not running" unless the hypervisor
said so: when the configuration cannot be read, the domain is found by the name remembered
from the last good read, or by the owner recorded in the domain's own metadata.
"""

from __future__ import annotations

from xenha.agents.guest.action import GuestAction
from xenha.agents.guest.booking import book
from xenha.agents.guest.utilization import publish_utilization
from xenha.libvirt import states
from xenha.libvirt.connection import Hypervisor
from xenha.libvirt.domain import Domain, FoundDomain
from xenha.libvirt.domxml import DomainSpec
from xenha.libvirt.errors import ErrorKind, HypervisorError
from xenha.ocf import OcfError, OcfExit

POLL_INTERVAL_S = 0.2
# Part of stop's time kept for destroy and verification after a graceful shutdown.
DESTROY_SHARE = 1.0 / 3.0


def monitor(action: GuestAction) -> OcfExit:
    ctx = action.ctx
    domain = action.locate(action.hypervisor())
    status = domain.status() if domain is not None else None
    if domain is None or status is None:
        return OcfExit.NOT_RUNNING
    verdict = states.judge(status.state, status.reason)
    if verdict.code == OcfExit.SUCCESS:
        for problem in ctx.problems:
            ctx.log.warning(f"guest {domain.name} runs, but its configuration has a problem: {problem.reason}")
        if action.spec is not None and not ctx.problems:
            if action.config is not None:
                # the file changed since the last good read: remember what it says now
                action.remember(action.config, action.spec)
            publish_utilization(action, action.spec, force=False)
        return OcfExit.SUCCESS
    if verdict.code == OcfExit.NOT_RUNNING:
        return OcfExit.NOT_RUNNING
    raise OcfError(verdict.code, f"guest {domain.name} is {verdict.description} on {action.here}")


def start(action: GuestAction) -> OcfExit:
    from xenha.admission.resources import demand_of  # noqa: PLC0415 - only start needs these (performance.md)
    from xenha.libvirt.owner import Owner, with_owner  # noqa: PLC0415 - only start needs these (performance.md)

    ctx = action.ctx
    config, spec = action.require_config()
    hypervisor = action.hypervisor()
    existing = hypervisor.find(spec.name)
    if existing is not None and _accept_existing(action, existing, spec):
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
    action.remember(config, spec)
    publish_utilization(action, spec, force=True)
    ctx.log.info(f"guest {spec.name} is running on {here}")
    return OcfExit.SUCCESS


def stop(action: GuestAction) -> OcfExit:
    ctx = action.ctx
    hypervisor = action.hypervisor()
    domain = action.locate(hypervisor)
    if domain is None:
        ctx.log.info(f"guest {action.domain_name() or ctx.env.instance} is not running on {action.here}")
        return OcfExit.SUCCESS
    graceful_s = _graceful_seconds(action)
    active = domain.active() or _wait_for_arrival(action, hypervisor, domain)
    if graceful_s > 0 and active:
        active = _shut_down(action, hypervisor, domain, graceful_s)
    if active:
        _destroy(action, hypervisor, domain)
    ctx.log.info(f"guest {domain.name} is stopped on {action.here}")
    return OcfExit.SUCCESS


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


def _shut_down(action: GuestAction, hypervisor: Hypervisor, domain: Domain, graceful_s: float) -> bool:
    """Ask the guest to shut down and wait up to ``graceful_s``; True while it is still active."""
    log = action.ctx.log
    log.info(f"shutting down guest {domain.name} (waiting up to {graceful_s:.0f} s)")
    try:
        domain.shutdown()
    except HypervisorError as error:
        if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN, ErrorKind.FAILED):
            raise
        log.warning(f"graceful shutdown of {domain.name} not possible: {error.detail}")
    graceful = hypervisor.deadline.within(graceful_s)
    active = domain.active()
    while active and not graceful.expired():
        action.services.sleep(min(0.5, max(0.05, graceful.remaining())))
        active = domain.active()
    return active


def _destroy(action: GuestAction, hypervisor: Hypervisor, domain: Domain) -> None:
    action.ctx.log.info(f"destroying guest {domain.name}")
    try:
        domain.destroy()
    except HypervisorError as error:
        if error.kind not in (ErrorKind.INVALID_STATE, ErrorKind.NO_DOMAIN):
            raise
    while domain.active():
        if hypervisor.deadline.expired():
            raise OcfError(
                OcfExit.ERR_GENERIC,
                f"guest {domain.name} is still active on {action.here} after destroy; the node needs fencing",
            )
        action.services.sleep(POLL_INTERVAL_S)


def _accept_existing(action: GuestAction, existing: FoundDomain, spec: DomainSpec) -> bool:
    """True when an existing domain of the guest's name already is the running guest."""
    ctx = action.ctx
    domain, status = existing
    if status.state == states.SHUTOFF:
        return False
    owner = domain.owner()
    if owner is not None and owner.resource is not None and owner.resource != ctx.env.instance:
        raise OcfError(
            OcfExit.ERR_CONFIGURED,
            f"domain {spec.name} on {action.here} belongs to cluster resource {owner.resource}, "
            f"not {ctx.env.instance}: two resources name the same domain",
        )
    verdict = states.judge(status.state, status.reason)
    if verdict.code == OcfExit.SUCCESS:
        ctx.log.info(f"guest {spec.name} is already running on {action.here}")
        return True
    if status.state == states.PAUSED and verdict.code == OcfExit.DEGRADED:
        ctx.log.info(f"guest {spec.name} is {verdict.description}: resuming it")
        domain.resume()
        _wait_running(action, domain)
        return True
    ctx.log.warning(f"guest {spec.name} is {verdict.description}: destroying it to start it afresh")
    domain.destroy()
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


def _graceful_seconds(action: GuestAction) -> float:
    ctx = action.ctx
    try:
        if ctx.params.boolean("force_stop"):
            return 0.0
        configured = ctx.params.integer("shutdown_timeout")
    except OcfError:
        configured = None  # a broken value must not keep stop from stopping
    if configured is None:
        return ctx.timeout_s * (1.0 - DESTROY_SHARE)
    # Never eat into the time destroy needs.
    return min(float(configured), ctx.deadline.remaining() * (1.0 - DESTROY_SHARE))
