"""Which domain on this node is this resource's guest: found by every identity it has.

A stop that answers "stopped" while the guest runs under another name lets Pacemaker start
it a second time from the same disks; a monitor or stop that takes another resource's
domain (or one started by hand) for its own reports or shuts down the wrong guest. So
(docs/decisions/owner-metadata.md):

1. **By name**: the name the guest was last verified running as on this node (the memo),
   then the name the configuration gives now. A domain found under the remembered name
   with the remembered UUID and ID is ours without another call: the monitor's usual path
   costs what it cost before.
2. **Otherwise** (not found by name, or found but not ours): by UUID (the configuration's,
   the remembered one), then by the owner metadata of every active domain. Only this path
   pays for a scan.

Whether a domain is ours is decided by its owner metadata (:func:`claim`); a domain under
one of our names that is not ours is an *intruder*: never stopped, never reported running,
and named in the reason the agent gives.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple

from xenha.agents.guest.memo import RunningDomain
from xenha.libvirt.domain import Domain
from xenha.libvirt.errors import HypervisorError

if TYPE_CHECKING:
    from xenha.agents.guest.action import GuestAction
    from xenha.libvirt.connection import Hypervisor


class Claim(enum.Enum):
    OURS = "ours"  # its owner metadata names this resource
    ADOPT = "adopt"  # no owner; its UUID is the one the configuration declares (the adoption rule)
    FOREIGN = "foreign"  # its owner metadata names another resource
    UNOWNED = "unowned"  # no owner metadata, no matching UUID: started outside the cluster


def claim(owner_resource: str | None, instance: str, domain_uuid: str, config_uuid: str | None) -> Claim:
    """What a domain found under one of our identities is to resource ``instance``.

    >>> claim("web1", "web1", "u1", None), claim("web2", "web1", "u1", "u1")
    (<Claim.OURS: 'ours'>, <Claim.FOREIGN: 'foreign'>)
    >>> claim(None, "web1", "6b1e5c3a-0000-4000-8000-000000000001", "6B1E5C3A-0000-4000-8000-000000000001")
    <Claim.ADOPT: 'adopt'>
    >>> claim(None, "web1", "u1", None), claim(None, "web1", "u1", "u2")
    (<Claim.UNOWNED: 'unowned'>, <Claim.UNOWNED: 'unowned'>)
    """
    if owner_resource == instance:
        return Claim.OURS
    if owner_resource:
        return Claim.FOREIGN
    if config_uuid and domain_uuid.lower() == config_uuid.strip().lower():
        return Claim.ADOPT
    return Claim.UNOWNED


class Intruder(NamedTuple):
    """A running domain under one of this resource's names that is not its guest."""

    name: str
    owner: str | None  # the resource its metadata names; None: started outside the cluster

    def reason(self, instance: str, here: str) -> str:
        """Why the resource cannot use that name; the names come first (Pacemaker keeps 128 characters)."""
        if self.owner is not None:
            return (
                f"the domain belongs to cluster resource {self.owner}, not to {instance}: domain {self.name} on "
                f"{here} (its xenha owner metadata); two resources name the same domain: give one another <name>"
            )
        return (
            f"domain {self.name} on {here} was not started by the cluster (no xenha owner metadata), so it is "
            f"not {instance}'s: shut it down, or declare its <uuid> in the configuration to adopt it"
        )


class Located(NamedTuple):
    domain: Domain | None  # this resource's domain here (running or not), None: there is none
    intruder: Intruder | None = None  # a running domain under one of our names that is not ours


def locate(action: GuestAction, hypervisor: Hypervisor) -> Located:
    """This resource's domain on ``hypervisor``, searched by every identity it has."""
    memo = action.memo.load()
    remembered = memo.running
    intruders: list[Intruder] = []
    seen: set[str] = set()  # UUIDs already judged
    for name in _names(action, remembered):
        domain = hypervisor.lookup(name)
        if domain is None:
            continue
        if remembered is not None and _is_remembered(domain, remembered):
            return Located(domain)  # the usual path: no call beyond the lookup
        seen.add(domain.uuid())
        if _ours(action, domain, intruders):
            return Located(domain)
    # The slow path: not found by name, or found but not ours.
    found = _by_uuid(action, hypervisor, remembered, seen, intruders) or _by_owner(action, hypervisor)
    if found is not None:
        return Located(found)
    if remembered is not None:
        action.update_memo(memo._replace(running=None))  # it no longer runs here
    return Located(None, intruders[0] if intruders else None)


def _by_uuid(action: GuestAction, hypervisor: Hypervisor, remembered: RunningDomain | None, seen: set[str],
             intruders: list[Intruder]) -> Domain | None:  # fmt: skip
    """Ours among the domains with the configuration's or the remembered UUID."""
    spec = action.spec
    for uuid in dict.fromkeys(u for u in (spec.uuid if spec else None, remembered.uuid if remembered else None) if u):
        domain = hypervisor.lookup_uuid(uuid)
        if domain is None or domain.uuid() in seen:
            continue
        seen.add(domain.uuid())
        if _ours(action, domain, intruders):
            return domain
    return None


def _by_owner(action: GuestAction, hypervisor: Hypervisor) -> Domain | None:
    """The active domain whose owner metadata names this resource (a scan of every active domain)."""
    instance = action.ctx.env.instance
    owned = hypervisor.find_owned_by(instance)
    if owned is not None:
        action.ctx.log.info(f"found the guest of {instance} by its metadata: domain {owned.name}")
        _remember(action, owned)
    return owned


def _names(action: GuestAction, remembered: RunningDomain | None) -> list[str]:
    """The names to look up, the one last verified running first; each once."""
    names = [remembered.name if remembered else None, action.domain_name()]
    return list(dict.fromkeys(name for name in names if name))


def _is_remembered(domain: Domain, remembered: RunningDomain) -> bool:
    return domain.name == remembered.name and domain.id() == remembered.domain_id and domain.uuid() == remembered.uuid


def _ours(action: GuestAction, domain: Domain, intruders: list[Intruder]) -> bool:
    """True when ``domain`` is this resource's (remembered as such); an intruder is noted."""
    owner = domain.owner()
    spec = action.spec
    verdict = claim(
        owner.resource if owner is not None else None,
        action.ctx.env.instance,
        domain.uuid(),
        spec.uuid if spec is not None else None,
    )
    if verdict is Claim.ADOPT:
        _adopt(action, domain)
        verdict = Claim.OURS
    if verdict is Claim.OURS:
        _remember(action, domain)
        return True
    if domain.active():
        intruders.append(Intruder(domain.name, owner.resource if owner is not None else None))
    return False


def _adopt(action: GuestAction, domain: Domain) -> None:
    """Record this resource as the owner of a domain the adoption rule gives it."""
    from xenha.admission.resources import demand_of  # noqa: PLC0415 - only when adopting (performance.md)
    from xenha.libvirt.owner import Owner  # noqa: PLC0415 - only when adopting (performance.md)

    spec = action.require_spec()
    instance, here = action.ctx.env.instance, action.here
    action.ctx.log.warning(
        f"adopting domain {domain.name} on {here} for {instance}: it has no owner metadata and the UUID "
        f"{spec.uuid} the configuration declares"
    )
    owner = Owner(instance, spec.guest_type.value, spec.vcpus, spec.memory_mib, demand_of(spec).memory_mib)
    try:
        domain.record_owner(owner)
    except HypervisorError as error:  # the rule still holds next time; the metadata only speeds it up
        action.ctx.log.warning(f"could not record {instance} as the owner of {domain.name}: {error.reason()}")


def _remember(action: GuestAction, domain: Domain) -> None:
    """Remember ``domain`` as this resource's running guest, so the next monitor needs no search."""
    domain_id = domain.id()
    if domain_id < 0:
        return  # not running: nothing to recognise it by
    running = RunningDomain(domain.name, domain.uuid(), domain_id)
    memo = action.memo.load()
    if memo.running != running:
        action.update_memo(memo._replace(running=running))


def forget(action: GuestAction) -> None:
    """This resource's guest no longer runs here."""
    memo = action.memo.load()
    if memo.running is not None:
        action.update_memo(memo._replace(running=None))
